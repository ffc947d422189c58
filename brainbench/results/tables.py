"""Reading a leaderboard frame: its sections, columns and number formatting.

Shared by the Markdown, terminal and HTML renderings so they show the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pandas as pd

from brainbench.stages import STAGE_NAMES

ORACLE_MODEL, ORACLE_PROTOCOL = "oracle", "oracle ceiling"


def sections(df: pd.DataFrame) -> Iterator[tuple[str, str, pd.DataFrame]]:
    """(task, dataset, its rows) for each table of the leaderboard, in the frame's order."""
    for (task, dataset), part in df.groupby(["task", "dataset"], sort=False):
        yield str(task), str(dataset), part


def headline(part: pd.DataFrame) -> tuple[str, bool]:
    """(headline metric name, higher_is_better) of a section."""
    return str(part["headline"].iloc[0]), bool(part["higher_is_better"].iloc[0])


def metric_names(part: pd.DataFrame) -> list[str]:
    """The section's metrics other than the headline, in column order."""
    names = [c.removesuffix("_mean") for c in part.columns if c.endswith("_mean")]
    skip = ("headline", headline(part)[0])
    return [m for m in names if m not in skip and part[f"{m}_mean"].notna().any()]


def label(row: pd.Series) -> str:
    """'model · protocol', or 'oracle' for the oracle ceiling."""
    return ORACLE_MODEL if row["model"] == ORACLE_MODEL else f"{row['model']} · {row['protocol']}"


def stage_table(part: pd.DataFrame) -> pd.DataFrame:
    """The headline per lifespan stage: a row per model label, a column per stage with data."""
    cols = [f"stage_{s}" for s in STAGE_NAMES if f"stage_{s}" in part]
    table = part[[c for c in cols if part[c].notna().any()]]
    table = table.set_axis([label(row) for _, row in part.iterrows()])
    return table.rename(columns=lambda c: c.removeprefix("stage_"))


def fmt(value: Any) -> str:
    """A number to 4 significant digits; '–' for a missing one."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def mean_std(mean: Any, std: Any) -> str:
    """'mean ± std' (std to 2 significant digits), or the mean alone when std is undefined."""
    return fmt(mean) if fmt(std) == "–" else f"{fmt(mean)} ± {float(std):.2g}"


def cells(part: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """(headers, rows of strings) of a section's ranked table."""
    head, _ = headline(part)
    others = metric_names(part)
    headers = ["rank", "model", "protocol", f"{head} (mean ± std)", "seeds", *others]
    rows = []
    for _, r in part.iterrows():
        row = [fmt(r["rank"]), str(r["model"]), str(r["protocol"])]
        row += [mean_std(r["headline_mean"], r["headline_std"]), fmt(r["n_seeds"] or None)]
        row += [mean_std(r[f"{m}_mean"], r.get(f"{m}_std")) for m in others]
        rows.append(row)
    return headers, rows


def direction(part: pd.DataFrame) -> str:
    """'headline mae, lower is better'."""
    name, higher = headline(part)
    return f"headline {name}, {'higher' if higher else 'lower'} is better"
