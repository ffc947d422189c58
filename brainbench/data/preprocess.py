"""Volume preprocessing: RAS grid, brain-centred crop, isotropic resampling, intensity scaling.

One resampling step maps the output grid (RAS axes, `cfg.spacing` mm, `cfg.shape` voxels,
centred on the brain's bounding box) through the image affine into the input voxels. This is
`nib.as_closest_canonical` + crop + resample + pad/crop in one interpolation, exact for oblique
affines too, and it keeps physical size: a bigger brain fills more voxels.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import nibabel as nib
import numpy as np
from scipy import ndimage

from brainbench.config import PreprocessConfig
from brainbench.errors import DataError

PREPROCESS_VERSION = "4"  # bump when the output of preprocess_volume changes
FOREGROUND_FRACTION = 0.1  # of the 99.9th intensity percentile
SLICE_FRACTION = 0.02  # a slice belongs to the brain's box if it holds this share of the fullest


def preprocess_key(cfg: PreprocessConfig) -> str:
    """A short hash of the preprocessing config and code version, for cache keys."""
    payload = f"{PREPROCESS_VERSION}:{cfg.model_dump_json()}".encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def foreground(data: np.ndarray) -> np.ndarray:
    """Voxels brighter than a fraction of a high percentile: robust to background noise."""
    return data > FOREGROUND_FRACTION * np.percentile(data, 99.9)


def brain_centre(img: nib.Nifti1Image) -> np.ndarray:
    """World (mm) centre of the foreground bounding box; slices with stray noise are ignored."""
    data = np.asanyarray(img.dataobj)
    mask = foreground(data)
    bounds = []
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        keep = np.flatnonzero(profile > SLICE_FRACTION * profile.max()) if profile.any() else []
        bounds.append((keep[0] + keep[-1]) / 2 if len(keep) else (data.shape[axis] - 1) / 2)
    return nib.affines.apply_affine(img.affine, bounds)


def fov_centre(img: nib.Nifti1Image) -> np.ndarray:
    """World (mm) centre of the image's field of view."""
    return nib.affines.apply_affine(img.affine, (np.array(img.shape[:3]) - 1) / 2)


def _resample(
    img: nib.Nifti1Image, cfg: PreprocessConfig, centre: np.ndarray, is_label: bool
) -> np.ndarray:
    """Sample `img` on the RAS output grid centred at `centre` (anti-aliased when downsampling).

    Intensities are interpolated linearly. A label map is interpolated as one indicator volume
    per label and each voxel takes the label of the largest, so label edges fall where the
    interpolated image puts them instead of on the staircase that nearest-neighbour sampling of
    a coarser grid leaves. Indicators are sampled, never low-pass filtered: filtering would make
    a coarse voxel take its majority label and erase every structure thinner than the filter
    (at 8 mm, most subcortical ones), while point sampling keeps each label's expected volume.
    """
    shape = np.array(cfg.shape)
    inverse = np.linalg.inv(img.affine)
    matrix = inverse[:3, :3] * cfg.spacing
    offset = inverse[:3, :3] @ (centre - cfg.spacing * (shape - 1) / 2) + inverse[:3, 3]
    data = np.asanyarray(img.dataobj)
    zooms = nib.affines.voxel_sizes(img.affine)
    sigma = np.maximum(0.0, (cfg.spacing / zooms - 1) / 2)
    # only the input block the grid touches (plus the filter's reach) is filtered and sampled
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    reach = matrix @ corners + offset[:, None]
    margin = np.ceil(4 * sigma) + 2
    lo = np.clip(np.floor(reach.min(axis=1) - margin), 0, data.shape).astype(int)
    hi = np.clip(np.ceil(reach.max(axis=1) + margin) + 1, 0, data.shape).astype(int)
    if np.any(hi <= lo):  # the grid lies outside the image
        return np.zeros(cfg.shape, np.float32)
    block = data[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]

    def sample(volume: np.ndarray) -> np.ndarray:
        return ndimage.affine_transform(
            volume, matrix, offset - lo, output_shape=cfg.shape, order=1, mode="constant"
        )

    if is_label:
        return interpolate_labels(block, sample)
    block = block.astype(np.float32, copy=False)
    return sample(ndimage.gaussian_filter(block, sigma) if sigma.any() else block).astype(
        np.float32
    )


