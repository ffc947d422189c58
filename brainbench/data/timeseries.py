"""Parcel time series: storage (one .npy per run, read lazily), robust scaling and windows.

A run is a float32 array [time, parcels] in a .npy file, memory-mapped on reading so a random
window touches only its own rows. Scaling is per parcel, (x - median) / IQR, with statistics
from the training runs only; each run is first centred on its own temporal mean per parcel
(`demean`: the whole run's mean, not the window's, so a window's hidden values cannot be
inferred from its visible ones), which removes baseline intensity.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from brainbench.bids_names import choices_message, choose, parse_name, unmatched_filter
from brainbench.data.records import SubjectRecord
from brainbench.errors import DataError
from brainbench.owners import atomic_write

SUFFIX = "_timeseries.npy"
SERIES = "timeseries"  # the modality name of parcel series in data.filters
ATLAS_TABLE = "atlas.tsv"


def write_series(path: Path, series: np.ndarray) -> Path:
    """Write a [time, parcels] series as float32 .npy, atomically."""
    array = np.ascontiguousarray(series, dtype=np.float32)
    if array.ndim != 2:
        raise DataError(f"a parcel series must be [time, parcels]; got shape {array.shape}.")
    buffer = io.BytesIO()
    np.save(buffer, array)
    atomic_write(Path(path), buffer.getvalue())
    return Path(path)


def read_series(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A run's parcel series, shape [time, parcels], float32.

    Shared interface (fMRI tasks, multimodal model). `mmap=True` maps the file instead of
    reading it (lazy: windows read only their rows). A missing, unreadable or non-2D file is a
    DataError naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"parcel series {path} does not exist; run `brainbench parcellate` first.")
    try:
        array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not a readable .npy parcel series: {exc}") from None
    if array.ndim != 2 or array.dtype.kind != "f":
        raise DataError(
            f"{path} holds a {array.dtype} array of shape {array.shape}; expected float "
            "[time, parcels]."
        )
    return array if mmap else array.astype(np.float32, copy=False)


def check_series(series: np.ndarray, name: str, min_length: int = 1) -> None:
    """DataError if `series` is too short or has all-NaN / constant parcels (names them)."""
    if series.shape[0] < min_length:
        raise DataError(
            f"{name} has {series.shape[0]} time points, fewer than the window of {min_length}; "
            "drop the run or set a shorter window (task_options.window)."
        )
    bad_nan = np.flatnonzero(~np.isfinite(series).all(axis=0))
    bad_const = np.flatnonzero(np.ptp(np.nan_to_num(series), axis=0) == 0)
    for bad, what in ((bad_nan, "NaN or infinite values"), (bad_const, "a constant series")):
        if bad.size:
            listed = ", ".join(map(str, bad[:8])) + (" ..." if bad.size > 8 else "")
            raise DataError(
                f"{name}: parcels {listed} have {what}; check the atlas covers the data "
                "(parcels without voxels) and the preprocessing."
            )


@dataclass(frozen=True)
class RobustScaler:
    """Per-parcel (x - median) / IQR; fitted on training runs only."""

    median: np.ndarray  # (parcels,)
    iqr: np.ndarray  # (parcels,)
    demean: bool = True

    @classmethod
    def fit(cls, runs: Iterable[np.ndarray], demean: bool = True) -> RobustScaler:
        """Statistics over every time point of `runs` (each run centred first if `demean`)."""
        stacked = np.concatenate([_centre(np.asarray(r, np.float32), demean) for r in runs])
        low, median, high = np.percentile(stacked, [25, 50, 75], axis=0)
        iqr = high - low
        return cls(
            median.astype(np.float32), np.where(iqr > 1e-8, iqr, 1.0).astype(np.float32), demean
        )

    def __call__(self, series: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """Scaled `series`; with `demean`, `offset` (its run's mean, default its own) is removed."""
        if series.shape[-1] != self.median.shape[0]:
            raise DataError(
                f"series has {series.shape[-1]} parcels but the scaler (and model) was fitted on "
                f"{self.median.shape[0]}; use data parcellated with the same atlas."
            )
        x = np.asarray(series, np.float32)
        if self.demean:
            x = x - (x.mean(axis=0) if offset is None else offset)
        return (x - self.median) / self.iqr

    def arrays(self) -> dict[str, np.ndarray]:
        return {"median": self.median, "iqr": self.iqr}


def _centre(series: np.ndarray, demean: bool) -> np.ndarray:
    return series - series.mean(axis=0, keepdims=True) if demean else series


class WindowDataset(Dataset):
    """Windows of `length` time points of scaled runs, as float32 tensors [parcels, length].

    `random=True` draws a new start per access (training); otherwise the window starts at
    `start` (clipped to the run). Items are (window, target); the target is NaN when absent.
    """

    def __init__(
        self,
        paths: Sequence[Path],
        scaler: RobustScaler,
        length: int,
        *,
        targets: Sequence[float] | None = None,
        random: bool = False,
        start: int = 0,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.scaler = scaler
        self.length = length
        self.targets = np.asarray(targets if targets is not None else [np.nan] * len(paths), float)
        self.random = random
        self.start = start
        self.lengths = [read_series(p, mmap=True).shape[0] for p in self.paths]
        self.offsets = [read_series(p).mean(axis=0) if scaler.demean else None for p in self.paths]
        for path, n in zip(self.paths, self.lengths, strict=True):
            if n < length:
                raise DataError(
                    f"{path} has {n} time points, fewer than the window of {length}; set a "
                    "shorter window (task_options.window) or drop the run."
                )

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.lengths[i]
        if self.random:
            start = int(torch.randint(0, n - self.length + 1, ()))
        else:
            start = min(self.start, n - self.length)
        return self.window(i, start), torch.tensor(self.targets[i])

    def window(self, i: int, start: int) -> torch.Tensor:
        """The scaled window of run i starting at `start`, [parcels, length]."""
        run = read_series(self.paths[i], mmap=True)
        window = self.scaler(np.asarray(run[start : start + self.length]), self.offsets[i])
        return torch.from_numpy(np.ascontiguousarray(window.T))


def series_files(
    folder: Path, records: Iterable[SubjectRecord], wanted: Mapping[str, str] | None = None
) -> dict[str, Path]:
    """Record key -> its parcel series under `folder`; records without one are skipped.

    Looks for `sub-<id>/[ses-<id>/]func/*_timeseries.npy` whose name has every entity of
    `wanted` (data.filters.timeseries, e.g. {'task': 'rest'}). Where a record has several, the
    BIDS rule of brainbench/bids_names.py picks one, with one warning for the dataset; a filter
    that matches no file anywhere is an error (a typo, not a dataset without series).
    """
    found, several = {}, []
    for record in records:
        base = Path(folder) / f"sub-{record.subject}"
        if record.session:
            base = base / f"ses-{record.session}"
        runs = [
            path
            for path in sorted((base / "func").glob(f"*{SUFFIX}"))
            if (name := parse_name(path.name)) and name.matches(wanted or {})
        ]
        if runs:
            found[record.key] = choose(runs)
        if len(runs) > 1:
            several.append((record.key, runs))
    if wanted and not found:
        raise unmatched_filter(SERIES, wanted, f"*{SUFFIX}", folder)
    if several:
        message = choices_message(folder, "parcel series", SERIES, several, len(found))
        warnings.warn(message, stacklevel=2)
    return found


def read_atlas_table(folder: Path) -> pd.DataFrame:
    """`folder`/atlas.tsv: one row per parcel in series column order (index, x, y, z[, network])."""
    path = Path(folder) / ATLAS_TABLE
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the atlas table {path}: {exc}") from None
    missing = [c for c in ("x", "y", "z") if c not in table.columns]
    if missing:
        raise DataError(f"{path} lacks the columns {missing}; it needs x, y, z in mm per parcel.")
    return table


def atlas_networks(folder: Path) -> np.ndarray:
    """The `network` column of `folder`/atlas.tsv: each parcel's network label, as strings."""
    table = read_atlas_table(folder)
    if "network" not in table.columns or table["network"].isna().any():
        raise DataError(
            f"{Path(folder) / ATLAS_TABLE} has no network label for every parcel (column "
            "'network'); parcellate with a look-up table giving one (`brainbench parcellate ... "
            "--labels TSV`, columns index and network)."
        )
    return table["network"].astype(str).to_numpy()


class SubjectWindows(WindowDataset):
    """WindowDataset of subject records: keys, ages and stages for scoring, atlas coordinates."""

    def __init__(
        self,
        records: Sequence[SubjectRecord],
        paths: Sequence[Path],
        scaler: RobustScaler,
        length: int,
        coords: np.ndarray,
        **kwargs,
    ) -> None:
        super().__init__(paths, scaler, length, **kwargs)
        self.records = list(records)
        self.coords = coords
        self.keys = [r.key for r in self.records]
        self.ages = np.array([r.age for r in self.records], dtype=float)
        self.stages = [r.stage for r in self.records]

    def run(self, i: int) -> np.ndarray:
        """The whole unscaled run of sample i, [time, parcels]."""
        return read_series(self.paths[i])


def split_windows(
    chosen: dict[str, list[SubjectRecord]],
    files: dict[str, Path],
    coords: np.ndarray,
    window: int,
    *,
    demean: bool = True,
    target: Callable[[SubjectRecord], float] | None = None,
) -> dict[str, SubjectWindows]:
    """SubjectWindows per split (fixed windows at start 0); the scaler is fitted on 'train'.

    Without training subjects (a dataset too small to split, for models that need no
    training) the scaler is fitted on the 'test' runs themselves: it uses no target.
    Set `.random = True` on a split to draw random windows instead.
    """
    fitted_on = chosen["train"] or chosen["test"]
    train_runs = [read_series(files[r.key]) for r in fitted_on]
    for run, record in zip(train_runs, fitted_on, strict=True):
        check_series(run, str(files[record.key]), window)
        if run.shape[1] != len(coords):
            raise DataError(
                f"{files[record.key]} has {run.shape[1]} parcels but the atlas table lists "
                f"{len(coords)}; parcellate every run with the same atlas."
            )
    scaler = RobustScaler.fit(train_runs, demean)
    return {
        name: SubjectWindows(
            subset,
            [files[r.key] for r in subset],
            scaler,
            window,
            coords,
            targets=[np.nan if target is None else target(r) for r in subset],
        )
        for name, subset in chosen.items()
    }
