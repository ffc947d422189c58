"""Leaderboard: run records aggregated over seeds, ranked per task, with the oracle ceiling.

One row per (task, dataset, model, protocol, label subset): n_seeds, the headline metric's mean
and std (sample std over seeds, NaN for one seed), `<metric>_mean` / `<metric>_std` for every
metric, `stage_<stage>` (the headline's mean within each lifespan stage) and `rank` within the
task and dataset (1 = best, by the headline mean in its direction). Seeds run with different
configs (`config_digest`) are never averaged: each config gets its own row, with a `config`
column (the short digest). Oracle ceilings, written by the task runner to
`<results>/oracle/<task-slug>.json`, add an unranked row (model 'oracle', protocol 'oracle
ceiling') to their task.
"""

from __future__ import annotations

import textwrap
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainbench.errors import ResultsError
from brainbench.owners import locked
from brainbench.results.dashboard import render_dashboard
from brainbench.results.grid_dashboard import grid_section
from brainbench.results.plots import plot_label_efficiency
from brainbench.results.record import (
    atomic_write_text,
    check_writable,
    read_oracles,
    read_records,
    slug,
)
from brainbench.results.tables import (
    ORACLE_MODEL,
    ORACLE_PROTOCOL,
    SHORT_STAGES,
    cells,
    direction,
    fmt,
    headline,
    record_subset,
    sections,
    stage_note,
    stage_table,
    subset_label,
)
from brainbench.spec import REPORTS_LOCK
from brainbench.stages import STAGE_NAMES

# label-efficiency and lifespan-generalisation runs: columns only when some run sets them
SUBSET_DEFAULTS = {"label_fraction": 1.0, "train_stages": "", "test_stages": ""}
GROUP = ["task", "dataset", "model", "protocol", *SUBSET_DEFAULTS]
CONFIG = "config"  # a record's short config digest where its row's records differ in it, else ''
FIXED = [
    "task",
    "dataset",
    "rank",
    "model",
    "protocol",
    "n_seeds",
    "headline",
    "higher_is_better",
    "headline_mean",
    "headline_std",
]


# --- aggregation ------------------------------------------------------------------------------


def _num(value: Any) -> float:
    return float("nan") if value is None else float(value)


def _stats(values: list[float]) -> tuple[float, float]:
    arr = np.asarray(values, dtype=float)
    if arr.size < 2:
        return float(arr.mean()), float("nan")
    # identical seeds (a deterministic model) give exactly 0, not floating-point dust
    std = 0.0 if np.ptp(arr) == 0 else float(arr.std(ddof=1))
    return float(arr.mean()), std


def _aggregate(group: list[dict[str, Any]]) -> dict[str, Any]:
    first = group[0]
    name = first["headline"]["name"]
    row: dict[str, Any] = {k: first[k] for k in [*GROUP, CONFIG]}
    row |= {"n_seeds": len(group), "headline": name}
    row["higher_is_better"] = bool(first["headline"]["higher_is_better"])
    row["headline_mean"], row["headline_std"] = _stats(
        [_num(r["headline"]["value"]) for r in group]
    )
    for metric in dict.fromkeys(m for r in group for m in r["metrics"]):
        values = [_num(r["metrics"].get(metric)) for r in group]
        row[f"{metric}_mean"], row[f"{metric}_std"] = _stats(values)
    for stage in STAGE_NAMES:
        values = [_num(r["per_stage"][stage].get(name)) for r in group if stage in r["per_stage"]]
        if values:
            row[f"stage_{stage}"] = float(np.mean(values))
    return row


