"""The Estimator interface every registered model's builder returns.

Torch models are wrapped by brainbench.training.fit.TorchEstimator; classical baselines implement
it directly. Datasets are brainbench.data.dataset.VolumeDataset (lazy, cache-backed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np


class Estimator(Protocol):
    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Train on `train`, stop on `val`; return training info (epochs, best val loss...)."""

    def predict(self, data: Any) -> np.ndarray:
        """One prediction per subject of `data`, in its order."""

    def save(self, path: Path) -> None:
        """Write the fitted weights as safetensors (never pickle)."""

    def load(self, path: Path) -> None:
        """Restore what `save` wrote, ready to predict."""
