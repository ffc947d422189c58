"""Tasks: one YAML each (what to predict from which inputs, how to score it) + the Python they need.

A task YAML holds: name, description, kind (one of KINDS), inputs (modalities), target (a
participants column, 'age', 'sex', or for voxel-wise kinds a modality such as 'seg' or 'T2w'),
headline metric and its direction, metrics, the task's default models, and optionally:
`config` (layered into the experiment), `model_config` (model name -> config layered over that
model's defaults, e.g. its `model` parameters and `trainer` for this task), `debug` (layered
after `--debug`, for a task whose debug run needs another grid or more epochs to mean
anything) and `runner`: the module that runs it (a name under brainbench.tasks, or a dotted
module path for plugins; default by kind, see RUNNERS). It exposes
`prepare(config, log) -> prepared` and `run_experiment(experiment, prepared, force=, log=)`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from brainbench.config import load_yaml
from brainbench.errors import ConfigError, unknown
from brainbench.spec import DEFAULT_RUNNER, KINDS, TaskSpec

# The default runner module (under brainbench.tasks) of each kind; a task YAML may name another.
RUNNERS = {"segmentation": "voxelwise", "synthesis": "voxelwise"}


def _parse(path: Path) -> TaskSpec:
    raw = load_yaml(path)
    required = ("name", "description", "kind", "inputs", "target", "headline", "metrics", "models")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(f"task file {path} lacks the keys {missing}; add them.")
    optional = {"higher_is_better", "config", "model_config", "debug", "version", "runner"}
    extra = set(raw) - set(required) - optional
    if extra:
        raise ConfigError(f"task file {path} has unknown keys {sorted(extra)}.")
    if raw["kind"] not in KINDS:
        raise ConfigError(f"task file {path}: kind must be one of {', '.join(KINDS)}.")
    for key in ("config", "debug"):
        if not isinstance(raw.get(key) or {}, dict):
            raise ConfigError(f"task file {path}: {key} must be a mapping of config keys.")
    model_config = raw.get("model_config") or {}
    if not isinstance(model_config, dict) or not all(
        isinstance(v, dict) for v in model_config.values()
    ):
        raise ConfigError(
            f"task file {path}: model_config must map model names to config sections, "
            "e.g. 'unet: {model: {channels: [16, 32]}}'."
        )
    runner = raw.get("runner") or RUNNERS.get(raw["kind"], DEFAULT_RUNNER)
    runner = runner if "." in runner else f"brainbench.tasks.{runner}"
    if importlib.util.find_spec(runner) is None:
        raise ConfigError(f"task file {path}: runner module '{runner}' does not exist.")
    return TaskSpec(
        name=raw["name"],
        description=raw["description"],
        kind=raw["kind"],
        inputs=tuple(raw["inputs"]),
        target=raw["target"],
        headline=raw["headline"],
        higher_is_better=bool(raw.get("higher_is_better", False)),
        metrics=tuple(raw["metrics"]),
        models=tuple(raw["models"]),
        config=raw.get("config") or {},
        model_config=model_config,
        debug_config=raw.get("debug") or {},
        version=int(raw.get("version", 1)),
        runner=runner,
        source=path,
    )


def all_tasks() -> dict[str, TaskSpec]:
    """Every task found in the task folders, by name (e.g. 'mri/age')."""
    from brainbench.registry import task_dirs

    tasks: dict[str, TaskSpec] = {}
    for folder in task_dirs():
        for path in sorted(folder.rglob("*.yaml")):
            if path.name == "defaults.yaml":
                continue
            spec = _parse(path)
            tasks[spec.name] = spec
    return tasks


def get_task(name: str) -> TaskSpec:
    tasks = all_tasks()
    if name not in tasks:
        raise unknown("task", name, tasks)
    return tasks[name]
