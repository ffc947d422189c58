"""The multimodal grid's part of dashboard.html: which inputs make which target legible.

Reads `<results>/grid/multimodal.csv` (one row per run, with its cell's verdict),
`grid/targets.json` (target graph) and, after `brainbench report --utility`, `grid/utility.csv`.
Draws, as inline SVG: a heatmap of targets x input combinations (mean skill over seeds, best
combination per target outlined, legible cells and verdicts against the ground truth marked); a
graph of targets (node size = best skill, edge width = mutual information between targets;
hovering a node shows its best model and inputs, clicking lists every combination with its
metrics); per-target lifespan curves of the best combination; the input-utility coefficient
plot. Every string from data is HTML-escaped; the data the script reads is JSON with <, > and &
escaped, and the script writes it with textContent only.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainbench.results.utility import read_utility, significance
from brainbench.stages import STAGE_NAMES

GRID_CSV = Path("grid") / "multimodal.csv"
GRAPH_JSON = Path("grid") / "targets.json"
METRICS = ("balanced_accuracy", "auroc", "f1", "mae", "r2", "pearson_r")
VERDICT = {"p_cell": float("nan"), "p_holm": float("nan"), "verdict": "", "expected": ""}
VERDICT |= {"agrees": ""}  # a CSV written before the verdicts: shown blank

STYLE = """
#grid-info { min-height: 3em; padding: 6px 10px; background: #f4f8fc; border-left: 3px solid
  #3182bd; margin: 0.5em 0; }
