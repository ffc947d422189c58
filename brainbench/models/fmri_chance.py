"""The `chance` baseline of the parcel-series tasks (registered in classical.py).

Networks: random parcel features, so clustering them gives a random partition (ARI ~ 0).
Reconstruction, forecast, perturbation: hidden values drawn from N(0, 1) (the scale of robust-
scaled series), independently of the input, so R^2 is about -1 and the predicted effect of
perturbing one network on another is noise around zero.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from brainbench.models.base import load_weights, save_weights

FEATURES = 8  # width of the random parcel features
PARCEL_KINDS = ("clustering", "perturbation", "reconstruction", "forecast")  # nothing to fit


class ChanceParcels:
    """Random parcel features and random hidden values, from the run's seed."""

    def __init__(self) -> None:
        self.seed: int | None = None
        self.rng = np.random.default_rng(0)

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        self.seed, self.rng = seed, np.random.default_rng(seed)
        return {"seed": seed}

    def parcel_features(self, data: Any) -> np.ndarray:
        """(subjects, parcels, FEATURES) standard normal features."""
        return self.rng.standard_normal((len(data), len(data.coords), FEATURES))

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        noise = torch.from_numpy(self.rng.standard_normal(tuple(x.shape))).to(x.dtype)
        return torch.where(hidden, noise, x)

    def save(self, path: Path) -> None:
        if self.seed is None:
            raise RuntimeError("fit() or load() must be called first")
        save_weights(path, {"seed": np.array([self.seed])}, {"model": "chance"})

    def load(self, path: Path) -> None:
        self.seed = int(load_weights(path, "chance")["seed"][0])
        self.rng = np.random.default_rng(self.seed)
