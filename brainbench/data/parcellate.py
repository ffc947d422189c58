"""Parcellation: 4D NIfTI (or surface series) + a labels atlas -> parcel time series.

Volumes go through nilearn's NiftiLabelsMasker (mean signal per label, optional confound
regression, linear detrending, band-pass filtering); an atlas on another grid than the data is
resampled to it (nearest neighbour), with a warning. Surface series (GIFTI, one data array per
time point, or MGH/MGZ) are averaged within each label of a per-vertex labels file. Parcel
coordinates are the label centroids in mm (volumes) or of the mesh's vertices (surfaces).

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
from collections.abc import Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainbench.data.nifti import open_image
from brainbench.data.timeseries import ATLAS_TABLE, SUFFIX, check_series, write_series
from brainbench.errors import ConfigError, DataError

VOLUME_SUFFIXES = (".nii", ".nii.gz")
SURFACE_SUFFIXES = (".gii", ".mgh", ".mgz")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".nii.gz", ".func.gii", ".nii", ".gii", ".mgh", ".mgz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def _load(path: Path) -> nib.spatialimages.SpatialImage:
    if not Path(path).is_file():
        raise DataError(f"{path} does not exist.")
    return open_image(path)


def repetition_time(path: Path, image: nib.spatialimages.SpatialImage | None = None) -> float:
    """TR in seconds from the BIDS sidecar JSON next to `path`, else the NIfTI header."""
    sidecar = path.with_name(_stem(path) + ".json")
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
            return float(tr)
    if isinstance(image, nib.Nifti1Image) and len(image.shape) == 4:
        zooms = image.header.get_zooms()
        units = image.header.get_xyzt_units()[1]
        tr = float(zooms[3]) * (0.001 if units == "msec" else 1.0)
        if tr > 0 and (tr != 1.0 or units == "sec"):
            return tr
    raise DataError(
        f"no repetition time for {path}: neither a sidecar {sidecar.name} with RepetitionTime "
        "nor a time step in the header; add the sidecar or pass --tr SECONDS."
    )


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
    from nilearn.maskers import NiftiLabelsMasker

    image = _load(path)
    if not isinstance(image, nib.Nifti1Image | nib.Nifti2Image) or len(image.shape) != 4:
        raise DataError(f"{path} is not a 4D NIfTI (shape {image.shape}); give a BOLD run.")
    if image.shape[3] < 2:
        raise DataError(f"{path} has {image.shape[3]} time point; a run needs at least 2.")
    tr = tr or repetition_time(path, image)
    labels = np.unique(np.asarray(atlas.dataobj))
    labels = labels[labels != 0].astype(int)
    on_grid = _atlas_on_grid(atlas, image, atlas_name)
    present = set(np.unique(np.asarray(on_grid.dataobj)).astype(int))
    empty = [int(label) for label in labels if label not in present]
    if empty:
        raise DataError(
            f"labels {empty[:10]} of atlas {atlas_name} have no voxel on the grid of {path}; use "
            "an atlas at the data's resolution or drop those labels."
        )
    conf = None if confounds is None else read_confounds(confounds, path, image.shape[3])
    masker = NiftiLabelsMasker(
        on_grid,
        detrend=detrend,
        high_pass=high_pass,
        low_pass=low_pass,
        t_r=tr,
        standardize=None,
        resampling_target=None,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        series = masker.fit_transform(image, confounds=conf)
    return np.asarray(series, dtype=np.float32), float(tr)


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
    if high_pass is not None and low_pass is not None and high_pass >= low_pass:
        raise ConfigError(
            f"high_pass {high_pass} Hz is not below low_pass {low_pass} Hz: a band-pass keeps "
            "the frequencies between them; swap or drop one."
        )


def _surface_series(path: Path) -> np.ndarray:
    """[time, vertices] of a GIFTI (one darray per time point, or one 2D darray) or MGH."""
    image = _load(path)
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
    image = _load(path)
    if isinstance(image, nib.GiftiImage):
        return np.asarray(image.darrays[0].data).astype(int).ravel()
    return np.asarray(image.dataobj).astype(int).ravel()


def parcellate_surface(
    path: Path, vertex_labels: np.ndarray, tr: float | None = None
) -> tuple[np.ndarray, np.ndarray, float]:
    """([time, labels] means, the label ids, TR) of a surface series; labels <= 0 are ignored."""
    data = _surface_series(path)
    if data.shape[1] != vertex_labels.size:
        raise DataError(
            f"{path} has {data.shape[1]} vertices but the labels have {vertex_labels.size}; "
            "use labels on the same mesh (e.g. fsaverage5: 10242 per hemisphere)."
        )
    if data.shape[0] < 2:
        raise DataError(f"{path} has {data.shape[0]} time point; a run needs at least 2.")
    ids = np.unique(vertex_labels[vertex_labels > 0])
    series = np.stack([data[:, vertex_labels == i].mean(axis=1) for i in ids], axis=1)
    return series, ids, tr or repetition_time(path)


def add_lookup(table: pd.DataFrame, lookup: Path) -> pd.DataFrame:
    """`table` (one row per label, column index) with the columns of the look-up TSV `lookup`."""
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
    return table.merge(extra, on="index", how="left")


def _destination(out: Path, path: Path, atlas_name: str) -> Path:
    stem = _stem(path)
    folder = Path(out)
    subject = re.search(r"(?:^|_)sub-([A-Za-z0-9]+)", stem)
    session = re.search(r"(?:^|_)ses-([A-Za-z0-9]+)", stem)
    if subject:
        folder = folder / f"sub-{subject.group(1)}"
        if session:
            folder = folder / f"ses-{session.group(1)}"
        folder = folder / "func"
    stem = stem.removesuffix("_bold")
    return folder / f"{stem}_atlas-{atlas_name}{SUFFIX}"


def parcellate_files(
    files: Sequence[Path],
    atlas: Path,
    out: Path,
    *,
    confounds: Sequence[Path] | None = None,
    detrend: bool = False,
    high_pass: float | None = None,
    low_pass: float | None = None,
    tr: float | None = None,
    mesh: Path | None = None,
    lookup: Path | None = None,
) -> list[Path]:
    """Parcellate every file with `atlas` into `out`; returns the series written.

    `atlas` is a labels NIfTI for volumes, or per-vertex labels for surface files (with `mesh`,
    a GIFTI surface of the same vertices, giving parcel centroids). Every output is checked
    (no constant or NaN parcels) before anything is written. `lookup`: the labels' look-up
    TSV (default: the atlas's name with .tsv, when it exists), merged into atlas.tsv by index.
    """
    files = [Path(f) for f in files]
    check_filter(tr, high_pass, low_pass)
    if confounds is not None and len(confounds) != len(files):
        raise DataError(f"{len(confounds)} confounds files for {len(files)} runs; give one each.")
    entity = re.search(r"atlas-([A-Za-z0-9]+)", Path(atlas).name)
    name = entity.group(1) if entity else re.sub(r"[^A-Za-z0-9]", "", _stem(Path(atlas))) or "atlas"
    surface = all(str(f).endswith(SURFACE_SUFFIXES) for f in files)
    results = []
    if surface:
        labels = read_vertex_labels(Path(atlas))
        for path in files:
            series, ids, run_tr = parcellate_surface(path, labels, tr)
            results.append((path, series, run_tr))
        table = pd.DataFrame({"index": ids})
        if mesh is not None:
            coords = np.asarray(_load(Path(mesh)).darrays[0].data)
            centroid = np.stack([coords[labels == i].mean(axis=0) for i in ids])
            table[["x", "y", "z"]] = centroid
    else:
        atlas_image = _load(Path(atlas))
        table = label_centroids(atlas_image)
        for i, path in enumerate(files):
            conf = confounds[i] if confounds else None
            series, run_tr = parcellate_volume(
                path,
                atlas_image,
                atlas_name=name,
                confounds=conf,
                detrend=detrend,
                high_pass=high_pass,
                low_pass=low_pass,
                tr=tr,
            )
            results.append((path, series, run_tr))
    default_lookup = Path(atlas).with_name(_stem(Path(atlas)) + ".tsv")
    if lookup is not None or default_lookup.is_file():
        table = add_lookup(table, Path(lookup or default_lookup))
    for path, series, _ in results:
        check_series(series, str(path))
    written = []
    for path, series, run_tr in results:
        target = write_series(_destination(out, path, name), series)
        sidecar = str(target).removesuffix(SUFFIX) + "_bold.json"
        Path(sidecar).write_text(json.dumps({"RepetitionTime": run_tr, "Atlas": name}) + "\n")
        written.append(target)
    Path(out).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(out) / ATLAS_TABLE, sep="\t", index=False)
    return written
