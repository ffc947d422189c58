from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from brainbench.data.nifti import load_nifti
from brainbench.errors import DataError


def test_loads_3d(tmp_path: Path, brain: Callable, write_nifti: Callable) -> None:
    path = write_nifti(tmp_path / "a.nii.gz", brain())
    img = load_nifti(path)
    assert img.shape == brain().shape
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), brain())


def test_squeezes_singleton_4d(tmp_path: Path, brain: Callable, write_nifti: Callable) -> None:
    path = write_nifti(tmp_path / "a.nii.gz", brain()[..., None])
    assert load_nifti(path).shape == brain().shape


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.nii.gz", None, "does not exist"),
        ("text.nii.gz", b"not an image", "not a readable NIfTI"),
        ("text.nii", b"not an image at all" * 40, "not a readable NIfTI"),
    ],
)
def test_unreadable(tmp_path: Path, name: str, content: bytes | None, message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message) as err:
        load_nifti(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("name", ["t.nii", "t.nii.gz"])
def test_truncated(tmp_path: Path, name: str, brain: Callable, write_nifti: Callable) -> None:
    path = write_nifti(tmp_path / name, brain())
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])
    with pytest.raises(DataError, match="truncated"):
        load_nifti(path)


def test_4d_rejected(tmp_path: Path, write_nifti: Callable) -> None:
    path = write_nifti(tmp_path / "bold.nii.gz", np.zeros((4, 4, 4, 3), np.float32))
    with pytest.raises(DataError, match=r"shape \(4, 4, 4, 3\); a 3D volume"):
        load_nifti(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite(tmp_path: Path, bad: float, brain: Callable, write_nifti: Callable) -> None:
    data = brain()
    data[3, 3, 3] = bad
    path = write_nifti(tmp_path / "a.nii.gz", data)
    with pytest.raises(DataError, match="1 NaN/Inf voxels") as err:
        load_nifti(path)
    assert "a.nii.gz" in str(err.value)


def test_singular_affine(tmp_path: Path, brain: Callable, write_nifti: Callable) -> None:
    path = write_nifti(tmp_path / "a.nii", brain())
    raw = bytearray(path.read_bytes())
    raw[280:328] = bytes(48)  # srow_x, srow_y, srow_z of the NIfTI-1 header (sform_code stays)
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="invalid affine"):
        load_nifti(path)
