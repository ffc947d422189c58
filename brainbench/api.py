"""The Python API: what the CLI calls and what users script against."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType

import pandas as pd

from brainbench.config import (
    Layer,
    build_config,
    deep_merge,
    load_yaml,
    parse_overrides,
    validate_section,
)
from brainbench.errors import ConfigError
from brainbench.registry import MODELS, SOURCES, get_model, get_source, load_plugins
from brainbench.results.leaderboard import format_table, write_reports
from brainbench.results.record import check_writable, is_complete
from brainbench.tasks import TaskSpec, all_tasks, get_task
from brainbench.tasks.runs import Experiment, config_digest, is_global_zero

CONFIG_DIR = Path(__file__).parent / "configs"
QUICK_SUITE: tuple[str, ...] = ("mri/age",)

Log = Callable[[str], None]


def resolve_config(
    task: str,
    model: str,
    *,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
) -> Experiment:
    """Layer defaults -> task -> model -> dataset -> debug -> config file -> overrides; validate."""
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
    tail: list[Layer] = []
    if debug:
        tail.append(("--debug", load_yaml(CONFIG_DIR / "debug.yaml")))
    if config_file is not None:
        tail.append((f"config file {config_file}", load_yaml(config_file)))
    tail.append(("command line", parse_overrides(list(overrides))))
    if dataset is not None:
        tail.append(("--dataset", {"data": {"dataset": dataset}}))
    name = build_config(head + tail).data.dataset
    source = get_source(name)
    layers = head + [(f"dataset '{name}' defaults", source.defaults)] + tail
    config = build_config(layers)
    params = validate_section(
        get_model(config.model_name).config_cls, config.model_params, layers, prefix="model."
    )
    return Experiment(config, params)


def plan(
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    **options,
) -> list[Experiment]:
    """Every (task, model) experiment of a run; models default to each task's own list."""
    experiments = []
    for task in tasks or QUICK_SUITE:
        spec = get_task(task)
        for model in models or spec.models:
            experiments.append(resolve_config(task, model, **options))
    return experiments


def _check_conflicts(experiments: list[Experiment]) -> None:
    """Refuse to silently keep a finished run whose config differs from the one asked for."""
    stale = []
    for exp in experiments:
        digest = config_digest(exp.config)
        for rdir in exp.run_dirs():
            if is_complete(rdir):
                saved = json.loads((rdir / "metrics.json").read_text()).get("config_digest")
                if saved != digest:
                    stale.append(str(rdir))
    if stale:
        raise ConfigError(
            "finished runs exist with a different config: "
            + ", ".join(stale)
            + ". Pass --force to replace them, or set output_dir=OTHER_DIR to keep both."
        )


def run(
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    force: bool = False,
    log: Log = print,
) -> pd.DataFrame:
    """Run tasks x models x seeds, write run records, then the leaderboard; return it."""
    experiments = plan(
        tasks, models, dataset=dataset, overrides=overrides, debug=debug, config_file=config_file
    )
    for out in {exp.config.output_dir for exp in experiments}:
        check_writable(out)
    if not force:
        _check_conflicts(experiments)
    prepared: dict[tuple[str, str], dict] = {}
    for exp in experiments:
        cfg = exp.config
        key = (cfg.task, cfg.model_dump_json(include={"data", "preprocess", "split", "output_dir"}))
        runner = _runner(exp.spec)
        if key not in prepared:
            prepared[key] = runner.prepare(cfg, log)
        runner.run_experiment(exp, prepared[key], force=force, log=log)
    if not is_global_zero():
        return pd.DataFrame()
    outputs = {exp.config.output_dir for exp in experiments}
    tables = [report(out, log=log) for out in sorted(outputs)]
    return pd.concat(tables, ignore_index=True)


def pretrain(
    model: str,
    *,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    log: Log = print,
) -> Path:
    """Pretrain a foundation model on a dataset's training subjects; return its folder.

    Layers: --debug (the debug cohort, grid and results folder, few steps) -> --config FILE ->
    key=value -> --dataset. Only subjects outside every task's test split are used.
    """
    from brainbench.training.pretrain import build_pretrain_config
    from brainbench.training.pretrain import pretrain as run_pretraining

    layers: list[Layer] = []
    if debug:
        quick = load_yaml(CONFIG_DIR / "debug.yaml")
        keep = {k: quick[k] for k in ("data", "preprocess", "output_dir")}
        layers.append(("--debug", keep | {"max_steps": 30}))
    if config_file is not None:
        layers.append((f"config file {config_file}", load_yaml(config_file)))
    layers.append(("command line", parse_overrides(list(overrides))))
    if dataset is not None:
        layers.append(("--dataset", {"data": {"dataset": dataset}}))
    config = build_pretrain_config(model, layers)
    get_source(config.data.dataset)  # an unknown dataset fails before any work
    check_writable(config.output_dir)
    return run_pretraining(config, log=log)


def _runner(spec: TaskSpec) -> ModuleType:
    """The module running a task (tasks/supervised.py, tasks/voxelwise.py, ...)."""
    return importlib.import_module(spec.runner)


def report(results_dir: Path = Path("results"), *, log: Log = print) -> pd.DataFrame:
    """Aggregate the run records under `results_dir` into leaderboard.md/.csv, dashboard.html."""
    results_dir = Path(results_dir)
    table, paths = write_reports(results_dir)
    log(format_table(table))
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return table


def list_tasks() -> list[TaskSpec]:
    return sorted(all_tasks().values(), key=lambda t: t.name)


def list_models() -> list:
    load_plugins()
    return sorted(MODELS.values(), key=lambda m: m.name)


def list_sources() -> list:
    load_plugins()
    return sorted(SOURCES.values(), key=lambda s: s.name)
