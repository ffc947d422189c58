from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainbench.cli import main as cli_main
from brainbench.data.parcellate import label_centroids, parcellate_files, parcellate_volume
from brainbench.data.runfiles import repetition_time
from brainbench.data.surfaces import parcellate_surface
from brainbench.data.synth.functional import series_path
from brainbench.data.timeseries import read_series
from brainbench.errors import DataError


def _tiny_run(folder: Path, n: int = 30, tr: float | None = 2.0) -> tuple[Path, Path, np.ndarray]:
    """A 6x6x6 4D run whose two labels carry known series, and its atlas."""
    rng = np.random.default_rng(0)
    labels = np.zeros((6, 6, 6), np.int16)
    labels[:3], labels[3:] = 1, 2
    truth = 100 + rng.normal(size=(n, 2)).astype(np.float32)
    data = np.where(labels[..., None] == 1, truth[:, 0], truth[:, 1]).astype(np.float32)
    affine = np.diag([3.0, 3.0, 3.0, 1.0])
    image = nib.Nifti1Image(data, affine)
    if tr:
        image.header.set_xyzt_units("mm", "sec")
        image.header["pixdim"][4] = tr
    folder.mkdir(parents=True, exist_ok=True)
    nib.save(image, folder / "sub-01_task-rest_bold.nii.gz")
    nib.save(nib.Nifti1Image(labels, affine), folder / "atlas-toy_dseg.nii.gz")
    return folder / "sub-01_task-rest_bold.nii.gz", folder / "atlas-toy_dseg.nii.gz", truth


def test_subset_nifti_parcellates_back_to_its_series(fmri: Path, tmp_path: Path) -> None:
    nifti = fmri / "nifti"
    run = nifti / "sub-0001" / "func" / "sub-0001_task-rest_bold.nii.gz"
    written = parcellate_files([run], nifti / "atlas-Seitzman300_dseg.nii.gz", tmp_path)
    assert (
        written[0] == tmp_path / "sub-0001/func/sub-0001_task-rest_atlas-Seitzman300_timeseries.npy"
    )
    got, want = read_series(written[0]), read_series(series_path(fmri, "sub-0001"))
    assert got.shape == want.shape
    r = [np.corrcoef(got[:, i], want[:, i])[0, 1] for i in range(0, 300, 7)]
    assert min(r) > 0.98
    table = pd.read_csv(tmp_path / "atlas.tsv", sep="\t")
    atlas = pd.read_csv(fmri / "atlas.tsv", sep="\t")
    assert np.abs(table[["x", "y", "z"]].to_numpy() - atlas[["x", "y", "z"]].to_numpy()).max() < 5


def test_confounds_detrend_and_tr(tmp_path: Path) -> None:
    run, atlas, truth = _tiny_run(tmp_path)
    series, tr = parcellate_volume(run, nib.load(atlas))
    np.testing.assert_allclose(series, truth, rtol=1e-4)
    assert tr == 2.0
    confound = truth[:, :1] - truth[:, :1].mean()
    pd.DataFrame({"c": confound[:, 0]}).to_csv(tmp_path / "conf.tsv", sep="\t", index=False)
    cleaned, _ = parcellate_volume(run, nib.load(atlas), confounds=tmp_path / "conf.tsv")
    assert np.ptp(cleaned[:, 0]) < 1e-3 * np.ptp(truth[:, 0])  # its own series: nothing left
    residual = cleaned[:, 1] - cleaned[:, 1].mean()
    assert abs(residual @ confound[:, 0]) < 1e-3 * np.linalg.norm(residual) * np.linalg.norm(
        confound
    )
    (tmp_path / "sub-01_task-rest_bold.json").write_text(json.dumps({"RepetitionTime": 0.8}))
    assert repetition_time(run, nib.load(run)) == 0.8
    filtered, _ = parcellate_volume(run, nib.load(atlas), detrend=True, low_pass=0.1)
    assert filtered.shape == truth.shape and not np.allclose(filtered, truth)


def test_bad_inputs(tmp_path: Path) -> None:
    run, atlas, _ = _tiny_run(tmp_path / "a", tr=None)
    with pytest.raises(DataError, match="no repetition time"):
        parcellate_volume(run, nib.load(atlas))
    one = tmp_path / "one_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6, 1), np.float32), np.eye(4)), one)
    with pytest.raises(DataError, match="1 time point"):
        parcellate_volume(one, nib.load(atlas), tr=2.0)
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6), np.float32), np.eye(4)), tmp_path / "3d.nii.gz")
    with pytest.raises(DataError, match="not a 4D"):
        parcellate_volume(tmp_path / "3d.nii.gz", nib.load(atlas), tr=2.0)
    far = nib.Nifti1Image(np.ones((6, 6, 6), np.int16), np.diag([3, 3, 3, 1.0]) + np.eye(4) * 0)
    far.affine[:3, 3] = 500
    far = nib.Nifti1Image(np.ones((6, 6, 6), np.int16), far.affine)
    with pytest.warns(UserWarning, match="another grid"), pytest.raises(DataError, match="overlap"):
        parcellate_volume(run, far, tr=2.0)
    lab = np.asarray(nib.load(atlas).dataobj).copy()
    lab[1, 1, 1] = 7  # a label too small to survive on a coarser grid
    coarse = nib.Nifti1Image(lab, np.diag([1.0, 1.0, 1.0, 1.0]))
    with pytest.warns(UserWarning), pytest.raises(DataError, match="no voxel"):
        parcellate_volume(run, coarse, tr=2.0)


def test_surface_and_centroids(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.normal(size=(8, 5)).astype(np.float32)  # 8 vertices, 5 time points
    darrays = [nib.gifti.GiftiDataArray(data[:, t]) for t in range(5)]
    path = tmp_path / "sub-02_hemi-L_bold.func.gii"
    nib.save(nib.GiftiImage(darrays=darrays), path)
    labels = np.array([1, 1, 2, 2, 2, 0, 3, 3])
    series, ids, tr = parcellate_surface(path, labels, tr=1.5)
    np.testing.assert_allclose(series[:, 1], data[2:5].mean(axis=0), rtol=1e-6)
    assert list(ids) == [1, 2, 3] and tr == 1.5
    with pytest.raises(DataError, match="vertices"):
        parcellate_surface(path, labels[:-1], tr=1.5)
    atlas = nib.Nifti1Image(np.pad(np.ones((2, 2, 2), np.int16), 1), np.diag([2.0, 2.0, 2.0, 1.0]))
    assert label_centroids(atlas)[["x", "y", "z"]].to_numpy().tolist() == [[3.0, 3.0, 3.0]]


def test_cli_parcellate(tmp_path: Path, capsys) -> None:
    run, atlas, truth = _tiny_run(tmp_path / "in")
    cli_main(["parcellate", str(run), "--atlas", str(atlas), "--out", str(tmp_path / "out")])
    out = read_series(tmp_path / "out/sub-01/func/sub-01_task-rest_atlas-toy_timeseries.npy")
    np.testing.assert_allclose(out, truth, rtol=1e-4)
    code = cli_main(
        ["parcellate", str(tmp_path / "no.nii.gz"), "--atlas", str(atlas), "--out", "x"]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
