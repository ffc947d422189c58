"""Run a subject-level supervised task: source -> cache -> split -> model -> metrics -> record."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from brainbench.config import ExperimentConfig, config_to_dict, home
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import VolumeDataset
from brainbench.data.records import SubjectRecord
from brainbench.data.splits import dataset_id, dataset_splits
from brainbench.errors import DataError
from brainbench.registry import get_model, get_source
from brainbench.results.leaderboard import write_oracle
from brainbench.results.plots import plot_predictions
from brainbench.results.record import (
    environment_info,
    is_complete,
    peak_memory_mb,
    run_dir,
    write_record,
)
from brainbench.tasks import TaskSpec, get_task
from brainbench.tasks.oracle import oracle_payload
from brainbench.tasks.scoring import headline, score


@dataclass(frozen=True)
class Experiment:
    """A resolved experiment: the config and the model's validated parameters."""

    config: ExperimentConfig
    params: BaseModel

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.config.task)

    def run_dirs(self) -> list[Path]:
        tag = dataset_id(self.config.data)
        out = self.config.output_dir
        return [
            run_dir(out, self.config.task, self.config.model_name, s, tag)
            for s in self.config.seeds
        ]


def config_digest(config: ExperimentConfig) -> str:
    """Hash of everything that changes a run's result (not where it is written)."""
    payload = config_to_dict(config)
    for key in ("output_dir", "seeds"):
        payload.pop(key)
    payload["trainer"].pop("progress_bar")
    return hashlib.sha256(repr(sorted(_flatten(payload).items())).encode()).hexdigest()[:16]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def is_global_zero() -> bool:
    """False in the extra processes that Lightning's `ddp` launches or a cluster starts.

    Lightning re-runs the whole command once per extra device; those processes take part in
    training but must not write records, splits' oracles or the leaderboard.
    """
    return all(int(os.environ.get(v, "0")) == 0 for v in ("RANK", "LOCAL_RANK", "NODE_RANK"))


def _has_target(record: SubjectRecord, target: str) -> bool:
    return target in ("age", "sex") or record.phenotypes.get(target) is not None


def prepare(config: ExperimentConfig, log) -> dict[str, VolumeDataset]:
    """Load records, take the dataset's split, keep subjects with the target, warm the cache."""
    spec = get_task(config.task)
    records, splits = dataset_splits(config.data, config.split, config.output_dir)
    by_key = {r.key: r for r in records}
    chosen = {
        name: [by_key[k] for k in keys if _has_target(by_key[k], spec.target)]
        for name, keys in splits.items()
    }
    empty = [name for name, subset in chosen.items() if len(subset) < 2]
    if empty:
        raise DataError(
            f"dataset '{config.data.dataset}' has fewer than 2 subjects with target "
            f"'{spec.target}' in the {', '.join(empty)} split; check participants.tsv."
        )
    cache = VolumeCache(config.data.cache_dir or home() / "cache")
    datasets = {
        name: VolumeDataset(subset, list(spec.inputs), spec.target, config.preprocess, cache)
        for name, subset in chosen.items()
    }
    sizes = ", ".join(f"{name} {len(ds)}" for name, ds in datasets.items())
    n = sum(len(ds) for ds in datasets.values())
    log(f"{spec.name}: {n} subjects from '{config.data.dataset}' ({sizes})")
    for ds in datasets.values():
        ds.warm()
    source = get_source(config.data.dataset)
    oracle = source.latents(config.data) if source.latents else None
    if oracle is not None and is_global_zero():
        payload = oracle_payload(
            spec,
            oracle,
            (datasets["train"].keys, datasets["train"].targets),
            (datasets["test"].keys, datasets["test"].targets, datasets["test"].ages),
        )
        write_oracle(config.output_dir, spec.name, payload | {"dataset": dataset_id(config.data)})
    return datasets


def run_experiment(
    experiment: Experiment, datasets: dict[str, VolumeDataset], *, force: bool, log
) -> list[Path]:
    """Train and score the model once per seed; write one run record per seed."""
    config, spec = experiment.config, experiment.spec
    entry = get_model(config.model_name)
    digest = config_digest(config)
    written = []
    rank_zero = is_global_zero()
    if not rank_zero and entry.kind != "torch":
        return written  # only distributed training needs the extra processes
    for seed, rdir in zip(config.seeds, experiment.run_dirs(), strict=True):
        if is_complete(rdir) and not force:
            log(f"  {config.model_name} seed {seed}: done already ({rdir}); --force reruns it")
            continue
        log(f"  {config.model_name} seed {seed}: fitting")
        start = time.perf_counter()
        estimator = entry.build(experiment.params, task=spec, trainer=config.trainer)
        work_root = config.output_dir / ".work"
        work_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=work_root) as work:
            info = estimator.fit(datasets["train"], datasets["val"], seed=seed, run_dir=Path(work))
        if not rank_zero:
            continue
        fit_s = time.perf_counter() - start
        test = datasets["test"]
        start = time.perf_counter()
        y_pred = np.asarray(estimator.predict(test), dtype=float)
        predict_s = time.perf_counter() - start
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
        payload = {
            "task": spec.name,
            "task_version": spec.version,
            "model": config.model_name,
            "protocol": info.pop("protocol", _protocol(entry.kind)),
            "seed": seed,
            "dataset": dataset_id(config.data),
            "config_digest": digest,
            "headline": headline(spec, metrics),
            "metrics": metrics,
            "per_stage": per_stage,
            "n_train": len(datasets["train"]),
            "n_val": len(datasets["val"]),
            "n_test": len(test),
            "training": info,
            "timings": {"fit_s": fit_s, "predict_s": predict_s, "total_s": fit_s + predict_s},
            "peak_memory_mb": peak_memory_mb(),
            **environment_info(),
        }
        files = {"model.safetensors": estimator.save}
        if spec.kind == "regression":
            title = f"{spec.name} {config.model_name} seed {seed}"
            files["predictions.png"] = lambda path, y=y_pred, d=test, t=title: plot_predictions(
                path, d.targets, y, d.ages, t
            )
        written.append(
            write_record(
                rdir,
                config=config_to_dict(config) | {"model_params": experiment.params.model_dump()},
                metrics=payload,
                predictions=predictions,
                files=files,
            )
        )
        log(f"  {config.model_name} seed {seed}: {spec.headline} = {metrics[spec.headline]:.3f}")
    return written


def _protocol(kind: str) -> str:
    return {"torch": "scratch", "sklearn": "baseline", "baseline": "baseline"}[kind]
