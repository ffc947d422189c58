"""Classical baselines: `chance` (the training mean or prior) and `ridge` (linear on voxels).

Both predict a number per subject for regression and P(y = 1) for (binary) classification, and
save their fitted parameters as safetensors, so a saved model is reloaded without scikit-learn.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from sklearn.linear_model import LogisticRegressionCV, RidgeCV
from sklearn.preprocessing import StandardScaler
from torch.utils.data import Dataset

from brainbench.config import StrictModel, TrainerConfig
from brainbench.errors import DataError
from brainbench.models.base import load_weights, save_weights
from brainbench.models.fmri_chance import PARCEL_KINDS, ChanceParcels
from brainbench.models.retrieval_baselines import ChanceRetrieval, RidgeRetrieval
from brainbench.registry import register_model
from brainbench.spec import TaskSpec


def binary_targets(targets: np.ndarray) -> np.ndarray:
    """Classification targets as floats in {0, 1}; anything else is a DataError."""
    y = np.asarray(targets, dtype=float)
    if not np.isin(y, (0.0, 1.0)).all():
        raise DataError(
            f"a classification target must be coded 0/1; found values {np.unique(y)[:5]}."
        )
    return y


CV_MIN_SUBJECTS = 10
"""Fewer training subjects and cross-validation cannot choose a penalty (see penalty_fallback)."""


class ChanceConfig(StrictModel):
    """The chance baseline has no parameters."""


class ChanceEstimator:
    """Predicts the training-set mean (regression) or the training prior P(y = 1)."""

    def __init__(self, task: TaskSpec) -> None:
        self.kind = task.kind
        self.value: float | None = None

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Store the training mean/prior; `val`, `seed` and `run_dir` are not needed."""
        y = np.asarray(train.targets, dtype=float)
        self.value = float((binary_targets(y) if self.kind == "classification" else y).mean())
        return {"value": self.value}

    def predict(self, data: Dataset) -> np.ndarray:
        return np.full(len(data), self._fitted())

    def save(self, path: Path) -> None:
        save_weights(
            path, {"value": np.array([self._fitted()])}, {"model": "chance", "kind": self.kind}
        )

    def _fitted(self) -> float:
        if self.value is None:
            raise RuntimeError("fit() or load() must be called first")
        return self.value

    def load(self, path: Path) -> None:
        self.value = float(load_weights(path, "chance")["value"][0])


class RidgeConfig(StrictModel):
    pool: int = Field(2, ge=1, description="average-pooling factor applied to the voxels")
    log10_alpha: tuple[float, float] = Field(
        (-1.0, 7.0), description="range of the log-spaced penalty grid (log10 of alpha = 1/C)"
    )
    n_alphas: int = Field(17, ge=1, description="grid size; the penalty is chosen by CV")
    cv_folds: int = Field(5, ge=2, description="classification: folds of LogisticRegressionCV")
    cv_min_subjects: int = Field(
        CV_MIN_SUBJECTS,
        ge=2,
        description="fewer training subjects (or fewer than 2 of a class) and the penalty is not "
        "chosen by CV: the model predicts the training mean / prior, with a warning",
    )

    @model_validator(mode="after")
    def _check(self) -> RidgeConfig:
        if self.log10_alpha[0] > self.log10_alpha[1]:
            raise ValueError("log10_alpha must be (low, high) with low <= high")
        return self

    def alphas(self) -> np.ndarray:
        return np.logspace(*self.log10_alpha, self.n_alphas)


