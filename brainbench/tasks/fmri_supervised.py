"""Run a subject-level fMRI task (fmri/age, fmri/sex, fmri/phenotype) on parcel time series.

Inputs are each subject's run (brainbench.data.timeseries.SubjectWindows: fixed windows of
`task_options.window` time points, robust-scaled with training statistics; models may use the
whole run, as `connectome` does). Scoring, per-stage metrics and run records are those of the
structural tasks (tasks/supervised.py). On the embedded cohort the oracle ceiling is fitted on
the fMRI generator's latents (coupling, loadings, motion, site acquisition and the true network
correlations, summarised by `oracle_latents`; not sex itself).
"""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
from pydantic import Field
from sklearn.decomposition import PCA

from brainbench.config import ExperimentConfig, StrictModel, validate_section
from brainbench.data.dataset import has_target, target_value
from brainbench.data.sources.base import open_source
from brainbench.data.splits import dataset_id, dataset_splits
from brainbench.data.timeseries import SubjectWindows, split_windows
from brainbench.results.record import write_oracle
from brainbench.tasks import get_task
from brainbench.tasks.oracle import oracle_payload
from brainbench.tasks.runs import is_global_zero, select_subjects, subset_tag
from brainbench.tasks.supervised import run_experiment  # noqa: F401  (this runner's)

FC_COMPONENTS = 2  # the true network correlations are a two-parameter family (coupling, sex)


class FmriOptions(StrictModel):
    window: int = Field(80, ge=2, description="time points per window (a multiple of the patch)")
    demean: bool = Field(True, description="centre each run on its mean per parcel before scaling")
    target: str | None = Field(None, description="participants column replacing the task's")


def options(config: ExperimentConfig) -> FmriOptions:
    return validate_section(
        FmriOptions, config.task_options, [("task_options", config.task_options)], "task_options."
    )


def oracle_latents(table: pd.DataFrame, train_keys: list[str]) -> pd.DataFrame:
    """The latents the oracle sees: the 91 true network correlations (fc_*) replaced by their
    first FC_COMPONENTS principal components on the training subjects; not `sex_sign` (sex).

    The correlations are a smooth function of coupling and sex, so two components keep about
    90% of their variance; as 91 collinear columns they swamped a fit on the debug cohort's 29
    training subjects, whose fmri/age ceiling fell below chance (MAE 25.0 against chance's
    24.9; 19.9 with the components, and 5.4 instead of 5.6 on the default cohort).
    """
    table = table.drop(columns=["sex_sign"], errors="ignore")  # sex itself, not its effect
    fc = [c for c in table.columns if c.startswith("fc_")]
    if not fc:
        return table
    pca = PCA(FC_COMPONENTS).fit(table.loc[train_keys, fc])
    names = [f"fc_component{i + 1}" for i in range(FC_COMPONENTS)]
    components = pd.DataFrame(pca.transform(table[fc]), index=table.index, columns=names)
    return pd.concat([table.drop(columns=fc), components], axis=1)


def prepare(config: ExperimentConfig, log) -> dict[str, SubjectWindows]:
    """Series of the dataset's split (subjects with a series and the target), scaler on train."""
    spec, opts = get_task(config.task), options(config)
    if opts.target:
        spec = replace(spec, target=opts.target)
    records, _ = dataset_splits(config.data, config.split, config.output_dir)
    source = open_source(config.data)
    files, coords = source.series(records)
    chosen = select_subjects(
        config,
        lambda r: r.key in files and has_target(r, spec.target),
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
    table = source.latents("fmri") if is_global_zero() and not subset_tag(config) else None
    if table is not None:
        train, test = datasets["train"], datasets["test"]
        payload = oracle_payload(
            spec,
            oracle_latents(table, train.keys),
            (train.keys, train.targets),
            (test.keys, test.targets, test.ages),
        )
        write_oracle(config.output_dir, spec.name, payload | {"dataset": dataset_id(config.data)})
    return datasets
