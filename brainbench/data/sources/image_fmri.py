"""Stimulus-evoked fMRI datasets for image decoding: layouts, reader and feature spaces.

Every dataset is read as a BIDS folder (see LAYOUTS for where each public dataset's files go):

    <root>/participants.tsv                 participant_id (+ age, sex: per-stage metrics)
    <root>/<stimuli folder>/...             one image file per stimulus (png/jpg, any depth)
    <root>/sub-*/[ses-*/]func/*_bold.nii[.gz]   4D BOLD in MNI space (e.g. fMRIPrep's
                                            space-MNI152NLin2009cAsym_desc-preproc_bold), or
                                            *_hemi-L/_hemi-R *_bold.func.gii pairs on fsaverage5
    <root>/sub-*/[ses-*/]func/*_events.tsv  onset + a stimulus column, next to each BOLD run
                                            (space-/desc- entities dropped from its name)
    RepetitionTime from the run's *_bold.json, a task-*_bold.json at the root, or the header.

The train/test split is by image: images listed as `test` in `<root>/stimuli.tsv` (stim_id,
split), or, without it, images shown more than once to a subject (BOLD5000's 113 repeated
images, THINGS-fMRI's 100 test images, NSD's shared 1000) are test images; the rest train.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import sparse

from brainbench.data.events import read_events
from brainbench.data.image_features import npy_bytes
from brainbench.data.nifti import open_image
from brainbench.data.records import SubjectRecord
from brainbench.data.runfiles import check_tr, header_tr
from brainbench.data.sources.base import Source
from brainbench.data.sources.table import parse_age, parse_sex
from brainbench.errors import ConfigError, DataError
from brainbench.owners import atomic_write
from brainbench.registry import register_source

Space = Literal["surface", "parcels", "mask"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".JPEG", ".JPG")
FEATURES_VERSION = 1


@dataclass(frozen=True)
class Layout:
    """Where a public dataset's files go, and how its events name the images."""

    name: str
    title: str
    download: str  # what to download, from where
    stim_column: str  # events.tsv column naming the image
    stimuli: str  # folder under the root holding the images
    strip: str = ""  # prefix removed from stimulus names before the image lookup


LAYOUTS: dict[str, Layout] = {
    layout.name: layout
    for layout in (
        Layout(
            "bold5000",
            "BOLD5000 (4 subjects, 5254 images, TR 2 s)",
            "the BIDS data from OpenNeuro ds001499 (`openneuro-py download --dataset ds001499`, "
            "or its fMRIPrep derivatives for MNI-space BOLD) into ROOT, and the stimuli "
            "(BOLD5000_Stimuli.zip from bold5000.org: Scene_Stimuli/Presented_Stimuli/...) "
            "into ROOT/stimuli",
            stim_column="ImgName",
            stimuli="stimuli",
            strip="rep_",
        ),
        Layout(
            "nsd",
            "Natural Scenes Dataset (8 subjects, 73k COCO images, TR 1.6 s at 1.8 mm)",
            "the BIDS raw data (nsddata_rawdata/) into ROOT, with each run's events.tsv naming "
            "the image file in a `stim_file` column, and the images exported from "
            "nsd_stimuli.hdf5 as ROOT/stimuli/<stim_file> (access via naturalscenesdataset.org)",
            stim_column="stim_file",
            stimuli="stimuli",
        ),
        Layout(
            "things_fmri",
            "THINGS-fMRI (3 subjects, 8740 THINGS images, TR 1.5 s)",
            "the BIDS data from OpenNeuro ds004192 into ROOT, and the THINGS images "
            "(things.osf.io, object_images/<concept>/<image>.jpg) into ROOT/stimuli",
            stim_column="file_path",
            stimuli="stimuli",
        ),
        Layout(
            "synth",
            "the embedded cohort watching procedural scenes (generated, no download)",
            "nothing: it is generated",
            stim_column="stim_id",
            stimuli="stimuli",
        ),
    )
}


DECODING_DATASETS = tuple(name for name in LAYOUTS if name != "synth")  # users' local copies


@dataclass
class Run:
    """One BOLD run of a subject with its events (`onset`, `stim_id`)."""

    subject: str
    session: str | None
    bold: tuple[Path, ...]  # one NIfTI, or left and right GIFTI
    events: pd.DataFrame
    tr: float
    n_vols: int


@dataclass
class EvokedData:
    root: Path
    runs: list[Run]
    images: dict[str, Path]  # stimulus id -> image file
    split: dict[str, str]  # stimulus id -> 'train' / 'test'
    ages: dict[str, float] = field(default_factory=dict)  # subject -> age (NaN if unknown)