def _oracle_rows(oracle: dict[str, Any], datasets: list[str]) -> Iterator[dict[str, Any]]:
    head = oracle["headline"]
    row: dict[str, Any] = {"task": oracle["task"], "model": ORACLE_MODEL}
    row |= {"protocol": ORACLE_PROTOCOL, "n_seeds": 0, "headline": head["name"]}
    row |= {
        "higher_is_better": bool(head["higher_is_better"]),
        "headline_mean": _num(head["value"]),
    }
    row |= {f"{m}_mean": _num(v) for m, v in oracle["metrics"].items()}
    for stage, values in oracle["per_stage"].items():
        row[f"stage_{stage}"] = _num(values.get(head["name"]))
    for dataset in [oracle["dataset"]] if oracle.get("dataset") else datasets or [""]:
        yield row | {"dataset": dataset}


def mark_configs(
    records: list[dict[str, Any]], group: Sequence[str] = tuple(GROUP)
) -> list[dict[str, Any]]:
    """The records with `config` set to their short config_digest where records of one row
    (same `group` values) were run with different configs, else ''."""
    keys = [tuple((r | record_subset(r))[k] for k in group) for r in records]
    digests = [str(r.get("config_digest") or "unknown")[:8] for r in records]
    seen: dict[tuple, set[str]] = {}
    for key, digest in zip(keys, digests, strict=True):
        seen.setdefault(key, set()).add(digest)
    return [
        r | {CONFIG: digest if len(seen[key]) > 1 else ""}
        for r, key, digest in zip(records, keys, digests, strict=True)
    ]


def build_leaderboard(
    records: list[dict[str, Any]], oracles: list[dict[str, Any]] | None = None
) -> pd.DataFrame:
    """One row per (task, dataset, model, protocol) plus oracle rows; see the module docstring."""
    if not records:
        raise ResultsError(
            "no run records to build a leaderboard from; run `brainbench run` first."
        )
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for record in (r | record_subset(r) for r in mark_configs(records)):
        groups.setdefault(tuple(record[k] for k in [*GROUP, CONFIG]), []).append(record)
    rows = [_aggregate(group) for group in groups.values()]
    for oracle in oracles or []:
        datasets = sorted({r["dataset"] for r in rows if r["task"] == oracle["task"]})
        rows.extend(_oracle_rows(oracle, datasets))
    df = pd.DataFrame(rows).fillna(SUBSET_DEFAULTS | {CONFIG: ""})
    subsets = [k for k, v in (SUBSET_DEFAULTS | {CONFIG: ""}).items() if (df[k] != v).any()]
    ranked = df["model"] != ORACLE_MODEL
    df["rank"] = pd.Series(pd.NA, index=df.index, dtype="Int64")
    for _, part in df[ranked].groupby(["task", "dataset", *SUBSET_DEFAULTS]):
        ascending = not bool(part["higher_is_better"].iloc[0])
        df.loc[part.index, "rank"] = part["headline_mean"].rank(ascending=ascending, method="min")
    stages = [f"stage_{s}" for s in STAGE_NAMES if f"stage_{s}" in df]
    metrics = [c for c in df.columns if c not in [*FIXED, *GROUP, CONFIG] and c not in stages]
    order = [k for k in subsets if k != CONFIG]
    df = df.assign(_oracle=~ranked).sort_values(
        ["task", "dataset", *order, "_oracle", "rank", "model", "protocol"],
        ascending=[True, True, *[k != "label_fraction" for k in order], False, True, True, True],
        na_position="last",
    )
    fixed = FIXED[:5] + subsets + FIXED[5:]
    return df[fixed + metrics + stages].reset_index(drop=True)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _md_row(cells: list[Any]) -> str:
    return "| " + " | ".join(_md(c) for c in cells) + " |"


