"""The multimodal legibility grid: targets x non-empty input combinations x seeds.

One run record per (target, combination, seed), written by the multimodal runner. `plan_grid`
lists the jobs; `run_grid` skips the finished ones (a run whose record is complete; a crashed
one left no complete record and is redone), runs the rest through brainbench.cluster, then
writes `<output_dir>/grid/multimodal.csv` (one row per run), `grid/legibility.csv` (one row per
target x combination with its legibility verdict, see `legibility`) and `grid/targets.json` (the
target graph: mutual information between targets across subjects) for the dashboard.
"""

from __future__ import annotations

import importlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

from brainbench.cluster import check_options, run_jobs
from brainbench.config import DataConfig, load_yaml
from brainbench.data.sources.base import open_source
from brainbench.data.splits import dataset_splits
from brainbench.errors import ConfigError, ResultsError
from brainbench.memory import check_experiments
from brainbench.models.fusion import IMAGE_INPUTS, INPUTS, combination_name
from brainbench.owners import locked
from brainbench.resolve import resolve_config
from brainbench.results.leaderboard import mark_configs
from brainbench.results.record import atomic_write_text, is_complete, read_records, to_json
from brainbench.spec import PREDICTIONS, RECORD_CONFIG, REPORTS_LOCK
from brainbench.tasks import all_tasks, get_task
from brainbench.tasks.runs import Experiment

PREFIX = "multimodal/"
GRID_DIR = "grid"
CSV_NAME, GRAPH_NAME, LEGIBILITY_NAME = "multimodal.csv", "targets.json", "legibility.csv"
CELL = ["target", "inputs", "config"]  # config: the short digest where a pair's runs differ
ALPHA = 0.05  # family-wise error rate of the legibility verdicts (Holm over the grid's cells)
Log = Callable[[str], None]


def grid_targets(targets: Sequence[str] | None) -> list[str]:
    """Task names of the requested targets ('age' or 'multimodal/age'); default: all."""
    known = sorted(name for name in all_tasks() if name.startswith(PREFIX))
    if not targets:
        return known
    names = [t if t.startswith(PREFIX) else PREFIX + t for t in targets]
    bad = [t for t in names if t not in known]
    if bad:
        valid = ", ".join(k.removeprefix(PREFIX) for k in known)
        raise ConfigError(f"unknown grid targets {bad}; valid targets: {valid}.")
    return list(dict.fromkeys(names))


def grid_model(task: str) -> str:
    """The model a grid runs on a target: the one its multimodal task names (it takes any
    combination of inputs as `model.inputs`)."""
    return get_task(task).models[0]


