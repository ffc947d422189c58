"""`brainbench predict`: a trained run's model applied to new NIfTI files, in their own space.

The run record (config.yaml + model.safetensors, never a pickle) rebuilds the estimator; every
input is preprocessed exactly as in training (the run's `preprocess` config). Scalar tasks give
one row per file (predictions.tsv); voxel-wise tasks give a volume per file, resampled from the
preprocessed grid back onto the input's own voxel grid and affine (nearest neighbour for label
maps, linear for images), so it overlays the input. Segmentations add structure volumes (ml).
Every input is compared with the run's training inputs (data/ood.py): predictions.tsv says
per input whether it is unlike them (`ood`) and why (`ood_reason`); a constant image is
flagged and gets no prediction.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from brainbench.config import ExperimentConfig, home
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import VolumeDataset
from brainbench.data.nifti import load_nifti
from brainbench.data.ood import read_profiles
from brainbench.data.preprocess import grid_affine, interpolate_labels
from brainbench.data.records import SubjectRecord
from brainbench.errors import ConfigError
from brainbench.loading import load_run
from brainbench.metrics import STRUCTURES
from brainbench.results.record import check_writable
from brainbench.spec import TaskSpec

VOXEL_KINDS = ("segmentation", "synthesis")


def _stem(path: Path) -> str:
    return re.sub(r"\.nii(\.gz)?$", "", path.name)


def to_input_space(
    volume: np.ndarray, grid: np.ndarray, img: nib.Nifti1Image, *, labels: bool
) -> np.ndarray:
    """`volume` (on the grid with affine `grid`) resampled onto `img`'s voxels; label maps per
    label (see `interpolate_labels`)."""
    matrix = np.linalg.inv(grid) @ img.affine  # input voxel -> grid voxel

    def sample(values: np.ndarray) -> np.ndarray:
        return ndimage.affine_transform(
            values.astype(np.float32, copy=False),
            matrix[:3, :3],
            matrix[:3, 3],
            output_shape=img.shape[:3],
            order=1,
            mode="constant",
            cval=0.0,
        )

    return interpolate_labels(volume, sample) if labels else sample(volume)


def predict_files(
    run_dir: Path,
    files: Sequence[Path],
    out: Path,
    *,
    task: str | None = None,
    log: Callable[[str], None] = print,
) -> pd.DataFrame:
    """Predict every file with the run's model; write predictions.tsv (+ volumes) into `out`.

    Every input is checked before anything is written. `task`, if given, must be the run's.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for predictions.tsv and volumes.")
    config, spec, estimator = load_run(run_dir)
    if task is not None and task != spec.name:
        raise ConfigError(f"{run_dir} was trained on {spec.name}, not {task}; pick a {task} run.")
    if len(spec.inputs) != 1:
        raise ConfigError(
            f"{spec.name} takes {len(spec.inputs)} inputs ({', '.join(spec.inputs)}); predict "
            "reads one file per subject."
        )
    files = [Path(f) for f in files]
    images = [load_nifti(f) for f in files]  # DataError for a missing or non-NIfTI file
    stems = [_stem(f) for f in files]
    if len(set(stems)) < len(stems):
        raise ConfigError("two input files share a name; their outputs would overwrite each other.")
    usable = [np.ptp(np.asanyarray(img.dataobj)) > 0 for img in images]
    records = [
        SubjectRecord(subject=s, age=math.nan, sex="", site="", images={spec.inputs[0]: f})
        for s, f, ok in zip(stems, files, usable, strict=True)
        if ok
    ]
    preprocess = config.preprocess
    if preprocess.skull_strip == "mask":  # inputs come without masks: taken as given
        log(f"{run_dir} was trained on skull-stripped scans: give it skull-stripped inputs.")
        preprocess = preprocess.model_copy(update={"skull_strip": "none"})
    cache = VolumeCache(config.data.cache_dir or home() / "cache")
    data = VolumeDataset(records, list(spec.inputs), None, preprocess, cache)
    volumes = iter([data.volume(i)[0] for i in range(len(data))])
    flags = _flags(run_dir, spec.inputs[0], images, usable, volumes, config.preprocess.spacing)
    predicted = iter(np.asarray(estimator.predict(data)) if records else [])
    check_writable(out, "--out DIR")
    if spec.kind in VOXEL_KINDS:
        keep = [i for i, ok in enumerate(usable) if ok]
        kept = ([files[i] for i in keep], [images[i] for i in keep], list(predicted))
        table = _write_volumes(spec, config, *kept, out)
        table = pd.DataFrame({"file": [str(f) for f in files]}).merge(table, how="left")
    else:
        values = [next(predicted) if ok else math.nan for ok in usable]
        table = pd.DataFrame({"file": [str(f) for f in files], "prediction": values})
        if spec.kind == "classification":
            table = table.rename(columns={"prediction": f"p_{spec.target}"})
    if flags is not None:
        table["ood"] = ["yes" if reasons else "no" for reasons in flags]
        table["ood_reason"] = ["; ".join(reasons) for reasons in flags]
    table.to_csv(out / "predictions.tsv", sep="\t", index=False)
    log(table.to_string(index=False))
    if flags is not None and any(flags):
        log(
            f"warning: {sum(map(bool, flags))} of {len(files)} inputs are unlike the scans "
            f"{run_dir} was trained on; see the ood_reason column of {out / 'predictions.tsv'}."
        )
    log(f"wrote {out / 'predictions.tsv'}")
    return table


def _flags(
    run_dir: Path,
    modality: str,
    images: list[nib.Nifti1Image],
    usable: list[bool],
    volumes: Iterator[np.ndarray],
    spacing: float,
) -> list[list[str]] | None:
    """Per input, why it is unlike the run's training inputs (None: the run has no profile)."""
    profile = read_profiles(run_dir).get(modality)
    if profile is None:
        return None
    return [
        profile.check(next(volumes) if ok else None, img, spacing)
        for img, ok in zip(images, usable, strict=True)
    ]


def _write_volumes(
    spec: TaskSpec,
    config: ExperimentConfig,
    files: list[Path],
    images: list[nib.Nifti1Image],
    predictions: Sequence[np.ndarray],
    out: Path,
) -> pd.DataFrame:
    """One NIfTI per input on its own grid; a table of outputs (and structure volumes)."""
    labels = spec.kind == "segmentation"
    suffix = "dseg" if labels else spec.target
    rows = []
    for file, img, pred in zip(files, images, predictions, strict=True):
        grid = grid_affine(img, config.preprocess)
        volume = to_input_space(pred, grid, img, labels=labels)
        array = np.rint(volume).astype(np.uint8) if labels else volume.astype(np.float32)
        result = nib.Nifti1Image(array, img.affine)
        result.header.set_xyzt_units("mm")
        path = out / f"{_stem(file)}_{suffix}.nii.gz"
        nib.save(result, path)
        row: dict[str, Any] = {"file": str(file), "output": str(path)}
        if labels:
            voxel_ml = abs(np.linalg.det(img.affine[:3, :3])) / 1000
            counts = np.bincount(array.ravel(), minlength=len(STRUCTURES))
            row |= {
                f"{name}_ml": round(float(counts[k] * voxel_ml), 3)
                for k, name in enumerate(STRUCTURES)
                if k > 0
            }
        rows.append(row)
    return pd.DataFrame(rows, columns=None if rows else ["file", "output"])
