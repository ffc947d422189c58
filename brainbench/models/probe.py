"""Probes: scikit-learn on the frozen embeddings of any network exposing `encode(x) -> (B, D)`.

`linear`: RidgeCV (regression) or L2 LogisticRegressionCV (classification). `mlp`: one hidden
ReLU layer (MLPRegressor / MLPClassifier) with its L2 penalty chosen by grid-search CV. The
penalty is always chosen by cross-validation on the training split only; with too few training
subjects for that (classical.penalty_fallback: fewer than `cv_min_subjects`, or fewer than 2 of a
class) either head falls back to the training mean / prior, with a warning, and so does the
linear head when its fit does worse on the validation split than the mean / prior
(classical.fit_linear; on 20 subjects CV once chose a penalty that gave MAE 31.7 years against
22.8 for the mean). The fitted probe is stored as plain arrays (standardisation + dense layers)
next to the encoder weights, so a saved probe is safetensors only and predicts without
scikit-learn.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from safetensors.torch import load_file, save_file
from sklearn.model_selection import GridSearchCV
from sklearn.neural_network import MLPClassifier, MLPRegressor
from torch import nn
from torch.utils.data import DataLoader, Dataset

from brainbench.config import StrictModel
from brainbench.models.base import META_KEY
from brainbench.models.classical import (
    CV_MIN_SUBJECTS,
    binary_targets,
    cv_folds,
    fit_linear,
    penalty_fallback,
)
from brainbench.spec import TaskSpec


class ProbeConfig(StrictModel):
    init: Path = Field(description="pretrained folder or model.safetensors (required)")
    head: Literal["linear", "mlp"] = "linear"
    log10_alpha: tuple[float, float] = Field((-3.0, 3.0), description="L2 penalty grid range")
    n_alphas: int = Field(7, ge=1)
    cv_folds: int = Field(3, ge=2)
    cv_min_subjects: int = Field(
        CV_MIN_SUBJECTS,
        ge=2,
        description="fewer training subjects (or fewer than 2 of a class): no CV, the probe "
        "predicts the training mean / prior, with a warning",
    )
    hidden: int = Field(64, ge=1, description="mlp: hidden units")
    batch_size: int = Field(8, ge=1, description="volumes per encoder forward pass")

    def alphas(self) -> np.ndarray:
        return np.logspace(*self.log10_alpha, self.n_alphas)


def embeddings(encoder: nn.Module, data: Dataset, batch_size: int) -> np.ndarray:
    """(N, D) float64 `encoder.encode` of every sample of `data`, in batches, without gradients."""
    loader = DataLoader(data, batch_size=batch_size)
    with torch.inference_mode():
        rows = [encoder.encode(x.float()) for x, _ in loader]
    return torch.cat(rows).double().numpy()


class ProbeEstimator:
    """Estimator (models/base.py) fitting a linear or MLP probe on frozen embeddings."""

    def __init__(self, encoder: nn.Module, params: ProbeConfig, task: TaskSpec) -> None:
        self.encoder = encoder.eval().requires_grad_(False)
        self.params = params
        self.kind = task.kind
        self.arrays: dict[str, torch.Tensor] = {}

    def embed(self, data: Dataset) -> np.ndarray:
        """(N, D) float64 embeddings of every sample of `data`."""
        return embeddings(self.encoder, data, self.params.batch_size)

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Embed, standardise with training statistics and fit the probe (CV on `train`)."""
        x, x_val = self.embed(train), self.embed(val)
        mean, scale = x.mean(0), np.where(x.std(0) > 1e-12, x.std(0), 1.0)
        y = np.asarray(train.targets, dtype=float)
        if self.kind == "classification":
            y_mean, y_scale = 0.0, 1.0
        else:
            y_mean, y_scale = float(y.mean()), float(y.std()) or 1.0
        self.arrays = {
            "mean": torch.from_numpy(mean),
            "scale": torch.from_numpy(scale),
            "target": torch.tensor([y_mean, y_scale], dtype=torch.float64),
        }

        def scaled(targets: Any) -> np.ndarray:  # what the head is fitted to
            t = np.asarray(targets, dtype=float)
            return binary_targets(t) if self.kind == "classification" else (t - y_mean) / y_scale

        z, y = (x - mean) / scale, scaled(y)
        if self.params.head == "mlp" and not penalty_fallback(y, self.kind, self._min):
            alpha, layers = self._mlp(z, y, seed)
            penalty = "cv"
        else:
            val_pair = ((x_val - mean) / scale, scaled(val.targets))
            alpha, layers, penalty = self._linear(z, y, seed, val_pair)
        for i, (w, b) in enumerate(layers):
            self.arrays[f"w{i}"] = torch.from_numpy(np.asarray(w, dtype=np.float64))
            self.arrays[f"b{i}"] = torch.from_numpy(np.asarray(b, dtype=np.float64).ravel())
        val_error = self._output(x_val) - np.asarray(val.targets, dtype=float)
        return {
            "alpha": alpha,
            "penalty": penalty,
            "embedding_dim": x.shape[1],
            "val_mse": float(np.mean(val_error**2)),
        }

    @property
    def _min(self) -> int:
        return self.params.cv_min_subjects

    def _linear(
        self, z: np.ndarray, y: np.ndarray, seed: int, val: tuple[np.ndarray, np.ndarray]
    ) -> tuple[float | None, list, str]:
        """The linear head (also the mlp head's fallback when CV cannot choose its penalty):
        alpha, layers and how the penalty was chosen ('cv' or 'fallback: <why>')."""
        folds, alphas = self.params.cv_folds, self.params.alphas()
        alpha, coef, intercept, penalty = fit_linear(
            z, y, self.kind, alphas, folds, seed, min_subjects=self._min, val=val
        )
        return alpha, [(np.reshape(coef, (z.shape[1], -1)), np.ravel(intercept))], penalty

    def _mlp(self, z: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, list]:
        cls = MLPRegressor if self.kind == "regression" else MLPClassifier
        mlp = cls(hidden_layer_sizes=(self.params.hidden,), max_iter=500, random_state=seed)
        folds = cv_folds(y, self.kind, self.params.cv_folds)
        search = GridSearchCV(mlp, {"alpha": list(self.params.alphas())}, cv=folds)
        with warnings.catch_warnings():  # small training sets may not converge in max_iter
            warnings.filterwarnings("ignore", message=".*Maximum iterations")
            search.fit(z, y)
        best = search.best_estimator_
        return float(search.best_params_["alpha"]), list(
            zip(best.coefs_, best.intercepts_, strict=True)
        )

    def predict(self, data: Dataset) -> np.ndarray:
        """Targets (regression) or P(y = 1) (classification), one per sample of `data`."""
        if not self.arrays:
            raise RuntimeError("fit() or load() must be called first")
        return self._output(self.embed(data))

    def _output(self, x: np.ndarray) -> np.ndarray:
        """Predictions (targets, or P(y = 1)) for the embeddings `x` of some samples."""
        a = {k: v.numpy() for k, v in self.arrays.items()}
        h = (x - a["mean"]) / a["scale"]
        n_layers = sum(k.startswith("w") for k in a)
        for i in range(n_layers):
            h = h @ a[f"w{i}"] + a[f"b{i}"]
            if i < n_layers - 1:
                h = np.maximum(h, 0.0)
        out = h[:, 0]
        if self.kind == "classification":
            return 1 / (1 + np.exp(-out))
        return out * a["target"][1] + a["target"][0]

    def save(self, path: Path) -> None:
        """The encoder weights ('encoder.*') and the probe arrays ('probe.*') as safetensors."""
        state = {f"encoder.{k}": v.contiguous() for k, v in self.encoder.state_dict().items()}
        state |= {f"probe.{k}": v.contiguous() for k, v in self.arrays.items()}
        meta = {"model": "probe", "kind": self.kind, **self.params.model_dump(mode="json")}
        save_file(state, str(path), metadata={META_KEY: json.dumps(meta)})

    def load(self, path: Path) -> None:
        state = load_file(str(path))
        encoder = {k.removeprefix("encoder."): v for k, v in state.items() if k[:8] == "encoder."}
        self.encoder.load_state_dict(encoder)
        self.arrays = {k.removeprefix("probe."): v for k, v in state.items() if k[:6] == "probe."}
