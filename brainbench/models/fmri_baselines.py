"""Baselines for the fMRI tasks (datasets are brainbench.data.timeseries.SubjectWindows).

- `connectome`: ridge / L2-logistic regression on the functional connectivity of the whole run
  (connectivity_vector: Fisher-z correlations between parcels), the baseline a foundation
  model of fMRI must beat; for functional networks (clustering), each parcel's row of the
  run's Fisher-z correlation matrix (its connectivity profile) as its features; `coordinates`
  clusters the parcels' positions alone (the share of the networks that is only anatomy).
- Reconstruction of hidden values, `reconstruct(x, hidden) -> x_hat` on scaled windows
  (B, parcels, time): `parcel_mean` (the mean of the parcel's visible values in the window) and
  `interpolate` (linear interpolation in time between the parcel's visible values).
- Forecasting, same interface with the last time points hidden: `persistence` (the last
  visible value) and `autoregressive` (a per-parcel linear AR(`order`) model fitted by least
  squares on the training windows, applied recursively).
- Hidden parcels from the visible ones at the same time point (reconstruction, perturbation):
  `conditional_gaussian`, the conditional mean of a Gaussian over the parcels whose mean and
  (Ledoit-Wolf shrunk) covariance are those of the training runs' scaled time points.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from brainbench.config import StrictModel, TrainerConfig
from brainbench.data.connectivity import (
    connectivity_profiles,
    connectivity_vector,
    correlation_matrix,
)
from brainbench.models.base import load_weights, save_weights
from brainbench.models.classical import RidgeConfig, RidgeEstimator
from brainbench.registry import register_model
from brainbench.spec import TaskSpec


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


class FitFree:
    """A baseline with nothing (or only `arrays`) to fit, saved as safetensors."""

    name = "fit_free"

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {"none": np.zeros(1)}

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        return {}

    def save(self, path: Path) -> None:
        save_weights(path, self.arrays, {"model": self.name})

    def load(self, path: Path) -> None:
        self.arrays = load_weights(path, self.name)


class ConnectomeProfiles(FitFree):
    """Parcel features for functional networks: rows of each run's Fisher-z correlations."""

    name = "connectome"

    def parcel_features(self, data: Any) -> np.ndarray:
        """(subjects, parcels, parcels) Fisher-z correlation matrices, zero diagonal."""
        return np.stack(
            [connectivity_profiles(correlation_matrix(data.run(i))) for i in range(len(data))]
        )


class Coordinates(FitFree):
    """Parcel features for functional networks: the parcels' xyz (how far position alone goes)."""

    name = "coordinates"

    def parcel_features(self, data: Any) -> np.ndarray:
        """(subjects, parcels, 3) the atlas coordinates, the same for every subject."""
        return np.repeat(np.asarray(data.coords, dtype=np.float32)[None], len(data), axis=0)


@register_model(
    "connectome",
    kind="sklearn",
    config=ConnectomeConfig,
    description="Ridge / logistic on functional connectivity (Fisher-z upper triangle) of the run",
    task_kinds=("regression", "classification", "clustering"),
    trains=lambda params, task: task.kind != "clustering",
)
def build_connectome(
    params: ConnectomeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ConnectomeEstimator | ConnectomeProfiles:
    """Ridge / logistic on the connectivity vector; clustering: connectivity profiles."""
    return ConnectomeProfiles() if task.kind == "clustering" else ConnectomeEstimator(params, task)


class SignalBaseline(FitFree):
    """A fit-free (or least-squares) predictor of hidden values; see the module docstring."""

    name = "signal_baseline"

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        raise NotImplementedError


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


class ConditionalGaussian(SignalBaseline):
    name = "conditional_gaussian"

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Mean and Ledoit-Wolf covariance of every scaled time point of the training runs."""
        from sklearn.covariance import LedoitWolf

        runs = [train.scaler(train.run(i), train.offsets[i]) for i in range(len(train))]
        fitted = LedoitWolf().fit(np.concatenate(runs))
        self.arrays = {"mean": fitted.location_, "cov": fitted.covariance_}
        return {"shrinkage": float(fitted.shrinkage_), "time_points": sum(map(len, runs))}

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        """E[hidden | visible] at each time point, one solve per distinct hidden parcel set."""
        mean, cov = self.arrays["mean"], self.arrays["cov"]
        b, p, t = x.shape
        values = x.permute(0, 2, 1).reshape(-1, p).double().numpy()
        masks = hidden.permute(0, 2, 1).reshape(-1, p).numpy()
        out = values.copy()
        groups: dict[bytes, list[int]] = {}
        for i, packed in enumerate(np.packbits(masks, axis=1)):
            groups.setdefault(packed.tobytes(), []).append(i)
        for rows in groups.values():
            h = masks[rows[0]]
            if not h.any():
                continue
            v = ~h
            if not v.any():
                out[np.ix_(rows, h)] = mean[h]
                continue
            coef = np.linalg.solve(cov[np.ix_(v, v)], cov[np.ix_(v, h)])
            out[np.ix_(rows, h)] = mean[h] + (values[np.ix_(rows, v)] - mean[v]) @ coef
        filled = torch.from_numpy(out).to(x.dtype).view(b, t, p).permute(0, 2, 1)
        return torch.where(hidden, filled, x)


def _register(
    name: str, cls: type[FitFree], kinds: tuple[str, ...], text: str, trains: bool = False
) -> None:
    class Config(StrictModel):
        """No parameters."""

    register_model(
        name, kind="baseline", config=Config, description=text, task_kinds=kinds,
        trains=lambda params, task: trains,
    )(lambda params, *, task, trainer: cls())  # fmt: skip


_register("parcel_mean", ParcelMean, ("reconstruction",), "Hidden values = the parcel's mean")
_register("interpolate", Interpolate, ("reconstruction",), "Linear interpolation in time")
_register("persistence", Persistence, ("forecast",), "Forecast = the last observed value")
_register("coordinates", Coordinates, ("clustering",), "Networks = clusters of parcel positions")
_register(
    "conditional_gaussian",
    ConditionalGaussian,
    ("reconstruction", "perturbation"),
    "Hidden parcels = Gaussian conditional mean given the visible ones (training covariance)",
    trains=True,
)


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
