"""Validated NIfTI loading: every way a file can be unusable is a DataError naming the file."""

from __future__ import annotations

import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.filebasedimages import ImageFileError

from brainbench.errors import DataError


def load_nifti(path: Path) -> nib.Nifti1Image:
    """Load a 3D NIfTI with its data read into memory (a 4D image with one volume is squeezed).

    Raises DataError for a missing file, a file that is not NIfTI or is truncated, an image
    that is not 3D, a non-invertible affine, and NaN/Inf voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist; check the path or re-download the file.")
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ImageFileError(f"a {type(img).__name__}, not a NIfTI image")
        data = np.asanyarray(img.dataobj)  # forces the read: a short file raises here
    except (ImageFileError, EOFError, OSError, ValueError, zlib.error) as exc:
        raise DataError(
            f"image {path} is not a readable NIfTI file (truncated or corrupt?): {exc}. "
            "Re-export or re-download it."
        ) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"image {path} has shape {data.shape}; a 3D volume is expected. "
            "Pass one volume (e.g. average or select a frame of a 4D series)."
        )
    if not np.isfinite(img.affine).all() or abs(np.linalg.det(img.affine[:3, :3])) < 1e-12:
        raise DataError(f"image {path} has an invalid affine; fix the header (qform/sform).")
    if data.dtype.kind == "f" and not np.isfinite(data).all():
        bad = int(np.size(data) - np.isfinite(data).sum())
        raise DataError(
            f"image {path} has {bad} NaN/Inf voxels; replace them (e.g. with 0) and save again."
        )
    header = img.header.copy()
    header.set_data_shape(data.shape)
    return type(img)(data, img.affine, header)
