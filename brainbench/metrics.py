"""Metrics in plain numpy: a section per kind of task, each function returning name -> value.

Undefined values (a constant prediction's correlation, AUROC with one class) are NaN, never an
error. `METRICS` says which function computes a metric and in which direction it improves;
`per_stage` applies any of the functions within each lifespan stage.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import ndimage

from brainbench.labels import SUBCORTICAL_LABELS
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


# --- voxel-wise: segmentation and synthesis ---------------------------------------------------

STRUCTURES = SUBCORTICAL_LABELS
SSIM_KERNEL, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03  # MONAI's SSIMMetric defaults


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise ValueError(f"prediction has shape {a.shape} but the truth has {b.shape}")


def _edges(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: the mask minus its erosion (outside the grid counts as background)."""
    return mask & ~ndimage.binary_erosion(mask)


def hd95(pred: np.ndarray, true: np.ndarray, spacing: float | tuple[float, ...] = 1.0) -> float:
    """Symmetric 95th-percentile Hausdorff distance between two masks' surfaces (mm).

    The larger of the two directed 95th percentiles of edge-to-edge distances, as MONAI's
    compute_hausdorff_distance(percentile=95); NaN when either mask is empty.
    """
    a, b = _edges(pred.astype(bool)), _edges(true.astype(bool))
    if not a.any() or not b.any():
        return NAN
    to_b = ndimage.distance_transform_edt(~b, sampling=spacing)[a]
    to_a = ndimage.distance_transform_edt(~a, sampling=spacing)[b]
    return float(max(np.percentile(to_b, 95), np.percentile(to_a, 95)))


def segmentation_metrics(
    pred_labels: np.ndarray,
    true_labels: np.ndarray,
    n_classes: int = len(STRUCTURES),
    spacing: float | tuple[float, ...] = 1.0,
) -> dict[str, float]:
    """Per-structure Dice, their mean, mean HD95 (mm) and mean relative volume error.

    Keys: dice_<structure> for each foreground class (named after STRUCTURES when n_classes
    matches it, else class<i>), dice_mean (mean foreground Dice), hd95_mean, volume_error (mean
    |predicted - true volume| / true volume), volume_true_ml and volume_pred_ml (foreground).
    A structure absent from the truth has NaN Dice and volume error, like MONAI's DiceMetric
    with ignore_empty; HD95 is NaN when it is absent from either map. Means skip NaN and are NaN
    only when every structure is.
    """
    p, t = np.asarray(pred_labels), np.asarray(true_labels)
    _same_shape(p, t)
    voxel_ml = float(np.prod(np.broadcast_to(spacing, (p.ndim,)))) / 1000.0
    names = STRUCTURES if n_classes == len(STRUCTURES) else [f"class{i}" for i in range(n_classes)]
    out: dict[str, float] = {}
    dice, dist, vol_err = [], [], []
    for c in range(1, n_classes):
        pc, tc = p == c, t == c
        n_p, n_t = int(pc.sum()), int(tc.sum())
        dice.append(2.0 * np.sum(pc & tc) / (n_p + n_t) if n_t else NAN)
        dist.append(hd95(pc, tc, spacing))
        vol_err.append(abs(n_p - n_t) / n_t if n_t else NAN)
        out[f"dice_{names[c]}"] = float(dice[-1])
    with warnings.catch_warnings():  # all-NaN means are NaN, not a warning
        warnings.simplefilter("ignore", RuntimeWarning)
        out |= {
            "dice_mean": float(np.nanmean(dice)),
            "hd95_mean": float(np.nanmean(dist)),
            "volume_error": float(np.nanmean(vol_err)),
        }
    out["volume_true_ml"] = float(np.sum(t > 0)) * voxel_ml
    out["volume_pred_ml"] = float(np.sum(p > 0)) * voxel_ml
    return out


def _gaussian_smooth_valid(x: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """Separable normalised Gaussian filter without padding ('valid': each axis shrinks)."""
    d = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (d / sigma) ** 2)
    g /= g.sum()
    for axis in range(x.ndim):
        x = sliding_window_view(x, size, axis=axis) @ g
    return x


def ssim(pred: np.ndarray, true: np.ndarray, data_range: float = 1.0) -> float:
    """Mean structural similarity over all window positions, as MONAI's SSIMMetric.

    Gaussian window of SSIM_KERNEL voxels (sigma SSIM_SIGMA), shrunk to the smallest odd size
    that fits a smaller grid; k1 = 0.01, k2 = 0.03.
    """
    x, y = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    _same_shape(x, y)
    size = min(SSIM_KERNEL, min(x.shape) - (1 - min(x.shape) % 2))
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    mx, my = (_gaussian_smooth_valid(v, size, SSIM_SIGMA) for v in (x, y))
    vx = _gaussian_smooth_valid(x * x, size, SSIM_SIGMA) - mx**2
    vy = _gaussian_smooth_valid(y * y, size, SSIM_SIGMA) - my**2
    cxy = _gaussian_smooth_valid(x * y, size, SSIM_SIGMA) - mx * my
    num = (2 * mx * my + c1) * (2 * cxy + c2)
    return float(np.mean(num / ((mx**2 + my**2 + c1) * (vx + vy + c2))))


