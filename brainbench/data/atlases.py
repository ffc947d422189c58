"""Built-in atlases: published MNI coordinates as spherical ROIs on the data's own grid.

Each atlas is a list of ROI centres (MNI mm) that ships inside nilearn's package data (read
offline through nilearn.datasets.fetch_coords_*); the labels volume is generated on each run's
grid: a voxel belongs to the nearest ROI centre within that ROI's radius. They assume the runs
are in MNI space. nilearn is BSD-3-Clause; nilearn lists the coordinate tables' own licence as
unknown, so cite the paper when you use one:

- power264: 264 ROIs, 5 mm spheres (no network column: the coordinates nilearn ships lack
  Power's assignments). Power JD et al. (2011) Functional network organization of the human
  brain. Neuron 72:665-678.
- dosenbach160: 160 ROIs, 5 mm spheres, 6 networks and region names. Dosenbach NUF et al.
  (2010) Prediction of individual brain maturity using fMRI. Science 329:1358-1361.
- seitzman300: 300 ROIs (cortex, subcortex, cerebellum), the published radius of each (4 or
  5 mm), 14 networks and regions. Seitzman BA et al. (2020) A set of functionally-defined brain
  regions with improved representation of the subcortex and cerebellum. NeuroImage 206:116290.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainbench.errors import unknown

RADIUS_MM = 5.0  # Power 2011 and Dosenbach 2010 used 10 mm diameter spheres
ATLASES = {
    "power264": "Power et al. 2011, Neuron 72:665 (264 ROIs, 5 mm)",
    "dosenbach160": "Dosenbach et al. 2010, Science 329:1358 (160 ROIs, 5 mm, networks)",
    "seitzman300": "Seitzman et al. 2020, NeuroImage 206:116290 (300 ROIs, 4-5 mm, networks)",
}
# MNI152 2 mm grid (FSL's MNI152_T1_2mm): where atlas_image() draws without a reference run
MNI_AFFINE = np.array([[-2.0, 0, 0, 90], [0, 2, 0, -126], [0, 0, 2, -72], [0, 0, 0, 1]])
MNI_SHAPE = (91, 109, 91)
MNI_CENTRE = np.array([0.0, -18.0, 18.0])  # centre of that grid, mm


def builtin_name(atlas: str | Path) -> str | None:
    """The built-in atlas `atlas` names, or None for a file path.

    A bare word (no folder, no suffix) that is not an existing file is a name; an unknown one
    is an UnknownNameError listing the valid names.
    """
    text = str(atlas)
    if Path(text).exists() or "/" in text or "." in text:
        return None
    if text.lower() not in ATLASES:
        raise unknown("atlas", text, ATLASES)
    return text.lower()


def roi_table(name: str) -> pd.DataFrame:
    """index (1..n), x, y, z (MNI mm), radius [, name, network, region] of a built-in atlas."""
    from nilearn import datasets

    if name == "power264":
        rois = datasets.fetch_coords_power_2011().rois
        table = rois[["x", "y", "z"]].astype(float).reset_index(drop=True)
        table["radius"] = RADIUS_MM
    elif name == "dosenbach160":
        found = datasets.fetch_coords_dosenbach_2010()
        table = found.rois[["x", "y", "z"]].astype(float).reset_index(drop=True)
        table["radius"] = RADIUS_MM
        table["name"] = [str(label) for label in found.labels]
        table["network"] = [str(n) for n in found.networks]
    elif name == "seitzman300":  # nilearn's default order, as the synthetic cohort's atlas
        found = datasets.fetch_coords_seitzman_2018()
        table = found.rois[["x", "y", "z"]].astype(float).reset_index(drop=True)
        table["radius"] = found.radius.astype(float)
        table["network"] = [str(n) for n in found.networks]
        table["region"] = [str(r) for r in found.regions]
    else:
        raise unknown("atlas", name, ATLASES)
    table.insert(0, "index", np.arange(1, len(table) + 1))
    return table


def atlas_image(
    table: pd.DataFrame, affine: np.ndarray = MNI_AFFINE, shape: tuple[int, ...] = MNI_SHAPE
) -> nib.Nifti1Image:
    """Labels volume on the grid (`affine`, `shape`): each voxel takes the nearest ROI centre
    within that ROI's radius (0 elsewhere), and an ROI whose centre is on the grid keeps at
    least the voxel nearest to it, so only ROIs outside the field of view are left empty.
    sform/qform coded MNI. Default grid: MNI152 2 mm."""
    shape = tuple(int(s) for s in shape[:3])
    labels = np.zeros(shape, np.int16)
    best = np.full(shape, np.inf)
    to_voxel = np.linalg.inv(affine)
    reach = np.linalg.norm(to_voxel[:3, :3], axis=1)  # voxels per mm along i, j, k
    for index, centre, radius in zip(
        table["index"], table[["x", "y", "z"]].to_numpy(float), table["radius"], strict=True
    ):
        ijk = nib.affines.apply_affine(to_voxel, centre)
        low = np.maximum(np.floor(ijk - radius * reach), 0).astype(int)
        high = np.minimum(np.ceil(ijk + radius * reach) + 1, shape).astype(int)
        if (high <= low).any():
            continue  # the sphere lies outside the grid
        box = tuple(slice(a, b) for a, b in zip(low, high, strict=True))
        grid = np.stack(
            np.meshgrid(*(np.arange(a, b) for a, b in zip(low, high, strict=True)), indexing="ij"),
            axis=-1,
        )
        distance = np.linalg.norm(nib.affines.apply_affine(affine, grid) - centre, axis=-1)
        closer = (distance <= radius) & (distance < best[box])
        labels[box][closer] = index
        best[box][closer] = distance[closer]
    for index, centre in zip(table["index"], table[["x", "y", "z"]].to_numpy(float), strict=True):
        ijk = tuple(np.round(nib.affines.apply_affine(to_voxel, centre)).astype(int))
        inside = all(0 <= i < n for i, n in zip(ijk, shape, strict=True))
        if inside and labels[ijk] != index and not (labels == index).any():
            labels[ijk] = index  # an ROI inside the grid keeps at least its centre voxel
    image = nib.Nifti1Image(labels, affine)
    image.set_sform(affine, code=4)
    image.set_qform(affine, code=4)
    return image


def mni_mismatch(affine: np.ndarray, shape: tuple[int, ...], table: pd.DataFrame) -> str | None:
    """Why a grid does not look like MNI space for this atlas, or None when it does.

    It does not when fewer than 90% of the ROI centres fall inside its field of view, or when
    the field of view's centre is over 30 mm from the MNI152 grid's centre.
    """
    corners = np.array(
        [
            [i, j, k]
            for i in (0, shape[0] - 1)
            for j in (0, shape[1] - 1)
            for k in (0, shape[2] - 1)
        ],
        float,
    )
    world = nib.affines.apply_affine(affine, corners)
    low, high = world.min(axis=0), world.max(axis=0)
    centres = table[["x", "y", "z"]].to_numpy(float)
    inside = ((centres >= low) & (centres <= high)).all(axis=1).mean()
    offset = np.linalg.norm((low + high) / 2 - MNI_CENTRE)
    if inside >= 0.9 and offset <= 30:
        return None
    span = ", ".join(f"{a} {lo:.0f}..{hi:.0f}" for a, lo, hi in zip("xyz", low, high, strict=True))
    return (
        f"field of view {span} mm holds {inside:.0%} of the ROI centres and its centre is "
        f"{offset:.0f} mm from MNI's"
    )