def missing_dataset(layout: Layout, path: Path | None) -> DataError:
    """The error for a dataset that is not where the config says, with what to do."""
    where = f"{path} does not exist" if path else "data.path is not set"
    return DataError(
        f"dataset '{layout.name}' ({layout.title}): {where}. Download {layout.download}, then "
        f"run with `--dataset {layout.name} data.path=ROOT`. See `brainbench datasets` and "
        "brainbench/data/sources/image_fmri.py for the layout."
    )


def _tr(bold: Path, root: Path, image) -> float:
    """RepetitionTime from the run's JSON sidecar, a root-level task JSON, or the header."""
    stem = bold.name.split("_bold")[0]
    task = re.search(r"task-([a-zA-Z0-9]+)", stem)
    candidates = [bold.with_name(f"{stem}_bold.json")]
    if task:
        candidates.append(root / f"task-{task.group(1)}_bold.json")
    for sidecar in candidates:
        if sidecar.is_file():
            value = json.loads(sidecar.read_text()).get("RepetitionTime")
            if value:
                return check_tr(float(value), f"sidecar {sidecar} (RepetitionTime)")
    tr = header_tr(bold, image)  # the header's time step, in its units
    if tr is not None:
        return tr
    raise DataError(f"{bold} has no RepetitionTime (no JSON sidecar, no TR in the header).")


def _events_path(bold: Path) -> Path:
    stem = bold.name.split("_bold")[0]
    stem = re.sub(r"_(space|desc|hemi|res)-[a-zA-Z0-9]+", "", stem)
    return bold.with_name(f"{stem}_events.tsv")


def _find_images(folder: Path) -> tuple[dict[str, Path], dict[str, list[Path]]]:
    """(stimulus id -> image, ambiguous id -> its images): an image answers to its path under
    `folder`, its file name and its stem; a name or stem two images share names neither."""
    named: dict[str, list[Path]] = {}
    for path in sorted(folder.rglob("*")):
        if path.suffix in IMAGE_SUFFIXES:
            for key in dict.fromkeys((str(path.relative_to(folder)), path.name, path.stem)):
                named.setdefault(key, []).append(path)
    images = {key: paths[0] for key, paths in named.items() if len(paths) == 1}
    return images, {key: paths for key, paths in named.items() if len(paths) > 1}


def read_evoked(root: Path, layout: Layout, stim_column: str | None = None) -> EvokedData:
    """Every run, its events, the images and the split of an evoked-fMRI dataset at `root`."""
    root = Path(root)
    if not root.is_dir():
        raise missing_dataset(layout, root)
    column = stim_column or layout.stim_column
    stimuli_dir = root / layout.stimuli
    if not stimuli_dir.is_dir():
        raise DataError(f"{root} has no {layout.stimuli}/ folder of stimulus images; "
                        f"{layout.name} expects {layout.download}.")  # fmt: skip
    images, ambiguous = _find_images(stimuli_dir)
    runs = []
    for func in sorted(root.glob("sub-*/func")) + sorted(root.glob("sub-*/ses-*/func")):
        subject = func.parts[len(root.parts)]
        session = func.parent.name[4:] if func.parent.name.startswith("ses-") else None
        bolds = sorted(func.glob("*_bold.nii*"))
        preferred = [b for b in bolds if "space-MNI" in b.name]
        for bold in preferred or [b for b in bolds if "_space-" not in b.name]:
            image = open_image(bold)
            n_vols = int(image.shape[3]) if len(image.shape) == 4 else 1
            runs.append(_run(subject, session, (bold,), image, root, column, n_vols))
        for left in sorted(func.glob("*_hemi-L*_bold.func.gii")):
            right = left.with_name(left.name.replace("_hemi-L", "_hemi-R"))
            if not right.is_file():
                raise DataError(f"{left} has no right-hemisphere partner {right.name}.")
            image = nib.load(left)
            runs.append(
                _run(subject, session, (left, right), image, root, column, len(image.darrays))
            )
    if not runs:
        raise DataError(
            f"{root} has no sub-*/[ses-*/]func/*_bold.nii[.gz] or *_hemi-L_bold.func.gii runs; "
            f"{layout.name} expects {layout.download}."
        )
    for run in runs:
        names = run.events["stim_id"].str.removeprefix(layout.strip)
        shared = sorted(set(names) & set(ambiguous))
        if shared:
            files = ", ".join(str(p.relative_to(stimuli_dir)) for p in ambiguous[shared[0]][:3])
            raise DataError(
                f"stimulus '{shared[0]}' in the events of {run.bold[0].name} names several images "
                f"in {stimuli_dir} ({files}); name each by its path under {layout.stimuli}/ in "
                "the events, or rename the images apart."
            )
        unknown = sorted(set(names) - set(images))
        if unknown:
            raise DataError(
                f"stimulus '{unknown[0]}' (and {len(unknown) - 1} more) in the events of "
                f"{run.bold[0].name} has no image in {stimuli_dir}; add the image files there."
            )
        run.events["stim_id"] = names
    return EvokedData(root, runs, images, _split(root, runs), _ages(root))


