"""Built-in atlases, dropped labels, TR units, filter length and hemispheres of `parcellate`."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainbench.cli import main
from brainbench.data.atlases import MNI_AFFINE, MNI_SHAPE, atlas_image, roi_table
from brainbench.data.parcellate import filter_min_volumes, parcellate_files
from brainbench.data.runfiles import hemisphere, repetition_time
from brainbench.data.synth.functional import series_path
from brainbench.data.timeseries import atlas_networks, read_series


def _mni_run(folder: Path, n: int = 12, voxel: float = 5.0) -> Path:
    """A run on a coarse MNI grid (the MNI152 box at `voxel` mm) of noise, TR 2 s."""
    shape = tuple(int(np.ceil(s * 2 / voxel)) for s in MNI_SHAPE)
    affine = np.diag([voxel, voxel, voxel, 1.0])
    affine[:3, 3] = (-90.0, -126.0, -72.0)
    data = 100 + np.random.default_rng(0).normal(size=(*shape, n)).astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 2.0
    path = folder / "sub-01_space-MNI_bold.nii.gz"
    nib.save(image, path)
    return path


def test_builtin_tables():
    power, dosenbach, seitzman = (roi_table(n) for n in ("power264", "dosenbach160", "seitzman300"))
    assert [len(power), len(dosenbach), len(seitzman)] == [264, 160, 300]
    assert "network" not in power.columns
    assert dosenbach["network"].nunique() == 6 and seitzman["network"].nunique() == 14
    assert set(seitzman["radius"]) == {4.0, 5.0} and set(power["radius"]) == {5.0}
    assert (power["index"] == np.arange(1, 265)).all()


def test_builtin_image_is_an_mni_nifti_of_spheres(tmp_path):
    table = roi_table("dosenbach160")
    nib.save(atlas_image(table), tmp_path / "atlas.nii.gz")
    image = nib.load(tmp_path / "atlas.nii.gz")
    assert image.shape == MNI_SHAPE and np.allclose(image.affine, MNI_AFFINE)
    assert int(image.header["sform_code"]) == 4 and int(image.header["qform_code"]) == 4
    data = np.asarray(image.dataobj)
    assert set(np.unique(data)) == set(range(161))
    ijk = np.argwhere(data > 0)
    xyz = nib.affines.apply_affine(MNI_AFFINE, ijk)
    centres = table.set_index("index").loc[data[tuple(ijk.T)], ["x", "y", "z"]].to_numpy()
    assert np.linalg.norm(xyz - centres, axis=1).max() <= 5.0  # every voxel in its sphere
    first = nib.affines.apply_affine(np.linalg.inv(MNI_AFFINE), table.loc[0, ["x", "y", "z"]])
    assert data[tuple(np.round(first).astype(int))] == 1  # the centre voxel is its own ROI


def test_builtin_atlas_parcellates_an_mni_run(tmp_path, recwarn):
    run = _mni_run(tmp_path)
    out = tmp_path / "out"
    (written,) = parcellate_files([run], "seitzman300", out)
    assert not [w for w in recwarn if "MNI" in str(w.message)]
    assert written == out / "sub-01/func/sub-01_space-MNI_atlas-seitzman300_timeseries.npy"
    series = read_series(written)
    assert series.shape == (12, 300)
    table = pd.read_csv(out / "atlas.tsv", sep="\t")
    assert len(table) == 300 and atlas_networks(out).size == 300
    assert np.allclose(table[["x", "y", "z"]], roi_table("seitzman300")[["x", "y", "z"]])
    image = nib.load(run)
    labels = np.asarray(atlas_image(roi_table("seitzman300"), image.affine, image.shape).dataobj)
    data = np.asarray(image.dataobj)
    np.testing.assert_allclose(series[:, 41], data[labels == 42].mean(axis=0), rtol=1e-5)


def test_builtin_atlas_reproduces_the_synthetic_series(fmri, tmp_path):
    run = fmri / "nifti/sub-0001/func/sub-0001_task-rest_bold.nii.gz"
    (written,) = parcellate_files([run], "seitzman300", tmp_path)
    got, want = read_series(written), read_series(series_path(fmri, "sub-0001"))
    r = [np.corrcoef(got[:, i], want[:, i])[0, 1] for i in range(300)]
    assert min(r) > 0.95  # measured: min 0.981, median 0.996


def test_builtin_atlas_on_a_non_mni_run_warns_and_drops(tmp_path, capsys):
    image = nib.load(_mni_run(tmp_path))
    shifted = image.affine.copy()
    shifted[:3, 3] = (0.0, 0.0, 0.0)  # scanner space: the origin at a corner
    run = tmp_path / "sub-02_bold.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), shifted, image.header), run)
    args = ["parcellate", str(run), "--atlas", "power264", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "does not look like MNI space" in err and "--drop-empty-labels" in err
    assert main([*args, "--drop-empty-labels"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "dropping" in line]
    assert len(lines) == 1 and lines[0].startswith("warning: dropping")
    sidecar = json.loads((tmp_path / "o/sub-02/func/sub-02_atlas-power264_bold.json").read_text())
    dropped = sidecar["DroppedLabels"]
    table = pd.read_csv(tmp_path / "o/atlas.tsv", sep="\t")
    assert 0 < len(dropped) < 264 and len(table) == 264 - len(dropped)
    assert not set(dropped) & set(table["index"])
    assert read_series(tmp_path / "o/sub-02/func/sub-02_atlas-power264_timeseries.npy").shape[
        1
    ] == len(table)


def test_drop_empty_labels_of_an_atlas_file(tmp_path):
    labels = np.zeros((8, 4, 4), np.int16)
    labels[:2], labels[2:4], labels[6:] = 1, 2, 3  # label 3 lies beyond the runs' 4 slices
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "atlas-toy_dseg.nii.gz")
    runs = []
    for i in (1, 2):
        runs.append(tmp_path / f"sub-0{i}_bold.nii.gz")
        data = np.random.default_rng(i).normal(size=(4, 4, 4, 10)).astype(np.float32)
        nib.save(nib.Nifti1Image(data, np.eye(4)), runs[-1])
    with pytest.warns(UserWarning) as caught:
        written = parcellate_files(
            runs, tmp_path / "atlas-toy_dseg.nii.gz", tmp_path / "o", tr=2.0, drop_empty_labels=True
        )
    assert ["dropping 1 labels" in str(w.message) for w in caught].count(True) == 1
    assert all(read_series(w).shape == (10, 2) for w in written)
    assert pd.read_csv(tmp_path / "o/atlas.tsv", sep="\t")["index"].tolist() == [1, 2]


@pytest.mark.parametrize(
    ("units", "step", "sidecar", "want"),
    [
        ("msec", 2000.0, None, 2.0),
        ("usec", 720000.0, None, 0.72),
        ("sec", 0.8, None, 0.8),
        ("unknown", 2.5, None, 2.5),
        ("msec", 2000.0, 1.5, 1.5),
    ],
)
def test_tr_in_header_units(tmp_path, units, step, sidecar, want):
    image = nib.Nifti1Image(np.zeros((2, 2, 2, 3), np.float32), np.eye(4))
    image.header.set_xyzt_units("mm", units)
    image.header["pixdim"][4] = step
    path = tmp_path / "run_bold.nii.gz"
    nib.save(image, path)
    if sidecar:
        (tmp_path / "run_bold.json").write_text(json.dumps({"RepetitionTime": sidecar}))
    assert repetition_time(path, nib.load(path)) == pytest.approx(want)


@pytest.mark.parametrize(("high", "low"), [(None, 0.1), (0.01, None), (0.01, 0.1)])
def test_filter_minimum_is_what_nilearn_needs(tmp_path, high, low):
    from nilearn.signal import butterworth

    need = filter_min_volumes(high, low)
    signal = np.random.default_rng(0).normal(size=(need, 2))
    butterworth(signal.copy(), 0.5, low_pass=low, high_pass=high)  # the minimum passes
    with pytest.raises(ValueError, match="padlen"):
        butterworth(signal[:-1].copy(), 0.5, low_pass=low, high_pass=high)
    data = np.random.default_rng(1).normal(size=(2, 2, 2, need)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "run_bold.nii.gz")
    labels = np.arange(8, dtype=np.int16).reshape(2, 2, 2) % 2 + 1
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "a.nii.gz")
    cuts = {"high_pass": high, "low_pass": low, "tr": 2.0}
    assert parcellate_files([tmp_path / "run_bold.nii.gz"], tmp_path / "a.nii.gz", "o", **cuts)


def test_hemisphere_from_names():
    names = ["sub-1_hemi-L_bold.func.gii", "lh.aparc.annot", "x.R.func.gii", "atlas-A_hemi-R.npy"]
    assert [hemisphere(n) for n in names] == ["L", "L", "R", "R"]
    assert hemisphere("sub-1_bold.func.gii") is None


def test_two_hemispheres_make_one_series(tmp_path):
    rng = np.random.default_rng(0)
    halves, runs = {}, []
    for side in "LR":
        halves[side] = rng.normal(size=(6, 8)).astype(np.float32)  # 6 vertices, 8 time points
        runs.append(tmp_path / f"sub-01_task-rest_hemi-{side}_bold.func.gii")
        darrays = [nib.gifti.GiftiDataArray(t) for t in halves[side].T]
        nib.save(nib.GiftiImage(darrays=darrays), runs[-1])
        coords = np.column_stack([np.arange(6.0) * (-1 if side == "L" else 1), np.zeros((6, 2))])
        mesh = nib.gifti.GiftiDataArray(coords.astype(np.float32), intent="NIFTI_INTENT_POINTSET")
        nib.save(nib.GiftiImage(darrays=[mesh]), tmp_path / f"{side.lower()}h.pial.gii")
    np.save(tmp_path / "lh.parc.npy", np.array([1, 1, 2, 2, 3, 3]))
    np.save(tmp_path / "rh.parc.npy", np.array([1, 1, 1, 2, 2, 0]))
    args = ["parcellate", *map(str, runs), "--tr", "1.5", "--out", str(tmp_path / "o")]
    for side in ("lh", "rh"):
        args += [f"--atlas-{side}", str(tmp_path / f"{side}.parc.npy")]
        args += [f"--mesh-{side}", str(tmp_path / f"{side}.pial.gii")]
    assert main(args) == 0
    series = read_series(tmp_path / "o/sub-01/func/sub-01_task-rest_atlas-parc_timeseries.npy")
    want = [halves["L"][[0, 1]], halves["L"][[2, 3]], halves["L"][[4, 5]]]
    want += [halves["R"][[0, 1, 2]], halves["R"][[3, 4]]]
    np.testing.assert_allclose(series, np.stack([w.mean(axis=0) for w in want], 1), rtol=1e-6)
    table = pd.read_csv(tmp_path / "o/atlas.tsv", sep="\t")
    assert table["index"].tolist() == [1, 2, 3, 1001, 1002]
    assert table["hemi"].tolist() == ["L", "L", "L", "R", "R"]
    assert table["x"].tolist() == [-0.5, -2.5, -4.5, 1.0, 3.5]