#grid-detail table { font-size: 13px; }
svg .node { cursor: pointer; }
svg .node:hover circle { stroke: #d95f02; stroke-width: 3; }
"""

SCRIPT = """
(() => {
  const source = document.getElementById("grid-data");
  if (!source) return;
  const data = JSON.parse(source.textContent);
  const info = document.getElementById("grid-info");
  const detail = document.getElementById("grid-detail");
  const text = (tag, value) => {
    const el = document.createElement(tag);
    el.textContent = value;
    return el;
  };
  document.querySelectorAll("svg .node").forEach((node) => {
    const target = data.targets[node.dataset.target];
    node.addEventListener("mouseenter", () => {
      info.textContent = target.summary;
    });
    node.addEventListener("click", () => {
      detail.replaceChildren(text("h4", "Every combination for " + node.dataset.target));
      const table = document.createElement("table");
      const head = table.createTHead().insertRow();
      data.columns.forEach((c) => head.appendChild(text("th", c)));
      const body = table.createTBody();
      target.rows.forEach((row) => {
        const tr = body.insertRow();
        row.forEach((cell) => tr.appendChild(text("td", cell)));
      });
      detail.appendChild(table);
    });
  });
})();
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return "n/a" if not math.isfinite(number) else f"{number:.3g}"


def _colour(skill: float) -> str:
    """White (chance or worse) to dark blue (skill 1)."""
    good = min(max(skill, 0.0), 1.0) if math.isfinite(skill) else 0.0
    light, dark = np.array([247, 251, 255]), np.array([8, 48, 107])
    r, g, b = (light + (dark - light) * good).round().astype(int)
    return f"rgb({r},{g},{b})"


def _summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (target, inputs): means over seeds (skill, headline, metrics, train time) and the
    cell's verdict columns. Runs of one pair made with different configs are never averaged:
    each config is its own column, its inputs suffixed with the short config digest."""
    runs = runs.assign(**{k: v for k, v in VERDICT.items() if k not in runs})
    config = runs.get("config", pd.Series("", index=runs.index)).fillna("").astype(str)
    runs = runs.assign(inputs=runs["inputs"].where(config == "", runs["inputs"] + " @" + config))
    numeric = ["skill", "headline_value", "train_s", *METRICS]
    grouped = runs.groupby(["target", "inputs"], sort=False)
    table = grouped[numeric].mean(numeric_only=True)
    table["n_seeds"] = grouped.size()
    for column in ["headline", "n_inputs", *VERDICT]:
        table[column] = grouped[column].first()
    return table.reset_index().fillna({k: "" for k, v in VERDICT.items() if v == ""})


def _shown(summary: pd.DataFrame) -> str:
    """What the cells show: 'R² for age, weight; AUROC for sex'."""
    names = {"r2": "R²", "auroc": "AUROC", "pearson_r": "Pearson r", "mae": "MAE"}
    targets = summary.groupby("headline", sort=False)["target"].unique()
    return "; ".join(f"{names.get(m, m)} for {', '.join(t)}" for m, t in targets.items())


def _best(summary: pd.DataFrame) -> dict[str, pd.Series]:
    return {
        target: part.loc[part["skill"].fillna(-np.inf).idxmax()]
        for target, part in summary.groupby("target", sort=False)
    }


def _heatmap(summary: pd.DataFrame, best: dict[str, pd.Series]) -> str:
    targets = list(best)
    combos = list(dict.fromkeys(summary.sort_values(["n_inputs", "inputs"])["inputs"]))
    left, top, cell_w, cell_h = 190, 150, 64, 26
    width, height = left + cell_w * len(combos) + 90, top + cell_h * len(targets) + 10
    out = [f'<svg id="grid-heatmap" width="{width}" height="{height}" role="img" '
           'aria-label="skill by target and input combination">']  # fmt: skip
    for j, combo in enumerate(combos):
        x = left + j * cell_w + cell_w / 2
        out.append(f'<text transform="translate({x},{top - 6}) rotate(-55)">{_e(combo)}</text>')
    cells = {(r.target, r.inputs): r for r in summary.itertuples()}
    truths = summary.groupby("target", sort=False)["expected"].agg(set)
    for i, target in enumerate(targets):
        y = top + i * cell_h
        truth = " (no signal)" if "not legible" in truths[target] else ""
        truth = " (imaging signal)" if "legible" in truths[target] else truth
        out.append(f'<text x="{left - 8}" y="{y + cell_h / 2 + 4}" text-anchor="end">'
                   f"{_e(target + truth)}</text>")  # fmt: skip
        for j, combo in enumerate(combos):
            r = cells.get((target, combo))
            if r is None:
                continue
            x = left + j * cell_w
            is_best = best[target]["inputs"] == combo
            stroke = ' stroke="#d95f02" stroke-width="3"' if is_best else ""
            ink = "#fff" if math.isfinite(r.skill) and r.skill > 0.55 else "#222"
            mark = {"legible": " ✓", "not legible": ""}.get(r.verdict, "")
            mark += " ≠" if r.agrees == "no" else ""
            tip = f"{target} from {combo}: {r.headline} {_fmt(r.headline_value)}, skill "
            tip += f"{_fmt(r.skill)}" + (" (best)" if is_best else "")
            if r.verdict:
                tip += f"; {r.verdict} (p {_fmt(r.p_cell)}, Holm {_fmt(r.p_holm)})"
            if r.expected:
                tip += f"; ground truth: {r.expected}"
            out.append(
                f'<rect x="{x + 1}" y="{y + 1}" width="{cell_w - 2}" height="{cell_h - 2}" '
                f'fill="{_colour(r.skill)}"{stroke} data-verdict="{_e(r.verdict)}">'
                f"<title>{_e(tip)}</title></rect>"
                f'<text x="{x + cell_w / 2}" y="{y + cell_h / 2 + 4}" text-anchor="middle" '
                f'fill="{ink}">{_e(_fmt(r.headline_value) + mark)}</text>'
            )
    return "".join(out) + "</svg>"


def _graph(best: dict[str, pd.Series], graph: dict) -> str:
    targets = list(best)
    size, radius = 440, 160
    centre = size / 2
    angle = {t: 2 * math.pi * i / max(len(targets), 1) for i, t in enumerate(targets)}
    pos = {
        t: (centre + radius * math.cos(a), centre + radius * math.sin(a)) for t, a in angle.items()
    }
    out = [f'<svg id="grid-graph" width="{size}" height="{size}" role="img" '
           'aria-label="target graph">']  # fmt: skip
    edges = [e for e in graph.get("edges", []) if e["source"] in pos and e["target"] in pos]
    top = max([e["mi"] for e in edges] + [0.1])  # weaker than 0.1 nats stays thin
    for e in edges:
        (x1, y1), (x2, y2) = pos[e["source"]], pos[e["target"]]
        w = 0.5 + 7 * max(e["mi"], 0) / top
        tip = f"{e['source']} - {e['target']}: mutual information {_fmt(e['mi'])} nats (n={e['n']})"
        out.append(
            f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="#9ecae1" '
            f'stroke-width="{w:.2f}" opacity="0.8"><title>{_e(tip)}</title></line>'
        )
    for target in targets:
        x, y = pos[target]
        skill = best[target]["skill"]
        r = 8 + 22 * min(max(skill, 0.0), 1.0) if math.isfinite(skill) else 8
        out.append(
            f'<g class="node" data-target="{_e(target)}"><circle cx="{x:.1f}" cy="{y:.1f}" '
            f'r="{r:.1f}" fill="{_colour(skill)}" stroke="#08306b"/><text x="{x:.1f}" '
            f'y="{y - r - 4:.1f}" text-anchor="middle">{_e(target)}</text></g>'
        )
    return "".join(out) + "</svg>"


def _lifespan(runs: pd.DataFrame, best: dict[str, pd.Series]) -> str:
    """Small multiples: per target, the best combination's skill in each lifespan stage."""
    w, h, pad = 220, 120, 24
    out = []
    for target, row in best.items():
        chosen = runs[(runs["target"] == target) & (runs["inputs"] == row["inputs"])]
        per_stage: dict[str, list[float]] = {}
        for text in chosen["per_stage"]:
            for stage, value in json.loads(text).items():
                if value is not None and math.isfinite(value):
                    per_stage.setdefault(stage, []).append(value)
        stages = [s for s in STAGE_NAMES if s in per_stage]

        def x(i: int) -> float:
            return pad + i * (w - 2 * pad) / max(len(STAGE_NAMES) - 1, 1)

        def y(v: float) -> float:
            return h - pad - (min(max(v, -1.0), 1.0) + 1) / 2 * (h - 2 * pad)

        points = [(x(STAGE_NAMES.index(s)), y(float(np.mean(per_stage[s])))) for s in stages]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        label = f"{target}: {row['inputs']}"
        svg = [f'<svg width="{w}" height="{h}" role="img" aria-label="{_e(label)}">']
        svg.append(f'<text x="{pad}" y="14">{_e(label)}</text>')
        svg.append(f'<path d="M{pad},{y(0):.1f}H{w - pad}" stroke="#bbb" stroke-dasharray="3,3"/>')
        svg.append(f'<polyline points="{path}" fill="none" stroke="#3182bd" stroke-width="2"/>')
        for s, (px, py) in zip(stages, points, strict=True):
            tip = f"{target} · {s}: skill {_fmt(np.mean(per_stage[s]))}"
            svg.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="3" fill="#08519c">'
                       f"<title>{_e(tip)}</title></circle>")  # fmt: skip
        out.append("".join(svg) + "</svg>")
    return "".join(out)


