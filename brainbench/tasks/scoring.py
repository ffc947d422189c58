"""Score predictions for a task: its metrics overall and per lifespan stage."""

from __future__ import annotations

import numpy as np

from brainbench.metrics import classification_metrics, per_stage, regression_metrics
from brainbench.tasks import TaskSpec


def score(
    spec: TaskSpec, y_true: np.ndarray, y_pred: np.ndarray, ages: np.ndarray
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(metrics, per-stage metrics) restricted to the task's metric list."""
    fn = regression_metrics if spec.kind == "regression" else classification_metrics

    def selected(t: np.ndarray, p: np.ndarray) -> dict[str, float]:
        values = fn(t, p)
        return {name: values[name] for name in spec.metrics}

    return selected(y_true, y_pred), per_stage(ages, y_true, y_pred, selected)


def headline(spec: TaskSpec, metrics: dict[str, float]) -> dict[str, object]:
    """The headline entry of a run record or oracle: name, value and direction."""
    return {
        "name": spec.headline,
        "value": metrics[spec.headline],
        "higher_is_better": spec.higher_is_better,
    }
