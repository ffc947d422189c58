"""The bottom layer: what a task is (TaskSpec, the task kinds) and the file names shared by
models, tasks and results. Imports nothing from brainbench, so every layer may import it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

KINDS = (
    "regression",
    "classification",
    "segmentation",
    "synthesis",
    "reconstruction",
    "forecast",
    "retrieval",
    "clustering",
    "perturbation",
)
DEFAULT_RUNNER = "supervised"  # the runner module (under brainbench.tasks) of most kinds

WEIGHTS = "model.safetensors"  # a model's weights: run records, pretrained and exported folders
MODEL_CONFIG = "config.json"  # the config beside the weights of a pretrained or exported model
RECORD_CONFIG = "config.yaml"  # a run record's resolved experiment config
METRICS = "metrics.json"  # a run record's (or pretrained folder's) metrics; written last
PREDICTIONS = "predictions.csv"  # a run record's test-set predictions
REPORTS_LOCK = ".reports.lock"  # held while a results folder's leaderboard and grid files are made


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    kind: str  # one of KINDS
    inputs: tuple[str, ...]
    target: str
    headline: str
    higher_is_better: bool
    metrics: tuple[str, ...]
    models: tuple[str, ...]
    config: dict[str, Any] = field(default_factory=dict)
    model_config: dict[str, dict[str, Any]] = field(default_factory=dict)  # model -> config
    debug_config: dict[str, Any] = field(default_factory=dict)  # layered after --debug
    version: int = 1
    runner: str = f"brainbench.tasks.{DEFAULT_RUNNER}"  # module path
    source: Path | None = None