def interpolate_labels(
    labels: np.ndarray, sample: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Resample a label map: `sample` (float volume -> float volume on the output grid) runs on
    one indicator volume per label and each output voxel takes the label with the largest share
    (0, background, where the labels' shares sum to less than the largest)."""
    best = total = result = None
    for value in np.unique(labels):
        if value == 0:
            continue
        share = sample((labels == value).astype(np.float32))
        if best is None:
            best, total, result = np.zeros_like(share), np.zeros_like(share), np.zeros_like(share)
        result[share > best] = value
        best = np.maximum(best, share)
        total += share
    if result is None:  # no label at all
        return sample(np.zeros(labels.shape, np.float32))
    result[best <= 1.0 - total] = 0
    return result


def skull_strip(img: nib.Nifti1Image, mask: nib.Nifti1Image) -> nib.Nifti1Image:
    """`img` with every voxel outside the brain `mask` (same grid, non-zero = brain) set to 0."""
    if mask.shape[:3] != img.shape[:3] or not np.allclose(mask.affine, img.affine, atol=1e-3):
        raise DataError(
            f"the brain mask is on another grid (shape {mask.shape[:3]}) than the image (shape "
            f"{img.shape[:3]}); give the mask the image's grid or set preprocess.skull_strip=none."
        )
    brain = np.asanyarray(mask.dataobj)
    brain = brain[..., 0] if brain.ndim == 4 else brain
    if not np.any(brain):
        raise DataError("the brain mask is empty; replace it or set preprocess.skull_strip=none.")
    data = np.asanyarray(img.dataobj).astype(np.float32) * (brain > 0)
    return nib.Nifti1Image(data, img.affine, img.header)


def normalise(volume: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """Scale to [0, 1] between the given percentiles of the foreground voxels."""
    mask = foreground(volume)
    values = volume[mask] if mask.any() else volume
    low, high = np.percentile(values, percentiles)
    if high - low <= 1e-6 * max(abs(high), 1.0):  # flat foreground: keep it bright
        low = min(float(volume.min()), 0.0)
    return np.clip((volume - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)


def _check_labels(img: nib.Nifti1Image) -> None:
    data = np.asanyarray(img.dataobj)
    if data.min() < 0 or data.max() > 255 or not np.array_equal(data, np.round(data)):
        raise DataError(
            "label map values must be integers in 0..255; remap the labels to consecutive ids."
        )


def _grid_centre(
    img: nib.Nifti1Image, cfg: PreprocessConfig, reference: nib.Nifti1Image | None
) -> np.ndarray:
    """World (mm) centre of the output grid: the brain of `reference` (or `img`), or the FOV."""
    if not cfg.crop_to_brain:
        return fov_centre(img)
    return brain_centre(img if reference is None else reference)


def grid_affine(
    img: nib.Nifti1Image, cfg: PreprocessConfig, *, reference: nib.Nifti1Image | None = None
) -> np.ndarray:
    """The 4x4 RAS voxel-to-world affine of the grid `preprocess_volume` samples `img` on."""
    affine = np.diag([cfg.spacing] * 3 + [1.0])
    centre = _grid_centre(img, cfg, reference)
    affine[:3, 3] = centre - cfg.spacing * (np.array(cfg.shape) - 1) / 2
    return affine


def preprocess_volume(
    img: nib.Nifti1Image,
    cfg: PreprocessConfig,
    *,
    is_label: bool = False,
    reference: nib.Nifti1Image | None = None,
) -> np.ndarray:
    """A float32 array of shape `cfg.shape` on a RAS grid of `cfg.spacing` mm.

    Images are linearly interpolated and scaled to [0, 1]; label maps are interpolated per label
    and keep their integer values. With `cfg.crop_to_brain` the grid is centred on the brain of
    `reference` (default: `img` itself); a label map needs its anatomical image as reference.
    """
    if is_label:
        _check_labels(img)
        if cfg.crop_to_brain and reference is None:
            raise ValueError("a label map is cropped like its image: pass reference=<the image>")
    elif np.ptp(np.asanyarray(img.dataobj)) == 0:
        raise DataError(
            "the image is blank (every voxel the same value); replace it with a real scan."
        )
    volume = _resample(img, cfg, _grid_centre(img, cfg, reference), is_label)
    return volume if is_label else normalise(volume, cfg.percentiles)
