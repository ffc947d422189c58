"""Validated NIfTI loading: every way a file can be unusable is a DataError naming the file."""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.arrayproxy import ArrayProxy
from nibabel.filebasedimages import ImageFileError

from brainbench.errors import DataError

MAX_VOXELS = 2**31  # 8 GiB as float32: far beyond any brain image or fMRI run
DEFLATE_MAX_RATIO = 1032  # the most gzip (deflate) can compress: a bound on what a .gz holds


def open_image(path: Path) -> nib.spatialimages.SpatialImage:
    """nib.load with its header checked against the file (`check_header`); data not yet read."""
    try:
        img = nib.load(path)
    except Exception as exc:  # nibabel raises several unrelated types for bad files
        raise DataError(
            f"image {path} is not a readable NIfTI/GIFTI/MGH file (truncated or corrupt?): "
            f"{exc}. Re-export or re-download it."
        ) from None
    check_header(path, img)
    return img


def check_header(path: Path, img: nib.spatialimages.SpatialImage) -> None:
    """Refuse dims or a size the file cannot hold, before any voxel is allocated.

    An uncompressed file must hold offset + voxels x item size bytes; a gzipped one cannot
    hold more than DEFLATE_MAX_RATIO times its size. Images without a header-described data
    block (GIFTI) pass unchecked.
    """
    proxy = getattr(img, "dataobj", None)
    if not isinstance(proxy, ArrayProxy):
        return
    shape = tuple(int(d) for d in proxy.shape)
    voxels = math.prod(shape)
    if not shape or min(shape) < 1 or voxels > MAX_VOXELS:
        raise DataError(
            f"image {path} has impossible dims {shape} in its header (each must be >= 1, at "
            f"most {MAX_VOXELS} voxels in all); the header is corrupt: re-export the file."
        )
    data_file = Path(img.file_map["image"].filename or path)
    size = data_file.stat().st_size
    needed = voxels * proxy.dtype.itemsize
    with open(data_file, "rb") as handle:
        gzipped = handle.read(2) == b"\x1f\x8b"
    holds = size * DEFLATE_MAX_RATIO if gzipped else size - int(proxy.offset)
    if needed > holds:
        raise DataError(
            f"image {path}'s header claims {shape} voxels of {proxy.dtype} ({needed} bytes), "
            f"more than the {size}-byte{' gzipped' if gzipped else ''} file can hold; "
            "the file is truncated or its header corrupt: re-export or re-download it."
        )


def load_nifti(path: Path) -> nib.Nifti1Image:
    """Load a 3D NIfTI with its data read into memory (a 4D image with one volume is squeezed).

    Raises DataError for a missing file, a file that is not NIfTI or is truncated, a header
    the file cannot back (`check_header`), an image that is not 3D, a non-invertible affine,
    and NaN/Inf voxels.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image {path} does not exist; check the path or re-download the file.")
    img = open_image(path)
    try:
        if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
            raise ImageFileError(f"a {type(img).__name__}, not a NIfTI image")
        data = np.asanyarray(img.dataobj)  # forces the read: a short gzip raises here
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
