"""PNG figures for run records and reports (matplotlib Agg canvas: no display, no pyplot)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from brainbench.stages import STAGE_NAMES, stages_of

STAGE_COLOURS = dict(
    zip(
        STAGE_NAMES,
        ("#8c564b", "#e377c2", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd"),
        strict=True,
    )
)


def save_figure(fig: Figure, path: Path | str) -> Path:
    path = Path(path)
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=120, bbox_inches="tight")
    return path


def plot_predictions(
    path: Path | str, y_true: np.ndarray, y_pred: np.ndarray, ages: np.ndarray, title: str
) -> Path:
    """Predicted vs true scatter, coloured by lifespan stage, with the identity line."""
    t, p = np.asarray(y_true, dtype=float).ravel(), np.asarray(y_pred, dtype=float).ravel()
    stages = stages_of(ages)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    for stage in STAGE_NAMES:
        mask = stages == stage
        if mask.any():
            label = f"{stage.replace('_', ' ')} (n={mask.sum()})"
            ax.scatter(t[mask], p[mask], s=14, alpha=0.8, color=STAGE_COLOURS[stage], label=label)
    finite = np.concatenate([t, p])[np.isfinite(np.concatenate([t, p]))]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    ax.plot([low, high], [low, high], color="0.4", linestyle="--", linewidth=1, label="identity")
    ax.set(xlabel="true", ylabel="predicted", title=title)
    ax.legend(fontsize="small", loc="upper left")
    return save_figure(fig, path)


def plot_stage_metric(path: Path | str, per_stage_table: pd.DataFrame, metric: str) -> Path:
    """A line per model (table rows) of a metric across lifespan stages (table columns)."""
    stages = [s for s in STAGE_NAMES if s in per_stage_table.columns]
    fig = Figure(figsize=(max(4.0, 1.1 * len(stages) + 2), 3.5))
    ax = fig.add_subplot()
    x = np.arange(len(stages))
    for name, values in per_stage_table[stages].iterrows():
        ax.plot(x, values.to_numpy(dtype=float), marker="o", label=str(name))
    ax.set_xticks(x, [s.replace("_", " ") for s in stages], rotation=30, ha="right")
    ax.set(ylabel=metric, title=f"{metric} per lifespan stage")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)


def plot_label_efficiency(path: Path | str, part: pd.DataFrame) -> Path:
    """The headline vs the share of training labels (log axis), mean ± std over seeds.

    `part` holds leaderboard rows of one task and dataset; a line per model · protocol (and stage
    restriction), dashed for models not pretrained (scratch, baselines).
    """
    metric = str(part["headline"].iloc[0])
    keys = [k for k in ("model", "protocol", "train_stages", "test_stages") if k in part]
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for key, rows in part[part["model"] != "oracle"].groupby(keys, sort=True):
        rows = rows.sort_values("label_fraction")
        name = " · ".join(str(k) for k in key if k)
        style = "--" if key[1] in ("scratch", "baseline") else "-"
        ax.errorbar(
            100 * rows["label_fraction"],
            rows["headline_mean"],
            yerr=rows["headline_std"].fillna(0.0),
            marker="o",
            linestyle=style,
            capsize=3,
            label=name,
        )
    ax.set_xscale("log")
    ticks = sorted(100 * part["label_fraction"].unique())
    ax.set_xticks(ticks, [f"{t:g}%" for t in ticks], minor=False)
    ax.minorticks_off()
    ax.set(xlabel="training labels (%)", ylabel=metric, title=f"{part['task'].iloc[0]}: {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return save_figure(fig, path)
