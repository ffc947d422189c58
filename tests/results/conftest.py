"""Synthetic run records for the results tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest

from brainbench.results.record import run_dir, write_record

Payload = Callable[..., dict]


@pytest.fixture
def payload() -> Payload:
    """payload(model=..., seed=..., mae=..., ...) -> a metrics.json payload."""

    def make(
        task: str = "mri/age",
        model: str = "ridge",
        seed: int = 33,
        mae: float = 5.0,
        r2: float = 0.5,
        higher_is_better: bool = False,
        headline: str = "mae",
        protocol: str = "baseline",
        dataset: str = "synth-debug",
    ) -> dict:
        metrics = {"mae": mae, "r2": r2}
        return {
            "task": task,
            "task_version": 1,
            "model": model,
            "protocol": protocol,
            "seed": seed,
            "dataset": dataset,
            "headline": {
                "name": headline,
                "value": metrics[headline],
                "higher_is_better": higher_is_better,
            },
            "metrics": metrics,
            "per_stage": {
                "child": {"mae": mae - 1, "r2": r2, "n": 4},
                "older_adult": {"mae": mae + 1, "r2": r2, "n": 6},
            },
            "n_train": 20,
            "n_val": 5,
            "n_test": 10,
            "timings": {"fit_s": 1.0, "predict_s": 0.1, "total_s": 1.1},
        }

    return make


@pytest.fixture
def write(tmp_path: Path, payload: Payload) -> Callable[..., Path]:
    """write(**payload kwargs) -> the run directory of a complete record under tmp_path."""

    def make(**kwargs) -> Path:
        data = payload(**kwargs)
        where = run_dir(tmp_path, data["task"], data["model"], data["seed"], data["protocol"])
        predictions = pd.DataFrame({"subject": ["a", "b"], "y_true": [1.0, 2.0]})
        return write_record(
            where, config={"task": data["task"]}, metrics=data, predictions=predictions
        )

    return make
