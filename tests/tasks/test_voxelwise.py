"""The voxel-wise runner end to end on the debug cohort: records, metrics and NIfTI predictions."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainbench.api import resolve_config
from brainbench.data.nifti import load_nifti
from brainbench.data.preprocess import grid_affine
from brainbench.models.base import load_weights
from brainbench.tasks import voxelwise

TINY_UNET = ["model.channels=[4,8]", "model.strides=[2]", "model.num_res_units=0"]


def _run(task: str, model: str, out: Path, *overrides: str) -> tuple[Path, dict]:
    experiment = resolve_config(
        task,
        model,
        debug=True,
        overrides=[f"output_dir={out}", "trainer.max_epochs=1", "trainer.progress_bar=false"]
        + list(overrides),
    )
    datasets = voxelwise.prepare(experiment.config, lambda msg: None)
    (record,) = voxelwise.run_experiment(experiment, datasets, force=False, log=lambda msg: None)
    return record, datasets


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> tuple[Path, dict]:
    return _run("mri/seg", "unet", tmp_path_factory.mktemp("seg"), *TINY_UNET)


def test_segmentation_record_has_the_task_metrics(seg_run) -> None:
    record, datasets = seg_run
    metrics = json.loads((record / "metrics.json").read_text())
    spec = voxelwise.get_task("mri/seg")
    assert set(metrics["metrics"]) == set(spec.metrics)
    assert metrics["headline"]["name"] == "dice_mean" and metrics["headline"]["higher_is_better"]
    assert metrics["protocol"] == "scratch" and metrics["n_test"] == len(datasets["test"])
    assert sum(s["n"] for s in metrics["per_stage"].values()) == len(datasets["test"])
    table = pd.read_csv(record / "predictions.csv")
    assert list(table.columns[:3]) == ["subject", "stage", "age"]
    assert set(spec.metrics) <= set(table.columns) and len(table) == len(datasets["test"])
    assert (record / "model.safetensors").is_file()


def test_segmentation_predictions_are_nifti_on_the_grid(seg_run) -> None:
    record, datasets = seg_run
    test = datasets["test"]
    files = sorted((record / "predictions").glob("*.nii.gz"))
    assert [f.name for f in files] == sorted(f"{k}_dseg.nii.gz" for k in test.keys)
    for i, key in enumerate(test.keys):
        img = nib.load(record / "predictions" / f"{key}_dseg.nii.gz")
        data = np.asanyarray(img.dataobj)
        assert data.dtype == np.uint8 and data.shape == test.cfg.shape
        assert data.max() <= 9
        expected = grid_affine(load_nifti(test.records[i].images["T1w"]), test.cfg)
        np.testing.assert_allclose(img.affine, expected, atol=1e-4)


def test_rerun_skips_a_complete_record(seg_run) -> None:
    record, _ = seg_run
    experiment = resolve_config(
        "mri/seg", "unet", debug=True, overrides=[f"output_dir={record.parents[4]}", *TINY_UNET]
    )
    assert experiment.run_dirs() == [record]
    assert voxelwise.run_experiment(experiment, {}, force=False, log=lambda m: None) == []


def test_atlas_baseline_segments(tmp_path) -> None:
    record, datasets = _run("mri/seg", "atlas", tmp_path)
    metrics = json.loads((record / "metrics.json").read_text())
    assert metrics["protocol"] == "baseline"
    assert 0.0 <= metrics["metrics"]["dice_mean"] <= 1.0
    labels = load_weights(record / "model.safetensors", "atlas")["labels"]
    train = datasets["train"]
    mean_volume = np.mean([(train.target_volume(i) > 0).sum() for i in range(len(train))])
    assert (labels > 0).sum() == pytest.approx(mean_volume, abs=1)  # not a background-only map
    assert metrics["metrics"]["dice_mean"] > 0.05  # the majority vote gave ~0.02


@pytest.mark.parametrize(
    ("model", "overrides"),
    [("intensity_map", []), ("unet", [*TINY_UNET, "model.roi_size=[12,12,12]"])],
)
def test_synthesis_record(tmp_path, model: str, overrides: list[str]) -> None:
    record, datasets = _run("mri/synthesis", model, tmp_path, *overrides)
    metrics = json.loads((record / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"psnr", "ssim", "mae"}
    assert np.isfinite(metrics["psnr"]) and 0 <= metrics["mae"] <= 1
    test = datasets["test"]
    img = nib.load(record / "predictions" / f"{test.keys[0]}_T2w.nii.gz")
    assert img.get_data_dtype() == np.float32 and img.shape == test.cfg.shape
