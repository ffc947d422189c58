"""Surface runs: per-vertex labels, which hemisphere a file is, and a run's two hemispheres.

A file's hemisphere comes from its name (runfiles.hemisphere: BIDS hemi-L/hemi-R, FreeSurfer
lh./rh., HCP .L./.R.). Runs of one hemisphere take one labels file, whose name must not say
the other hemisphere. Runs given as both hemispheres take a labels file per hemisphere: a
run's left and right files (the same name but for the hemisphere) become one series, left
parcels then right ones, and the right labels' ids are offset (right_offset: 1000, or the next
power of ten above the largest label) so that they never collide with the left ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

from brainbench.data.runfiles import hemisphere, load, repetition_time, stem, without_hemisphere
from brainbench.errors import ConfigError, DataError

SIDE = {"L": "left", "R": "right"}


def surface_series(path: Path) -> np.ndarray:
    """[time, vertices] of a GIFTI (one darray per time point, or one 2D darray) or MGH."""
    image = load(path)
    if isinstance(image, nib.GiftiImage):
        arrays = [np.asarray(d.data) for d in image.darrays]
        data = arrays[0] if len(arrays) == 1 else np.stack(arrays, axis=1)
        data = data if data.ndim == 2 else data[:, None]
    else:
        data = np.asarray(image.dataobj).reshape(image.shape[0], -1)
    return data.T.astype(np.float32)


def read_vertex_labels(path: Path) -> np.ndarray:
    """Per-vertex integer labels from a FreeSurfer .annot, a label GIFTI, an MGH or a .npy."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"vertex labels file {path} does not exist.")
    if path.suffix == ".annot":
        return nib.freesurfer.read_annot(str(path))[0].astype(int)
    if path.suffix == ".npy":
        return np.load(path, allow_pickle=False).astype(int).ravel()
    image = load(path)
    if isinstance(image, nib.GiftiImage):
        return np.asarray(image.darrays[0].data).astype(int).ravel()
    return np.asarray(image.dataobj).astype(int).ravel()


def mesh_centroids(mesh: Path, labels: np.ndarray, labels_name: str) -> np.ndarray:
    """[labels, 3] mean vertex coordinate (mm) of each label > 0 on a GIFTI surface."""
    coords = np.asarray(load(Path(mesh)).darrays[0].data)
    if len(coords) != labels.size:
        raise DataError(
            f"mesh {mesh} has {len(coords)} vertices but the labels {labels_name} have "
            f"{labels.size}; give the mesh those labels are on."
        )
    return np.stack([coords[labels == i].mean(axis=0) for i in np.unique(labels[labels > 0])])


def parcellate_surface(
    path: Path, vertex_labels: np.ndarray, tr: float | None = None, labels_name: str = "labels"
) -> tuple[np.ndarray, np.ndarray, float]:
    """([time, labels] means, the label ids, TR) of a surface series; labels <= 0 are ignored."""
    data = surface_series(path)
    if data.shape[1] != vertex_labels.size:
        raise DataError(
            f"{path} has {data.shape[1]} vertices but the labels {labels_name} have "
            f"{vertex_labels.size}; use labels on the same mesh and hemisphere (e.g. "
            "fsaverage5: 10242 per hemisphere)."
        )
    if data.shape[0] < 2:
        raise DataError(f"{path} has {data.shape[0]} time point; a run needs at least 2.")
    ids = np.unique(vertex_labels[vertex_labels > 0])
    series = np.stack([data[:, vertex_labels == i].mean(axis=1) for i in ids], axis=1)
    return series, ids, tr or repetition_time(path)


def labels_by_side(
    files: Sequence[Path],
    atlas: Path | None,
    atlas_lh: Path | None,
    atlas_rh: Path | None,
) -> dict[str | None, Path]:
    """Labels file per hemisphere the runs cover ('L', 'R'; None: runs without one).

    Refuses one labels file for runs of both hemispheres, a labels file named as the other
    hemisphere than its runs, and a run whose hemisphere has no labels file.
    """
    sides = {Path(f): hemisphere(f) for f in files}
    if atlas is not None:
        if atlas_lh or atlas_rh:
            raise ConfigError("give --atlas, or --atlas-lh and --atlas-rh, not both.")
        covered = {side: f for f, side in sides.items() if side}
        if len(covered) == 2:
            raise ConfigError(
                f"the runs cover both hemispheres ({covered['L']}, {covered['R']}) but one "
                f"--atlas {atlas} was given: give --atlas-lh and --atlas-rh."
            )
        named = hemisphere(atlas)
        for run, side in sides.items():
            if side and named and side != named:
                raise DataError(
                    f"{run} is the {SIDE[side]} hemisphere but the labels {atlas} are named as "
                    f"the {SIDE[named]} one; give that run's hemisphere's labels."
                )
        return {next(iter(covered), None): Path(atlas)}
    given = {"L": atlas_lh, "R": atlas_rh}
    if not any(given.values()):
        raise ConfigError("surface runs need --atlas, or --atlas-lh and --atlas-rh.")
    for side, labels in given.items():
        named = labels and hemisphere(labels)
        if named and named != side:
            raise DataError(
                f"--atlas-{side.lower()}h {labels} is named as the {SIDE[named]} hemisphere; "
                f"give the {SIDE[side]} hemisphere's labels."
            )
    chosen: dict[str | None, Path] = {}
    for run, side in sides.items():
        if side is None:
            raise DataError(
                f"cannot tell the hemisphere of {run}: put hemi-L or hemi-R in its name (BIDS), "
                "or give its labels with --atlas."
            )
        if given[side] is None:
            raise ConfigError(
                f"{run} is a {SIDE[side]}-hemisphere run but no --atlas-{side.lower()}h was given."
            )
        chosen[side] = Path(given[side])
    return dict(sorted(chosen.items()))


def pair_runs(files: Sequence[Path]) -> list[tuple[str, dict[str, Path]]]:
    """(run stem without hemisphere, {'L': file, 'R': file}) for runs given as both halves."""
    runs: dict[str, dict[str, Path]] = {}
    for f in files:
        halves = runs.setdefault(without_hemisphere(stem(Path(f))), {})
        side = hemisphere(f)
        if side in halves:
            raise DataError(f"{halves[side]} and {f} are the same hemisphere of one run.")
        halves[side] = Path(f)
    for halves in runs.values():
        if len(halves) != 2:
            (side, f), other = next(iter(halves.items())), "R" if "L" in halves else "L"
            raise DataError(
                f"{f} ({SIDE[side]} hemisphere) has no {SIDE[other]}-hemisphere file among the "
                f"runs (a name like it with hemi-{other}); give both halves of every run."
            )
    return [(key, dict(sorted(halves.items()))) for key, halves in runs.items()]


def right_offset(*labels: np.ndarray) -> int:
    """What right-hemisphere label ids are offset by: 1000, or the next power of ten above."""
    largest = max(int(lab.max(initial=0)) for lab in labels)
    return max(1000, 10 ** len(str(largest)))
