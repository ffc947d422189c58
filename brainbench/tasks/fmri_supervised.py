"""Run a subject-level fMRI task (fmri/age, fmri/sex, fmri/phenotype) on parcel time series.

Inputs are each subject's run (brainbench.data.timeseries.SubjectWindows: fixed windows of
`task_options.window` time points, robust-scaled with training statistics; models may use the
whole run, as `connectome` does). Scoring, per-stage metrics and run records are those of the
structural tasks (tasks/supervised.py). On the embedded cohort the oracle ceiling is fitted on
the fMRI generator's latents (true network correlations, loadings, motion...; not sex itself).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from pydantic import Field

from brainbench.config import ExperimentConfig, StrictModel, validate_section
from brainbench.data.dataset import target_value
from brainbench.data.splits import dataset_id, dataset_splits
from brainbench.data.timeseries import SubjectWindows, fmri_folder, locate_series, split_windows
from brainbench.results.leaderboard import write_oracle
from brainbench.tasks import get_task
from brainbench.tasks.oracle import oracle_payload
from brainbench.tasks.runs import is_global_zero, select_subjects, subset_tag
from brainbench.tasks.supervised import run_experiment  # noqa: F401  (this runner's)

NOT_ORACLE = ("sex_sign",)  # the generator's copy of a target


class FmriOptions(StrictModel):
    window: int = Field(80, ge=2, description="time points per window (a multiple of the patch)")
    demean: bool = Field(True, description="centre each run on its mean per parcel before scaling")
    target: str | None = Field(None, description="participants column replacing the task's")


def options(config: ExperimentConfig) -> FmriOptions:
    return validate_section(
        FmriOptions, config.task_options, [("task_options", config.task_options)], "task_options."
    )


def _has_target(record, target: str) -> bool:
    return target in ("age", "sex") or record.phenotypes.get(target) is not None


def prepare(config: ExperimentConfig, log) -> dict[str, SubjectWindows]:
    """Series of the dataset's split (subjects with a series and the target), scaler on train."""
    spec, opts = get_task(config.task), options(config)
    if opts.target:
        spec = replace(spec, target=opts.target)
    records, _ = dataset_splits(config.data, config.split, config.output_dir)
    files, coords = locate_series(config.data, records)
    chosen = select_subjects(
        config,
        lambda r: r.key in files and _has_target(r, spec.target),
        f"a parcel series and target '{spec.target}'",
    )
    datasets = split_windows(
        chosen,
        files,
        coords,
        opts.window,
        demean=opts.demean,
        target=lambda r: target_value(r, spec.target),
    )
    sizes = ", ".join(f"{name} {len(ds)}" for name, ds in datasets.items())
    log(f"{config.task}: {len(coords)} parcels, window {opts.window} ({sizes})")
    latents = fmri_folder(config.data) / "latents.tsv"
    if config.data.dataset == "synth" and is_global_zero() and not subset_tag(config):
        table = pd.read_csv(latents, sep="\t").set_index("participant_id")
        table = table.drop(columns=[c for c in NOT_ORACLE if c in table.columns])
        train, test = datasets["train"], datasets["test"]
        payload = oracle_payload(
            spec, table, (train.keys, train.targets), (test.keys, test.targets, test.ages)
        )
        write_oracle(config.output_dir, spec.name, payload | {"dataset": dataset_id(config.data)})
    return datasets
