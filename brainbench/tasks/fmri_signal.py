"""Run fmri/recon (masked-patch reconstruction) and fmri/forecast on held-out subjects' windows.

A model here exposes `reconstruct(x, hidden) -> x_hat` on scaled windows (B, parcels, time)
(brainlm, and the baselines of models/fmri_baselines.py). recon hides a random share of the
patches (`patch` time points of one parcel) at every ratio of `ratios`, with the same fixed
masks for every model, and scores MSE, MAE, R^2 and Pearson r on the hidden values; the
headline is at `ratio`. forecast hides the last `horizon` time points of every parcel.
Per-stage metrics pool the hidden values of the stage's subjects.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from brainbench.config import ExperimentConfig, validate_section
from brainbench.data.sources.base import open_source
from brainbench.data.splits import dataset_splits
from brainbench.data.timeseries import SubjectWindows, split_windows
from brainbench.errors import ConfigError
from brainbench.metrics import signal_metrics
from brainbench.models.brainlm_mae import reconstruct
from brainbench.stages import STAGE_NAMES
from brainbench.tasks import TaskSpec
from brainbench.tasks.fmri_supervised import FmriOptions
from brainbench.tasks.runs import Evaluation, Experiment, run_seeds, select_subjects


class SignalOptions(FmriOptions):
    patch: int = Field(20, ge=1, description="time points per masked patch (the model's patch)")
    ratios: list[float] = Field([0.2, 0.5, 0.75, 0.9], min_length=1, description="recon ratios")
    ratio: float = Field(0.75, gt=0, lt=1, description="recon: the headline mask ratio")
    horizon: int = Field(20, ge=1, description="forecast: time points predicted")

    @model_validator(mode="after")
    def _check(self) -> SignalOptions:
        if self.window % self.patch:
            raise ValueError(f"window ({self.window}) must be a multiple of patch ({self.patch})")
        if self.horizon >= self.window:
            raise ValueError(f"horizon ({self.horizon}) must be shorter than window")
        return self


def options(config: ExperimentConfig) -> SignalOptions:
    return validate_section(
        SignalOptions, config.task_options, [("task_options", config.task_options)], "task_options."
    )


def prepare(config: ExperimentConfig, log) -> dict[str, SubjectWindows]:
    return series_splits(config, options(config), log)


def series_splits(config: ExperimentConfig, opts: FmriOptions, log) -> dict[str, SubjectWindows]:
    """Windows of the split's subjects that have a parcel series; the scaler fitted on train.

    These tasks have models that need no training, so a dataset too small to split is
    accepted: every subject is a test subject (see select_subjects).
    """
    records, _ = dataset_splits(config.data, config.split, config.output_dir, training=False)
    files, coords = open_source(config.data).series(records)
    chosen = select_subjects(config, lambda r: r.key in files, "a parcel series", training=False)
    datasets = split_windows(chosen, files, coords, opts.window, demean=opts.demean)
    sizes = ", ".join(f"{name} {len(ds)}" for name, ds in datasets.items())
    log(f"{config.task}: {len(coords)} parcels, window {opts.window} ({sizes})")
    return datasets


def _forecast(predict, data: SubjectWindows, horizon: int):
    """(true, predicted, sample index) of the last `horizon` time points of every window."""
    truth, preds, owner = [], [], []
    with torch.inference_mode():
        for i in range(len(data)):
            x = data[i][0][None]
            hidden = torch.zeros_like(x, dtype=torch.bool)
            hidden[..., -horizon:] = True
            pred = predict(x, hidden)
            truth.append(x[hidden].numpy())
            preds.append(pred[hidden].numpy())
            owner.append(np.full(int(hidden.sum()), i))
    return np.concatenate(truth), np.concatenate(preds), np.concatenate(owner)


def evaluate(spec: TaskSpec, opts: SignalOptions, estimator, test: SubjectWindows) -> Evaluation:
    """Task metrics overall (and per ratio for recon), per stage and per subject."""
    predict = estimator.reconstruct
    metrics: dict[str, float] = {}
    if spec.kind == "reconstruction":
        for ratio in opts.ratios:
            truth, pred, _ = reconstruct(predict, test, ratio, opts.patch)
            for name, value in signal_metrics(truth, pred).items():
                metrics[f"{name}_mask{ratio:g}"] = value
        truth, pred, owner = reconstruct(predict, test, opts.ratio, opts.patch)
    else:
        truth, pred, owner = _forecast(predict, test, opts.horizon)
    metrics |= {k: v for k, v in signal_metrics(truth, pred).items() if k in spec.metrics}
    stages = np.array(test.stages)[owner]
    per_stage = {
        stage: {
            **signal_metrics(truth[stages == stage], pred[stages == stage]),
            "n": int(np.sum(np.array(test.stages) == stage)),
        }
        for stage in STAGE_NAMES
        if (stages == stage).any()
    }
    rows = []
    for i, key in enumerate(test.keys):
        scores = signal_metrics(truth[owner == i], pred[owner == i])
        rows.append({"subject": key, "stage": test.stages[i], "age": test.ages[i], **scores})
    return Evaluation(metrics, per_stage, pd.DataFrame(rows))


def run_experiment(
    experiment: Experiment, datasets: dict[str, SubjectWindows], *, force: bool, log
) -> list[Path]:
    """Fit (pretrain, or nothing for a baseline) and score once per seed; one record per seed."""
    opts = options(experiment.config)
    patch = experiment.params.model_dump().get("patch")
    if patch is not None and patch != opts.patch:
        raise ConfigError(
            f"model.patch={patch} differs from task_options.patch={opts.patch}; make them agree."
        )
    evaluate_fn = partial(evaluate, experiment.spec, opts)
    return run_seeds(experiment, datasets, evaluate_fn, force=force, log=log)
