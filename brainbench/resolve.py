"""Config resolution: the layered, validated config of one (task, model) experiment.

Below both the API and the grid, which resolve every experiment they run here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from brainbench.config import (
    Layer,
    build_config,
    deep_merge,
    load_yaml,
    parse_overrides,
    validate_section,
)
from brainbench.errors import ConfigError
from brainbench.registry import get_model, get_source
from brainbench.tasks import get_task
from brainbench.tasks.runs import Experiment

CONFIG_DIR = Path(__file__).parent / "configs"


def resolve_config(
    task: str,
    model: str,
    *,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    extra_layers: Sequence[Layer] = (),
) -> Experiment:
    """Layer defaults -> task -> model (then the task's settings for it) -> dataset -> debug (then
    the task's own debug) -> config file -> `extra_layers` (a suite file's) -> overrides;
    validate."""
    spec = get_task(task)
    entry = get_model(model)
    if spec.kind not in entry.task_kinds:
        raise ConfigError(
            f"model '{model}' does not support {spec.kind} task '{task}'; "
            f"it supports {', '.join(entry.task_kinds)}."
        )
    head: list[Layer] = [
        ("defaults", load_yaml(CONFIG_DIR / "defaults.yaml")),
        (f"task file {spec.source}", deep_merge(spec.config, {"task": spec.name})),
        (f"model '{model}' defaults", deep_merge(entry.defaults, {"model": {"name": model}})),
    ]
    if model in spec.model_config:
        head.append((f"task file {spec.source} (model_config.{model})", spec.model_config[model]))
    tail: list[Layer] = []
    if debug:
        tail.append(("--debug", load_yaml(CONFIG_DIR / "debug.yaml")))
        if spec.debug_config:
            tail.append((f"--debug of task file {spec.source}", spec.debug_config))
    if config_file is not None:
        tail.append((f"config file {config_file}", load_yaml(config_file)))
    tail += extra_layers
    tail.append(("command line", parse_overrides(list(overrides))))
    if dataset is not None:
        tail.append(("--dataset", {"data": {"dataset": dataset}}))
    name = build_config(head + tail).data.dataset
    source = get_source(name)
    layers = head + [(f"dataset '{name}' defaults", source.defaults)] + tail
    config = build_config(layers)
    params = validate_section(
        get_model(config.model_name).config_cls,
        config.model_params,
        layers,
        prefix="model.",
        owner=f"model '{config.model_name}'",
    )
    return Experiment(config, params)
