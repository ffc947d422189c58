"""dashboard.html: one self-contained page of the leaderboard that works offline.

Per task and dataset: a sortable table (rank, headline mean ± std, oracle ceiling marked, links
to each seed's figures), a bar chart of the headline with std error bars and one dot per seed,
and a heatmap of the headline per lifespan stage and model. Wide tables and heatmaps scroll
inside their own box, so the page fits a phone.

The charts are inline SVG written here, plus a few lines of vanilla JS to sort the tables, rather
than plotly: plotly's inline bundle adds ~4.6 MB to every page and carries URL strings of its
own, while bars and a heatmap need neither; SVG renders in any browser without a network, can be
checked as text in tests, and every string from data goes through `html.escape` on its way in.
"""

from __future__ import annotations

import html
import math
import numbers
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pandas as pd

from brainbench.results.tables import (
    ORACLE_MODEL,
    cells,
    direction,
    fmt,
    headline,
    label,
    mean_std,
    metric_names,
    record_label,
    sections,
    stage_note,
    stage_table,
)

Key = tuple[str, str, str]  # (task, dataset, model label)

WIDTH, LEFT, RIGHT, ROW = 720, 230, 24, 26

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em auto; padding: 0 1em; max-width: 980px;
  color: #222; }
.scroll { overflow-x: auto; max-width: 100%; }
p.note { color: #8a4b00; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { padding: 4px 10px; border-bottom: 1px solid #ddd; text-align: right; }
th { cursor: pointer; background: #f4f4f4; user-select: none; }
th[data-dir=asc]::after { content: " \\25B2"; } th[data-dir=desc]::after { content: " \\25BC"; }
td:nth-child(2), td:nth-child(3), th:nth-child(2), th:nth-child(3) { text-align: left; }
tr.oracle td { font-style: italic; background: #fff7e0; }
svg text { font: 12px system-ui, sans-serif; }
footer { color: #666; font-size: 12px; margin-top: 3em; }
"""

SCRIPT = """
document.querySelectorAll("table.sortable th").forEach((th) => {
  th.addEventListener("click", () => {
    const body = th.closest("table").tBodies[0], col = th.cellIndex;
    const asc = th.dataset.dir !== "asc";
    th.parentElement.querySelectorAll("th").forEach((h) => delete h.dataset.dir);
    th.dataset.dir = asc ? "asc" : "desc";
    const key = (row) => {
      const v = row.cells[col].dataset.v;
      return v === "" ? null : isNaN(Number(v)) ? v : Number(v);
    };
    const rows = Array.from(body.rows);
    rows.sort((a, b) => {
      const x = key(a), y = key(b);
      if (x === null || y === null) return (x === null) - (y === null);
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1);
    });
    rows.forEach((row) => body.appendChild(row));
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _short(text: str, limit: int = 34) -> str:
    """A chart label that fits left of the plot (the full text is in the tooltip)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(value: Any) -> bool:
    return isinstance(value, numbers.Real) and math.isfinite(value)


def _sort_key(value: Any) -> str:
    return repr(float(value)) if _finite(value) else ""


def _table(part: pd.DataFrame, figures: dict[Key, str], task: str, dataset: str) -> str:
    headers, rows = cells(part)
    numeric = ["rank", None, None, "headline_mean", "n_seeds"]
    numeric += [f"{m}_mean" for m in metric_names(part)]
    out = ['<div class="scroll"><table class="sortable"><thead><tr>']
    out += [f"<th>{_e(h)}</th>" for h in [*headers, "figures"]] + ["</tr></thead><tbody>"]
    for (_, record), row in zip(part.iterrows(), rows, strict=True):
        oracle = record["model"] == ORACLE_MODEL
        out.append('<tr class="oracle">' if oracle else "<tr>")
        for col, text in zip(numeric, row, strict=True):
            value = record[col] if col else None
            key = _sort_key(None if value is pd.NA else value) if col else text
            out.append(f'<td data-v="{_e(key)}">{_e(text)}</td>')
        out.append(f'<td data-v="">{figures.get((task, dataset, label(record)), "")}</td></tr>')
    return "".join(out) + "</tbody></table></div>"


def _figures(records: list[dict[str, Any]], root: Path | None) -> dict[Key, str]:
    """Per table row, links to each seed's figures (the PNGs of its run folder), as HTML."""
    links: dict[Key, list[str]] = {}
    if root is None:
        return {}
    for r in sorted(records, key=lambda r: r["seed"]):
        pngs = sorted(Path(r["path"]).glob("*.png")) if r.get("path") else []
        anchors = [
            f'<a href="{_e(quote(Path(os.path.relpath(png, root)).as_posix()))}">{_e(png.stem)}</a>'
            for png in pngs
        ]
        if anchors:
            key = (str(r["task"]), str(r["dataset"]), record_label(r))
            links.setdefault(key, []).append(f"{_e(r['seed'])}: {' '.join(anchors)}")
    return {key: " · ".join(items) for key, items in links.items()}


def _ticks(low: float, high: float, count: int = 5) -> list[tuple[float, str]]:
    """(value, label) of round axis ticks: whole multiples of a 1, 2 or 5 step, labelled in
    fixed point to the step's decimals (0 is '0', not '6.939e-18')."""
    step = 10 ** math.floor(math.log10((high - low) / count))
    for factor in (1, 2, 5, 10):
        if (high - low) / (step * factor) <= count:
            step *= factor
            break
    digits = max(0, -math.floor(math.log10(step)))
    first, last = math.ceil(low / step - 1e-9), math.floor(high / step + 1e-9)
    values = [round(k * step, digits) + 0.0 for k in range(first, last + 1)]
    return [(v, f"{v:.{digits}f}") for v in values]


def _bars(part: pd.DataFrame, seeds: dict[Key, list[float]], task: str, dataset: str) -> str:
    name, _ = headline(part)
    models = part[(part["model"] != ORACLE_MODEL) & part["headline_mean"].notna()]
    oracle = part.loc[part["model"] == ORACLE_MODEL, "headline_mean"].dropna()
    if models.empty:
        return "<p>No finite headline values to chart.</p>"
    values = [0.0, *oracle]
    for _, r in models.iterrows():
        std = r["headline_std"] if _finite(r["headline_std"]) else 0.0
        values += [r["headline_mean"] - std, r["headline_mean"] + std]
        values += seeds.get((task, dataset, label(r)), [])
    values = [v for v in values if _finite(v)]
    low, high = min(values), max(values)
    high = high if high > low else low + 1.0
    ticks = _ticks(low, high)
    low, high = min(low, ticks[0][0]), max(high, ticks[-1][0])
    top, plot_w = 22, WIDTH - LEFT - RIGHT
    height = top + ROW * len(models) + 30

    def x(v: float) -> float:
        return round(LEFT + (v - low) / (high - low) * plot_w, 1)

    out = [f'<div class="scroll"><svg width="{WIDTH}" height="{height}" role="img" '
           f'aria-label="{_e(name)} by model">']  # fmt: skip
    for i, (_, r) in enumerate(models.iterrows()):
        y, mid, text = top + i * ROW, top + i * ROW + ROW / 2, label(r)
        mean, std = r["headline_mean"], r["headline_std"]
        tip = f"{text}: {name} {mean_std(mean, std)} ({r['n_seeds']} seeds)"
        out.append(
            f'<text x="{LEFT - 8}" y="{mid + 4}" text-anchor="end">{_e(_short(text))}</text>'
        )
        out.append(
            f'<rect x="{min(x(0), x(mean))}" y="{y + 4}" width="{round(abs(x(mean) - x(0)), 1)}" '
            f'height="{ROW - 8}" fill="#6baed6"><title>{_e(tip)}</title></rect>'
        )
        if _finite(std):
            lo_x, hi_x = x(mean - std), x(mean + std)
            out.append(
                f'<path d="M{lo_x},{mid}H{hi_x}M{lo_x},{mid - 5}V{mid + 5}M{hi_x},{mid - 5}'
                f'V{mid + 5}" stroke="#08306b" stroke-width="1.5" fill="none"/>'
            )
        for v in seeds.get((task, dataset, text), []):
            if _finite(v):
                out.append(f'<circle cx="{x(v)}" cy="{mid}" r="3" fill="#08306b" opacity="0.7"/>')
    bottom = top + ROW * len(models)
    for value in oracle:
        ox = x(value)
        out.append(
            f'<line x1="{ox}" y1="{top - 4}" x2="{ox}" y2="{bottom}" stroke="#d95f02" '
            f'stroke-dasharray="5,3" stroke-width="2"><title>oracle ceiling: {_e(fmt(value))}'
            f'</title></line><text x="{ox}" y="{top - 8}" text-anchor="middle" fill="#d95f02">'
            "oracle ceiling</text>"
        )
    out.append(f'<path d="M{LEFT},{bottom}H{WIDTH - RIGHT}" stroke="#444"/>')
    for t, text in ticks:
        out.append(
            f'<path d="M{x(t)},{bottom}V{bottom + 5}" stroke="#444"/>'
            f'<text x="{x(t)}" y="{bottom + 18}" text-anchor="middle">{_e(text)}</text>'
        )
    return "".join(out) + "</svg></div>"


def _colour(good: float) -> str:
    light, dark = np.array([239, 243, 255]), np.array([8, 81, 156])
    r, g, b = (light + (dark - light) * good).round().astype(int)
    return f"rgb({r},{g},{b})"


def _heatmap(
    part: pd.DataFrame, stage_n: dict[tuple[Key, str], int], task: str, dataset: str
) -> str:
    table = stage_table(part)
    if table.columns.empty:
        return "<p>No per-stage values.</p>"
    name, higher = headline(part)
    low, high = table.min(), table.max()  # colours compare the models within each stage
    cell_w, top = 84, 24
    width = LEFT + cell_w * table.shape[1] + RIGHT
    height = top + ROW * len(table) + 4
    out = [f'<div class="scroll"><svg width="{width}" height="{height}" role="img" '
           f'aria-label="{_e(name)} by stage">']  # fmt: skip
    for j, stage in enumerate(table.columns):
        cx = LEFT + j * cell_w + cell_w / 2
        text = _e(str(stage).replace("_", " "))
        out.append(f'<text x="{cx}" y="{top - 8}" text-anchor="middle">{text}</text>')
    for i, (row_label, values) in enumerate(table.iterrows()):
        y = top + i * ROW
        out.append(f'<text x="{LEFT - 8}" y="{y + ROW / 2 + 4}" text-anchor="end">')
        out.append(f"{_e(_short(str(row_label)))}<title>{_e(row_label)}</title></text>")
        for j, (stage, value) in enumerate(values.items()):
            cx = LEFT + j * cell_w
            n = stage_n.get(((task, dataset, str(row_label)), str(stage)))
            tip = f"{row_label} · {stage}: {name} {fmt(value)}" + (f" (n={n})" if n else "")
            if math.isfinite(value):
                span = high[stage] - low[stage]
                t = (value - low[stage]) / span if span > 0 else 0.5
                good = t if higher else 1.0 - t
                fill, ink = _colour(good), "#fff" if good > 0.6 else "#222"
            else:
                fill, ink = "#eee", "#888"
            out.append(
                f'<rect x="{cx + 1}" y="{y + 1}" width="{cell_w - 2}" height="{ROW - 2}" '
                f'fill="{fill}"><title>{_e(tip)}</title></rect><text x="{cx + cell_w / 2}" '
                f'y="{y + ROW / 2 + 4}" text-anchor="middle" fill="{ink}">{_e(fmt(value))}</text>'
            )
    note = stage_note(part, table)
    return "".join(out) + "</svg></div>" + (f'<p class="note">{_e(note)}</p>' if note else "")


def _from_records(
    records: list[dict[str, Any]],
) -> tuple[dict[Key, list[float]], dict[tuple[Key, str], int]]:
    """Per-seed headline values and per-stage subject counts, by (task, dataset, model label)."""
    seeds: dict[Key, list[float]] = {}
    stage_n: dict[tuple[Key, str], int] = {}
    for r in records:
        key = (str(r["task"]), str(r["dataset"]), record_label(r))
        value = r["headline"]["value"]
        seeds.setdefault(key, []).append(float("nan") if value is None else float(value))
        for stage, values in r["per_stage"].items():
            if "n" in values:
                stage_n.setdefault((key, str(stage)), int(values["n"]))
    return seeds, stage_n


def _footer(records: list[dict[str, Any]]) -> str:
    latest = max(records, key=lambda r: str(r.get("created", "")), default={})
    versions = latest.get("versions") or {}
    libs = ", ".join(f"{k} {v}" for k, v in versions.items() if v)
    parts = [f"{len(records)} run records", f"latest {latest.get('created', '?')}"]
    parts += [f"code {latest.get('code_version') or 'unknown'}", libs]
    return f"<footer>{_e(' · '.join(p for p in parts if p))}</footer>"


def render_dashboard(
    leaderboard: pd.DataFrame,
    records: list[dict[str, Any]],
    grid: str = "",
    root: Path | None = None,
) -> str:
    """The dashboard page for a leaderboard (from build_leaderboard) and its run records.

    `grid` is the multimodal grid's section (results/grid_dashboard.py), shown first; `root`,
    the folder the page is written to, lets each row link to its runs' figures.
    """
    seeds, stage_n = _from_records(records)
    figures = _figures(records, root)
    nav = ['<li><a href="#multimodal">multimodal legibility grid</a></li>'] if grid else []
    body = [grid] if grid else []
    for i, (task, dataset, part) in enumerate(sections(leaderboard)):
        title = f"{task} ({dataset})" if dataset else task
        nav.append(f'<li><a href="#s{i}">{_e(title)}</a></li>')
        name, _ = headline(part)
        body += [f'<section id="s{i}"><h2>{_e(title)}</h2><p>{_e(direction(part))}.</p>']
        body += [_table(part, figures, task, dataset), f"<h3>{_e(name)} by model</h3>"]
        body += [_bars(part, seeds, task, dataset), f"<h3>{_e(name)} by lifespan stage</h3>"]
        body += ["<p>Darker is better among the models of each stage.</p>"]
        body += [_heatmap(part, stage_n, task, dataset), "</section>"]
    return "\n".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            "<title>brainbench leaderboard</title>",
            f"<style>{STYLE}</style></head><body>",
            "<h1>brainbench leaderboard</h1>",
            "<p>Mean ± std over seeds (bars: mean, whiskers: std, dots: seeds); rank 1 is best. "
            "Click a column header to sort.</p>",
            f"<nav><ul>{''.join(nav)}</ul></nav>",
            *body,
            _footer(records),
            f"<script>{SCRIPT}</script></body></html>",
        ]
    )
