"""Input utility: which inputs make targets legible, by a linear mixed-effects model.

Per target domain (and over all targets): skill ~ one 0/1 flag per input, with a random
intercept per target (statsmodels MixedLM, REML), fitted on the grid's runs (grid/multimodal.csv,
skill = Pearson r or 2 * AUROC - 1, so chance is 0 for every target). A domain with a single
target has no between-target variance to model and is fitted by ordinary least squares.
Writes grid/utility.csv: one row per (domain, input) with the coefficient, its 95% confidence
interval and p-value.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from brainbench.errors import ResultsError
from brainbench.results.record import atomic_write_text

GRID_CSV = Path("grid") / "multimodal.csv"
UTILITY_CSV = Path("grid") / "utility.csv"
ALL = "all targets"
COLUMNS = [
    "domain",
    "input",
    "coef",
    "ci_low",
    "ci_high",
    "p_value",
    "n_runs",
    "n_targets",
    "method",
]


def read_grid(results_dir: Path | str) -> pd.DataFrame:
    path = Path(results_dir) / GRID_CSV
    if not path.is_file():
        raise ResultsError(
            f"{path} does not exist; run `brainbench grid multimodal` with this output folder "
            "first."
        )
    return pd.read_csv(path)


def fit_domain(runs: pd.DataFrame, domain: str) -> pd.DataFrame:
    """The coefficient table of one domain's runs (inputs that never vary are left out)."""
    import statsmodels.formula.api as smf  # ~1 s to import: only `report --utility` needs it

    runs = runs[np.isfinite(runs["skill"])]
    flags = [c for c in runs.columns if c.startswith("uses_") and runs[c].nunique() > 1]
    if runs.empty or not flags:
        return pd.DataFrame(columns=COLUMNS)
    data = runs[["skill", "target"]].copy()
    for flag in flags:
        data[flag] = (runs[flag] == "yes").astype(float)
    formula = "skill ~ " + " + ".join(flags)
    n_targets = data["target"].nunique()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small grids: boundary and convergence notes
        if n_targets > 1:
            fit = smf.mixedlm(formula, data, groups=data["target"]).fit(reml=True)
            method = "mixedlm" if fit.converged else "mixedlm (not converged)"
        else:
            fit = smf.ols(formula, data).fit()
            method = "ols (one target)"
    ci = fit.conf_int()
    return pd.DataFrame(
        {
            "domain": domain,
            "input": [f.removeprefix("uses_") for f in flags],
            "coef": [fit.params[f] for f in flags],
            "ci_low": [ci.loc[f, 0] for f in flags],
            "ci_high": [ci.loc[f, 1] for f in flags],
            "p_value": [fit.pvalues[f] for f in flags],
            "n_runs": len(data),
            "n_targets": n_targets,
            "method": method,
        }
    )


def utility_table(grid: pd.DataFrame) -> pd.DataFrame:
    """Coefficients per domain (those with a domain), then over all targets."""
    grid = grid.assign(domain=grid["domain"].fillna(""))
    parts = [fit_domain(runs, domain) for domain, runs in grid.groupby("domain") if domain]
    parts.append(fit_domain(grid, ALL))
    parts = [p for p in parts if not p.empty]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=COLUMNS)


def write_utility(results_dir: Path | str) -> pd.DataFrame:
    """Fit the models on the grid of results_dir and write grid/utility.csv; return the table."""
    table = utility_table(read_grid(results_dir))
    atomic_write_text(Path(results_dir) / UTILITY_CSV, table.to_csv(index=False))
    return table


def read_utility(results_dir: Path | str) -> pd.DataFrame | None:
    path = Path(results_dir) / UTILITY_CSV
    return pd.read_csv(path) if path.is_file() else None


def significance(p: float) -> str:
    """'***' p < 0.001, '**' < 0.01, '*' < 0.05, else ''."""
    if not np.isfinite(p):
        return ""
    return "***" if p < 0.001 else "**" if p < 0.01 else "*" if p < 0.05 else ""


def format_utility(table: pd.DataFrame) -> str:
    """The coefficient table as aligned text (coefficients in skill units)."""
    if table.empty:
        return "input utility: no grid runs with varying inputs."
    lines = ["input utility (skill ~ inputs + (1 | target)); * p<0.05 ** p<0.01 *** p<0.001"]
    lines.append(f"{'domain':<16} {'input':<13} {'coef':>7}  {'95% CI':<17} {'p':>7}  method")
    for r in table.itertuples():
        ci = f"[{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
        lines.append(
            f"{r.domain:<16} {r.input:<13} {r.coef:+.3f}  {ci:<17} {r.p_value:7.3g}"
            f"{significance(r.p_value):<4} {r.method}"
        )
    return "\n".join(lines)
