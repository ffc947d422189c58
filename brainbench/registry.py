"""Registries of models, data sources and tasks; third-party plugins register through entry points.

Built-in models and sources register themselves when their module (any module of
brainbench.models or brainbench.data.sources) is imported, so a new model is one new file.
Plugins are packages exposing a module under the entry-point groups `brainbench.models`,
`brainbench.sources` or `brainbench.tasks` (a task plugin points at a folder of task YAMLs).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Literal

from brainbench.config import StrictModel
from brainbench.errors import BrainbenchError, unknown

# Every module in these packages is imported once; those defining models or sources register them.
BUILTIN_PACKAGES = ("brainbench.models", "brainbench.data.sources")
TASK_ROOT = Path(__file__).parent / "tasks"


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: `build(params, task)` returns an Estimator (see models/base.py)."""

    name: str
    kind: Literal["torch", "sklearn", "baseline"]
    config_cls: type[StrictModel]
    build: Callable[..., Any]
    description: str
    task_kinds: tuple[str, ...] = ("regression",)
    defaults: dict[str, Any] = field(default_factory=dict)  # experiment-level config layer
    # (params) -> protocol name, for models whose protocol depends on their parameters
    protocol: Callable[[Any], str] | None = None
    # capabilities, asked by the callers instead of testing names
    needs_volume: bool = False  # reads image volumes (a preprocess section), not series/features
    # (params, task) -> whether fit() learns from the training subjects; None = always
    trains: Callable[[Any, Any], bool] | None = None

    def learns(self, params: Any, task: Any) -> bool:
        """Whether the model needs training subjects for `task` (fit-free or pretrained: no)."""
        return self.trains is None or self.trains(params, task)

    def protocol_of(self, params: Any) -> str:
        """'scratch', 'finetune', 'linear_probe', 'baseline'...: a leaderboard column."""
        if self.protocol is not None:
            return self.protocol(params)
        return "scratch" if self.kind == "torch" else "baseline"


@dataclass(frozen=True)
class SourceEntry:
    """A registered data source: `load(DataConfig)` returns a list of SubjectRecord.

    `source` is its class (a data/sources/base.py Source), or None for a plain loader function,
    which gets the protocol's defaults.
    """

    name: str
    load: Callable[..., Any]
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)  # experiment-level config layer
    source: type | None = None


MODELS: dict[str, ModelEntry] = {}
SOURCES: dict[str, SourceEntry] = {}
_loaded = False


def register_model(
    name: str,
    *,
    kind: Literal["torch", "sklearn", "baseline"],
    config: type[StrictModel],
    description: str,
    task_kinds: tuple[str, ...] = ("regression",),
    defaults: dict[str, Any] | None = None,
    protocol: Callable[[Any], str] | None = None,
    needs_volume: bool = False,
    trains: Callable[[Any, Any], bool] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a model builder under `name` (keywords: ModelEntry's fields)."""

    def wrap(build: Callable[..., Any]) -> Callable[..., Any]:
        _check_free(name, MODELS, "model")
        MODELS[name] = ModelEntry(
            name, kind, config, build, description, task_kinds, defaults or {}, protocol,
            needs_volume, trains,
        )  # fmt: skip
        return build

    return wrap


def register_source(
    name: str, *, description: str, defaults: dict[str, Any] | None = None
) -> Callable[[Any], Any]:
    """Decorator registering a data source under `name`: a Source subclass
    (data/sources/base.py) or a plain loader function `load(DataConfig) -> list[SubjectRecord]`.
    """

    def wrap(target: Any) -> Any:
        _check_free(name, SOURCES, "data source")
        if isinstance(target, type):
            load = _class_loader(target)
            SOURCES[name] = SourceEntry(name, load, description, defaults or {}, target)
        else:
            SOURCES[name] = SourceEntry(name, target, description, defaults or {})
        return target

    return wrap


def _class_loader(source: type) -> Callable[[Any], Any]:
    def load(config: Any) -> Any:
        return source(config).records()

    return load


def _check_free(name: str, table: dict[str, Any], kind: str) -> None:
    if name in table:
        raise BrainbenchError(f"{kind} name '{name}' is registered twice; pick another name.")


def load_plugins() -> None:
    """Import built-in modules and entry-point plugins once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for package in BUILTIN_PACKAGES:
        path = importlib.import_module(package).__path__
        for info in pkgutil.iter_modules(path):
            importlib.import_module(f"{package}.{info.name}")
    for group in ("brainbench.models", "brainbench.sources"):
        for ep in entry_points(group=group):
            try:
                ep.load()
            except BrainbenchError as exc:
                dist = ep.dist.name if ep.dist else "?"
                raise BrainbenchError(f"plugin {ep.value} (package {dist}): {exc}") from None


def task_dirs() -> list[Path]:
    """Folders holding task YAMLs: the built-in one and any from `brainbench.tasks` plugins."""
    dirs = [TASK_ROOT]
    for ep in entry_points(group="brainbench.tasks"):
        dirs.append(Path(ep.load().__file__).parent)
    return dirs


def get_model(name: str) -> ModelEntry:
    load_plugins()
    if name not in MODELS:
        raise unknown("model", name, MODELS)
    return MODELS[name]


def get_source(name: str) -> SourceEntry:
    load_plugins()
    if name not in SOURCES:
        raise unknown("dataset", name, SOURCES)
    return SOURCES[name]
