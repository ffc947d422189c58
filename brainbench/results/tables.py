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
# column headers of the terminal's per-stage table, short enough for 100 columns
SHORT_STAGES = {
    "neonatal": "neonat",
    "adolescent": "adolesc",
    "young_adult": "young",
    "middle_age": "middle",
    "older_adult": "older",
}


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
    """'model · protocol[ · subset]', or 'oracle' for the oracle ceiling."""
    if row["model"] == ORACLE_MODEL:
        return ORACLE_MODEL
    variant = variant_label(row)
    return f"{row['model']} · {row['protocol']}" + (f" · {variant}" if variant else "")


def subset_label(row: pd.Series) -> str:
    """'10% labels', 'train young_adult → test infant'; '' for all labels and stages."""
    parts = []
    fraction = row.get("label_fraction", 1.0)
    if fraction != 1.0:
        parts.append(f"{100 * fraction:g}% labels")
    train, test = row.get("train_stages", ""), row.get("test_stages", "")
    if train or test:
        parts.append(f"train {train or 'all'} → test {test or 'all'}")
    return ", ".join(parts)


def variant_label(row: pd.Series) -> str:
    """subset_label plus 'config <digest>' for a row whose seeds' configs differ from another's."""
    config = f"config {row['config']}" if row.get("config") else ""
    return ", ".join(part for part in (subset_label(row), config) if part)


def record_subset(record: dict[str, Any]) -> dict[str, Any]:
    """A run record's label fraction and stages as hashable cells ('' = every stage)."""
    stages = {k: "+".join(record.get(k) or []) for k in ("train_stages", "test_stages")}
    return {"label_fraction": float(record.get("label_fraction") or 1.0), **stages}


def record_label(record: dict[str, Any]) -> str:
    """The label (see `label`) of the leaderboard row a run record belongs to."""
    keys = {k: record.get(k, "") for k in ("model", "protocol", "config")}
    return label(pd.Series(keys | record_subset(record)))


def stage_table(part: pd.DataFrame) -> pd.DataFrame:
    """The headline per lifespan stage: a row per model label, a column per stage with data."""
    cols = [f"stage_{s}" for s in STAGE_NAMES if f"stage_{s}" in part]
    table = part[[c for c in cols if part[c].notna().any()]]
    table = table.set_axis([label(row) for _, row in part.iterrows()])
    return table.rename(columns=lambda c: c.removeprefix("stage_"))


def stage_note(part: pd.DataFrame, table: pd.DataFrame) -> str:
    """Why a per-stage R^2 can be hugely negative, when some stage's is ('' otherwise)."""
    if headline(part)[0] != "r2":
        return ""
    stages = [str(s).replace("_", " ") for s in table.columns if (table[s] < -10).any()]
    if not stages:
        return ""
    return (
        "R² within a stage compares a model's errors with the spread of the target inside that "
        f"stage; where the target barely varies ({', '.join(stages)}), even small errors give "
        "hugely negative values. The errors themselves (mae) are in each run's metrics.json."
    )


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
        subset = variant_label(r) if r["model"] != ORACLE_MODEL else ""
        protocol = str(r["protocol"]) + (f" ({subset})" if subset else "")
        row = [fmt(r["rank"]), str(r["model"]), protocol]
        row += [mean_std(r["headline_mean"], r["headline_std"]), fmt(r["n_seeds"] or None)]
        row += [mean_std(r[f"{m}_mean"], r.get(f"{m}_std")) for m in others]
        rows.append(row)
    return headers, rows


def direction(part: pd.DataFrame) -> str:
    """'headline mae, lower is better'."""
    name, higher = headline(part)
    return f"headline {name}, {'higher' if higher else 'lower'} is better"