def combinations(inputs: Sequence[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset of `inputs` (canonical order, smallest first)."""
    bad = [i for i in inputs if i not in INPUTS]
    if bad:
        raise ConfigError(f"unknown inputs {bad}; valid inputs: {', '.join(INPUTS)}.")
    ordered = [name for name in INPUTS if name in inputs]
    combos = [c for k in range(1, len(ordered) + 1) for c in itertools.combinations(ordered, k)]
    if not combos:
        raise ConfigError("the grid has zero input combinations; pass at least one --inputs.")
    return combos


@dataclass(frozen=True)
class GridJob:
    """One run of the grid: picklable, so a process pool or Slurm can execute it."""

    task: str
    inputs: tuple[str, ...]
    offered: tuple[str, ...]
    seed: int | None  # None: the config's seeds (only to resolve the config)
    options: dict = field(default_factory=dict)  # resolve_config keywords (dataset, overrides..)
    force: bool = False

    def experiment(self) -> Experiment:
        overrides = [
            *self.options.get("overrides", ()),
            f"model.inputs=[{','.join(self.inputs)}]",
            f"task_options.inputs=[{','.join(self.offered)}]",
        ]
        if self.seed is not None:
            overrides.append(f"seeds=[{self.seed}]")
        model = grid_model(self.task)
        return resolve_config(self.task, model, **(self.options | {"overrides": overrides}))

    def run_dir(self) -> Path:
        return self.experiment().run_dirs()[0]

    def check(self) -> None:
        """Raise the dataset's errors (missing input, unusable target) before any run starts."""
        exp = self.experiment()
        importlib.import_module(exp.spec.runner).check(exp.config)

    def __call__(self) -> list[str]:
        exp = self.experiment()
        runner = importlib.import_module(exp.spec.runner)
        prepared = runner.prepare(exp.config, _quiet)
        return [str(p) for p in runner.run_experiment(exp, prepared, force=self.force, log=_quiet)]


def _quiet(message: str) -> None:
    """Worker processes keep the grid's output to one line per job."""


def plan_grid(
    targets: Sequence[str] | None,
    inputs: Sequence[str],
    seeds: Sequence[int] | None,
    *,
    options: dict,
    force: bool = False,
) -> list[GridJob]:
    """Every (target, combination, seed) job; seeds default to the resolved config's."""
    offered = tuple(name for name in INPUTS if name in inputs)
    combos = combinations(inputs)
    jobs = []
    for task in grid_targets(targets):
        for seed in (
            seeds or GridJob(task, offered, offered, None, options).experiment().config.seeds
        ):
            jobs += [GridJob(task, combo, offered, seed, options, force) for combo in combos]
    return jobs


def run_grid(
    jobs: list[GridJob],
    *,
    workers: int = 1,
    cluster: str = "local",
    partition: str | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """Run the unfinished jobs, aggregate the grid CSVs and target graph; return the cells."""
    if not jobs:
        raise ConfigError("the grid has no runs: give at least one target, input and seed.")
    first = jobs[0].experiment().config
    output_dir = first.output_dir
    todo = [job for job in jobs if job.force or not is_complete(job.run_dir())]
    log(f"grid: {len(jobs)} runs, {len(jobs) - len(todo)} finished already, {len(todo)} to run")
    check_options(workers, cluster, partition)
    firsts = [
        next(job for job in todo if job.task == t) for t in dict.fromkeys(j.task for j in todo)
    ]
    for job in firsts:
        job.check()
    check_experiments([job.experiment() for job in firsts])
    outcomes = run_jobs(
        todo,
        workers=workers,
        cluster=cluster,
        partition=partition,
        folder=output_dir / "cluster",
        log=log,
    )
    failed = []
    for job, outcome in zip(todo, outcomes, strict=True):
        what = f"{job.task} [{combination_name(job.inputs)}] seed {job.seed}"
        log(f"  {what}: {'done' if outcome.ok else 'FAILED: ' + str(outcome.error)}")
        if not outcome.ok:
            failed.append(what)
    cells = write_grid_csv(output_dir)
    write_target_graph(output_dir, sorted({j.task for j in jobs}), jobs[0].options)
    log(format_legibility(cells))
    log(f"wrote {output_dir / GRID_DIR / CSV_NAME} and {LEGIBILITY_NAME} ({len(cells)} cells)")
    if failed:
        raise ResultsError(
            f"{len(failed)} grid runs failed: {'; '.join(failed)}. Fix the cause and rerun the "
            "same command: finished runs are kept."
        )
    return cells


# --- aggregation ------------------------------------------------------------------------------


def chance_test(kind: str, predictions: pd.DataFrame) -> tuple[float, float]:
    """(skill, one-sided p-value against chance) of y_pred for y_true.

    Regression: skill is Pearson r, the test Spearman's rho > 0 (rank-based, so skewed targets
    such as crp keep their nominal error rate). Classification: skill is 2 * AUROC - 1, the
    test Mann-Whitney U (AUROC > 0.5). NaN where undefined (constant values, one class).
    """
    t, p = predictions["y_true"].to_numpy(float), predictions["y_pred"].to_numpy(float)
    ok = np.isfinite(t) & np.isfinite(p)
    t, p = t[ok], p[ok]
    if kind == "regression":
        if len(t) < 3 or np.ptp(p) == 0 or np.ptp(t) == 0:
            return float("nan"), float("nan")
        pvalue = stats.spearmanr(t, p, alternative="greater").pvalue
        return float(stats.pearsonr(t, p).statistic), float(pvalue)
    pos, neg = p[t == 1], p[t == 0]
    if not len(pos) or not len(neg):
        return float("nan"), float("nan")
    test = stats.mannwhitneyu(pos, neg, alternative="greater")
    return float(2 * test.statistic / (len(pos) * len(neg)) - 1), float(test.pvalue)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN counts as 1."""
    p = np.nan_to_num(np.asarray(p_values, dtype=float), nan=1.0)
    order = np.argsort(p, kind="stable")
    steps = (len(p) - np.arange(len(p))) * p[order]
    adjusted = np.empty_like(p)
    adjusted[order] = np.minimum(np.maximum.accumulate(steps), 1.0)
    return adjusted


def seed_averaged(predictions: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per test subject of every run: y_true and y_pred averaged over the runs (seeds)."""
    both = pd.concat(predictions, ignore_index=True)
    table = both.groupby("subject").agg(
        y_true=("y_true", "first"), y_pred=("y_pred", "mean"), runs=("y_pred", "size")
    )
    return table[table["runs"] == len(predictions)]


def expected_legibility(inputs: Sequence[str], info: dict) -> str:
    """The ground truth for a cell: 'legible', 'not legible' or '' (none known).

    `info` is what the dataset's source knows of the target column (Source.column_domains);
    only generated data knows whether a column carries an imaging signal. A column drawn
    independently of everything (ImagingSignal false) is legible from nothing; one with an
    imaging signal is legible from the structural images, and from connectivity when the
    parcel series carry it too (FmriSignal). Other cells (e.g. metadata only) have none.
    """
    signal = info.get("ImagingSignal")
    if signal is None:
        return ""
    if not signal:
        return "not legible"
    structural = any(name in IMAGE_INPUTS for name in inputs)
    functional = "connectivity" in inputs and info.get("FmriSignal", False)
    return "legible" if structural or functional else ""


def legibility(
    runs: pd.DataFrame, predictions: dict[str, pd.DataFrame], known: dict[str, dict] | None = None
) -> pd.DataFrame:
    """One row per (target, inputs, config) cell, its verdict tested over all its seeds, and the
    expected verdict where `known` (target -> Source.column_domains() entry) gives one. Runs of
    a (target, inputs) pair made with different configs (`config`: their short digest, see
    grid_table) are separate cells, never averaged.

    The seeds share one test set, so their p-values are dependent and Fisher's or Stouffer's
    combination would overstate the evidence; the cell's test is instead the chance test of the
    seed-averaged prediction (valid: under no signal it is independent of the test targets).
    Holm's correction over every cell of the grid keeps the chance of any false 'legible' at
    ALPHA.
    """
    rows = []
    runs = runs.assign(config=runs.get("config", ""))
    for (target, inputs, config), part in runs.groupby(CELL, sort=False):
        averaged = seed_averaged([predictions[path] for path in part["path"]])
        skill_avg, p_cell = chance_test(part["kind"].iloc[0], averaged)
        expected = expected_legibility(inputs.split("+"), (known or {}).get(target, {}))
        rows.append(
            {
                "target": target,
                "inputs": inputs,
                "config": config,
                "n_seeds": len(part),
                "n_test": len(averaged),
                "skill": part["skill"].mean(),
                "skill_averaged": skill_avg,
                "p_cell": p_cell,
                "imaging_signal": part["imaging_signal"].iloc[0],
                "expected": expected,
            }
        )
    cells = pd.DataFrame(rows)
    cells["p_holm"] = holm(cells["p_cell"]) if len(cells) else []
    cells["verdict"] = np.where(cells["p_holm"] < ALPHA, "legible", "not legible")
    agrees = np.where(cells["verdict"] == cells["expected"], "yes", "no")
    cells["agrees"] = np.where(cells["expected"] == "", "", agrees)
    return cells


def skill(kind: str, metrics: dict) -> float:
    """A chance-at-zero score comparable across targets: Pearson r, or 2 * AUROC - 1."""
    if kind == "regression":
        value = metrics.get("pearson_r")
    else:
        value = None if metrics.get("auroc") is None else 2 * metrics["auroc"] - 1
    return float("nan") if value is None else float(value)


def grid_table(results_dir: Path | str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per grid run record under results_dir, one row per cell: `legibility`).

    Each run's row also holds its cell's p_cell, p_holm, verdict, expected and agrees.
    """
    rows, predictions, known = [], {}, {}
    for record in read_records(results_dir):
        if not (
            record["task"].startswith(PREFIX) and record["model"] == grid_model(record["task"])
        ):
            continue
        path = Path(record["path"])
        config = load_yaml(path / RECORD_CONFIG)
        inputs = list(config["model_params"]["inputs"])
        spec = get_task(record["task"])
        target, metrics = spec.target, record["metrics"]
        info = _column_domains(config["data"]).get(target, {})
        try:
            predictions[str(path)] = pd.read_csv(path / PREDICTIONS)
        except (OSError, ValueError) as exc:
            raise ResultsError(f"{path}/predictions.csv is unreadable ({exc}).") from exc
        row = {
            "target": target,
            "task": record["task"],
            "inputs": combination_name(inputs),
            "n_inputs": len(inputs),
            "domain": info.get("Domain", ""),
            "imaging_signal": info.get("ImagingSignal"),
            "kind": spec.kind,
            "seed": record["seed"],
            "dataset": record["dataset"],
            "headline": record["headline"]["name"],
            "headline_value": record["headline"]["value"],
            **{m: metrics.get(m) for m in ("balanced_accuracy", "auroc", "f1")},
            **{m: metrics.get(m) for m in ("mae", "r2", "pearson_r")},
            "skill": skill(spec.kind, metrics),
            "p_value": chance_test(spec.kind, predictions[str(path)])[1],
            "n_test": record["n_test"],
            "train_s": record["timings"]["fit_s"],
            **{f"uses_{name}": "yes" if name in inputs else "no" for name in INPUTS},
            "per_stage": json.dumps(
                {s: skill(spec.kind, v) for s, v in record["per_stage"].items()}
            ),
            "config_digest": record.get("config_digest"),
            "path": str(path),
        }
        rows.append(row)
        known[target] = info
    if not rows:
        return pd.DataFrame(), pd.DataFrame()
    rows = mark_configs(rows, group=("task", "dataset", "inputs"))
    runs = pd.DataFrame(rows).sort_values(["target", "n_inputs", "inputs", "config", "seed"])
    cells = legibility(runs, predictions, known)
    verdicts = cells[[*CELL, "p_cell", "p_holm", "verdict", "expected", "agrees"]]
    return runs.merge(verdicts, on=CELL, how="left"), cells


def _column_domains(data: dict) -> dict:
    """Source.column_domains() of the dataset a run's resolved config names."""
    return open_source(DataConfig.model_validate(data)).column_domains()


def write_grid_csv(output_dir: Path | str) -> pd.DataFrame:
    """grid/multimodal.csv (one row per run) and grid/legibility.csv (per cell); the cells."""
    with locked(Path(output_dir) / REPORTS_LOCK):  # see results/leaderboard.py write_reports
        table, cells = grid_table(output_dir)
        atomic_write_text(Path(output_dir) / GRID_DIR / CSV_NAME, table.to_csv(index=False))
        atomic_write_text(Path(output_dir) / GRID_DIR / LEGIBILITY_NAME, cells.to_csv(index=False))
    return cells


def target_values(tasks: Sequence[str], options: dict) -> pd.DataFrame:
    """Subjects x targets (numbers; binary targets 0/1; NaN where missing) of the dataset."""
    from brainbench.tasks.multimodal import options_of, target_coder

    columns = {}
    records = None
    for task in tasks:
        job = GridJob(task, ("metadata",), ("metadata",), None, options)
        config = job.experiment().config
        if records is None:
            records, _ = dataset_splits(config.data, config.split, config.output_dir)
        code = target_coder(get_task(task), options_of(config), records)
        columns[get_task(task).target] = [code(r) for r in records]
    return pd.DataFrame(columns, index=[r.key for r in records or []], dtype=float)


def mutual_information(values: pd.DataFrame, kinds: dict[str, str]) -> list[dict]:
    """Pairwise mutual information (nats, k-NN estimator) between targets, on shared subjects."""
    edges = []
    for a, b in itertools.combinations(values.columns, 2):
        both = values[[a, b]].dropna()
        if len(both) < 10:
            continue
        x = both[[a]].to_numpy()
        y = both[b].to_numpy()
        estimate = mutual_info_classif if kinds[b] == "classification" else mutual_info_regression
        mi = estimate(x, y, discrete_features=kinds[a] == "classification", random_state=0)[0]
        edges.append({"source": a, "target": b, "mi": round(float(mi), 4), "n": len(both)})
    return edges


def format_legibility(cells: pd.DataFrame) -> str:
    """The cells as a text table: skill, p-values, verdict and the cohort's ground truth."""
    if cells.empty:
        return "no grid runs"
    mixed = ["config"] if cells["config"].any() else []
    shown = cells[
        ["target", "inputs", *mixed, "n_seeds", "n_test", "skill", "skill_averaged", "p_cell"]
        + ["p_holm", "verdict", "expected", "agrees"]
    ]
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3g}")


def write_target_graph(output_dir: Path | str, tasks: Sequence[str], options: dict) -> Path:
    """grid/targets.json: nodes (target, kind, domain, imaging signal) and MI edges."""
    values = target_values(tasks, options)
    kinds = {get_task(t).target: get_task(t).kind for t in tasks}
    data = GridJob(tasks[0], ("metadata",), ("metadata",), None, options).experiment().config.data
    known = open_source(data).column_domains()
    nodes = [
        {
            "target": get_task(t).target,
            "kind": get_task(t).kind,
            "domain": known.get(get_task(t).target, {}).get("Domain", ""),
            "imaging_signal": known.get(get_task(t).target, {}).get("ImagingSignal"),
        }
        for t in tasks
    ]
    graph = {"nodes": nodes, "edges": mutual_information(values, kinds)}
    return atomic_write_text(Path(output_dir) / GRID_DIR / GRAPH_NAME, to_json(graph))
