"""Statistics that characterise resting-state parcel series, beside published values.

`characterise(runs, trs, atlas)` summarises a set of runs ([time, parcels] each, one per
subject) on one atlas (x, y, z in mm and network per parcel). Every run is linearly detrended
and z-scored per parcel first. The statistics, averaged over runs:

- within_fc / between_fc: mean Pearson correlation of parcel pairs in the same / different
  networks ('unassigned' parcels pair only as between-network);
- fc_<bin>: mean correlation of parcel pairs by Euclidean distance (< 20, 20-40, 40-80,
  >= 80 mm);
- spectral_exponent: beta of power ~ 1 / f^beta, the least-squares slope of log power on log
  frequency over 0.01-0.1 Hz of the parcel-averaged Welch spectrum (200 s Hann segments,
  capped at the run, half overlap);
- lag1_short_tr / lag1_long_tr: mean lag-1 autocorrelation of runs with TR < 1 s / >= 1.5 s;
- conditional_r2: a random 25% of a run's parcels are hidden and predicted at every time point
  by the Gaussian conditional mean given the visible ones, the covariance (Ledoit-Wolf) being
  estimated on the *other runs of the set* (leave one subject out, as the fmri/recon
  `conditional_gaussian` baseline estimates it on training subjects); R^2 pooled over the
  hidden values;
- mean_fd: with motion parameters (fMRIPrep order: 3 translations in mm, 3 rotations in
  radians), mean framewise displacement (Power 2012: sum of absolute backward differences,
  rotations as arc length on a 50 mm sphere).

`REFERENCES` gives an approximate published range for each statistic, for healthy young
adults at rest, with its source. They are rough ranges consistent with these sources, not
values from a published table;
the correlation levels in particular depend on preprocessing (global signal regression lowers
them all); the lag-1 ranges are what a 1/f BOLD signal gives at those TRs, with no single
published table behind them. Sources:

- Power JD et al. (2011) Functional network organization of the human brain. Neuron.
- Power JD et al. (2012) Spurious but systematic correlations in functional connectivity MRI
  networks arise from subject motion. NeuroImage.
- Power JD et al. (2014) Methods to detect, characterize, and remove motion artifact in
  resting state fMRI. NeuroImage.
- He BJ (2011) Scale-free properties of the functional magnetic resonance imaging signal
  during rest and task. J Neurosci.
- Satterthwaite TD et al. (2012) Impact of in-scanner head motion on multiple measures of
  functional connectivity: relevance for studies of neurodevelopment in youth. NeuroImage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.signal import welch
from scipy.spatial.distance import pdist, squareform

from brainbench.data.synth.functional import framewise_displacement, series_path
from brainbench.data.timeseries import read_series

DISTANCE_BINS_MM = (20.0, 40.0, 80.0)
BAND_HZ = (0.01, 0.1)
SEGMENT_S = 200.0
HIDDEN_FRACTION = 0.25
UNASSIGNED = "unassigned"


@dataclass(frozen=True)
class Reference:
    """An approximate published range of a statistic and where it comes from."""

    low: float
    high: float
    source: str


REFERENCES: dict[str, Reference] = {
    "within_fc": Reference(0.25, 0.45, "Power 2011 (ROI networks, no GSR)"),
    "between_fc": Reference(0.0, 0.15, "Power 2011"),
    "fc_<20mm": Reference(0.4, 0.7, "Power 2011, 2012 (short range highest)"),
    "fc_20-40mm": Reference(0.2, 0.4, "Power 2011, 2012"),
    "fc_40-80mm": Reference(0.1, 0.25, "Power 2011, 2012"),
    "fc_>=80mm": Reference(0.05, 0.2, "Power 2011, 2012"),
    "spectral_exponent": Reference(0.6, 1.0, "He 2011 (about 0.8 at rest)"),
    "lag1_short_tr": Reference(0.75, 0.95, "approx., no direct source (1/f BOLD, TR < 1 s)"),
    "lag1_long_tr": Reference(0.3, 0.7, "approx., no direct source (TR 2-2.5 s)"),
    "conditional_r2": Reference(0.4, 0.55, "real resting-state parcels (issue 13)"),
    "mean_fd": Reference(
        0.1, 0.3, "Power 2012, 2014 (adults; children higher: Satterthwaite 2012)"
    ),
}


def _bin_names() -> list[str]:
    edges = DISTANCE_BINS_MM
    inner = [f"fc_{a:g}-{b:g}mm" for a, b in zip(edges[:-1], edges[1:], strict=True)]
    return [f"fc_<{edges[0]:g}mm", *inner, f"fc_>={edges[-1]:g}mm"]


def standardise(run: np.ndarray) -> np.ndarray:
    """Linearly detrended, z-scored per parcel (constant parcels stay 0)."""
    x = np.asarray(run, dtype=np.float64)
    x = x - x.mean(axis=0)
    t = np.arange(len(x)) - (len(x) - 1) / 2
    x -= np.outer(t, t @ x / (t @ t))
    sd = x.std(axis=0)
    return x / np.where(sd > 0, sd, 1.0)


def correlation_summary(run: np.ndarray, atlas: pd.DataFrame) -> dict[str, float]:
    """within_fc, between_fc and the fc_<distance bin> means of one run."""
    z = standardise(run)
    rows, cols = np.triu_indices(z.shape[1], 1)
    r = (z.T @ z / len(z))[rows, cols]
    networks = atlas["network"].astype(str).to_numpy()
    same = (networks[rows] == networks[cols]) & (networks[rows] != UNASSIGNED)
    distance = squareform(pdist(atlas[["x", "y", "z"]].to_numpy(float)))[rows, cols]
    which = np.digitize(distance, DISTANCE_BINS_MM)
    out = {"within_fc": float(r[same].mean()), "between_fc": float(r[~same].mean())}
    for i, name in enumerate(_bin_names()):
        out[name] = float(r[which == i].mean()) if (which == i).any() else float("nan")
    return out


def spectral_exponent(run: np.ndarray, tr: float) -> float:
    """beta of power ~ 1 / f^beta over BAND_HZ (Welch spectrum averaged over parcels)."""
    z = standardise(run)
    segment = min(len(z), int(round(SEGMENT_S / tr)))
    freq, power = welch(z, fs=1.0 / tr, nperseg=segment, axis=0, detrend="linear")
    band = (freq >= BAND_HZ[0]) & (freq <= BAND_HZ[1])
    slope = np.polyfit(np.log10(freq[band]), np.log10(power[band].mean(axis=1)), 1)[0]
    return float(-slope)


def lag1_autocorrelation(run: np.ndarray) -> float:
    """Mean over parcels of the lag-1 autocorrelation."""
    z = standardise(run)
    return float((z[1:] * z[:-1]).sum(axis=0).mean() / len(z))


def conditional_r2(runs: Sequence[np.ndarray], seed: int = 0) -> list[float]:
    """Per run: R^2 of HIDDEN_FRACTION random parcels from the rest at the same time point.

    The Gaussian's covariance is estimated on the other runs (leave one out), shrunk towards
    the identity by the Ledoit-Wolf shrinkage of all the runs pooled.
    """
    from sklearn.covariance import ledoit_wolf_shrinkage

    z = [standardise(run) for run in runs]
    shrinkage = ledoit_wolf_shrinkage(np.concatenate(z), assume_centered=True)
    grams = [x.T @ x for x in z]
    total, count = sum(grams), sum(len(x) for x in z)
    rng = np.random.default_rng(seed)
    scores = []
    for x, gram in zip(z, grams, strict=True):
        sample = (total - gram) / (count - len(x))
        target = np.trace(sample) / len(sample) * np.eye(len(sample))
        cov = (1 - shrinkage) * sample + shrinkage * target
        hidden = np.zeros(x.shape[1], dtype=bool)
        hidden[rng.choice(x.shape[1], int(round(HIDDEN_FRACTION * x.shape[1])), False)] = True
        visible = ~hidden
        coef = np.linalg.solve(cov[np.ix_(visible, visible)], cov[np.ix_(visible, hidden)])
        residual = x[:, hidden] - x[:, visible] @ coef
        scores.append(float(1 - (residual**2).sum() / (x[:, hidden] ** 2).sum()))
    return scores


def characterise(
    runs: Sequence[np.ndarray],
    trs: Sequence[float],
    atlas: pd.DataFrame,
    motion: Sequence[np.ndarray] | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """The REFERENCES statistics of a set of runs (NaN where no run qualifies)."""
    if len(runs) < 2:
        raise ValueError("characterise needs at least 2 runs (conditional_r2 leaves one out)")
    table = pd.DataFrame([correlation_summary(run, atlas) for run in runs])
    out = table.mean().to_dict()
    out["spectral_exponent"] = float(
        np.mean([spectral_exponent(run, tr) for run, tr in zip(runs, trs, strict=True)])
    )
    lag1 = np.array([lag1_autocorrelation(run) for run in runs])
    trs = np.asarray(trs, dtype=float)
    for name, chosen in (("lag1_short_tr", trs < 1.0), ("lag1_long_tr", trs >= 1.5)):
        out[name] = float(lag1[chosen].mean()) if chosen.any() else float("nan")
    out["conditional_r2"] = float(np.mean(conditional_r2(runs, seed)))
    fd = [framewise_displacement(m)[1:].mean() for m in motion] if motion else []
    out["mean_fd"] = float(np.mean(fd)) if fd else float("nan")
    return {name: out[name] for name in REFERENCES}


def format_table(columns: dict[str, dict[str, float]]) -> str:
    """A plain-text table: one row per statistic, one column per set, then the reference."""
    width = max(12, *(len(c) for c in columns))
    head = f"{'statistic':<18}" + "".join(f"{c:>{width + 2}}" for c in columns)
    lines = [head + "  published (approx.)"]
    for name, ref in REFERENCES.items():
        values = "".join(f"{col[name]:>{width + 2}.3f}" for col in columns.values())
        lines.append(f"{name:<18}{values}  {ref.low:g}-{ref.high:g}  {ref.source}")
    return "\n".join(lines)


def cohort_statistics(
    cohort_root: Path, folder: Path, n_subjects: int = 20, seed: int = 0
) -> dict[str, dict[str, float]]:
    """characterise() of up to `n_subjects` young adults (18-40 y) and of as many of all ages.

    `folder` holds the cohort's generated series (functional.ensure_functional); subjects are
    drawn at random with `seed`.
    """
    participants = pd.read_csv(Path(cohort_root) / "participants.tsv", sep="\t")
    latents = pd.read_csv(Path(folder) / "latents.tsv", sep="\t").set_index("participant_id")
    atlas = pd.read_csv(Path(folder) / "atlas.tsv", sep="\t")
    rng = np.random.default_rng(seed)
    groups = {
        "young adults": participants[participants["age"].between(18, 40, inclusive="left")],
        "all ages": participants,
    }
    out = {}
    for name, group in groups.items():
        ids = list(group["participant_id"])
        ids = sorted(rng.choice(ids, min(n_subjects, len(ids)), replace=False))
        paths = [series_path(folder, pid) for pid in ids]
        motion = [
            pd.read_csv(
                str(p).replace("_timeseries.npy", "_desc-confounds_timeseries.tsv"), sep="\t"
            ).to_numpy()
            for p in paths
        ]
        runs = [read_series(p) for p in paths]
        trs = list(latents.loc[ids, "tr"])
        out[f"{name} (n={len(ids)})"] = characterise(runs, trs, atlas, motion, seed)
    return out