def _coefficients(utility: pd.DataFrame) -> str:
    """Coefficient plot: per domain and input, the estimate with its 95% CI and stars."""
    rows = list(utility.itertuples())
    left, width, row_h, top = 260, 720, 22, 20
    values = [v for r in rows for v in (r.ci_low, r.ci_high, 0.0) if math.isfinite(v)]
    low, high = min(values), max(values)
    high = high if high > low else low + 1

    def x(v: float) -> float:
        return left + (v - low) / (high - low) * (width - left - 40)

    height = top + row_h * len(rows) + 30
    out = [f'<svg id="grid-coefficients" width="{width}" height="{height}" role="img" '
           'aria-label="input utility coefficients">']  # fmt: skip
    out.append(f'<path d="M{x(0):.1f},{top - 6}V{top + row_h * len(rows)}" stroke="#888"/>')
    for i, r in enumerate(rows):
        y = top + i * row_h + row_h / 2
        stars = significance(r.p_value)
        label = f"{r.domain} · {r.input}"
        tip = f"{label}: {_fmt(r.coef)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}], p {_fmt(r.p_value)}"
        out.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end">{_e(label)}</text>')
        if math.isfinite(r.ci_low) and math.isfinite(r.ci_high):
            out.append(f'<path d="M{x(r.ci_low):.1f},{y}H{x(r.ci_high):.1f}" stroke="#08306b"/>')
        colour = "#d95f02" if stars else "#08306b"
        right = max(r.coef, r.ci_high) if math.isfinite(r.ci_high) else r.coef
        out.append(
            f'<circle cx="{x(r.coef):.1f}" cy="{y}" r="4" fill="{colour}"><title>{_e(tip)}'
            f'</title></circle><text x="{x(right) + 6:.1f}" y="{y + 4}">{_e(stars)}</text>'
        )
    bottom = top + row_h * len(rows) + 16
    for v in (low, 0.0, high):
        out.append(f'<text x="{x(v):.1f}" y="{bottom}" text-anchor="middle">{_e(_fmt(v))}</text>')
    return "".join(out) + "</svg>"


