"""Metrics in plain numpy: a section per kind of task, each function returning name -> value.

Undefined values (a constant prediction's correlation, AUROC with one class) are NaN, never an
error. `METRICS` says which function computes a metric and in which direction it improves;
`per_stage` applies any of the functions within each lifespan stage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from brainbench.stages import STAGE_NAMES, stages_of

NAN = float("nan")


class MetricSpec(NamedTuple):
    kind: str  # the key of the function in FUNCTIONS that computes it
    higher_is_better: bool


def _pair(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(y_true, dtype=float).ravel()
    p = np.asarray(y_pred, dtype=float).ravel()
    if t.shape != p.shape:
        raise ValueError(f"y_true has {t.size} values but y_pred has {p.size}")
    return t, p


def _rank(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    _, first, counts = np.unique(x[order], return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(average, counts)
    return ranks


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return NAN
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt(np.dot(da, da) * np.dot(db, db))
    return float(np.dot(da, db) / denom) if denom > 0 else NAN


# --- regression -------------------------------------------------------------------------------


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """mae, rmse, pearson_r, spearman_r and r2 (NaN where undefined, e.g. constant inputs)."""
    t, p = _pair(y_true, y_pred)
    if t.size == 0:
        return dict.fromkeys(("mae", "rmse", "pearson_r", "spearman_r", "r2"), NAN)
    err = p - t
    ss_tot = float(np.sum((t - t.mean()) ** 2))
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(np.sqrt(np.mean(err**2))),
        "pearson_r": _pearson(t, p),
        "spearman_r": _pearson(_rank(t), _rank(p)) if np.isfinite(p).all() else NAN,
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if t.size > 1 and ss_tot > 0 else NAN,
    }


# --- binary classification --------------------------------------------------------------------


def classification_metrics(y_true: np.ndarray, y_score: np.ndarray) -> dict[str, float]:
    """balanced_accuracy, auroc, f1 and accuracy for 0/1 labels and positive-class probabilities.

    A score >= 0.5 predicts the positive class. AUROC is NaN with a single class; F1 is NaN with
    no positive label and no positive prediction; balanced accuracy averages the recall of the
    classes present in y_true.
    """
    t, s = _pair(y_true, y_score)
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("classification labels must be 0 or 1")
    if t.size == 0:
        return dict.fromkeys(("balanced_accuracy", "auroc", "f1", "accuracy"), NAN)
    pos, pred = t == 1, s >= 0.5
    tp, fp, fn = np.sum(pred & pos), np.sum(pred & ~pos), np.sum(~pred & pos)
    recalls = [
        np.mean(pred[pos]) if pos.any() else NAN,
        np.mean(~pred[~pos]) if (~pos).any() else NAN,
    ]
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos and n_neg and np.isfinite(s).all():
        auroc = (_rank(s)[pos].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)
    else:
        auroc = NAN
    return {
        "balanced_accuracy": float(np.nanmean(recalls)),
        "auroc": float(auroc),
        "f1": float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else NAN,
        "accuracy": float(np.mean(pred == pos)),
    }


# --- lookups and per-stage evaluation ---------------------------------------------------------

MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]

FUNCTIONS: dict[str, MetricFn] = {
    "regression": regression_metrics,
    "classification": classification_metrics,
}

METRICS: dict[str, MetricSpec] = {
    "mae": MetricSpec("regression", False),
    "rmse": MetricSpec("regression", False),
    "pearson_r": MetricSpec("regression", True),
    "spearman_r": MetricSpec("regression", True),
    "r2": MetricSpec("regression", True),
    "balanced_accuracy": MetricSpec("classification", True),
    "auroc": MetricSpec("classification", True),
    "f1": MetricSpec("classification", True),
    "accuracy": MetricSpec("classification", True),
}


def per_stage(
    ages: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, fn: MetricFn
) -> dict[str, dict[str, float]]:
    """fn's metrics within each lifespan stage that has subjects, plus `n` (subjects in it)."""
    stages = stages_of(ages)
    t, p = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if not stages.size == t.size == p.size:
        raise ValueError(f"{stages.size} ages for {t.size} targets and {p.size} predictions")
    out: dict[str, dict[str, float]] = {}
    for stage in STAGE_NAMES:
        mask = stages == stage
        if mask.any():
            out[stage] = {**fn(t[mask], p[mask]), "n": int(mask.sum())}
    return out
