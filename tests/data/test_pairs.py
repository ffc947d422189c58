"""PairDataset: aligned (image, target) volumes, and the label maps it refuses."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest

from brainbench.config import DataConfig, PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.data.pairs import PairDataset
from brainbench.data.preprocess import grid_affine
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.synth import SynthSource
from brainbench.errors import DataError

CFG = PreprocessConfig(spacing=6.0, shape=(20, 24, 20))


@pytest.fixture(scope="module")
def records() -> list[SubjectRecord]:
    return SynthSource(DataConfig(preset="debug")).records()[:3]


def _pairs(records, tmp_path, target: str = "seg") -> PairDataset:
    return PairDataset(records, ["T1w"], target, CFG, VolumeCache(tmp_path / "c"), n_labels=10)


def test_pairs_align_labels_with_their_image(records, tmp_path) -> None:
    pairs = _pairs(records, tmp_path)
    x, y = pairs[0]
    assert x.shape == (1, *CFG.shape) and y.shape == (1, *CFG.shape)
    labels = y.numpy()[0].astype(int)
    assert labels.max() <= 9 and (labels > 0).any()
    # labelled voxels of the output grid lie on the same label in the label map's space (its
    # grid is finer than the image's), up to the edges that per-label interpolation moves off
    # the nearest label voxel: the label is that voxel's or a neighbour's
    raw = nib.load(records[0].images["seg"])
    assert raw.shape != nib.load(records[0].images["T1w"]).shape
    world = grid_affine(nib.load(records[0].images["T1w"]), CFG)
    idx = np.argwhere(labels > 0)
    src = np.rint(nib.affines.apply_affine(np.linalg.inv(raw.affine) @ world, idx)).astype(int)
    padded = np.pad(np.asanyarray(raw.dataobj), 1)
    near = np.stack([
        padded[tuple((src + np.array(step)).T)]
        for step in np.ndindex(3, 3, 3)
    ])  # fmt: skip
    assert np.mean((near == labels[tuple(idx.T)]).any(axis=0)) > 0.95
    assert np.mean(near[13] == labels[tuple(idx.T)]) > 0.8
    assert pairs.mask(0).sum() == (labels > 0).sum()


def test_image_target_mask_is_its_foreground(records, tmp_path) -> None:
    pairs = _pairs(records, tmp_path, "T2w")
    target = pairs.target_volume(0)
    assert 0 <= target.min() and target.max() <= 1
    assert 0 < pairs.mask(0).mean() < 1


def _with_label(record: SubjectRecord, path, data: np.ndarray, affine) -> SubjectRecord:
    nib.save(nib.Nifti1Image(data, affine), path)
    return dataclasses.replace(record, images=record.images | {"seg": path})


def test_label_outside_range_names_the_file(records, tmp_path) -> None:
    raw = nib.load(records[0].images["seg"])
    data = np.asanyarray(raw.dataobj).copy()
    data[data == 6] = 12
    bad = _with_label(records[0], tmp_path / "bad_dseg.nii.gz", data, raw.affine)
    pairs = _pairs([bad], tmp_path)
    with pytest.raises(DataError, match=r"bad_dseg\.nii\.gz.*label 12"):
        pairs.warm()


def test_labels_on_a_finer_grid_give_the_same_target(records, tmp_path) -> None:
    """A label map split into 2x2x2 voxels over the same field of view (as FreeSurfer's aseg is
    finer than a coarse scan) is accepted and gives the target of the original."""
    raw = nib.load(records[0].images["seg"])
    data = np.asanyarray(raw.dataobj)
    finer = data.repeat(2, axis=0).repeat(2, axis=1).repeat(2, axis=2)
    affine = raw.affine.copy()
    affine[:3, :3] /= 2
    affine[:3, 3] -= raw.affine[:3, :3] @ np.full(3, 0.25)
    fine = _with_label(records[0], tmp_path / "fine_dseg.nii.gz", finer, affine)
    target = _pairs(records[:1], tmp_path / "a").target_volume(0)
    other = _pairs([fine], tmp_path / "b").target_volume(0)
    labelled = target > 0
    assert labelled.sum() > 20 and abs(int((other > 0).sum()) - int(labelled.sum())) <= 3
    assert np.mean(other[labelled] == target[labelled]) > 0.9


def test_label_of_another_shape_names_the_file(records, tmp_path) -> None:
    raw = nib.load(records[0].images["seg"])
    data = np.asanyarray(raw.dataobj)[:-2]
    bad = _with_label(records[0], tmp_path / "short_dseg.nii.gz", data, raw.affine)
    with pytest.raises(DataError, match=r"short_dseg\.nii\.gz does not cover the field of view"):
        _pairs([bad], tmp_path)


def test_missing_target_names_the_subject(records, tmp_path) -> None:
    images = {k: v for k, v in records[0].images.items() if k != "seg"}
    with pytest.raises(DataError, match="sub-0001 has no seg|'sub-0001' has no seg"):
        _pairs([dataclasses.replace(records[0], images=images)], tmp_path)
