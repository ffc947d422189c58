"""`brainbench predict`: scalar and segmentation runs on new NIfTI files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainbench.cli import main
from brainbench.data.synth import ensure_cohort
from brainbench.predict import to_input_space


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("predict")
    assert main(["mri", "age", "-m", "chance", "--debug", f"output_dir={out}"]) == 0
    assert main(["mri", "seg", "-m", "atlas", "--debug", f"output_dir={out}"]) == 0
    return {task: next((out / "runs" / task).rglob("seed33")) for task in ("mri-age", "mri-seg")}


@pytest.fixture(scope="module")
def t1w() -> list[Path]:
    return sorted(ensure_cohort("debug", 0).glob("sub-*/anat/sub-*_T1w.nii.gz"))[:2]


def test_scalar_run_writes_one_row_per_file(runs, t1w, tmp_path: Path) -> None:
    assert main(["predict", str(runs["mri-age"]), *map(str, t1w), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    assert table["file"].tolist() == [str(f) for f in t1w]
    train_mean = json.loads((runs["mri-age"] / "metrics.json").read_text())
    assert np.isfinite(table["prediction"]).all() and train_mean["model"] == "chance"


def test_segmentation_overlays_the_input(runs, t1w, tmp_path: Path) -> None:
    assert main(["predict", str(runs["mri-seg"]), str(t1w[0]), "--out", str(tmp_path)]) == 0
    image = nib.load(t1w[0])
    (out,) = tmp_path.glob("*_dseg.nii.gz")
    labels = nib.load(out)
    assert labels.shape == image.shape and np.allclose(labels.affine, image.affine)
    data = np.asanyarray(labels.dataobj)
    assert data.dtype == np.uint8 and data.max() <= 9
    table = pd.read_csv(tmp_path / "predictions.tsv", sep="\t")
    voxel_ml = abs(np.linalg.det(image.affine[:3, :3])) / 1000
    assert table.loc[0, "thalamus_ml"] == pytest.approx((data == 6).sum() * voxel_ml, abs=1e-3)


def _partial(path: Path, out: Path) -> Path:
    """The scan with its upper 40% (superior) cut off, as a short field of view leaves it."""
    image = nib.as_closest_canonical(nib.load(path))
    keep = int(image.shape[2] * 0.6)
    nib.save(image.slicer[:, :, :keep], out)
    return out


def test_inputs_unlike_training_are_flagged(runs, t1w, tmp_path: Path, capsys) -> None:
    """A T2w given to a T1w model, a partial field of view and a constant image are flagged
    with their reasons (the constant one gets no prediction); training-like scans are not."""
    cohort = ensure_cohort("debug", 0)
    participants = pd.read_csv(cohort / "participants.tsv", sep="\t")
    adult = participants[participants.age.between(30, 60)].participant_id.iloc[0]
    t2w = cohort / adult / "anat" / f"{adult}_T2w.nii.gz"  # a fetal T2w is near its T1w
    partial = _partial(t1w[0], tmp_path / "partial.nii.gz")
    constant = tmp_path / "constant.nii.gz"
    image = nib.load(t1w[0])
    nib.save(nib.Nifti1Image(np.full(image.shape, 7.0, np.float32), image.affine), constant)
    files = [*t1w, t2w, partial, constant]
    assert main(["predict", str(runs["mri-age"]), *map(str, files), "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "predictions.tsv", sep="\t", keep_default_na=False)
    assert table["ood"].tolist() == ["no", "no", "yes", "yes", "yes"]
    reasons = table["ood_reason"].tolist()
    assert "histogram" in reasons[2] or "correlation" in reasons[2]
    assert "partial field of view" in reasons[3]
    assert "constant image" in reasons[4] and table["prediction"][4] == ""
    assert "3 of 5 inputs are unlike the scans" in capsys.readouterr().out


def test_label_maps_go_back_to_the_input_grid() -> None:
    """Away from label edges every input voxel gets the label of the grid around it; outside the
    grid, background."""
    rng = np.random.default_rng(0)
    grid = np.diag([4.0, 4.0, 4.0, 1.0])
    grid[:3, 3] = [-40.37, -48.21, -40.13]
    blocks = rng.integers(0, 8, (5, 6, 5)).astype(np.float32)
    labels = blocks.repeat(4, 0).repeat(4, 1).repeat(4, 2)  # 16 mm blocks on the 4 mm grid
    affine = np.array([[-2.3, 0, 0, 45.3], [0, 0, 3.1, -50.7], [0, 1.9, 0, -30.2], [0, 0, 0, 1]])
    image = nib.Nifti1Image(np.zeros((30, 40, 28), np.float32), affine)
    back = to_input_space(labels, grid, image, labels=True)
    assert back.shape == image.shape and set(np.unique(back)) <= set(range(8))
    checked = 0
    for voxel in rng.integers(0, 28, (400, 3)):
        point = np.linalg.solve(grid, affine @ [*voxel, 1])[:3]
        if np.any(point < -1) or np.any(point > labels.shape):
            assert back[tuple(voxel)] == 0
        elif np.all(point >= 0) and np.all(point <= np.array(labels.shape) - 1):
            corners = {
                labels[tuple(c)]
                for c in np.stack(
                    np.meshgrid(
                        *[[int(np.floor(p)), int(np.ceil(p))] for p in point], indexing="ij"
                    )
                )
                .reshape(3, -1)
                .T
            }
            if len(corners) == 1:
                assert back[tuple(voxel)] == corners.pop()
                checked += 1
    assert checked > 50


@pytest.mark.parametrize(
    ("case", "needle"),
    [
        ("missing", "does not exist"),
        ("not_nifti", "not a readable NIfTI"),
        ("no_model", "holds no trained model"),
        ("task", "was trained on mri/age, not mri/seg"),
        ("out_is_a_file", "is a file; give a folder"),
    ],
)
def test_bad_predict_input_exits_2(runs, t1w, tmp_path: Path, capsys, case, needle) -> None:
    run, files = str(runs["mri-age"]), [str(t1w[0])]
    extra: list[str] = []
    if case == "missing":
        files = [str(tmp_path / "nope.nii.gz")]
    elif case == "not_nifti":
        (tmp_path / "notes.nii.gz").write_text("not an image")
        files = [str(tmp_path / "notes.nii.gz")]
    elif case == "no_model":
        run = str(tmp_path)
    elif case == "task":
        extra = ["--task", "mri/seg"]
    out = tmp_path / "out"
    if case == "out_is_a_file":
        out.write_text("an earlier result")
    assert main(["predict", run, *files, "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert out.is_file() if case == "out_is_a_file" else not out.exists()  # nothing written


def test_run_trained_on_skull_stripped_scans_predicts_inputs_as_given(t1w, tmp_path, capsys):
    """preprocess.skull_strip=mask trains on masked scans; predict's inputs have no masks, so
    they are taken as given, with a line saying the run wants skull-stripped inputs."""
    out = tmp_path / "results"
    args = ["mri", "age", "-m", "chance", "--debug", "preprocess.skull_strip=mask"]
    assert main([*args, f"output_dir={out}"]) == 0
    run = next((out / "runs" / "mri-age").rglob("seed33"))
    assert main(["predict", str(run), str(t1w[0]), "--out", str(tmp_path / "pred")]) == 0
    assert "trained on skull-stripped scans" in capsys.readouterr().out