class RidgeEstimator:
    """Linear model on average-pooled, standardised voxels; the penalty is chosen by CV.

    Regression: RidgeCV (efficient leave-one-out over the grid). Classification:
    LogisticRegressionCV (stratified k-fold, log loss), on the training set. Too few training
    subjects for CV (penalty_fallback), or a fit that does worse on `val` than the training
    mean / prior (CV on 20 subjects once chose alpha 0.1 and a validation MSE of 1e6), and the
    model predicts the training mean / prior instead (the infinite-penalty limit), says so in a
    warning and records it as `penalty` in the fit info.
    """

    def __init__(self, params: RidgeConfig, task: TaskSpec) -> None:
        self.params = params
        self.kind = task.kind
        self.arrays: dict[str, np.ndarray] = {}

    def features(self, data: Dataset) -> np.ndarray:
        """(N, voxels / pool^3) average-pooled voxels of every sample of `data`."""
        k = self.params.pool
        rows = []
        for i in range(len(data)):
            x = torch.as_tensor(data[i][0], dtype=torch.float32)
            rows.append((F.avg_pool3d(x, k, ceil_mode=True) if k > 1 else x).flatten().numpy())
        return np.stack(rows).astype(np.float64)

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Standardise with training statistics, choose the penalty by CV on `train` and fit."""
        scaler = StandardScaler().fit(x := self.features(train))
        x_val = self.features(val)  # read once: the fallback check and val_mse both need it
        alpha, coef, intercept, penalty = fit_linear(
            scaler.transform(x),
            train.targets,
            self.kind,
            self.params.alphas(),
            self.params.cv_folds,
            seed,
            min_subjects=self.params.cv_min_subjects,
            val=(scaler.transform(x_val), val.targets),
        )
        self.arrays = {
            "mean": scaler.mean_,
            "scale": scaler.scale_,
            "coef": np.asarray(coef, dtype=np.float64).ravel(),
            "intercept": np.asarray(intercept, dtype=np.float64).reshape(1),
        }
        val_error = self._output(x_val) - np.asarray(val.targets, dtype=float)
        return {
            "alpha": alpha,
            "penalty": penalty,
            "n_features": x.shape[1],
            "val_mse": float(np.mean(val_error**2)),
        }

    def predict(self, data: Dataset) -> np.ndarray:
        if not self.arrays:
            raise RuntimeError("fit() or load() must be called first")
        return self._output(self.features(data))

    def _output(self, x: np.ndarray) -> np.ndarray:
        """Predictions (targets, or P(y = 1)) for the raw features `x` of some samples."""
        a = self.arrays
        if x.shape[1] != len(a["coef"]):
            raise DataError(
                f"the ridge model takes {len(a['coef'])} features but the data gives "
                f"{x.shape[1]}; preprocess as in training (its config.yaml)."
            )
        score = (x - a["mean"]) / a["scale"] @ a["coef"] + a["intercept"][0]
        return 1 / (1 + np.exp(-score)) if self.kind == "classification" else score

    def save(self, path: Path) -> None:
        meta = {"model": "ridge", "kind": self.kind, **self.params.model_dump(mode="json")}
        save_weights(path, self.arrays, meta)

    def load(self, path: Path) -> None:
        arrays = load_weights(path, "ridge")
        sizes = {name: arrays[name].shape for name in ("mean", "scale", "coef", "intercept")}
        if len({sizes["mean"], sizes["scale"], sizes["coef"]}) > 1 or sizes["intercept"] != (1,):
            raise DataError(f"{path} does not fit a ridge model: array shapes {sizes}.")
        self.arrays = arrays


@register_model(
    "chance",
    kind="baseline",
    config=ChanceConfig,
    description="Predicts the training mean (regression) or prior (classification)",
    task_kinds=(
        "regression",
        "classification",
        "retrieval",
        "clustering",
        "perturbation",
        "reconstruction",
        "forecast",
    ),  # fmt: skip
    trains=lambda params, task: task.kind not in PARCEL_KINDS,
)
def build_chance(
    params: ChanceConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ChanceEstimator | ChanceRetrieval | ChanceParcels:
    """The chance baseline for `task` (random embeddings for retrieval; random parcel features
    or hidden values for the parcel-series tasks)."""
    if task.kind in PARCEL_KINDS:
        return ChanceParcels()
    return ChanceRetrieval() if task.kind == "retrieval" else ChanceEstimator(task)


@register_model(
    "ridge",
    kind="sklearn",
    config=RidgeConfig,
    description="Ridge / logistic regression on average-pooled voxels, penalty chosen by CV",
    task_kinds=("regression", "classification", "retrieval"),
)
def build_ridge(
    params: RidgeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> RidgeEstimator | RidgeRetrieval:
    """Ridge (regression; retrieval: to the embedding) or L2 logistic (classification)."""
    if task.kind == "retrieval":
        return RidgeRetrieval(params.alphas())
    return RidgeEstimator(params, task)


def cv_folds(targets: np.ndarray, kind: str, requested: int) -> int:
    """The folds cross-validation can use: at most the smallest class (or sample) count.

    Tiny training sets (e.g. `--label-fraction 0.01`) get fewer folds instead of a
    scikit-learn crash; fewer than 2 per class is a DataError saying what to change.
    """
    if kind == "regression":
        smallest = len(targets)
    else:
        smallest = int(np.bincount(binary_targets(targets).astype(int), minlength=2).min())
    if smallest < 2:
        raise DataError(
            f"the training set has {len(targets)} subjects, fewer than 2 per class: "
            "cross-validation cannot choose the penalty. Raise --label-fraction or widen "
            "--train-stages."
        )
    return min(requested, smallest)


def penalty_fallback(targets: Any, kind: str, min_subjects: int = CV_MIN_SUBJECTS) -> str | None:
    """Why cross-validation cannot choose the penalty on `targets`; None when it can.

    The rule: CV needs at least `min_subjects` training subjects and, for classification, at
    least 2 of each class (one per fold of a 2-fold split). A training set of a single class is
    a DataError: not even a prior can be fitted.
    """
    y = np.asarray(targets, dtype=float)
    if kind == "classification":
        counts = np.bincount(binary_targets(y).astype(int), minlength=2)
        if counts.min() == 0:
            raise DataError(
                f"the training set's {len(y)} subjects are all of one class; nothing can be "
                "fitted. Raise --label-fraction or widen --train-stages."
            )
        if counts.min() < 2:
            return f"{int(counts.min())} training subject of a class, fewer than 2"
    if len(y) < min_subjects:
        return f"{len(y)} training subjects, fewer than cv_min_subjects={min_subjects}"
    return None


def mean_fit(targets: Any, kind: str, n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """(zero coefficients, intercept) predicting the training mean, or the prior P(y = 1)."""
    y = np.asarray(targets, dtype=float)
    if kind == "classification":
        prior = float(binary_targets(y).mean())
        intercept = np.log(prior / (1 - prior))
    else:
        intercept = float(y.mean())
    return np.zeros((1, n_features)), np.array([intercept])


def linear_error(x: np.ndarray, y: Any, coef: Any, intercept: Any, kind: str) -> float:
    """Mean squared error (regression) or log loss (classification) of a linear model."""
    out = x @ np.ravel(coef) + float(np.ravel(intercept)[0])
    y = np.asarray(y, dtype=float)
    if kind == "regression":
        return float(np.mean((out - y) ** 2))
    p = np.clip(1 / (1 + np.exp(-out)), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_linear(
    x: np.ndarray,
    targets: Any,
    kind: str,
    alphas: np.ndarray,
    folds: int,
    seed: int,
    *,
    min_subjects: int = CV_MIN_SUBJECTS,
    val: tuple[np.ndarray, Any] | None = None,
) -> tuple[float | None, np.ndarray, np.ndarray, str]:
    """(chosen alpha, coefficients, intercept, how the penalty was chosen) of RidgeCV or L2
    LogisticRegressionCV on `x`.

    When CV cannot choose the penalty (penalty_fallback), or the fit does worse on the
    validation `val` (features, targets) than the training mean / prior, a warning says so and
    the fit is the infinite-penalty limit: zero coefficients, the training mean / prior; alpha
    is then None and the last element says 'fallback: <why>' (else 'cv').
    """
    why = penalty_fallback(targets, kind, min_subjects)
    if why is not None:
        why += ": cross-validation cannot choose the penalty"
    else:
        alpha, coef, intercept = _fit_cv(x, targets, kind, alphas, folds, seed)
        if val is None:
            return alpha, coef, intercept, "cv"
        labels = val[1] if kind == "regression" else binary_targets(val[1])
        fitted = linear_error(val[0], labels, coef, intercept, kind)
        limit = linear_error(val[0], labels, *mean_fit(targets, kind, x.shape[1]), kind)
        if fitted <= limit:
            return alpha, coef, intercept, "cv"
        measure = "mean squared error" if kind == "regression" else "log loss"
        why = (
            f"the penalty cross-validation chose (alpha {alpha:.3g}) gives a validation "
            f"{measure} of {fitted:.4g}, above the {limit:.4g} of no features"
        )
    target = "training mean" if kind == "regression" else "training prior P(y = 1)"
    warnings.warn(
        f"{why}; the linear model falls back to predicting the {target} (zero coefficients, "
        "the infinite-penalty limit).",
        stacklevel=2,
    )
    coef, intercept = mean_fit(targets, kind, x.shape[1])
    return None, coef, intercept, f"fallback: {why}"


def _fit_cv(
    x: np.ndarray, targets: Any, kind: str, alphas: np.ndarray, folds: int, seed: int
) -> tuple[float, np.ndarray, np.ndarray]:
    """(alpha, coefficients, intercept) with the penalty chosen by cross-validation."""
    if kind == "regression":
        ridge = RidgeCV(alphas=alphas).fit(x, np.asarray(targets, dtype=float))
        return float(ridge.alpha_), ridge.coef_, np.atleast_1d(ridge.intercept_)
    labels = binary_targets(targets)
    logistic = LogisticRegressionCV(
        Cs=1 / alphas,
        l1_ratios=(0.0,),  # pure L2
        cv=cv_folds(labels, kind, folds),
        scoring="neg_log_loss",
        max_iter=2000,
        random_state=seed,
    )
    with warnings.catch_warnings():  # scikit-learn 1.8-1.9: attribute-layout transition
        warnings.filterwarnings("ignore", message=".*use_legacy_attributes", category=FutureWarning)
        logistic.fit(x, labels)
    return 1 / float(np.ravel(logistic.C_)[0]), logistic.coef_, logistic.intercept_
