"""The Estimator interface every registered model's builder returns.

Torch models are wrapped by brainbench.training.fit.TorchEstimator; classical baselines implement
it directly. Datasets are brainbench.data.dataset.VolumeDataset (lazy, cache-backed).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from brainbench.errors import DataError

META_KEY = "brainbench"  # safetensors header entry holding what a model needs to be rebuilt


class Estimator(Protocol):
    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Train on `train`, stop on `val`; return training info (epochs, best val loss...)."""

    def predict(self, data: Any) -> np.ndarray:
        """One prediction per subject of `data`, in its order."""

    def save(self, path: Path) -> None:
        """Write the fitted weights as safetensors (never pickle)."""

    def load(self, path: Path) -> None:
        """Restore what `save` wrote, ready to predict."""


def read_meta(path: Path) -> dict[str, Any]:
    """The brainbench metadata in a weights file's header; DataError if missing or foreign."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"model file {path} does not exist; train the model first.")
    with safe_open(str(path), framework="np") as f:
        header = (f.metadata() or {}).get(META_KEY)
    if header is None:
        raise DataError(f"{path} was not written by brainbench (no '{META_KEY}' header).")
    try:
        return json.loads(header)
    except ValueError:
        raise DataError(f"{path} has a damaged '{META_KEY}' header; retrain the model.") from None


def save_weights(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    """Write numpy arrays as safetensors with `meta` (which names the model) in the header."""
    save_file(arrays, str(path), metadata={META_KEY: json.dumps(meta)})


def load_weights(path: Path, model: str) -> dict[str, np.ndarray]:
    """The arrays `save_weights` wrote for `model`; any other file is a DataError."""
    written_by = read_meta(path).get("model")
    if written_by != model:
        raise DataError(f"{path} holds a '{written_by}' model, not '{model}'.")
    return load_file(str(path))
