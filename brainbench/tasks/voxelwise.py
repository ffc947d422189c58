"""Run a voxel-wise task (segmentation, synthesis): source -> cache -> split -> model -> record.

The same two entry points as tasks/supervised.py. Metrics are computed per test subject
(predictions.csv holds one row each, with stage and age), averaged over subjects (NaN-skipping)
overall and within each lifespan stage. The predicted volumes of the test subjects are written
into the record as `predictions/<subject>_<target>.nii.gz` (labels: uint8 `_dseg`; images:
float32) on the preprocessed grid: RAS axes, `preprocess.spacing` mm voxels, centred on the
subject's brain. That affine places them in the subject's world (scanner) coordinates, so they
overlay the input image, though on a coarser grid than the input's voxels.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainbench.config import ExperimentConfig, home
from brainbench.data.cache import VolumeCache
from brainbench.data.pairs import PairDataset
from brainbench.errors import ConfigError
from brainbench.metrics import STRUCTURES, segmentation_metrics, synthesis_metrics
from brainbench.stages import STAGE_NAMES
from brainbench.tasks import TaskSpec, get_task
from brainbench.tasks.runs import Evaluation, Experiment, run_seeds, select_subjects, warm


def prepare(config: ExperimentConfig, log) -> dict[str, PairDataset]:
    """Load records, take the dataset's split, keep subjects with the target, warm the cache."""
    spec = get_task(config.task)
    chosen = select_subjects(
        config, lambda r: spec.target in r.images, f"a '{spec.target}' volume (add the files)"
    )
    cache = VolumeCache(config.data.cache_dir or home() / "cache")
    datasets = {
        name: PairDataset(
            subset,
            list(spec.inputs),
            spec.target,
            config.preprocess,
            cache,
            n_labels=len(STRUCTURES),
            mix=name == "train" and config.data.mix_renderings,
        )
        for name, subset in chosen.items()
    }
    warm(datasets, config, log)
    return datasets


def subject_metrics(
    spec: TaskSpec, data: PairDataset, predictions: np.ndarray
) -> list[dict[str, float]]:
    """The task's metrics for each subject of `data`; ConfigError if the task names others."""
    rows = []
    for i, pred in enumerate(predictions):
        if spec.kind == "segmentation":
            values = segmentation_metrics(
                np.rint(pred), data.target_volume(i), data.n_labels, data.cfg.spacing
            )
        else:
            values = synthesis_metrics(pred, data.target_volume(i), data.mask(i))
        unknown = [m for m in spec.metrics if m not in values]
        if unknown:
            raise ConfigError(
                f"task file {spec.source} lists metrics {unknown} that a {spec.kind} task does "
                f"not compute; choose from {', '.join(values)}."
            )
        rows.append({m: values[m] for m in spec.metrics})
    return rows


def summarise(
    table: pd.DataFrame, metrics: tuple[str, ...]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """(mean of each metric over subjects, the same within each stage plus its `n`)."""

    def means(rows: pd.DataFrame) -> dict[str, float]:
        return {m: float(rows[m].mean()) for m in metrics}  # pandas skips NaN

    per_stage = {
        stage: {**means(rows), "n": len(rows)}
        for stage in STAGE_NAMES
        if len(rows := table[table["stage"] == stage])
    }
    return means(table), per_stage


def nifti_writer(data: PairDataset, predictions: np.ndarray, suffix: str) -> Callable[[Path], None]:
    """A `write_record` file writer: one NIfTI per subject of `data` in the folder it is given."""

    def write(folder: Path) -> None:
        folder.mkdir()
        for i, (key, pred) in enumerate(zip(data.keys, predictions, strict=True)):
            array = np.rint(pred).astype(np.uint8) if data.is_label else pred.astype(np.float32)
            image = nib.Nifti1Image(array, data.affine(i))
            image.header.set_xyzt_units("mm")
            nib.save(image, folder / f"{key}_{suffix}.nii.gz")

    return write


def evaluate(spec: TaskSpec, estimator, test: PairDataset) -> Evaluation:
    """Per-subject metrics, their means overall and per stage, and the predicted volumes."""
    volumes = np.asarray(estimator.predict(test))
    table = pd.DataFrame(subject_metrics(spec, test, volumes))
    table.insert(0, "subject", test.keys)
    table.insert(1, "stage", test.stages)
    table.insert(2, "age", test.ages)
    metrics, per_stage = summarise(table, spec.metrics)
    suffix = "dseg" if test.is_label else spec.target
    return Evaluation(
        metrics, per_stage, table, {"predictions": nifti_writer(test, volumes, suffix)}
    )


def run_experiment(
    experiment: Experiment, datasets: dict[str, PairDataset], *, force: bool, log
) -> list[Path]:
    """Train and score the model once per seed; write one run record per seed."""
    evaluate_spec = partial(evaluate, experiment.spec)
    return run_seeds(experiment, datasets, evaluate_spec, force=force, log=log)
