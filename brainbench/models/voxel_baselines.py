"""Trivial baselines for voxel-wise tasks: every learned model must beat these.

`atlas` (segmentation): a volume-matched probabilistic atlas on the preprocessed, brain-centred
grid, the same map for every subject: the voxels most often foreground in training, as many as
the mean training foreground volume, each labelled with its most frequent structure. (A plain
per-voxel majority vote is almost all background: small structures that move with age rarely win
a majority, so its Dice is near 0.) `intensity_map` (synthesis): a lookup table
from the first input's intensity to the mean target intensity over training voxels, a monotone
or non-monotone contrast mapping with no spatial context. Both save as safetensors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from brainbench.config import StrictModel, TrainerConfig
from brainbench.models.base import load_weights, save_weights
from brainbench.registry import register_model
from brainbench.spec import TaskSpec


class AtlasConfig(StrictModel):
    """The atlas baseline has no parameters."""


class AtlasEstimator:
    """Predicts the volume-matched training atlas (module docstring) for every subject."""

    def __init__(self) -> None:
        self.labels: np.ndarray | None = None

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Count labels per voxel over `train` (a PairDataset); the rest is not needed."""
        counts = np.zeros((train.n_labels, *train.cfg.shape), dtype=np.int64)
        for i in range(len(train)):
            labels = train.target_volume(i)
            for c in range(train.n_labels):
                counts[c] += labels == c
        foreground = counts[1:].sum(axis=0)
        n_voxels = round(foreground.sum() / len(train))  # the mean foreground volume
        chosen = np.zeros(foreground.size, dtype=bool)
        chosen[np.argsort(foreground, axis=None, kind="stable")[::-1][:n_voxels]] = True
        chosen &= foreground.ravel() > 0
        structure = 1 + counts[1:].argmax(axis=0)
        self.labels = np.where(chosen.reshape(foreground.shape), structure, 0).astype(np.uint8)
        return {"n_subjects": len(train), "atlas_voxels": int(chosen.sum())}

    def predict(self, data: Any) -> np.ndarray:
        return np.repeat(self._fitted()[None], len(data), axis=0)

    def save(self, path: Path) -> None:
        save_weights(path, {"labels": self._fitted()}, {"model": "atlas"})

    def load(self, path: Path) -> None:
        self.labels = load_weights(path, "atlas")["labels"]

    def _fitted(self) -> np.ndarray:
        if self.labels is None:
            raise RuntimeError("fit() or load() must be called first")
        return self.labels


class IntensityMapConfig(StrictModel):
    bins: int = Field(64, ge=2, description="intensity bins of the lookup table over [0, 1]")


class IntensityMapEstimator:
    """Maps each voxel's first-input intensity to the mean training target in its bin."""

    def __init__(self, params: IntensityMapConfig) -> None:
        self.n_bins = params.bins
        self.table: np.ndarray | None = None

    def _bin(self, x: np.ndarray) -> np.ndarray:
        return np.clip((x * self.n_bins).astype(np.int64), 0, self.n_bins - 1)

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Average the target per input-intensity bin; empty bins interpolate their neighbours."""
        sums, counts = np.zeros(self.n_bins), np.zeros(self.n_bins)
        for i in range(len(train)):
            x, y = (v.numpy() for v in train[i])
            index = self._bin(x[0]).ravel()
            sums += np.bincount(index, weights=y[0].ravel(), minlength=self.n_bins)
            counts += np.bincount(index, minlength=self.n_bins)
        seen = counts > 0
        centres = (np.arange(self.n_bins) + 0.5) / self.n_bins
        self.table = np.interp(centres, centres[seen], sums[seen] / counts[seen])
        return {"n_bins_seen": int(seen.sum())}

    def predict(self, data: Any) -> np.ndarray:
        table = self._fitted()
        return np.stack([table[self._bin(data.volume(i)[0])] for i in range(len(data))])

    def save(self, path: Path) -> None:
        save_weights(path, {"table": self._fitted()}, {"model": "intensity_map"})

    def load(self, path: Path) -> None:
        self.table = load_weights(path, "intensity_map")["table"]
        self.n_bins = self.table.size

    def _fitted(self) -> np.ndarray:
        if self.table is None:
            raise RuntimeError("fit() or load() must be called first")
        return self.table


@register_model(
    "atlas",
    kind="baseline",
    config=AtlasConfig,
    description="Per-voxel majority label of the training set (segmentation baseline)",
    task_kinds=("segmentation",),
    needs_volume=True,
)
def build_atlas(params: AtlasConfig, *, task: TaskSpec, trainer: TrainerConfig) -> AtlasEstimator:
    return AtlasEstimator()


@register_model(
    "intensity_map",
    kind="baseline",
    config=IntensityMapConfig,
    description="Input-intensity -> mean target intensity lookup table (synthesis baseline)",
    task_kinds=("synthesis",),
    needs_volume=True,
)
def build_intensity_map(
    params: IntensityMapConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> IntensityMapEstimator:
    return IntensityMapEstimator(params)