def synthesis_metrics(
    pred: np.ndarray, true: np.ndarray, mask: np.ndarray, data_range: float = 1.0
) -> dict[str, float]:
    """psnr (dB) and mae over the voxels inside `mask`; ssim of the masked volumes.

    Intensities are on a `data_range` scale (preprocessed volumes: [0, 1]). SSIM needs whole
    windows, so it is computed on the volumes with everything outside the mask set to 0; the
    zeroed background agrees exactly and raises SSIM somewhat compared with the brain alone.
    """
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    _same_shape(p, t)
    _same_shape(m, t)
    if not m.any():
        return dict.fromkeys(("psnr", "ssim", "mae"), NAN)
    err = p[m] - t[m]
    mse = float(np.mean(err**2))
    return {
        "psnr": 10 * np.log10(data_range**2 / mse) if mse > 0 else float("inf"),
        "ssim": ssim(np.where(m, p, 0.0), np.where(m, t, 0.0), data_range),
        "mae": float(np.mean(np.abs(err))),
    }


# --- signals: masked reconstruction and forecasting of time series -----------------------------


def signal_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """mse, mae, r2 (against the mean of y_true) and pearson_r over every predicted value."""
    t, p = _pair(y_true, y_pred)
    scores = regression_metrics(t, p)
    return {
        "mse": scores["rmse"] ** 2,
        "mae": scores["mae"],
        "r2": scores["r2"],
        "pearson_r": scores["pearson_r"],
    }


# --- lookups and per-stage evaluation ---------------------------------------------------------

MetricFn = Callable[[np.ndarray, np.ndarray], dict[str, float]]

FUNCTIONS: dict[str, MetricFn] = {
    "regression": regression_metrics,
    "classification": classification_metrics,
    "signal": signal_metrics,
}

METRICS: dict[str, MetricSpec] = {
    "mae": MetricSpec("regression", False),
    "rmse": MetricSpec("regression", False),
    "mse": MetricSpec("signal", False),
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


# --- retrieval --------------------------------------------------------------------------------

RETRIEVAL_KS = (1, 5, 10)


def cosine_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) cosine similarities between the rows of a and b (0 for a zero row)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return a @ b.T


def retrieval_ranks(scores: np.ndarray, true_index: np.ndarray) -> np.ndarray:
    """1-based rank of each query's true candidate by descending score (ties: average rank)."""
    s = np.asarray(scores, dtype=np.float64)
    rows = np.arange(s.shape[0])
    true = s[rows, np.asarray(true_index)][:, None]
    higher = (s > true).sum(axis=1)
    ties = (s == true).sum(axis=1) - 1
    return 1.0 + higher + ties / 2.0


def retrieval_metrics(
    scores: np.ndarray, true_index: np.ndarray, ks: tuple[int, ...] = RETRIEVAL_KS
) -> dict[str, float]:
    """top<k> accuracy (true candidate ranked within k), median_rank and mean_rank.

    `scores` is (queries, candidates), higher = more similar; `true_index` the column of each
    query's true candidate. With no query, every value is NaN.
    """
    if len(true_index) == 0:
        return dict.fromkeys([f"top{k}" for k in ks] + ["median_rank", "mean_rank"], NAN)
    ranks = retrieval_ranks(scores, true_index)
    out = {f"top{k}": float(np.mean(ranks <= k)) for k in ks}
    return out | {"median_rank": float(np.median(ranks)), "mean_rank": float(np.mean(ranks))}


def batch_retrieval_metrics(
    pred: np.ndarray, target: np.ndarray, batch_size: int, ks: tuple[int, ...] = RETRIEVAL_KS
) -> dict[str, float]:
    """Retrieval within consecutive batches (candidates: the batch's targets), averaged.

    The monitoring metric of contrastive training; it depends on the batch size, so records
    report it next to the full-test metrics, never instead of them.
    """
    values: list[dict[str, float]] = []
    for start in range(0, len(pred), batch_size):
        p, t = pred[start : start + batch_size], target[start : start + batch_size]
        if len(p) < 2:
            continue
        values.append(retrieval_metrics(cosine_similarity(p, t), np.arange(len(p)), ks))
    if not values:
        return retrieval_metrics(np.zeros((0, 0)), np.zeros(0, dtype=int), ks)
    return {key: float(np.mean([v[key] for v in values])) for key in values[0]}
