"""Baselines for retrieval tasks, served by the registered `chance` and `ridge` models.

Samples are {"bold": (n_trs, features) window, "subject": index}; targets are image embeddings.
`ridge` pools the subjects (one decoder for all, as the registered baseline); both predict
an embedding per sample, saved as safetensors like every other model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.preprocessing import StandardScaler

from brainbench.models.base import load_weights, save_weights


def window_means(data: Any) -> np.ndarray:
    """(N, features): each sample's volumes averaged over its window."""
    return np.stack(
        [np.asarray(data[i][0]["bold"], dtype=np.float64).mean(axis=0) for i in range(len(data))]
    )


class ChanceRetrieval:
    """Random embeddings with the training targets' mean and spread: chance-level ranks."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        y = np.asarray(train.targets, dtype=np.float64)
        self.arrays = {"mean": y.mean(0), "std": y.std(0), "seed": np.array([seed])}
        return {"seed": seed}

    def predict(self, data: Any) -> np.ndarray:
        if not self.arrays:
            raise RuntimeError("fit() or load() must be called first")
        rng = np.random.default_rng(int(self.arrays["seed"][0]))
        noise = rng.normal(size=(len(data), self.arrays["mean"].size))
        return self.arrays["mean"] + noise * self.arrays["std"]

    def save(self, path: Path) -> None:
        save_weights(path, self.arrays, {"model": "chance", "kind": "retrieval"})

    def load(self, path: Path) -> None:
        self.arrays = load_weights(path, "chance")


class RidgeRetrieval:
    """RidgeCV from window-averaged, standardised features to the embedding (multi-output).

    The penalty is chosen by efficient leave-one-out on the training set over `alphas`;
    retrieval then ranks candidates by cosine similarity to the predicted embedding.
    """

    def __init__(self, alphas: np.ndarray) -> None:
        self.alphas = alphas
        self.arrays: dict[str, np.ndarray] = {}

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        x = window_means(train)
        scaler = StandardScaler().fit(x)
        ridge = RidgeCV(alphas=self.alphas).fit(scaler.transform(x), np.asarray(train.targets))
        self.arrays = {
            "mean": scaler.mean_,
            "scale": scaler.scale_,
            "coef": np.asarray(ridge.coef_, dtype=np.float64),
            "intercept": np.asarray(ridge.intercept_, dtype=np.float64),
        }
        return {"alpha": float(ridge.alpha_), "n_features": int(x.shape[1])}

    def predict(self, data: Any) -> np.ndarray:
        if not self.arrays:
            raise RuntimeError("fit() or load() must be called first")
        a = self.arrays
        return (window_means(data) - a["mean"]) / a["scale"] @ a["coef"].T + a["intercept"]

    def save(self, path: Path) -> None:
        save_weights(path, self.arrays, {"model": "ridge", "kind": "retrieval"})

    def load(self, path: Path) -> None:
        self.arrays = load_weights(path, "ridge")
