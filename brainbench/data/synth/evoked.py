"""Synthetic stimulus-evoked fMRI: subjects of the embedded cohort watching procedural images.

Written as a BIDS dataset under `home()/synth/evoked-<preset>-seed<N>` (see EVOKED_PRESETS):

    participants.tsv                      the cohort's participant_id, age, sex, site
    stimuli/stim-XXXX.png, stimuli.tsv    the images and their split (train / test)
    task-images_bold.json                 RepetitionTime
    sub-*/func/sub-*_task-images_run-NN_bold.nii.gz    4D BOLD in MNI space (6 mm)
    sub-*/func/sub-*_task-images_run-NN_events.tsv     onset, duration, trial_type, stim_id
    derivatives/encoding/sub-*_encoding.npz            the true encoding model (for the oracle)

As in BOLD5000, training images are shown once and test images are repeated. Each subject's
response to an image is a known encoding model: K rectified feature channels of the image's
built-in embedding (image_features.builtin_features), each with a smooth cortical map
concentrated in occipital grey matter (part shared across subjects, part their own), plus a
response common to every image; each trial's channel drive varies around its image's value
(trial-to-trial variability, `variability` times the channel's SD across images, as repeated
presentations of one image never evoke the same response); scaled by a lifespan amplitude
(lower in older adults), convolved with nilearn's Glover HRF at the run's TR, over a baseline
with linear drift and AR(1) measurement noise (noisier in children). `oracle_scores` turns the
known model into the ideal observer's candidate scores, the retrieval ceiling reported as the
oracle; the trial variability keeps it below 1.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy import ndimage

from brainbench.config import home
from brainbench.data.image_features import builtin_features
from brainbench.data.synth.generate import (
    check_preset,
    demographics,
    stream,
    subject_id,
    write_json,
    write_tsv,
)
from brainbench.data.synth.stimuli import make_image, write_stimuli
from brainbench.errors import DataError
from brainbench.progress import track
from brainbench.stages import stage_of

EVOKED_VERSION = "2"
MARKER = Path("derivatives") / "brainbench_evoked.json"
TASK = "images"
TR, SOA, STIM_S, LEAD_IN_S, TAIL_S = 2.0, 6.0, 1.0, 8.0, 16.0
VOXEL_MM = 6.0
CHANNELS = 48
VARIABILITY = 2.5
# lifespan stage -> (response amplitude, noise factor)
STAGE_EFFECTS = {"child": (1.0, 1.3), "young_adult": (1.0, 1.0), "middle_age": (0.9, 1.0)}
STAGE_EFFECTS |= {"older_adult": (0.7, 1.0), "adolescent": (1.0, 1.15)}


@dataclass(frozen=True)
class EvokedPreset:
    stages: tuple[str, ...]  # one subject of the cohort per stage
    n_train: int
    n_test: int
    repeats: int
    runs: int
    noise: float  # measurement noise SD in % signal change
    variability: float  # trial-to-trial SD of each channel's drive, in units of its image SD


EVOKED_PRESETS = {
    "debug": EvokedPreset(("young_adult", "older_adult"), 48, 12, 2, 2, 0.9, VARIABILITY),
    "default": EvokedPreset(
        ("child", "young_adult", "middle_age", "older_adult"), 200, 100, 2, 4, 0.9, VARIABILITY
    ),
    "large": EvokedPreset(
        ("child", "young_adult", "middle_age", "older_adult"), 800, 100, 4, 8, 0.9, VARIABILITY
    ),
}


def evoked_root(preset: str, seed: int) -> Path:
    return home() / "synth" / f"evoked-{preset}-seed{seed}"


def _grid() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(brain mask, grey-matter probability, affine) of the MNI152 template at VOXEL_MM."""
    from nilearn import datasets, image

    affine = np.diag([VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = (-90.0, -126.0, -72.0)
    shape = (31, 37, 31)

    def resample(img, interpolation: str) -> np.ndarray:
        out = image.resample_img(
            img, affine, shape, interpolation=interpolation, force_resample=True, copy_header=True
        )
        return np.asarray(out.get_fdata(dtype=np.float32))

    mask = resample(datasets.load_mni152_brain_mask(resolution=2), "nearest") > 0.5
    gm = resample(datasets.load_mni152_gm_template(resolution=2), "continuous")
    return mask, np.clip(gm, 0, 1) * mask, affine


def _smooth_fields(rng: np.random.Generator, n: int, mask: np.ndarray) -> np.ndarray:
    """(n, voxels in mask) unit-variance smooth random fields."""
    fields = np.stack([ndimage.gaussian_filter(rng.normal(size=mask.shape), 1.0) for _ in range(n)])
    fields = fields[:, mask]
    return fields / fields.std(axis=1, keepdims=True)


def event_regressors(onsets: np.ndarray, n_vols: int, tr: float) -> np.ndarray:
    """(n_vols, events): each event's Glover-HRF response (STIM_S box) sampled at the TRs."""
    from nilearn.glm.first_level import compute_regressor

    frame_times = np.arange(n_vols) * tr
    columns = [
        compute_regressor(
            (np.array([onset]), np.array([STIM_S]), np.array([1.0])), "glover", frame_times
        )[0][:, 0]
        for onset in onsets
    ]
    return np.stack(columns, axis=1)


def _embeddings(seed: int, n_images: int) -> np.ndarray:
    """Standardised built-in embeddings of the stimulus set (the encoding model's input)."""
    features = builtin_features([make_image(seed, i) for i in range(n_images)])
    return (features - features.mean(0)) / (features.std(0) + 1e-6)


def _schedule(rng: np.random.Generator, spec: EvokedPreset, ids: list[str]) -> list[list[str]]:
    """Stimulus ids per run: train images once, test images `repeats` times, shuffled."""
    trials = ids[: spec.n_train] + ids[spec.n_train :] * spec.repeats
    order = [trials[i] for i in rng.permutation(len(trials))]
    return [list(part) for part in np.array_split(order, spec.runs)]


def generate_evoked(root: Path, preset: str = "default", seed: int = 0) -> Path:
    """Write the evoked-fMRI dataset of a cohort preset and seed under `root` (see module doc)."""
    spec = EVOKED_PRESETS[check_preset(preset).name]
    rows = demographics(check_preset(preset).n_subjects, seed)
    chosen = [next(r for r in rows if stage_of(r["age"]) == stage) for stage in spec.stages]
    n_images = spec.n_train + spec.n_test
    ids = [f"stim-{i + 1:04d}" for i in range(n_images)]
    write_stimuli(root / "stimuli", ids, seed)
    split = ["train"] * spec.n_train + ["test"] * spec.n_test
    write_tsv(
        root / "stimuli.tsv", [{"stim_id": s, "split": p} for s, p in zip(ids, split, strict=True)]
    )
    embeddings = _embeddings(seed, n_images)
    mask, gm, affine = _grid()
    ys = (np.argwhere(mask) @ affine[:3, :3].T + affine[:3, 3])[:, 1]
    visual = gm[mask] * (0.15 + 1.0 / (1.0 + np.exp((ys + 55.0) / 8.0)))  # occipital
    shared = stream(seed, "evoked-model")
    shared_weights = shared.normal(size=(CHANNELS, embeddings.shape[1])) / np.sqrt(
        embeddings.shape[1]
    )
    shared_maps = _smooth_fields(shared, CHANNELS, mask)
    write_json(root / f"task-{TASK}_bold.json", {"TaskName": TASK, "RepetitionTime": TR})
    participants = []
    for row in track(chosen, len(chosen), "synthetic evoked fMRI (first use only)"):
        sub = subject_id(row["index"])
        rng = stream(seed, "evoked", row["index"])
        amplitude, noise_factor = STAGE_EFFECTS[stage_of(row["age"])]
        weights = 0.8 * shared_weights + 0.6 * rng.normal(size=shared_weights.shape) / np.sqrt(
            embeddings.shape[1]
        )
        maps = 0.75 * shared_maps + 0.66 * _smooth_fields(rng, CHANNELS, mask)
        drive = np.logaddexp(0.0, 2.0 * embeddings @ weights.T - 1.0)  # softplus channels
        drive -= drive.mean(axis=0)
        loadings = amplitude * maps * visual / np.sqrt(CHANNELS)  # % signal change per unit drive
        trial_sd = spec.variability * drive.std(axis=0)
        general = amplitude * 1.5 * visual
        baseline = 600.0 + 400.0 * gm[mask] + rng.normal(0, 20, mask.sum())
        noise_sd = spec.noise * noise_factor * baseline / 100.0
        runs = _schedule(rng, spec, ids)
        drifts = []
        for run, stim_ids in enumerate(runs, start=1):
            onsets = LEAD_IN_S + SOA * np.arange(len(stim_ids))
            n_vols = int(round((onsets[-1] + TAIL_S) / TR))
            regressors = event_regressors(onsets, n_vols, TR)
            index = [ids.index(s) for s in stim_ids]
            trial_drive = drive[index] + trial_sd * rng.normal(size=(len(index), CHANNELS))
            signal = regressors @ (trial_drive @ loadings)
            signal += regressors.sum(1, keepdims=True) * general
            drift = rng.normal(0, 0.02, mask.sum()) * baseline / 100.0  # per volume
            noise = rng.normal(size=(n_vols, mask.sum()))
            for t in range(1, n_vols):  # AR(1), rho 0.3, unit variance
                noise[t] = 0.3 * noise[t - 1] + np.sqrt(1 - 0.09) * noise[t]
            bold = baseline * (1 + signal / 100.0) + np.arange(n_vols)[:, None] * drift
            bold += noise * noise_sd
            volume = np.zeros((*mask.shape, n_vols), dtype=np.float32)
            volume[mask] = bold.T
            image = nib.Nifti1Image(volume, affine)
            image.header.set_xyzt_units("mm", "sec")
            image.header["pixdim"][4] = TR
            image.set_data_dtype(np.int16)
            stem = root / sub / "func" / f"{sub}_task-{TASK}_run-{run:02d}"
            stem.parent.mkdir(parents=True, exist_ok=True)
            nib.save(image, f"{stem}_bold.nii.gz")
            events = [
                {"onset": o, "duration": STIM_S, "trial_type": split[ids.index(s)], "stim_id": s}
                for o, s in zip(onsets, stim_ids, strict=True)
            ]
            write_tsv(Path(f"{stem}_events.tsv"), events)
            drifts.append(drift)
        (root / "derivatives" / "encoding").mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            root / "derivatives" / "encoding" / f"{sub}_encoding.npz",
            mask=mask,
            drive=drive.astype(np.float32),
            loadings=(baseline * loadings / 100.0).astype(np.float32),
            trial_sd=trial_sd.astype(np.float32),
            noise_sd=noise_sd.astype(np.float32),
            general=(baseline * general / 100.0).astype(np.float32),
            baseline=baseline.astype(np.float32),
            drift=np.stack(drifts).astype(np.float32),
            stim_ids=np.array(ids),
        )
        participants.append({k: row[k] for k in ("age", "sex", "site")} | {"participant_id": sub})
    write_tsv(
        root / "participants.tsv",
        [{"participant_id": p["participant_id"], **{k: p[k] for k in ("age", "sex", "site")}}
         for p in participants],
    )  # fmt: skip
    description = {"Name": "brainbench synthetic evoked fMRI", "BIDSVersion": "1.9.0"}
    write_json(root / "dataset_description.json", description)
    write_json(root / MARKER, {"version": EVOKED_VERSION, "preset": preset, "seed": seed})
    return root


def ensure_evoked(preset: str = "default", seed: int = 0) -> Path:
    """The evoked dataset's folder, generated first if needed (atomically, via a staging folder)."""
    root = evoked_root(preset, seed)
    marker = root / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == EVOKED_VERSION:
        return root
    staging = root.with_name(f".{root.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        generate_evoked(staging, preset, seed)
        shutil.rmtree(root, ignore_errors=True)
        staging.rename(root)
    except OSError as exc:
        raise DataError(f"cannot write the synthetic evoked dataset to {root}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def oracle_scores(
    root: Path,
    subject: str,
    runs: list[tuple[Path, pd.DataFrame]],
    queries: pd.DataFrame,
    candidates: list[str],
) -> np.ndarray:
    """The ideal observer's score of each candidate image for each query (higher = likelier).

    `runs` are (bold path, events) of the subject in run order; `queries` has columns `run`
    (index into runs), `event` (row of that run's events) and `trs` (the window's volume
    indices). With the true encoding model, everything but the queried event's image is known
    (other events at their images' mean response): the window's residual R, projected on the
    event's HRF h and the channel loadings L (weighted by the measurement noise), estimates the
    trial's channel drive d = d_c + trial variability + measurement error. The score of
    candidate c is the Gaussian log-likelihood (up to a constant) of that estimate,
    -(d - d_c)' S^-1 (d - d_c), with S = diag(trial SD^2) + (L W L')^-1 / h'h.
    """
    model = np.load(root / "derivatives" / "encoding" / f"{subject}_encoding.npz")
    ids = list(model["stim_ids"])
    drive, loadings = model["drive"].astype(np.float64), model["loadings"].astype(np.float64)
    weighted = loadings / model["noise_sd"].astype(np.float64) ** 2  # L W
    gram_inv = np.linalg.inv(weighted @ loadings.T)
    trial_cov = np.diag(model["trial_sd"].astype(np.float64) ** 2)
    cand = drive[[ids.index(c) for c in candidates]]
    scores = np.zeros((len(queries), len(candidates)))
    for run, rows in queries.groupby("run"):
        path, events = runs[run]
        data = np.asarray(nib.load(path).dataobj, dtype=np.float64)[model["mask"]].T  # (T, V)
        n_vols = data.shape[0]
        regressors = event_regressors(events["onset"].to_numpy(float), n_vols, TR)
        index = [ids.index(s) for s in events["stim_id"]]
        clean = regressors @ (drive[index] @ loadings)
        clean += regressors.sum(1, keepdims=True) * model["general"]
        background = model["baseline"] + np.arange(n_vols)[:, None] * model["drift"][run] + clean
        for position, row in zip(rows.index, rows.itertuples(), strict=True):
            trs = np.asarray(row.trs)
            h = regressors[trs, row.event]
            own = np.outer(h, drive[index[row.event]] @ loadings)
            residual = data[trs] - (background[trs] - own)
            estimate = gram_inv @ (weighted @ (residual.T @ h)) / (h @ h)
            precision = np.linalg.inv(trial_cov + gram_inv / (h @ h))
            diff = estimate - cand
            scores[queries.index.get_loc(position)] = -np.einsum(
                "ck,kl,cl->c", diff, precision, diff
            )
    return scores
