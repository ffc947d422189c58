"""What every task runner shares: the resolved experiment and the seed loop.

A runner (tasks/supervised.py for scalar targets, tasks/voxelwise.py for volumes) prepares its
datasets and scores a fitted estimator on the test split; `run_seeds` does the rest: fit once
per seed (once per epoch budget when trainer.max_epochs lists several, keeping the fit with the
lowest validation loss), time it, and write one atomic run record per seed. Only global rank 0
writes.
"""

from __future__ import annotations

import hashlib
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
from pydantic import BaseModel

from brainbench.config import ExperimentConfig, TrainerConfig, config_to_dict, flatten
from brainbench.data.dataset import VolumeDataset, target_value
from brainbench.data.ood import PROFILE_FILE, fit_profiles, write_profiles
from brainbench.data.records import SubjectRecord, count_text
from brainbench.data.splits import (
    MIN_SUBJECTS,
    dataset_id,
    dataset_splits,
    save_split,
    split_file,
)
from brainbench.data.subsets import in_stages, label_subset
from brainbench.errors import ConfigError, DataError
from brainbench.owners import owner_tag, remove_dead
from brainbench.registry import get_model
from brainbench.results.record import (
    environment_info,
    is_complete,
    peak_memory_mb,
    run_dir,
    write_record,
)
from brainbench.spec import WEIGHTS
from brainbench.tasks import TaskSpec, get_task
from brainbench.tasks.scoring import headline

SUBSET_KEYS = ("label_fraction", "train_stages", "test_stages")


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment: the config and the model's validated parameters."""

    config: ExperimentConfig
    params: BaseModel

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.config.task)

    @property
    def protocol(self) -> str:
        return get_model(self.config.model_name).protocol_of(self.params)

    def run_dirs(self) -> list[Path]:
        """One folder per seed; the protocol is part of it so scratch and finetune coexist."""
        cfg = self.config
        tag = f"{self.protocol}_{dataset_id(cfg.data)}{subset_tag(cfg)}"
        return [run_dir(cfg.output_dir, cfg.task, cfg.model_name, s, tag) for s in cfg.seeds]


@dataclass
class Evaluation:
    """A fitted model scored on the test split."""

    metrics: dict[str, float]
    per_stage: dict[str, dict[str, float]]
    predictions: pd.DataFrame  # one row per test subject
    files: dict[str, Callable[[Path], None]] = field(default_factory=dict)  # extra record files


Evaluate = Callable[[Any, Any], Evaluation]  # (fitted estimator, test dataset) -> Evaluation


def select_subjects(
    config: ExperimentConfig,
    keep: Callable[[SubjectRecord], bool],
    having: str,
    *,
    training: bool = True,
) -> dict[str, list[SubjectRecord]]:
    """The dataset's shared split, restricted to the subjects `keep` accepts (2+ per split).

    Train and val keep the `train_stages`, test the `test_stages`; then train keeps the nested
    `label_fraction` subset (data/subsets.py). `having` says what a kept subject has, for the
    error message. A task that can run models without training (`training=False`) accepts a
    dataset too small to split: every subject is then a test subject (1+), and run_seeds
    refuses the models that train.
    """
    records, splits = dataset_splits(
        config.data, config.split, config.output_dir, training=training
    )
    by_key = {r.key: r for r in records}
    chosen = {name: [by_key[k] for k in keys if keep(by_key[k])] for name, keys in splits.items()}
    for name, stages in [("train", config.train_stages), ("val", config.train_stages)]:
        chosen[name] = in_stages(chosen[name], stages)
    chosen["test"] = in_stages(chosen["test"], config.test_stages)
    least = {"train": 2, "val": 2, "test": 2} if splits["train"] else {"test": 1}
    short = [name for name, n in least.items() if len(chosen[name]) < n]
    if short:
        within = " within train_stages/test_stages" if subset_tag(config) else ""
        raise DataError(
            f"dataset '{config.data.dataset}' has fewer than {least[short[0]]} subjects with "
            f"{having}{within} in the {', '.join(short)} split."
        )
    spec = get_task(config.task)
    label = partial(target_value, name=spec.target) if spec.kind == "classification" else None
    chosen["train"] = label_subset(chosen["train"], config.label_fraction, config.split.seed, label)
    return chosen


