"""Renderings of a scan (skull-stripped, MNI space) in training, preprocess.skull_strip, and the
input profile that flags scans unlike the training ones."""

from __future__ import annotations

import dataclasses

import nibabel as nib
import numpy as np
import pytest
import torch

from brainbench.config import DataConfig, PreprocessConfig
from brainbench.data import ood
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import VolumeDataset
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.synth import SynthSource
from brainbench.errors import DataError

CFG = PreprocessConfig(spacing=8.0, shape=(20, 24, 20))
STRIP = CFG.model_copy(update={"skull_strip": "mask"})


@pytest.fixture(scope="module")
def records() -> list[SubjectRecord]:
    return SynthSource(DataConfig(preset="debug")).records()[:12]


def test_skull_strip_uses_the_brain_mask(records, tmp_path) -> None:
    cache = VolumeCache(tmp_path)
    given = VolumeDataset(records[:3], ["T1w"], "age", CFG, cache).to_array()
    stripped = VolumeDataset(records[:3], ["T1w"], "age", STRIP, cache).to_array()
    for record, a, b in zip(records, given, stripped, strict=False):
        mask = np.asarray(nib.load(record.brain_mask).dataobj) > 0
        assert 0.02 < mask.mean() < 0.6
        # the head's foreground is larger than the brain's on the same grid size
        assert (a > 0.1).sum() > (b > 0.1).sum() > 0
    no_mask = dataclasses.replace(records[0], brain_mask=None)
    with pytest.raises(DataError, match="no brain mask.*skull_strip=none"):
        VolumeDataset([no_mask], ["T1w"], "age", STRIP, cache)


def test_training_draws_every_rendering(records, tmp_path) -> None:
    """With mix, items are the scan as given, skull-stripped, and in MNI space with and
    without skull, at random contrast; without mix, always the scan as given."""
    data = VolumeDataset(records[:1], ["T1w"], "age", CFG, VolumeCache(tmp_path), mix=True)
    assert len(data.renderings[0]) == 4
    torch.manual_seed(0)
    seen = {data.drawn(0)[1] for _ in range(40)}
    assert seen == {0, 1, 2, 3}
    fixed = VolumeDataset(records[:1], ["T1w"], "age", CFG, VolumeCache(tmp_path))
    assert np.array_equal(fixed[0][0].numpy(), data.volume(0))


def test_profile_round_trip_and_flags(records, tmp_path) -> None:
    train = VolumeDataset(records[2:], ["T1w"], "age", CFG, VolumeCache(tmp_path), mix=True)
    (profile,) = ood.fit_profiles(train)
    ood.write_profiles([profile], tmp_path / ood.PROFILE_FILE)
    read = ood.read_profiles(tmp_path)["T1w"]
    assert read.scalars() == profile.scalars()
    np.testing.assert_allclose(read.signatures, profile.signatures, atol=1e-3)
    assert ood.read_profiles(tmp_path / "missing") == {}
    image = nib.load(records[0].images["T1w"])
    volume = train.volume(0)[0]
    assert read.check(volume, image, CFG.spacing) == []  # a training scan passes
    coarse = nib.Nifti1Image(np.asarray(image.dataobj)[::4, ::4, ::4], image.affine * [4, 4, 4, 1])
    assert any("coarser" in r for r in read.check(volume, coarse, CFG.spacing))
    flat = nib.Nifti1Image(np.ones(image.shape, np.float32), image.affine)
    assert read.check(None, flat, CFG.spacing) == ["constant image (every voxel the same value)"]