def to_markdown(df: pd.DataFrame) -> str:
    """leaderboard.md: per task a ranked table, then the headline per lifespan stage."""
    lines = ["# brainbench leaderboard", ""]
    lines.append("Mean ± std over seeds; rank 1 is best within a task and dataset; the oracle")
    lines.append("ceiling is the best achievable from the generator's true latent variables.")
    for task, dataset, part in sections(df):
        headers, rows = cells(part)
        title = f"## {_md(task)}" + (f" ({_md(dataset)})" if dataset else "")
        lines += ["", title, "", f"{_md(direction(part))}.", ""]
        lines += [_md_row(headers), _md_row(["---"] * len(headers)), *map(_md_row, rows)]
        if curve_file(task, dataset, part):
            lines += ["", f"![label efficiency]({curve_file(task, dataset, part)})"]
        stages = stage_table(part)
        if not stages.columns.empty:
            lines += ["", f"{_md(headline(part)[0])} per lifespan stage (mean over seeds):", ""]
            lines += [_md_row(["model", *stages.columns]), _md_row(["---"] * (stages.shape[1] + 1))]
            lines += [_md_row([name, *map(fmt, values)]) for name, values in stages.iterrows()]
            if note := stage_note(part, stages):
                lines += ["", _md(note)]
    return "\n".join(lines) + "\n"


def curve_file(task: str, dataset: str, part: pd.DataFrame) -> str | None:
    """The label-efficiency figure's file name, when the section has several label fractions."""
    if "label_fraction" not in part or part["label_fraction"].nunique() < 2:
        return None
    return f"label_efficiency_{slug(task)}_{slug(dataset)}.png"


def format_table(df: pd.DataFrame, tasks: Collection[str] | None = None) -> str:
    """Plain-text tables for a terminal, one per task and dataset (of `tasks`, if given), each
    followed by its headline per lifespan stage (of the full-training-set rows, if others)."""
    blocks = []
    for task, dataset, part in sections(df):
        if tasks is not None and task not in tasks:
            continue
        lines = [f"{task}{f' ({dataset})' if dataset else ''}: {direction(part)}"]
        lines += _aligned(*cells(part))
        full = part[[not subset_label(row) for _, row in part.iterrows()]]
        stages = stage_table(full if len(full) else part)
        if not stages.columns.empty:
            lines += ["", f"{headline(part)[0]} per lifespan stage (mean over seeds):"]
            headers = ["", *(SHORT_STAGES.get(s, s) for s in stages.columns)]
            lines += _aligned(headers, [[n, *map(fmt, v)] for n, v in stages.iterrows()])
            if note := stage_note(part, stages):
                lines.append(textwrap.fill(note, 96))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n"


def _aligned(headers: list[str], rows: list[list[str]]) -> list[str]:
    """A header, a rule and the rows, in columns as wide as their widest cell."""
    widths = [max(map(len, column)) for column in zip(headers, *rows, strict=True)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [headers, ["-" * w for w in widths], *rows]
    ]


# --- reports ----------------------------------------------------------------------------------


def _load(root: Path) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    records = mark_configs(read_records(root))
    if not records:
        raise ResultsError(
            f"no run records under {root}; run `brainbench run` first "
            "(or point to the results directory it wrote)."
        )
    return build_leaderboard(records, read_oracles(root)), records


def load_leaderboard(results_dir: Path | str) -> pd.DataFrame:
    """The leaderboard of every run record and oracle ceiling under results_dir."""
    return _load(Path(results_dir))[0]


def write_reports(results_dir: Path | str) -> tuple[pd.DataFrame, dict[str, Path]]:
    """Write leaderboard.md, leaderboard.csv and dashboard.html into results_dir, atomically.

    Returns the leaderboard and the paths under the keys 'markdown', 'csv', 'dashboard' and, for
    tasks run at several label fractions, the figure's file name (label_efficiency_*.png).
    """
    root = check_writable(results_dir)
    with locked(root / REPORTS_LOCK):  # a run finishing beside us waits, then adds its record
        df, records = _load(root)
        curves = {}
        for task, dataset, part in sections(df):
            if name := curve_file(task, dataset, part):
                curves[name] = plot_label_efficiency(root / name, part)
        return df, curves | {
            "markdown": atomic_write_text(root / "leaderboard.md", to_markdown(df)),
            "csv": atomic_write_text(root / "leaderboard.csv", df.to_csv(index=False)),
            "dashboard": atomic_write_text(
                root / "dashboard.html", render_dashboard(df, records, grid_section(root), root)
            ),
        }