def label_budget(config: ExperimentConfig) -> TrainerConfig:
    """The trainer of a run: a label-fraction run keeps the full training set's budget.

    Unless trainer.epoch_passes is set, an epoch of a run on label_fraction f of the training
    subjects passes 1/f times over them, so every fraction gets about the same number of
    optimisation steps and validations as the full set.
    """
    trainer = config.trainer
    if trainer.epoch_passes is not None:
        return trainer
    return trainer.model_copy(update={"epoch_passes": 1.0 / min(config.label_fraction, 1.0)})


def budget_loss(info: dict[str, Any], n_budgets: int) -> float:
    """The validation loss by which a fit competes with the other epoch budgets of its run."""
    loss = float(info.get("best_val_loss", math.nan))
    if n_budgets > 1 and not math.isfinite(loss):
        raise ConfigError(
            f"trainer.max_epochs lists {n_budgets} budgets, to keep the one with the lowest "
            f"validation loss, but a fit reported a validation loss of {loss}; give a single "
            "number of epochs (e.g. trainer.max_epochs=20)."
        )
    return loss


def fit_best_budget(
    experiment: Experiment, datasets: dict[str, Any], seed: int, work_root: Path
) -> tuple[Any, dict[str, Any]]:
    """The estimator fitted for `seed` and its fit info: once per epoch budget of the trainer
    (TrainerConfig.budgets), keeping the fit with the lowest validation loss (the earlier on a
    tie); with several budgets the info adds the chosen `max_epochs` and every budget's loss."""
    config, entry = experiment.config, get_model(experiment.config.model_name)
    budgets = label_budget(config).budgets()
    if entry.kind != "torch":
        budgets = budgets[:1]  # epochs mean nothing to it
    losses: dict[int, float] = {}  # validation loss per epoch budget
    for trainer in budgets:
        fitted = entry.build(experiment.params, task=experiment.spec, trainer=trainer)
        if isinstance(datasets["train"], VolumeDataset):
            datasets["train"].reseed(seed)  # its renderings drawn alike whatever ran before
        with tempfile.TemporaryDirectory(dir=work_root, prefix=f"{owner_tag()}.") as work:
            fit_info = fitted.fit(datasets["train"], datasets["val"], seed=seed, run_dir=Path(work))
        loss = budget_loss(fit_info, len(budgets))
        if not losses or loss < min(losses.values()):  # the best budget so far
            best, chosen = (fitted, fit_info), trainer.max_epochs
        losses[trainer.max_epochs] = loss
    if len(losses) == 1:
        return best
    estimator, info = best
    return estimator, info | {"max_epochs": chosen, "epoch_budgets": losses}


def subset_tag(config: ExperimentConfig) -> str:
    """The run-folder suffix of a label fraction or stage restriction ('' for none)."""
    tag = "" if config.label_fraction == 1.0 else f"_labels{config.label_fraction:g}"
    for name, stages in [("train", config.train_stages), ("test", config.test_stages)]:
        tag += f"_{name}-{'.'.join(stages)}" if stages is not None else ""
    return tag


def subset_fields(config: ExperimentConfig) -> dict[str, Any]:
    """The run-record fields of the training-label fraction and the stage restriction."""
    return {key: getattr(config, key) for key in SUBSET_KEYS}


def warm(datasets: dict[str, Any], config: ExperimentConfig, log) -> None:
    """Report the split sizes and preprocess every subject once (later reads hit the cache)."""
    sizes = ", ".join(f"{name} {len(ds)}" for name, ds in datasets.items())
    n = count_text(r for ds in datasets.values() for r in ds.records)
    log(f"{config.task}: {n} from '{config.data.dataset}' ({sizes})")
    for ds in datasets.values():
        ds.warm()