def _run(subject, session, bold, image, root, column, n_vols) -> Run:
    events_path = _events_path(bold[0])
    if not events_path.is_file():
        raise DataError(f"BOLD run {bold[0]} has no events file {events_path.name} next to it.")
    tr = _tr(bold[0], root, image)
    events = read_events(events_path, column, n_vols, tr)
    return Run(subject, session, bold, events, tr, n_vols)


def _split(root: Path, runs: list[Run]) -> dict[str, str]:
    table = root / "stimuli.tsv"
    if table.is_file():
        frame = pd.read_csv(table, sep="\t", dtype=str)
        if not {"stim_id", "split"} <= set(frame.columns):
            raise DataError(f"{table} needs the columns stim_id and split (train/test).")
        return dict(zip(frame["stim_id"], frame["split"], strict=True))
    counts = pd.concat(
        [run.events.assign(subject=run.subject)[["subject", "stim_id"]] for run in runs]
    ).value_counts()
    repeated = {stim for (_, stim), n in counts.items() if n > 1}
    return {stim: "test" if stim in repeated else "train" for _, stim in counts.index}


def _ages(root: Path) -> dict[str, float]:
    path = root / "participants.tsv"
    if not path.is_file():
        return {}
    table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
    ages = table["age"] if "age" in table else pd.Series([""] * len(table))
    out = {}
    for pid, raw in zip(table["participant_id"], ages, strict=True):
        label = pid if str(pid).startswith("sub-") else f"sub-{pid}"
        out[label] = parse_age(raw, path, label) if raw not in ("", "n/a") else float("nan")
    return out


# --- feature spaces ---------------------------------------------------------------------------


@cache
def _fsaverage5():
    from nilearn import datasets

    return datasets.load_fsaverage("fsaverage5")


def surface_matrix(affine: np.ndarray, shape: tuple[int, int, int]) -> sparse.csr_matrix:
    """(20484 vertices, voxels) sparse operator equal to nilearn's vol_to_surf on fsaverage5.

    vol_to_surf (linear interpolation, samples between the white and pial surfaces) is linear
    in the image, but interpolates frame by frame; this builds the same weights once, so a run
    projects in one sparse product. tests/decoding checks it against vol_to_surf.
    """
    from nilearn.surface.surface import _sample_locations

    mesh = _fsaverage5()
    blocks = []
    size = np.asarray(shape)
    for hemi in ("left", "right"):
        locations = _sample_locations(
            mesh["pial"].parts[hemi], affine, radius=3.0, kind="depth",
            inner_mesh=mesh["white_matter"].parts[hemi],
        )  # fmt: skip
        n_vertices, n_points, _ = locations.shape
        points = locations.reshape(-1, 3)
        kept = (points >= 0).all(axis=1) & (points < size).all(axis=1)
        base = np.clip(np.floor(points), 0, size - 2).astype(int)
        frac = points - base
        rows = np.repeat(np.arange(n_vertices), n_points)
        valid = np.bincount(rows[kept], minlength=n_vertices).astype(float)
        scale = np.where(valid > 0, 1 / np.maximum(valid, 1), 0.0)[rows] * kept
        data, cols, out_rows = [], [], []
        for corner in np.ndindex(2, 2, 2):
            offset = np.asarray(corner)
            weight = np.prod(np.where(offset, frac, 1 - frac), axis=1)
            cols.append(np.ravel_multi_index((base + offset).T, shape))
            data.append(weight * scale)
            out_rows.append(rows)
        blocks.append(sparse.csr_matrix(
            (np.concatenate(data), (np.concatenate(out_rows), np.concatenate(cols))),
            shape=(n_vertices, int(np.prod(shape))),
        ))  # fmt: skip
    return sparse.vstack(blocks).tocsr()


