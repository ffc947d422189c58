"""Tiny NIfTI volumes and a BIDS dataset written into tmp folders, as fixtures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

SHAPE = (24, 28, 24)
AFFINE = np.diag([2.0, 2.0, 2.0, 1.0])
PARTICIPANTS = [
    ["sub-01", 25.5, "M", "siteA", 1.5],
    ["sub-02", 7, "F", "n/a", "n/a"],
    ["sub-03", 70, "female", "siteB", 3],
]


def _brain(shape: tuple[int, int, int] = SHAPE, radius: float = 0.35, seed: int = 0) -> np.ndarray:
    """An ellipsoid 'brain' with a darker core and a little background noise."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-0.5, 0.5, n) for n in shape], indexing="ij"))
    r = np.sqrt((grid**2).sum(axis=0))
    data = np.where(r < radius, 100.0, 0.0) + np.where(r < radius / 2, -40.0, 0.0)
    return (data + rng.normal(0, 2, shape).clip(0)).astype(np.float32)


def _write_nifti(path: Path, data: np.ndarray, affine: np.ndarray = AFFINE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _write_table(path: Path, header: list[str], rows: list[list[object]], sep: str = "\t") -> Path:
    lines = [sep.join(header)] + [sep.join(str(c) for c in row) for row in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def brain() -> Callable[..., np.ndarray]:
    return _brain


@pytest.fixture
def write_nifti() -> Callable[..., Path]:
    return _write_nifti


@pytest.fixture
def write_table() -> Callable[..., Path]:
    return _write_table


@pytest.fixture
def bids_root(tmp_path: Path) -> Path:
    """Three subjects: T1w for all, T2w + dwi + dseg for sub-01, two sessions for sub-03."""
    root = tmp_path / "bids"
    root.mkdir()
    header = ["participant_id", "age", "sex", "site", "iq"]
    _write_table(root / "participants.tsv", header, PARTICIPANTS)
    vol = _brain()
    for sub in ("01", "02"):
        _write_nifti(root / f"sub-{sub}/anat/sub-{sub}_T1w.nii.gz", vol)
    _write_nifti(root / "sub-01/anat/sub-01_T2w.nii.gz", vol)
    _write_nifti(root / "sub-01/dwi/sub-01_dwi.nii.gz", vol)
    labels = (vol > 50).astype(np.uint8)
    _write_nifti(root / "derivatives/labels/sub-01/anat/sub-01_dseg.nii.gz", labels)
    for ses in ("1", "2"):
        _write_nifti(root / f"sub-03/ses-{ses}/anat/sub-03_ses-{ses}_run-1_T1w.nii", vol)
    return root
