"""Baselines for the fMRI tasks (datasets are brainbench.data.timeseries.SubjectWindows).

- `connectome`: ridge / L2-logistic regression on the functional connectivity of the whole run
  (connectivity_vector: Fisher-z correlations between parcels), the baseline a foundation
  model of fMRI must beat.
- Reconstruction of hidden values, `reconstruct(x, hidden) -> x_hat` on scaled windows
  (B, parcels, time): `parcel_mean` (the mean of the parcel's visible values in the window) and
  `interpolate` (linear interpolation in time between the parcel's visible values).
- Forecasting, same interface with the last time points hidden: `persistence` (the last
  visible value) and `autoregressive` (a per-parcel linear AR(`order`) model fitted by least
  squares on the training windows, applied recursively).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from brainbench.config import StrictModel, TrainerConfig
from brainbench.data.connectivity import connectivity_vector
from brainbench.models.base import load_weights, save_weights
from brainbench.models.classical import RidgeConfig, RidgeEstimator
from brainbench.registry import register_model
from brainbench.tasks import TaskSpec


class ConnectomeConfig(RidgeConfig):
    pool: int = Field(1, ge=1, description="unused (connectivity is not pooled)")
    log10_alpha: tuple[float, float] = (-1.0, 5.0)
    n_alphas: int = Field(7, ge=1)


class ConnectomeEstimator(RidgeEstimator):
    """RidgeEstimator whose features are the connectivity vectors of whole runs."""

    name = "connectome"

    def features(self, data: Any) -> np.ndarray:
        return np.stack([connectivity_vector(data.run(i)) for i in range(len(data))]).astype(
            np.float64
        )

    def save(self, path: Path) -> None:
        meta = {"model": self.name, "kind": self.kind, **self.params.model_dump(mode="json")}
        save_weights(path, self.arrays, meta)

    def load(self, path: Path) -> None:
        self.arrays = load_weights(path, self.name)


@register_model(
    "connectome",
    kind="sklearn",
    config=ConnectomeConfig,
    description="Ridge / logistic on functional connectivity (Fisher-z upper triangle) of the run",
    task_kinds=("regression", "classification"),
)
def build_connectome(
    params: ConnectomeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ConnectomeEstimator:
    return ConnectomeEstimator(params, task)


class SignalBaseline:
    """A fit-free (or least-squares) predictor of hidden values; see the module docstring."""

    name = "signal_baseline"

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {"none": np.zeros(1)}

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        return {}

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        raise NotImplementedError

    def save(self, path: Path) -> None:
        save_weights(path, self.arrays, {"model": self.name})

    def load(self, path: Path) -> None:
        self.arrays = load_weights(path, self.name)


class ParcelMean(SignalBaseline):
    name = "parcel_mean"

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        visible = (~hidden).float()
        mean = (x * visible).sum(-1, keepdim=True) / visible.sum(-1, keepdim=True).clamp(min=1)
        return torch.where(hidden, mean.expand_as(x), x)


class Interpolate(SignalBaseline):
    name = "interpolate"

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        out = x.clone()
        t = np.arange(x.shape[-1])
        xs, hs = x.numpy(), hidden.numpy()
        for b, p in zip(*np.nonzero(hs.any(-1)), strict=True):
            seen = ~hs[b, p]
            if seen.any():  # np.interp holds the end values outside the visible range
                out[b, p] = torch.from_numpy(np.interp(t, t[seen], xs[b, p, seen]))
            else:
                out[b, p] = 0.0  # the scaled median
        return torch.where(hidden, out, x)


class Persistence(SignalBaseline):
    name = "persistence"

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        last = int((~hidden[0, 0]).nonzero().max())
        return torch.where(hidden, x[..., last : last + 1].expand_as(x), x)


class ARConfig(StrictModel):
    order: int = Field(4, ge=1, description="time points of the per-parcel AR model")
    ridge: float = Field(1e-3, ge=0, description="L2 penalty of the least-squares fit")


class Autoregressive(SignalBaseline):
    name = "autoregressive"

    def __init__(self, params: ARConfig) -> None:
        super().__init__()
        self.order, self.ridge = params.order, params.ridge

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Per parcel: x_t ~ w . x_{t-order..t-1} + c by ridge least squares on train windows."""
        windows = np.stack([train[i][0].numpy() for i in range(len(train))])  # (N, P, T)
        lagged = np.lib.stride_tricks.sliding_window_view(windows, self.order + 1, axis=-1)
        lagged = lagged.transpose(1, 0, 2, 3).reshape(windows.shape[1], -1, self.order + 1)
        design = np.concatenate([lagged[..., :-1], np.ones(lagged.shape[:2] + (1,))], axis=-1)
        gram = design.transpose(0, 2, 1) @ design + self.ridge * np.eye(self.order + 1)
        coef = np.linalg.solve(gram, design.transpose(0, 2, 1) @ lagged[..., -1:])
        self.arrays = {"coef": coef[..., 0].astype(np.float32)}  # (P, order + 1)
        return {"order": self.order}

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        coef = torch.from_numpy(self.arrays["coef"])
        out = x.clone()
        first = int(hidden[0, 0].nonzero().min())
        for t in range(first, x.shape[-1]):
            lags = out[..., t - self.order : t]
            out[..., t] = (lags * coef[:, : self.order]).sum(-1) + coef[:, -1]
        return torch.where(hidden, out, x)


def _register(name: str, cls: type[SignalBaseline], kinds: tuple[str, ...], text: str) -> None:
    class Config(StrictModel):
        """No parameters."""

    register_model(name, kind="baseline", config=Config, description=text, task_kinds=kinds)(
        lambda params, *, task, trainer: cls()
    )


_register("parcel_mean", ParcelMean, ("reconstruction",), "Hidden values = the parcel's mean")
_register("interpolate", Interpolate, ("reconstruction",), "Linear interpolation in time")
_register("persistence", Persistence, ("forecast",), "Forecast = the last observed value")


@register_model(
    "autoregressive",
    kind="baseline",
    config=ARConfig,
    description="Per-parcel linear AR(order) forecast, least squares on the training windows",
    task_kinds=("forecast",),
)
def build_autoregressive(
    params: ARConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> Autoregressive:
    return Autoregressive(params)
