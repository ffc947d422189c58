"""Run image decoding (kind `retrieval`): evoked BOLD windows -> image embedding -> retrieval.

Data: an evoked-fMRI dataset (data/sources/image_fmri.py; `synth` generates one from the
embedded cohort, data/synth/evoked.py). Each stimulus onset gives a sample, the volumes of its
response window (data/events.py) in a feature space (`task_options.space`: fsaverage5
`surface`, Seitzman `parcels`, or `mask` voxels), detrended and z-scored per run. Targets are
image embeddings (data/image_features.py), standardised with training-image statistics.

The split is by image, not by subject: test images (repeated) are never trained on; a fixed
fraction of the training images is held out for validation. Scores are cosine similarities
between predicted and candidate embeddings; metrics (metrics.retrieval_metrics) are reported
per sample (`_instance`), with a subject's scores averaged over its repeats of an image
(`_subject`, the headline), against a fixed 250-image candidate set (`_250`, all test images
if fewer) and within test batches (`_batch`, the monitoring metric). Per-stage values use the
queries of subjects in each lifespan stage.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field
from torch.utils.data import Dataset

from brainbench.config import ExperimentConfig, StrictModel, home, validate_section
from brainbench.data.events import Window, check_model_trs, n_trs, window_volumes
from brainbench.data.image_features import embed_images
from brainbench.data.sources.base import open_source
from brainbench.data.sources.image_fmri import (
    EvokedData,
    Space,
    run_features,
)
from brainbench.data.splits import dataset_id
from brainbench.errors import ConfigError, DataError
from brainbench.metrics import batch_retrieval_metrics, cosine_similarity, retrieval_metrics
from brainbench.results.record import write_oracle
from brainbench.stages import STAGE_NAMES, stage_of
from brainbench.tasks import TaskSpec, get_task
from brainbench.tasks.runs import Evaluation, Experiment, is_global_zero, run_seeds
from brainbench.tasks.scoring import headline

N_CANDIDATES = 250


class DecodingOptions(StrictModel):
    space: Space = "parcels"
    mask: Path | None = Field(None, description="NIfTI mask for space=mask (default: MNI brain)")
    window: Window = Window()
    stimulus_column: str | None = Field(None, description="events column naming the image")
    embedding_model: str = Field("builtin", description="'builtin' or a local model folder")
    embedding_layer: float = Field(1.0, ge=0, le=1, description="fraction of the model depth")
    embedding_aggregation: Literal["mean", "cls"] = "mean"
    val_fraction: float = Field(0.1, gt=0, lt=0.5, description="training images held out")


class DecodingSamples(Dataset):
    """({"bold": (n_trs, features) float32, "subject": index}, embedding) per stimulus onset.

    `subject` indexes `subjects`, the sorted subjects of the whole dataset (one list shared by
    its train, val and test samples); `meta` holds one row per sample.
    """

    def __init__(
        self, x: np.ndarray, y: np.ndarray, meta: pd.DataFrame, subjects: list[str]
    ) -> None:
        self.x, self.y, self.meta = x, y.astype(np.float32), meta.reset_index(drop=True)
        self.subjects = subjects
        code = {s: i for i, s in enumerate(subjects)}
        self.subject_index = self.meta["subject"].map(code).to_numpy(dtype=np.int64)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        bold = torch.from_numpy(self.x[i].astype(np.float32))
        return {"bold": bold, "subject": torch.tensor(self.subject_index[i])}, torch.from_numpy(
            self.y[i]
        )

    @property
    def targets(self) -> np.ndarray:
        return self.y


@dataclass
class Prepared:
    datasets: dict[str, DecodingSamples]
    candidates: list[str]  # test image ids
    candidate_embeddings: np.ndarray
    n_trs: int
    tr: float
    window: Window


def options(config: ExperimentConfig) -> DecodingOptions:
    layer = [("task_options", {"task_options": config.task_options})]
    return validate_section(DecodingOptions, config.task_options, layer, "task_options.")


def val_images(train_images: list[str], fraction: float, seed: int) -> set[str]:
    """A fixed `fraction` (at least one) of the training images, chosen by hash of id and seed."""
    ranked = sorted(train_images, key=lambda s: zlib.crc32(f"{seed}:{s}".encode()))
    return set(ranked[: max(1, round(fraction * len(ranked)))])


def build_samples(
    data: EvokedData, opts: DecodingOptions, cache: Path, log
) -> tuple[np.ndarray, pd.DataFrame, int, float]:
    """All windows (N, n_trs, F) as float16, their meta rows, n_trs and the TR."""
    trs = sorted({run.tr for run in data.runs})
    if len(trs) > 1:
        raise DataError(f"{data.root} mixes runs with TRs {trs}; decode one TR at a time.")
    tr = trs[0]
    n = n_trs(opts.window, tr)
    xs, rows, width, dropped = [], [], {}, 0
    position: dict[str, int] = {}
    for run in data.runs:
        index = position[run.subject] = position.get(run.subject, -1) + 1
        features = run_features(run, opts.space, cache, opts.mask)
        width.setdefault(features.shape[1], run.bold[0])
        if len(width) > 1:
            (a, pa), (b, pb) = list(width.items())[:2]
            raise DataError(
                f"runs have different numbers of features ({a} in {pa.name}, {b} in "
                f"{pb.name}): every subject must be in the same space (e.g. all fsaverage5)."
            )
        volumes = window_volumes(run.events["onset"].to_numpy(), opts.window, tr, run.n_vols)
        kept = np.flatnonzero(volumes[:, 0] >= 0)
        dropped += len(volumes) - len(kept)
        xs.append(features[volumes[kept]].astype(np.float16))
        age = data.ages.get(run.subject, float("nan"))
        for event in kept:
            stim = run.events["stim_id"].iloc[event]
            rows.append(
                {
                    "subject": run.subject,
                    "age": age,
                    "stage": stage_of(age) if np.isfinite(age) else "unknown",
                    "stim_id": stim,
                    "split": data.split.get(stim, "train"),
                    "run": index,
                    "event": int(event),
                    "trs": volumes[event].tolist(),
                }
            )
    if dropped:
        log(f"  {dropped} events dropped: their window ends after the last volume of the run")
    return np.concatenate(xs), pd.DataFrame(rows), n, tr


def prepare(config: ExperimentConfig, log) -> Prepared:
    """Read the dataset, cut windows, embed the images, split by image, write the oracle."""
    spec = get_task(config.task)
    opts = options(config)
    source = open_source(config.data)
    data = source.evoked(opts.stimulus_column)
    cache = config.data.cache_dir or home() / "cache"
    x, meta, n, tr = build_samples(data, opts, cache, log)
    stims = sorted(meta["stim_id"].unique())
    embeddings = embed_images(
        [data.images[s] for s in stims],
        cache,
        model=opts.embedding_model,
        layer=opts.embedding_layer,
        aggregation=opts.embedding_aggregation,
    )
    test = meta["split"].eq("test").to_numpy()
    train_stims = [s for s in stims if data.split.get(s, "train") != "test"]
    rows = [stims.index(s) for s in train_stims]
    mean, std = embeddings[rows].mean(0), embeddings[rows].std(0) + 1e-6
    table = dict(zip(stims, (embeddings - mean) / std, strict=True))
    y = np.stack([table[s] for s in meta["stim_id"]])
    held_out = val_images(train_stims, opts.val_fraction, config.split.seed)
    val = meta["stim_id"].isin(held_out).to_numpy()
    parts = {"train": ~test & ~val, "val": ~test & val, "test": test}
    if any(not mask.any() for mask in parts.values()):
        counts = {k: int(v.sum()) for k, v in parts.items()}
        raise DataError(
            f"{data.root}: a split has no sample ({counts}); decoding needs images shown once "
            "(training) and repeated images (test), or a stimuli.tsv naming the test images."
        )
    subjects = sorted(meta["subject"].unique())
    datasets = {k: DecodingSamples(x[m], y[m], meta[m], subjects) for k, m in parts.items()}
    candidates = sorted(meta.loc[test, "stim_id"].unique())
    sizes = ", ".join(f"{k} {len(d)}" for k, d in datasets.items())
    log(
        f"{config.task}: {meta['subject'].nunique()} subjects, {len(stims)} images, windows of "
        f"{n} volumes at TR {tr} s in space '{opts.space}' ({x.shape[2]} features): {sizes}"
    )
    prepared = Prepared(
        datasets, candidates, np.stack([table[c] for c in candidates]), n, tr, opts.window
    )
    test_meta = datasets["test"].meta
    scores = source.evoked_oracle(data, test_meta, candidates) if is_global_zero() else None
    if scores is not None:
        metrics, per_stage, _ = score_queries(spec, scores, test_meta, candidates)
        payload = {
            "task": spec.name,
            "headline": headline(spec, metrics),
            "metrics": metrics,
            "per_stage": per_stage,
            "description": "ideal observer with the generator's true encoding model "
            "(Gaussian likelihood of each window given each candidate image)",
            "dataset": dataset_id(config.data),
        }
        write_oracle(config.output_dir, spec.name, payload)
    return prepared


def _subset(candidates: list[str]) -> list[str]:
    """The fixed candidate set: all test images, or N_CANDIDATES of them chosen with seed 0."""
    if len(candidates) <= N_CANDIDATES:
        return candidates
    picked = np.random.default_rng(0).choice(len(candidates), N_CANDIDATES, replace=False)
    return [candidates[i] for i in sorted(picked)]


def _aggregate(scores: np.ndarray, meta: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """A subject's scores for an image averaged over its repeats; one row per (subject, image)."""
    keys = meta[["subject", "stim_id"]].reset_index(drop=True)
    groups = keys.groupby(["subject", "stim_id"], sort=True).indices
    rows = [scores[idx].mean(axis=0) for idx in groups.values()]
    first = [meta.iloc[idx[0]] for idx in groups.values()]
    return np.stack(rows), pd.DataFrame(first).reset_index(drop=True)