def _volume_features(run: Run, space: Space, mask_path: Path | None) -> np.ndarray:
    """(n_vols, features) of a NIfTI run in the chosen space."""
    from nilearn.maskers import NiftiMasker, NiftiSpheresMasker

    image = open_image(run.bold[0])
    if len(image.shape) != 4:
        raise DataError(f"{run.bold[0]} is not a 4D BOLD series (shape {image.shape}).")
    if space == "surface":
        data = np.asarray(image.dataobj, dtype=np.float32).reshape(-1, run.n_vols)
        return np.asarray(surface_matrix(image.affine, image.shape[:3]) @ data).T
    if space == "parcels":
        from nilearn import datasets

        coords = datasets.fetch_coords_seitzman_2018()
        rois = np.column_stack([coords.rois["x"], coords.rois["y"], coords.rois["z"]])
        masker = NiftiSpheresMasker(rois, radius=8.0, allow_overlap=True, standardize=None)
        return masker.fit_transform(image)
    if mask_path is not None and not Path(mask_path).is_file():
        raise ConfigError(f"task_options.mask={mask_path} does not exist; give a NIfTI mask.")
    if mask_path is None:
        from nilearn import datasets

        mask_path = datasets.load_mni152_brain_mask(resolution=2)
    return NiftiMasker(
        mask_img=mask_path,
        target_affine=image.affine,
        target_shape=image.shape[:3],
        standardize=None,
    ).fit_transform(image)


def run_features(
    run: Run, space: Space, cache_dir: Path, mask_path: Path | None = None
) -> np.ndarray:
    """(n_vols, features) float32 of a run in `space`, detrended and z-scored per feature.

    GIFTI runs are already on a surface (any space gives their vertices). Cached per file
    content (size and mtime) and space.
    """
    from nilearn import signal

    stat = [(str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns) for p in run.bold]
    key = json.dumps([FEATURES_VERSION, stat, space, str(mask_path)])
    path = Path(cache_dir) / "evoked" / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.npy"
    if path.is_file():
        return np.load(path)
    if run.bold[0].name.endswith(".func.gii"):
        halves = [np.column_stack([d.data for d in nib.load(p).darrays]) for p in run.bold]
        features = np.concatenate(halves, axis=0).T
    else:
        features = _volume_features(run, space, mask_path)
    features = signal.clean(
        np.asarray(features, dtype=np.float64), detrend=True, standardize="zscore_sample"
    ).astype(np.float32)
    atomic_write(path, npy_bytes(features))
    return features


def check_evoked(name: str, root: Path) -> list[str]:
    """Problems found in a local copy of decoding dataset `name` (a LAYOUTS key); [] = usable."""
    layout = LAYOUTS[name]
    if not Path(root).is_dir():
        return [str(missing_dataset(layout, Path(root)))]
    try:
        data = read_evoked(Path(root), layout)
    except DataError as exc:
        return [str(exc)]
    splits = set(data.split.values())
    return [
        f"{root} has no {part} images: decoding needs images shown once (train) and repeated "
        "images, or a stimuli.tsv (stim_id, split) naming the test images."
        for part in ("train", "test")
        if part not in splits
    ]


# --- data sources -----------------------------------------------------------------------------


class EvokedSource(Source):
    """A local copy of a public image-decoding dataset in `layout` at data.path."""

    layout: Layout

    def _root(self) -> Path:
        if self.config.path is None or not Path(self.config.path).is_dir():
            raise missing_dataset(self.layout, self.config.path)
        return Path(self.config.path)

    def records(self) -> list[SubjectRecord]:
        """The dataset's subjects (for listings); decoding reads the runs itself."""
        root = self._root()
        data = read_evoked(root, self.layout)
        sex: dict[str, str] = {}
        frame = pd.read_csv(root / "participants.tsv", sep="\t", dtype=str, keep_default_na=False)
        for pid, text in zip(frame["participant_id"], frame.get("sex", ""), strict=False):
            sex["sub-" + str(pid).removeprefix("sub-")] = parse_sex(str(text))
        subjects = sorted({run.subject for run in data.runs})
        nan = float("nan")
        return [
            SubjectRecord(s[4:], data.ages.get(s, nan), sex.get(s, "unknown"), self.layout.name)
            for s in subjects
        ]

    def evoked(self, stimulus_column: str | None = None) -> EvokedData:
        return read_evoked(self._root(), self.layout, stimulus_column)


for _name in DECODING_DATASETS:
    register_source(_name, description=f"{LAYOUTS[_name].title}; image decoding (fmri/image)")(
        type(f"{_name}Source", (EvokedSource,), {"layout": LAYOUTS[_name]})
    )
