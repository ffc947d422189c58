"""Parcellation: 4D NIfTI (or surface series) + a labels atlas -> parcel time series.

Volumes go through nilearn's NiftiLabelsMasker (mean signal per label, optional confound
regression, linear detrending, band-pass filtering); an atlas on another grid than the data is
resampled to it (nearest neighbour), with a warning. A built-in atlas (brainbench.data.atlases:
MNI coordinates) is drawn as spheres on each run's grid instead. Labels with no voxel in a
run's field of view are an error, or with `drop_empty_labels` are left out of every run (one
warning; the sidecars list them as DroppedLabels). Surface series (GIFTI, one data array per
time point, or MGH/MGZ) are averaged within each label of a per-vertex labels file
(brainbench.data.surfaces). Parcel coordinates are the label centroids in mm (volumes), the
published ROI centres (built-in atlases) or the mesh's vertices (surfaces).

A look-up table of the labels (TSV with an `index` column, e.g. BIDS `atlas-X_dseg.tsv` with
name and network; by default the .tsv next to the atlas with its name, when there is one) adds
its columns to atlas.tsv, so fmri/networks can score against the network labels.

Outputs follow the layout the fMRI tasks read (brainbench.data.timeseries): for an input named
`sub-<id>[_ses-<id>]_..._bold.nii.gz`, `OUT/sub-<id>/[ses-<id>/]func/<stem>_atlas-<name>
_timeseries.npy` plus `<stem>_atlas-<name>_bold.json` (RepetitionTime) and `OUT/atlas.tsv`.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainbench.data import atlases, surfaces
from brainbench.data.runfiles import TR_RANGE, load, repetition_time, stem, without_hemisphere
from brainbench.data.timeseries import ATLAS_TABLE, SUFFIX, check_series, write_series
from brainbench.errors import ConfigError, DataError

VOLUME_SUFFIXES = (".nii", ".nii.gz")
SURFACE_SUFFIXES = (".gii", ".mgh", ".mgz")
FILTER_ORDER = 5  # nilearn.signal.butterworth's default order, which the masker uses


def filter_min_volumes(high_pass: float | None, low_pass: float | None) -> int:
    """Fewest volumes nilearn's Butterworth filter accepts for these cutoffs (0: no filter).

    nilearn.signal.butterworth filters with scipy's sosfiltfilt at its default padding, which
    needs more than 3 x ntaps samples, ntaps = 2 x sections + 1 - the trailing zero
    coefficients; the section count depends on the filter type, not on the cutoff values.
    """
    from scipy import signal

    if high_pass is None and low_pass is None:
        return 0
    kind = "band" if high_pass and low_pass else ("high" if high_pass else "low")
    sos = signal.butter(FILTER_ORDER, [0.1, 0.2] if kind == "band" else 0.1, kind, output="sos")
    ntaps = 2 * len(sos) + 1 - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum())
    return 3 * int(ntaps) + 1


def label_centroids(atlas: nib.Nifti1Image) -> pd.DataFrame:
    """index, x, y, z (mm): the centroid of every non-zero label of a labels image."""
    data = np.asarray(atlas.dataobj)
    if data.ndim != 3:
        raise DataError(f"a labels atlas must be 3D; this one has shape {data.shape}.")
    labels = np.unique(data[data != 0]).astype(int)
    if labels.size == 0:
        raise DataError("the labels atlas has no non-zero label.")
    rows = []
    for label in labels:
        ijk = np.argwhere(data == label).mean(axis=0)
        x, y, z = nib.affines.apply_affine(atlas.affine, ijk)
        rows.append({"index": int(label), "x": x, "y": y, "z": z})
    return pd.DataFrame(rows)


def _atlas_on_grid(atlas: nib.Nifti1Image, image: nib.Nifti1Image, name: str) -> nib.Nifti1Image:
    """The atlas on the data's grid (nearest neighbour, with a warning when resampled)."""
    same = atlas.shape[:3] == image.shape[:3] and np.allclose(atlas.affine, image.affine, atol=1e-3)
    if same:
        return atlas
    from nilearn.image import resample_to_img

    warnings.warn(
        f"atlas {name} is on another grid than the data; resampling it to the data (nearest).",
        stacklevel=3,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resampled = resample_to_img(
            atlas,
            nib.Nifti1Image(np.zeros(image.shape[:3], np.int8), image.affine),
            interpolation="nearest",
            force_resample=True,
            copy_header=True,
        )
    if not np.asarray(resampled.dataobj).any():
        raise DataError(
            f"atlas {name} does not overlap the data (no label left on the data's grid); check "
            "that both are in the same space."
        )
    return resampled


def _builtin_on_grid(table: pd.DataFrame, name: str, path: Path, image) -> nib.Nifti1Image:
    """Built-in atlas `name` drawn on the run's grid, with a warning if it does not look MNI."""
    mismatch = atlases.mni_mismatch(image.affine, image.shape[:3], table)
    if mismatch:
        warnings.warn(
            f"{path} does not look like MNI space ({mismatch}); the built-in atlas {name} holds "
            "MNI coordinates: give runs normalised to MNI or an atlas in the runs' space.",
            stacklevel=3,
        )
    return atlases.atlas_image(table, image.affine, image.shape[:3])


@dataclass
class _VolumeRun:
    """A run checked and ready to extract: its image, the atlas on its grid, TR, confounds."""

    path: Path
    image: nib.Nifti1Image
    labels: nib.Nifti1Image
    tr: float
    confounds: np.ndarray | None
    empty: list[int]


def _prepare_volume(
    path: Path,
    draw: Callable[[Path, nib.Nifti1Image], nib.Nifti1Image],
    labels: Sequence[int],
    *,
    confounds: Path | None,
    tr: float | None,
    high_pass: float | None,
    low_pass: float | None,
) -> _VolumeRun:
    """Check a run (4D, TR, long enough for the filter, confounds) and draw the atlas on it."""
    image = load(path)
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image) or len(image.shape) != 4:
        raise DataError(f"{path} is not a 4D NIfTI (shape {image.shape}); give a BOLD run.")
    n = image.shape[3]
    if n < 2:
        raise DataError(f"{path} has {n} time point; a run needs at least 2.")
    need = filter_min_volumes(high_pass, low_pass)
    if n < need:
        raise DataError(
            f"{path} has {n} volumes, too few for the band-pass filter (--high-pass/--low-pass): "
            f"nilearn's order-{FILTER_ORDER} Butterworth filter with these cutoffs needs at "
            f"least {need}; drop the filter or the run."
        )
    run_tr = tr or repetition_time(path, image)
    on_grid = draw(path, image)
    present = set(np.unique(np.asarray(on_grid.dataobj)).astype(int))
    empty = [int(label) for label in labels if label not in present]
    conf = None if confounds is None else read_confounds(confounds, path, n)
    return _VolumeRun(path, image, on_grid, float(run_tr), conf, empty)


