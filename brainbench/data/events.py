"""Events to samples: which volumes of a run hold the response to each stimulus onset.

For an onset at `t` seconds, the window runs from `t + start` to `t + start + duration`
(neuralbench's defaults: 2.0 s and 7.0 s, covering the haemodynamic peak). A sample is the
`n_trs(window, tr) = ceil(duration / tr)` volumes from the first one acquired at or after
`t + start` (volume k is acquired at k * tr), so every sample of a run has the same length.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field

from brainbench.config import StrictModel
from brainbench.errors import ConfigError, DataError


class Window(StrictModel):
    start: float = Field(2.0, description="seconds after onset where the window begins")
    duration: float = Field(7.0, gt=0, description="window length in seconds")


def n_trs(window: Window, tr: float) -> int:
    """Volumes per sample; ConfigError if the window is shorter than one TR."""
    if window.duration < tr:
        raise ConfigError(
            f"task_options.window.duration={window.duration} s is shorter than one TR "
            f"({tr} s), so a sample would hold no volume; make it at least {tr}."
        )
    return math.ceil(window.duration / tr - 1e-9)


def check_model_trs(expected: int | None, derived: int, window: Window, tr: float) -> None:
    """ConfigError when a model built for `expected` volumes per sample gets `derived`."""
    if expected is not None and expected != derived:
        raise ConfigError(
            f"the window (task_options.window.start={window.start}, duration={window.duration} "
            f"s) at TR {tr} s gives {derived} volumes per sample, but model.n_trs={expected}; "
            f"set model.n_trs={derived} (or null to derive it) or change the window."
        )


def read_events(path: Path, stim_column: str, n_vols: int, tr: float) -> pd.DataFrame:
    """A run's events.tsv with `onset` and the stimulus column; checked against the run length.

    Rows whose stimulus is empty or 'n/a' (fixation, catch trials) are dropped. An onset at or
    after the end of the run (n_vols * tr) is a DataError: the events belong to another run.
    """
    try:
        table = pd.read_csv(path, sep="\t", dtype={stim_column: str}, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"events file {path} is unreadable ({exc}).") from None
    missing = [c for c in ("onset", stim_column) if c not in table.columns]
    if missing:
        raise DataError(
            f"events file {path} lacks the column(s) {missing} (it has {list(table.columns)}); "
            "add them, or set task_options.stimulus_column to the column naming the image."
        )
    table = table[~table[stim_column].isin(("", "n/a", "nan"))].reset_index(drop=True)
    onsets = pd.to_numeric(table["onset"], errors="coerce")
    if onsets.isna().any():
        raise DataError(
            f"events file {path} has a non-numeric onset in row {onsets.isna().idxmax() + 2}."
        )
    end = n_vols * tr
    late = onsets >= end
    if late.any():
        raise DataError(
            f"events file {path}: onset {onsets[late].iloc[0]} s is past the end of its run "
            f"({n_vols} volumes x {tr} s = {end} s); check that the events match the BOLD file."
        )
    return table.assign(onset=onsets.astype(float)).rename(columns={stim_column: "stim_id"})


def window_volumes(onsets: np.ndarray, window: Window, tr: float, n_vols: int) -> np.ndarray:
    """(events, n_trs) volume indices of each onset's window; -1 rows where it leaves the run."""
    n = n_trs(window, tr)
    first = np.ceil((np.asarray(onsets, dtype=float) + window.start) / tr - 1e-9).astype(int)
    volumes = first[:, None] + np.arange(n)[None, :]
    outside = (volumes[:, 0] < 0) | (volumes[:, -1] >= n_vols)
    volumes[outside] = -1
    return volumes