def config_digest(config: ExperimentConfig) -> str:
    """Hash of everything that changes a run's result (not where it is written)."""
    payload = config_to_dict(config)
    for key in ("output_dir", "seeds"):
        payload.pop(key)
    for key in SUBSET_KEYS:  # left out at their defaults: digests of older records stay valid
        if payload[key] == ExperimentConfig.model_fields[key].default:
            payload.pop(key)
    if not payload["data"]["filters"]:  # digests of records older than data.filters stay valid
        payload["data"].pop("filters")
    payload["trainer"].pop("progress_bar")
    passes = label_budget(config).epoch_passes  # the budget a run trains with
    payload["trainer"].pop("epoch_passes")
    if passes != 1.0:  # full-data digests of older records stay valid
        payload["trainer"]["epoch_passes"] = passes
    return hashlib.sha256(repr(sorted(flatten(payload).items())).encode()).hexdigest()[:16]


def is_global_zero() -> bool:
    """False in the extra processes that Lightning's `ddp` launches or a cluster starts.

    Lightning re-runs the whole command once per extra device; those processes take part in
    training but must not write records, oracles or the leaderboard.
    """
    return all(int(os.environ.get(v, "0")) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def run_seeds(
    experiment: Experiment, datasets: dict[str, Any], evaluate: Evaluate, *, force: bool, log
) -> list[Path]:
    """Fit (per epoch budget, the best on validation kept) and score the model once per seed;
    write one run record per seed."""
    config, spec = experiment.config, experiment.spec
    entry = get_model(config.model_name)
    # no datasets: every run is complete already; an empty training split: too few subjects
    if datasets and not datasets["train"] and entry.learns(experiment.params, spec):
        raise DataError(
            f"dataset '{config.data.dataset}' has fewer than {MIN_SUBJECTS} subjects, so all "
            f"are test subjects and none are left to train {config.model_name} on for "
            f"{spec.name}. Add subjects, or run a model that needs no training here (a fit-free "
            "baseline, or a pretrained model used as it is)."
        )
    written: list[Path] = []
    rank_zero = is_global_zero()
    if not rank_zero and entry.kind != "torch":
        return written  # only distributed training needs the extra processes
    for seed, rdir in zip(config.seeds, experiment.run_dirs(), strict=True):
        if is_complete(rdir) and not force:
            log(f"  {config.model_name} seed {seed}: done already ({rdir}); --force reruns it")
            continue
        log(f"  {config.model_name} seed {seed}: fitting")
        start = time.perf_counter()
        work_root = config.output_dir / ".work"
        work_root.mkdir(parents=True, exist_ok=True)
        remove_dead(work_root, "")  # scratch folders of runs that were killed
        estimator, info = fit_best_budget(experiment, datasets, seed, work_root)
        if not rank_zero:
            continue
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        result = evaluate(estimator, datasets["test"])
        predict_s = time.perf_counter() - start
        payload = {
            "task": spec.name,
            "task_version": spec.version,
            "model": config.model_name,
            "protocol": experiment.protocol,
            "seed": seed,
            "dataset": dataset_id(config.data),
            **subset_fields(config),
            "config_digest": config_digest(config),
            "headline": headline(spec, result.metrics),
            "metrics": result.metrics,
            "per_stage": result.per_stage,
            "n_train": len(datasets["train"]),
            "n_val": len(datasets["val"]),
            "n_test": len(datasets["test"]),
            "training": info,
            "timings": {"fit_s": fit_s, "predict_s": predict_s, "total_s": fit_s + predict_s},
            "peak_memory_mb": peak_memory_mb(),
            **environment_info(),
        }
        files = {WEIGHTS: estimator.save, **result.files}
        if isinstance(datasets["train"], VolumeDataset):
            profiles = fit_profiles(datasets["train"])
            files[PROFILE_FILE] = lambda path, fitted=profiles: write_profiles(fitted, path)
        save_split(split_file(config.data, config.split, config.output_dir))
        written.append(
            write_record(
                rdir,
                config=config_to_dict(config) | {"model_params": experiment.params.model_dump()},
                metrics=payload,
                predictions=result.predictions,
                files=files,
            )
        )
        value = result.metrics[spec.headline]
        log(f"  {config.model_name} seed {seed}: {spec.headline} = {value:.3f}")
    return written