def _extract(
    run: _VolumeRun,
    dropped: Sequence[int],
    detrend: bool,
    high_pass: float | None,
    low_pass: float | None,
) -> np.ndarray:
    """[time, labels] means of a prepared run (ascending labels, `dropped` left out)."""
    from nilearn.maskers import NiftiLabelsMasker

    labels = run.labels
    if dropped:
        data = np.asarray(labels.dataobj).copy()
        data[np.isin(data, dropped)] = 0
        labels = nib.Nifti1Image(data, labels.affine, labels.header)
    masker = NiftiLabelsMasker(
        labels,
        detrend=detrend,
        high_pass=high_pass,
        low_pass=low_pass,
        t_r=run.tr,
        standardize=None,
        resampling_target=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        series = masker.fit_transform(run.image, confounds=run.confounds)
    return np.asarray(series, dtype=np.float32)


def _empty_error(runs: Sequence[_VolumeRun], atlas_name: str) -> DataError:
    run = next(r for r in runs if r.empty)
    return DataError(
        f"labels {run.empty[:10]} of atlas {atlas_name} have no voxel on the grid of {run.path} "
        "(outside its field of view, or too small for its voxels); pass --drop-empty-labels to "
        "leave them out, or use an atlas covering the data at its resolution."
    )


def parcellate_volume(
    path: Path,
    atlas: nib.Nifti1Image,
    *,
    atlas_name: str = "atlas",
    confounds: Path | None = None,
    detrend: bool = False,
    high_pass: float | None = None,
    low_pass: float | None = None,
    tr: float | None = None,
) -> tuple[np.ndarray, float]:
    """([time, labels] series in the atlas's label order, TR) of a 4D NIfTI."""
    labels = np.unique(np.asarray(atlas.dataobj))
    run = _prepare_volume(
        path,
        lambda _, image: _atlas_on_grid(atlas, image, atlas_name),
        labels[labels != 0].astype(int),
        confounds=confounds,
        tr=tr,
        high_pass=high_pass,
        low_pass=low_pass,
    )
    if run.empty:
        raise _empty_error([run], atlas_name)
    return _extract(run, [], detrend, high_pass, low_pass), run.tr


def read_confounds(path: Path, run: Path, n_volumes: int) -> np.ndarray:
    """[time, confounds] from a TSV with a header row and one row per volume (n/a -> 0)."""
    try:
        table = pd.read_csv(path, sep="\t")
    except (OSError, ValueError) as exc:  # pandas' empty-file and parser errors are ValueErrors
        raise DataError(f"cannot read the confounds file {path}: {exc}") from None
    if len(table) != n_volumes:
        raise DataError(
            f"confounds {path} has {len(table)} rows but {run} has {n_volumes} time points; "
            "give that run's confounds (a header row, then one row per volume)."
        )
    numbers = table.select_dtypes("number")
    text = [c for c in table.columns if c not in numbers.columns]
    if text:
        raise DataError(
            f"confounds {path} has columns that are not numbers: {text[:5]}; fix or drop them."
        )
    values = numbers.fillna(0.0).to_numpy(float)
    infinite = list(numbers.columns[~np.isfinite(values).all(axis=0)])
    if infinite:
        raise DataError(f"confounds {path} has infinite values in {infinite[:5]}; fix them.")
    return values


def check_filter(tr: float | None, high_pass: float | None, low_pass: float | None) -> None:
    """Refuse a TR or cutoff that is not a positive number, and a band with high >= low."""
    for name, value in (("tr (--tr)", tr), ("high_pass", high_pass), ("low_pass", low_pass)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a positive number, not {value}.")
    if tr is not None and not TR_RANGE[0] <= tr <= TR_RANGE[1]:
        raise ConfigError(
            f"--tr {tr:g} is outside the plausible {TR_RANGE[0]:g}..{TR_RANGE[1]:g} s; --tr is "
            "in seconds."
        )
    if high_pass is not None and low_pass is not None and high_pass >= low_pass:
        raise ConfigError(
            f"high_pass {high_pass} Hz is not below low_pass {low_pass} Hz: a band-pass keeps "
            "the frequencies between them; swap or drop one."
        )


def add_lookup(table: pd.DataFrame, lookup: Path) -> pd.DataFrame:
    """`table` (one row per label, column index) with the columns of the look-up TSV `lookup`
    (its columns replace the table's of the same name, except index and x, y, z)."""
    try:
        extra = pd.read_csv(lookup, sep="\t")
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the atlas look-up table {lookup}: {exc}") from None
    if "index" not in extra.columns or extra["index"].duplicated().any():
        raise DataError(
            f"the atlas look-up table {lookup} needs an 'index' column with one row per label."
        )
    extra = extra.drop(columns=[c for c in ("x", "y", "z") if c in extra.columns])
    missing = sorted(set(table["index"]) - set(extra["index"]))
    if missing:
        raise DataError(f"labels {missing[:10]} of the atlas are missing from {lookup}; add them.")
    replaced = [c for c in extra.columns if c != "index" and c in table.columns]
    return table.drop(columns=replaced).merge(extra, on="index", how="left")


def default_lookup(atlas: Path) -> Path | None:
    """The .tsv next to an atlas file with its name (BIDS atlas-X_dseg.tsv), if there is one."""
    found = Path(atlas).with_name(stem(Path(atlas)) + ".tsv")
    return found if found.is_file() else None


def atlas_name(atlas: Path | str) -> str:
    """The atlas's name in output files: its BIDS atlas- entity, else its file stem's letters."""
    entity = re.search(r"atlas-([A-Za-z0-9]+)", Path(atlas).name)
    if entity:
        return entity.group(1)
    return re.sub(r"[^A-Za-z0-9]", "", without_hemisphere(stem(Path(atlas)))) or "atlas"


def destination(out: Path, run_stem: str, name: str) -> Path:
    """Where the series of the run named `run_stem` goes under `out` (BIDS-like folders)."""
    folder = Path(out)
    subject = re.search(r"(?:^|_)sub-([A-Za-z0-9]+)", run_stem)
    session = re.search(r"(?:^|_)ses-([A-Za-z0-9]+)", run_stem)
    if subject:
        folder = folder / f"sub-{subject.group(1)}"
        if session:
            folder = folder / f"ses-{session.group(1)}"
        folder = folder / "func"
    return folder / f"{run_stem.removesuffix('_bold')}_atlas-{name}{SUFFIX}"


@dataclass
class _Parcellated:
    """Series of every run (run stem, source file(s), [time, parcels], TR) and the atlas."""

    name: str
    table: pd.DataFrame
    runs: list[tuple[str, str, np.ndarray, float]]
    dropped: list[int]


def _volume_runs(
    files: Sequence[Path],
    atlas: Path | str,
    confounds: Sequence[Path] | None,
    *,
    detrend: bool,
    high_pass: float | None,
    low_pass: float | None,
    tr: float | None,
    drop_empty_labels: bool,
) -> _Parcellated:
    builtin = atlases.builtin_name(atlas)
    if builtin:
        name, table = builtin, atlases.roi_table(builtin)

        def draw(path, image):
            return _builtin_on_grid(table, name, path, image)
    else:
        name, labels = atlas_name(atlas), load(Path(atlas))
        table = label_centroids(labels)

        def draw(path, image):
            return _atlas_on_grid(labels, image, name)

    grids: dict[tuple, nib.Nifti1Image] = {}

    def on_grid(path, image):  # one drawing (and one warning) per grid
        key = (image.shape[:3], np.round(image.affine, 4).tobytes())
        if key not in grids:
            grids[key] = draw(path, image)
        return grids[key]

    runs = [
        _prepare_volume(
            path,
            on_grid,
            table["index"].tolist(),
            confounds=confounds[i] if confounds else None,
            tr=tr,
            high_pass=high_pass,
            low_pass=low_pass,
        )
        for i, path in enumerate(files)
    ]
    dropped = sorted({label for run in runs for label in run.empty})
    if dropped and not drop_empty_labels:
        raise _empty_error(runs, name)
    if dropped:
        where = [str(run.path) for run in runs if run.empty]
        warnings.warn(
            f"dropping {len(dropped)} labels of atlas {name} with no voxel in the field of view "
            f"of {', '.join(where[:3])}{' ...' if len(where) > 3 else ''}: {dropped}",
            stacklevel=3,
        )
        table = table[~table["index"].isin(dropped)].reset_index(drop=True)
    series = [
        (stem(r.path), str(r.path), _extract(r, dropped, detrend, high_pass, low_pass), r.tr)
        for r in runs
    ]
    return _Parcellated(name, table, series, dropped)


def _surface_runs(
    files: Sequence[Path],
    atlas: Path | None,
    atlas_lh: Path | None,
    atlas_rh: Path | None,
    meshes: dict[str | None, Path | None],
    tr: float | None,
) -> _Parcellated:
    if atlas is not None and atlases.builtin_name(atlas):
        raise ConfigError(
            f"the built-in atlas {atlas} is an MNI volume; surface runs need per-vertex labels "
            "files (--atlas FILE, or --atlas-lh and --atlas-rh)."
        )
    by_side = surfaces.labels_by_side(files, atlas, atlas_lh, atlas_rh)
    labels = {side: surfaces.read_vertex_labels(path) for side, path in by_side.items()}
    offset = surfaces.right_offset(*labels.values()) if len(by_side) == 2 else 0
    if offset and meshes[None] is not None:
        raise ConfigError("runs of both hemispheres take --mesh-lh and --mesh-rh, not --mesh.")
    tables = []
    for side, path in by_side.items():
        part = pd.DataFrame({"index": np.unique(labels[side][labels[side] > 0])})
        mesh = meshes[side] if offset else meshes[None] or meshes.get(side)
        if mesh is not None:
            part[["x", "y", "z"]] = surfaces.mesh_centroids(mesh, labels[side], str(path))
        if default_lookup(path) is not None:
            part = add_lookup(part, default_lookup(path))
        if offset:
            part["index"] += offset if side == "R" else 0
            part["hemi"] = side
        tables.append(part)
    pairs = (
        surfaces.pair_runs(files)
        if offset
        else [(stem(f), {next(iter(by_side)): Path(f)}) for f in files]
    )
    runs = []
    for run_stem, halves in pairs:
        parts = [
            surfaces.parcellate_surface(f, labels[side], tr, str(by_side[side]))
            for side, f in halves.items()
        ]
        trs = {round(part[2], 6) for part in parts}
        if len(trs) > 1:
            raise DataError(f"{' and '.join(map(str, halves.values()))} differ in TR: {trs}.")
        series = np.concatenate([part[0] for part in parts], axis=1)
        runs.append((run_stem, " + ".join(map(str, halves.values())), series, parts[0][2]))
    name = atlas_name(next(iter(by_side.values())))
    return _Parcellated(name, pd.concat(tables, ignore_index=True), runs, [])


def parcellate_files(
    files: Sequence[Path],
    atlas: Path | str | None,
    out: Path,
    *,
    confounds: Sequence[Path] | None = None,
    detrend: bool = False,
    high_pass: float | None = None,
    low_pass: float | None = None,
    tr: float | None = None,
    mesh: Path | None = None,
    lookup: Path | None = None,
    atlas_lh: Path | None = None,
    atlas_rh: Path | None = None,
    mesh_lh: Path | None = None,
    mesh_rh: Path | None = None,
    drop_empty_labels: bool = False,
) -> list[Path]:
    """Parcellate every file with the atlas into `out`; returns the series written.

    `atlas` is a labels NIfTI or a built-in atlas name (brainbench.data.atlases) for volumes,
    or per-vertex labels for surface runs of one hemisphere (`mesh`: a GIFTI surface of the same
    vertices, for parcel centroids); runs given as both hemispheres take `atlas_lh`/`atlas_rh`
    (and `mesh_lh`/`mesh_rh`), see brainbench.data.surfaces. `drop_empty_labels`: leave out
    labels without a voxel in some run's field of view instead of refusing them. Every output
    is checked (no constant or NaN parcels) before anything is written. `lookup`: the labels'
    look-up TSV (default: the atlas's name with .tsv, when it exists), merged into atlas.tsv.
    """
    files = [Path(f) for f in files]
    check_filter(tr, high_pass, low_pass)
    if confounds is not None and len(confounds) != len(files):
        raise DataError(f"{len(confounds)} confounds files for {len(files)} runs; give one each.")
    if all(str(f).endswith(SURFACE_SUFFIXES) for f in files):
        if confounds or detrend or high_pass or low_pass or drop_empty_labels:
            raise ConfigError(
                "--confounds, --detrend, --high-pass, --low-pass and --drop-empty-labels apply "
                "to volume runs; surface series are averaged as they are: drop those options."
            )
        if mesh is not None and (mesh_lh or mesh_rh):
            raise ConfigError("give --mesh, or --mesh-lh and --mesh-rh, not both.")
        meshes = {None: mesh, "L": mesh_lh, "R": mesh_rh}
        done = _surface_runs(files, atlas, atlas_lh, atlas_rh, meshes, tr)
    else:
        if atlas is None or atlas_lh or atlas_rh:
            raise ConfigError(
                "volume runs take --atlas (a labels NIfTI or a built-in atlas name); "
                "--atlas-lh/--atlas-rh are for surface runs."
            )
        done = _volume_runs(
            files,
            atlas,
            confounds,
            detrend=detrend,
            high_pass=high_pass,
            low_pass=low_pass,
            tr=tr,
            drop_empty_labels=drop_empty_labels,
        )
        if lookup is None and not atlases.builtin_name(atlas):
            lookup = default_lookup(Path(atlas))
    table = done.table if lookup is None else add_lookup(done.table, Path(lookup))
    for _, source, series, _ in done.runs:
        check_series(series, source)
    written = []
    for run_stem, _, series, run_tr in done.runs:
        target = write_series(destination(out, run_stem, done.name), series)
        sidecar = {"RepetitionTime": run_tr, "Atlas": done.name}
        if done.dropped:
            sidecar["DroppedLabels"] = done.dropped
        Path(str(target).removesuffix(SUFFIX) + "_bold.json").write_text(json.dumps(sidecar) + "\n")
        written.append(target)
    Path(out).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out) / ATLAS_TABLE, sep="\t", index=False)
    return written
