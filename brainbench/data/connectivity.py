"""Functional connectivity: Pearson correlation between parcel time series, Fisher z-transformed."""

from __future__ import annotations

import numpy as np

from brainbench.errors import DataError

R_CLIP = 1 - 1e-7  # keeps arctanh finite on the diagonal and for identical parcels


def correlation_matrix(series: np.ndarray) -> np.ndarray:
    """(parcels, parcels) Pearson correlation of a [time, parcels] series.

    A constant parcel (zero variance) has correlation 0 with every other parcel.
    """
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3:
        raise DataError(
            f"connectivity needs a [time, parcels] array with at least 3 time points; got shape "
            f"{x.shape}."
        )
    if not np.isfinite(x).all():
        raise DataError("the parcel series holds NaN or infinite values; clean or drop them.")
    x = x - x.mean(axis=0)
    norm = np.sqrt((x**2).sum(axis=0))
    z = np.divide(x, norm, out=np.zeros_like(x), where=norm > 1e-12 * max(norm.max(), 1.0))
    r = z.T @ z
    np.fill_diagonal(r, 1.0)
    return r


def fisher_z(r: np.ndarray) -> np.ndarray:
    """arctanh of correlations clipped to +/-(1 - 1e-7)."""
    return np.arctanh(np.clip(r, -R_CLIP, R_CLIP))


def connectivity_profiles(r: np.ndarray) -> np.ndarray:
    """(parcels, parcels) float32 rows of Fisher-z correlations with a zero diagonal: each
    parcel's connectivity profile (the features networks are clustered on)."""
    z = fisher_z(r)
    np.fill_diagonal(z, 0.0)
    return z.astype(np.float32)


def connectivity_vector(series: np.ndarray) -> np.ndarray:
    """Upper triangle (k=1) of the Fisher z-transformed Pearson correlation between parcels.

    Shared interface (used by the fMRI tasks and the multimodal model): `series` is
    [time, parcels]; the result has parcels * (parcels - 1) / 2 float32 entries, row-major
    order of np.triu_indices(parcels, k=1). Constant parcels contribute zeros.
    """
    r = correlation_matrix(series)
    rows, cols = np.triu_indices(r.shape[0], k=1)
    return fisher_z(r[rows, cols]).astype(np.float32)
