"""Run a subject-level supervised task: source -> cache -> split -> model -> metrics -> record."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd

from brainbench.config import ExperimentConfig, home
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import VolumeDataset, has_target
from brainbench.data.sources.base import open_source
from brainbench.data.splits import dataset_id
from brainbench.errors import DataError
from brainbench.results.plots import plot_predictions
from brainbench.results.record import write_oracle
from brainbench.tasks import TaskSpec, get_task
from brainbench.tasks.oracle import oracle_payload
from brainbench.tasks.runs import (
    Evaluation,
    Experiment,
    is_global_zero,
    run_seeds,
    select_subjects,
    subset_tag,
    warm,
)
from brainbench.tasks.scoring import score


def prepare(config: ExperimentConfig, log) -> dict[str, VolumeDataset]:
    """Load records, take the dataset's split, keep subjects with the target, warm the cache."""
    spec = get_task(config.task)
    chosen = select_subjects(
        config,
        lambda r: has_target(r, spec.target),
        f"target '{spec.target}' (check participants.tsv)",
    )
    cache = VolumeCache(config.data.cache_dir or home() / "cache")
    datasets = {
        name: VolumeDataset(
            subset,
            list(spec.inputs),
            spec.target,
            config.preprocess,
            cache,
            mix=name == "train" and config.data.mix_renderings,
        )
        for name, subset in chosen.items()
    }
    warm(datasets, config, log)
    if spec.kind == "classification":
        check_classes(datasets["train"], config)
    oracle = open_source(config.data).latents("mri")
    if oracle is not None and is_global_zero() and not subset_tag(config):
        payload = oracle_payload(
            spec,
            oracle,
            (datasets["train"].keys, datasets["train"].targets),
            (datasets["test"].keys, datasets["test"].targets, datasets["test"].ages),
        )
        write_oracle(config.output_dir, spec.name, payload | {"dataset": dataset_id(config.data)})
    return datasets


def check_classes(train: VolumeDataset, config: ExperimentConfig) -> None:
    """DataError unless the training subjects hold at least two classes."""
    if len(np.unique(train.targets)) < 2:
        raise DataError(
            f"the {len(train)} training subjects of {config.task} (label_fraction="
            f"{config.label_fraction:g}, train_stages={config.train_stages}) hold one class "
            "only; raise label_fraction or widen train_stages."
        )


def evaluate(spec: TaskSpec, title: str, estimator, test: VolumeDataset) -> Evaluation:
    """One prediction per test subject, the task's metrics, and a predicted-vs-true plot."""
    y_pred = np.asarray(estimator.predict(test), dtype=float)
    metrics, per_stage = score(spec, test.targets, y_pred, test.ages)
    predictions = pd.DataFrame(
        {
            "subject": test.keys,
            "stage": test.stages,
            "age": test.ages,
            "y_true": test.targets,
            "y_pred": y_pred,
        }
    )
    files = {}
    if spec.kind == "regression":
        files["predictions.png"] = partial(
            plot_predictions, y_true=test.targets, y_pred=y_pred, ages=test.ages, title=title
        )
    return Evaluation(metrics, per_stage, predictions, files)


def run_experiment(
    experiment: Experiment, datasets: dict[str, VolumeDataset], *, force: bool, log
) -> list[Path]:
    """Train and score the model once per seed; write one run record per seed."""
    cfg = experiment.config
    title = f"{cfg.task} {cfg.model_name} ({experiment.protocol})"
    return run_seeds(
        experiment, datasets, partial(evaluate, experiment.spec, title), force=force, log=log
    )
