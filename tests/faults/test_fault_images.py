"""Image faults: blank or constant scans are refused with a DataError naming the file."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from brainbench.config import PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.errors import DataError


def _brain() -> np.ndarray:
    data = np.zeros((12, 12, 12), np.float32)
    data[3:9, 3:9, 3:9] = np.random.default_rng(0).uniform(1, 2, (6, 6, 6))
    return data


# case -> (voxel data, text of the error); a working scan shows the check passes real ones
CASES = {
    "blank": (np.zeros((12, 12, 12), np.float32), "blank"),
    "constant": (np.full((12, 12, 12), 7.0, np.float32), "blank"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused(tmp_path, case):
    data, message = CASES[case]
    path, good = tmp_path / "sub-01_T1w.nii", tmp_path / "sub-02_T1w.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    nib.save(nib.Nifti1Image(_brain(), np.eye(4)), good)
    cache, cfg = VolumeCache(tmp_path / "cache"), PreprocessConfig(shape=(8, 8, 8))
    assert cache.get(good, cfg).shape == (8, 8, 8)
    with pytest.raises(DataError, match=message) as err:
        cache.get(path, cfg)
    assert str(path) in str(err.value)


@pytest.mark.parametrize(
    ("case", "message"),
    [("other-grid", "another grid.*skull_strip=none"), ("empty", "brain mask is empty")],
)
def test_bad_brain_mask_named(tmp_path, case, message):
    """preprocess.skull_strip=mask with a mask on another grid or an empty one: the error names
    the image, the mask and the way out."""
    path, mask = tmp_path / "sub-01_T1w.nii", tmp_path / "sub-01_desc-brain_mask.nii"
    nib.save(nib.Nifti1Image(_brain(), np.eye(4)), path)
    data = np.zeros((10, 12, 12) if case == "other-grid" else (12, 12, 12), np.uint8)
    data[2:8, 2:8, 2:8] = case == "other-grid"
    nib.save(nib.Nifti1Image(data, np.eye(4)), mask)
    cfg = PreprocessConfig(shape=(8, 8, 8), skull_strip="mask")
    with pytest.raises(DataError, match=message) as err:
        VolumeCache(tmp_path / "cache").get(path, cfg, mask=mask)
    assert str(path) in str(err.value) and str(mask) in str(err.value)