def score_queries(
    spec: TaskSpec,
    scores: np.ndarray,
    meta: pd.DataFrame,
    candidates: list[str],
    batch: dict[str, float] | None = None,
) -> tuple[dict[str, float], dict[str, dict[str, float]], pd.DataFrame]:
    """(the task's metrics, per-stage metrics, one row per subject-aggregated query)."""
    meta = meta.reset_index(drop=True)
    column = {c: i for i, c in enumerate(candidates)}
    values: dict[str, float] = {}
    for name, value in retrieval_metrics(scores, meta["stim_id"].map(column).to_numpy()).items():
        values[f"{name}_instance"] = value
    agg_scores, agg_meta = _aggregate(scores, meta)
    truth = agg_meta["stim_id"].map(column).to_numpy()
    for name, value in retrieval_metrics(agg_scores, truth).items():
        values[f"{name}_subject"] = value
    subset = _subset(candidates)
    cols = [column[c] for c in subset]
    inside = agg_meta["stim_id"].isin(subset).to_numpy()
    sub_truth = agg_meta.loc[inside, "stim_id"].map({c: i for i, c in enumerate(subset)})
    for name, value in retrieval_metrics(agg_scores[inside][:, cols], sub_truth.to_numpy()).items():
        values[f"{name}_subject_250"] = value
    for name, value in (batch or {}).items():
        values[f"{name}_batch"] = value
    values.setdefault("top5_batch", float("nan"))
    unknown = [m for m in spec.metrics if m not in values]
    if unknown:
        raise ConfigError(
            f"task file {spec.source} lists metrics {unknown} that retrieval does not compute; "
            f"choose from {', '.join(values)}."
        )
    metrics = {m: values[m] for m in spec.metrics}
    per_stage = {}
    for stage in STAGE_NAMES:
        mask = (agg_meta["stage"] == stage).to_numpy()
        if mask.any():
            stage_values = retrieval_metrics(agg_scores[mask], truth[mask])
            named = {f"{k}_subject": v for k, v in stage_values.items()}
            per_stage[stage] = {m: named[m] for m in spec.metrics if m in named}
            per_stage[stage]["n"] = int(agg_meta.loc[mask, "subject"].nunique())
    ranks = 1 + (agg_scores > agg_scores[np.arange(len(truth)), truth][:, None]).sum(axis=1)
    table = agg_meta[["subject", "stage", "age", "stim_id"]].assign(
        rank=ranks, best=[candidates[i] for i in agg_scores.argmax(axis=1)]
    )
    return metrics, per_stage, table


def evaluate(
    spec: TaskSpec, prepared: Prepared, batch_size: int, estimator, test: DecodingSamples
) -> Evaluation:
    pred = np.asarray(estimator.predict(test), dtype=np.float64)
    scores = cosine_similarity(pred, prepared.candidate_embeddings)
    order = np.random.default_rng(0).permutation(len(test))  # batches mix subjects and images
    batch = batch_retrieval_metrics(pred[order], test.targets[order], batch_size)
    metrics, per_stage, table = score_queries(spec, scores, test.meta, prepared.candidates, batch)
    return Evaluation(metrics, per_stage, table)


def run_experiment(experiment: Experiment, prepared: Prepared, *, force: bool, log) -> list[Path]:
    """Check the model's window length, then train and score it once per seed."""
    expected = getattr(experiment.params, "n_trs", None)
    check_model_trs(expected, prepared.n_trs, prepared.window, prepared.tr)
    evaluate_fn = partial(evaluate, experiment.spec, prepared, experiment.config.trainer.batch_size)
    return run_seeds(experiment, prepared.datasets, evaluate_fn, force=force, log=log)