def _script_json(data: Any) -> str:
    """JSON safe inside a <script> element (no </script>, no HTML)."""
    text = json.dumps(data, allow_nan=False, default=str)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def _clean(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


def _payload(summary: pd.DataFrame, best: dict[str, pd.Series]) -> dict:
    columns = ["inputs", "headline", "skill", "verdict", "p_cell", "p_holm", "expected"]
    columns += [*METRICS, "train_s", "n_seeds"]
    targets = {}
    for target, row in best.items():
        part = summary[summary["target"] == target].sort_values("skill", ascending=False)
        summary_text = (
            f"{target}: best model fusion with inputs {row['inputs']} "
            f"({row['headline']} {_fmt(row['headline_value'])}, skill {_fmt(row['skill'])}"
            + (f", {row['verdict']}, Holm p {_fmt(row['p_holm'])})" if row["verdict"] else ")")
        )
        rows = [[_fmt(_clean(r[c])) for c in columns] for _, r in part.iterrows()]
        targets[target] = {"summary": summary_text, "rows": rows}
    return {"columns": columns, "targets": targets}


def grid_section(results_dir: Path | str) -> str:
    """The multimodal section of the dashboard ('' when the folder has no grid)."""
    root = Path(results_dir)
    if not (root / GRID_CSV).is_file():
        return ""
    runs = pd.read_csv(root / GRID_CSV)
    if runs.empty:
        return ""
    graph = json.loads((root / GRAPH_JSON).read_text()) if (root / GRAPH_JSON).is_file() else {}
    summary = _summary(runs)
    best = _best(summary)
    parts = [
        '<section id="multimodal"><h2>Multimodal legibility grid</h2>',
        f"<p>Cells show each target's headline metric, mean over seeds ({_e(_shown(summary))})."
        " Colours, the outlined best combination of each target and the graph below use skill: "
        "Pearson r (regression) or 2·AUROC − 1 (classification), 0 is chance, 1 perfect. ✓ "
        "marks a legible cell: the seed-averaged prediction beats chance (one-sided Spearman or "
        "Mann-Whitney test) after Holm's correction over every cell at family-wise α = 0.05; ≠ "
        "marks a verdict that disagrees with the cohort's ground truth (targets without imaging "
        "signal are legible from nothing).</p>",
        f'<div class="scroll">{_heatmap(summary, best)}</div>',
        "<h3>Targets</h3><p>Node size: best skill; edge width: mutual information between "
        "targets across subjects. Hover a node for its best model, click it for every "
        "combination.</p>",
        f'<div class="scroll">{_graph(best, graph)}</div>',
        '<div id="grid-info">Hover a target.</div><div id="grid-detail"></div>',
        "<h3>Lifespan curves</h3><p>Skill of each target's best combination per stage.</p>",
        _lifespan(runs, best),
    ]
    utility = read_utility(root)
    if utility is not None and not utility.empty:
        parts += ["<h3>Input utility</h3><p>Mixed-effects coefficients (skill units) with 95% "
                  "confidence intervals; * p&lt;0.05, ** p&lt;0.01, *** p&lt;0.001.</p>",
                  f'<div class="scroll">{_coefficients(utility)}</div>']  # fmt: skip
    parts += [
        f'<script type="application/json" id="grid-data">{_script_json(_payload(summary, best))}'
        "</script>",
        f"<style>{STYLE}</style><script>{SCRIPT}</script></section>",
    ]
    return "\n".join(parts)
