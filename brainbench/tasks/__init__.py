"""Tasks: one YAML each (what to predict from which inputs, how to score it) + the Python they need.

A task YAML holds: name, description, kind (one of KINDS), inputs (modalities), target (a
participants column, 'age', 'sex', or for voxel-wise kinds a modality such as 'seg' or 'T2w'),
headline metric and its direction, metrics, the task's default models, and an optional `config`
mapping layered into the experiment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from brainbench.config import load_yaml
from brainbench.errors import ConfigError, unknown

KINDS = ("regression", "classification", "segmentation", "synthesis")


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    kind: Literal["regression", "classification", "segmentation", "synthesis"]
    inputs: tuple[str, ...]
    target: str
    headline: str
    higher_is_better: bool
    metrics: tuple[str, ...]
    models: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    version: int = 1
    source: Path | None = None


def _parse(path: Path) -> TaskSpec:
    raw = load_yaml(path)
    required = ("name", "description", "kind", "inputs", "target", "headline", "metrics", "models")
    missing = [k for k in required if k not in raw]
    if missing:
        raise ConfigError(f"task file {path} lacks the keys {missing}; add them.")
    extra = set(raw) - set(required) - {"higher_is_better", "config", "version"}
    if extra:
        raise ConfigError(f"task file {path} has unknown keys {sorted(extra)}.")
    if raw["kind"] not in KINDS:
        raise ConfigError(f"task file {path}: kind must be one of {', '.join(KINDS)}.")
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
        version=int(raw.get("version", 1)),
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
