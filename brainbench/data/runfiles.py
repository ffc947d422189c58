"""What a run's file says about it: its stem, hemisphere and repetition time."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import nibabel as nib

from brainbench.data.nifti import open_image
from brainbench.errors import DataError

# Plausible TR, seconds: fast multiband runs reach ~0.1 s, sparse-sampling designs ~10-20 s.
TR_RANGE = (0.1, 30.0)
TIME_UNITS = {"sec": 1.0, "msec": 1e-3, "usec": 1e-6, "unknown": 1.0}  # NIfTI xyzt_units
# BIDS hemi-L/hemi-R entity, FreeSurfer lh./rh. prefix, HCP .L./.R. infix
HEMISPHERE = re.compile(r"(?:^|_)hemi-([LR])(?=[_.]|$)|^([lr])h\.|\.([LR])(?=\.)")


def stem(path: Path) -> str:
    """The file name without its image suffix (.nii.gz, .func.gii, .label.gii, ...)."""
    name = Path(path).name
    for suffix in (".nii.gz", ".func.gii", ".label.gii", ".nii", ".gii", ".mgh", ".mgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(path).stem


def load(path: Path) -> nib.spatialimages.SpatialImage:
    """The image at `path` (header checked, data not read); DataError if it does not exist."""
    if not Path(path).is_file():
        raise DataError(f"{path} does not exist.")
    return open_image(path)


def hemisphere(path: Path | str) -> str | None:
    """'L' or 'R' as the file's name says (hemi-L, lh., .L.), else None."""
    found = HEMISPHERE.search(Path(path).name)
    return None if found is None else next(g for g in found.groups() if g).upper()


def without_hemisphere(name: str) -> str:
    """`name` with its hemisphere marker removed (the same for a run's left and right files)."""
    return HEMISPHERE.sub("", name).strip("_.")


def check_tr(tr: float, source: str) -> float:
    """`tr` (seconds) if within TR_RANGE, else a DataError naming `source`."""
    low, high = TR_RANGE
    if low <= tr <= high:
        return tr
    hint = f" (milliseconds? that is {tr / 1000:g} s)" if low <= tr / 1000 <= high else ""
    raise DataError(
        f"{source} gives a repetition time of {tr:g} s{hint}, outside the plausible "
        f"{low:g}..{high:g} s; fix it or pass --tr SECONDS."
    )


def header_tr(path: Path, image: nib.spatialimages.SpatialImage | None) -> float | None:
    """TR in seconds from a 4D NIfTI header's time step in its xyzt_units (s, ms or us), checked
    against TR_RANGE; None when the header has none (unknown units with a step of 1: unset)."""
    if isinstance(image, nib.Nifti1Image) and len(image.shape) == 4:
        step = float(image.header["pixdim"][4])
        units = image.header.get_xyzt_units()[1]
        if units in TIME_UNITS and step > 0 and (step != 1.0 or units != "unknown"):
            return check_tr(step * TIME_UNITS[units], f"the header of {path} ({step:g} {units})")
    return None


def repetition_time(path: Path, image: nib.spatialimages.SpatialImage | None = None) -> float:
    """TR in seconds from the BIDS sidecar JSON next to `path`, else the NIfTI header.

    The header's time step is read in its xyzt_units (s, ms or us; unknown units are taken as
    seconds, and an unknown step of 1 as unset). Either must lie within TR_RANGE.
    """
    sidecar = path.with_name(stem(path) + ".json")
    if sidecar.is_file():
        try:
            tr = json.loads(sidecar.read_text()).get("RepetitionTime")
        except ValueError:
            raise DataError(f"sidecar {sidecar} is not valid JSON.") from None
        if tr is not None:
            if not (isinstance(tr, int | float) and math.isfinite(tr) and tr > 0):
                raise DataError(
                    f"sidecar {sidecar} has RepetitionTime {tr!r}; it must be a positive number "
                    "of seconds: fix it or pass --tr SECONDS."
                )
            return check_tr(float(tr), f"sidecar {sidecar} (RepetitionTime)")
    tr = header_tr(path, image)
    if tr is not None:
        return tr
    raise DataError(
        f"no repetition time for {path}: neither a sidecar {sidecar.name} with RepetitionTime "
        "nor a time step in the header; add the sidecar or pass --tr SECONDS."
    )
