from collections.abc import Callable

import nibabel as nib
import numpy as np
import pytest
from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform
from scipy import ndimage

from brainbench.config import PreprocessConfig
from brainbench.data.preprocess import preprocess_key, preprocess_volume
from brainbench.errors import DataError

CFG = PreprocessConfig(spacing=3.0, shape=(20, 24, 20))


def reoriented(img: nib.Nifti1Image, codes: str) -> nib.Nifti1Image:
    return img.as_reoriented(ornt_transform(io_orientation(img.affine), axcodes2ornt(codes)))


def test_shape_dtype_range(brain: Callable) -> None:
    out = preprocess_volume(nib.Nifti1Image(brain(), np.diag([2, 2, 2, 1.0])), CFG)
    assert out.shape == CFG.shape and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0


@pytest.mark.parametrize("codes", ["LAS", "LPS", "PIR", "SAL"])
def test_orientation_invariant(brain: Callable, codes: str) -> None:
    affine = np.diag([1.5, 2.0, 2.5, 1.0])
    affine[:3, 3] = [-20, 10, 5]
    img = nib.Nifti1Image(brain((30, 26, 22), seed=3), affine)
    flipped = reoriented(img, codes)
    assert nib.aff2axcodes(flipped.affine) == tuple(codes)
    for cfg in (CFG, CFG.model_copy(update={"crop_to_brain": False})):
        np.testing.assert_allclose(
            preprocess_volume(flipped, cfg), preprocess_volume(img, cfg), atol=1e-5
        )


def cube(side_mm: float, voxel: float, fov_mm: float = 64.0) -> nib.Nifti1Image:
    n = int(fov_mm / voxel)
    data = np.zeros((n, n, n), np.float32)
    lo, hi = int((n - side_mm / voxel) // 2), int((n + side_mm / voxel) // 2)
    data[lo:hi, lo:hi, lo:hi] = 100.0
    return nib.Nifti1Image(data, np.diag([voxel, voxel, voxel, 1.0]))


def test_physical_size_preserved() -> None:
    cfg = PreprocessConfig(spacing=2.0, shape=(32, 32, 32))
    for side, voxel in [(20, 1.0), (20, 2.0), (30, 1.5), (40, 1.0)]:
        out = preprocess_volume(cube(side, voxel), cfg)
        # edge length in mm of the bright cube: bigger brains fill more voxels, none is stretched
        assert (out > 0.25).sum() ** (1 / 3) * cfg.spacing == pytest.approx(side, abs=2)


def test_labels_keep_values_and_align(brain: Callable) -> None:
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    vol = brain()
    labels = np.where(vol > 80, 7, np.where(vol > 30, 3, 0)).astype(np.uint8)
    image, label_img = nib.Nifti1Image(vol, affine), nib.Nifti1Image(labels, affine)
    out = preprocess_volume(label_img, CFG, is_label=True, reference=image)
    assert out.dtype == np.float32 and set(np.unique(out)) == {0.0, 3.0, 7.0}
    brain_mask = preprocess_volume(image, CFG) > 0.2
    dice = 2 * (brain_mask & (out > 0)).sum() / (brain_mask.sum() + (out > 0).sum())
    assert dice > 0.9
    flipped = preprocess_volume(
        reoriented(label_img, "LPS"), CFG, is_label=True, reference=reoriented(image, "LPS")
    )
    assert (flipped != out).mean() < 0.01


def test_upsampled_labels_follow_the_structure_not_the_coarse_voxels() -> None:
    """A ball labelled at 3 mm and resampled to 1 mm is closer to the true ball than the
    nearest-neighbour staircase (scipy order 0) of the same labels."""
    n, voxel = 24, 3.0
    centre = (n - 1) / 2 + 0.37  # off the voxel grid
    axes = np.meshgrid(*[np.arange(n) - centre] * 3, indexing="ij")
    coarse = (np.sqrt(sum(a**2 for a in axes)) * voxel < 16.0).astype(np.uint8) * 4
    img = nib.Nifti1Image(coarse, np.diag([voxel, voxel, voxel, 1.0]))
    cfg = PreprocessConfig(spacing=1.0, shape=(72, 72, 72), crop_to_brain=False)
    out = preprocess_volume(img, cfg, is_label=True)
    fine_axes = np.meshgrid(*[np.arange(72) - 35.5] * 3, indexing="ij")
    centre_mm = (centre - (n - 1) / 2) * voxel
    truth = np.sqrt(sum((a - centre_mm) ** 2 for a in fine_axes)) < 16.0
    nearest = ndimage.zoom(coarse, voxel, order=0) > 0

    def dice(a: np.ndarray) -> float:
        return 2 * (a & truth).sum() / (a.sum() + truth.sum())

    assert set(np.unique(out)) == {0.0, 4.0}
    assert dice(out > 0) > dice(nearest) + 0.01 and dice(out > 0) > 0.95


def test_downsampled_labels_keep_small_structures() -> None:
    """Balls of 7-9 mm radius labelled at 2 mm and resampled to 8 mm: each keeps its label and,
    averaged over grid offsets, its volume (a majority filter would erase the smaller ones)."""
    n, voxel = 64, 2.0
    radii = {1: 7.0, 2: 8.0, 3: 9.0}  # 7 mm: a ball always holds a point of an 8 mm grid
    cfg = PreprocessConfig(spacing=8.0, shape=(16, 16, 16), crop_to_brain=False)
    volumes = {label: [] for label in radii}
    for shift in np.linspace(0, 3.5, 5):  # the balls at several offsets from the 8 mm grid
        axes = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * voxel - shift] * 3, indexing="ij")
        labels = np.zeros((n, n, n), np.uint8)
        for label, radius in radii.items():
            centre = (label - 2) * 30.0  # apart along the first axis
            labels[np.sqrt((axes[0] - centre) ** 2 + axes[1] ** 2 + axes[2] ** 2) < radius] = label
        out = preprocess_volume(nib.Nifti1Image(labels, np.diag([voxel] * 3 + [1.0])), cfg,
                                is_label=True)  # fmt: skip
        for label in radii:
            volumes[label].append((out == label).sum() * 8.0**3)
    for label, radius in radii.items():
        truth = 4 / 3 * np.pi * radius**3
        assert min(volumes[label]) > 0, f"label {label} vanished at some offset: {volumes[label]}"
        assert 0.6 < np.mean(volumes[label]) / truth < 1.5, (label, volumes[label], truth)


def test_label_needs_reference_when_cropping(brain: Callable) -> None:
    labels = nib.Nifti1Image((brain() > 50).astype(np.uint8), np.eye(4))
    with pytest.raises(ValueError, match="reference"):
        preprocess_volume(labels, CFG, is_label=True)
    no_crop = CFG.model_copy(update={"crop_to_brain": False})
    assert preprocess_volume(labels, no_crop, is_label=True).max() == 1.0


def test_bad_label_values(brain: Callable) -> None:
    labels = nib.Nifti1Image(brain() / 7, np.eye(4))
    with pytest.raises(DataError, match="integers in 0..255"):
        preprocess_volume(labels, CFG, is_label=True, reference=labels)


def test_key_changes_with_config() -> None:
    assert preprocess_key(CFG) == preprocess_key(PreprocessConfig(spacing=3.0, shape=(20, 24, 20)))
    assert preprocess_key(CFG) != preprocess_key(CFG.model_copy(update={"spacing": 2.0}))
