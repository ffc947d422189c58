"""Synthetic resting-state fMRI for the embedded cohort: parcel time series on the Seitzman ROIs.

Generative model, per subject (every draw from the stream ('fmri', subject index) of the cohort
seed, so it does not depend on the preset's size or on the anatomy):

- 14 network time courses (the 13 Seitzman 2018 networks + 'unassigned') are a mixture
  n = M s of independent unit AR(1) 'neural' processes s convolved with the Glover HRF at the
  site's TR. M = I + coupling * B + sex_sign * S, with B and S fixed for the cohort, so the
  true network correlation is corr(M M^T). Between-network coupling falls through
  development (segregation) and rises again in old age (dedifferentiation); S strengthens some
  network pairs in females and weakens them in males.
- Parcel i of network k: x_i = a * w_i * n_k + sqrt(1 - (a w_i)^2) * u_i, with u_i its own
  HRF-convolved process and a the within-network loading, which follows the same segregation
  curve.
- Plus white measurement noise (the site's noise level), six motion traces (random walks with
  spikes, larger in children and older adults) leaking into every parcel, a slow drift, and a
  per-parcel baseline intensity times a per-run scanner gain.

Per site: TR (0.72-2.5 s) and run length (volumes). Written under
`<cohort>/derivatives/fmri/`: one .npy series per subject, a BOLD sidecar JSON (RepetitionTime)
and a confounds TSV, `atlas.tsv` (ROI coordinates and networks), `latents.tsv` (the generative
parameters and the true network correlations `fc_<a>_<b>`, for an oracle ceiling) and, for a
few subjects, a small 4D NIfTI plus a labels atlas image (`nifti/`) so the parcellation path
runs on real files.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from scipy.signal import fftconvolve

from brainbench.data.timeseries import write_series
from brainbench.errors import DataError

VERSION = "1"
FOLDER = Path("derivatives") / "fmri"
MARKER = "brainbench_fmri.json"
ATLAS = "Seitzman300"
NIFTI_SUBJECTS = 4  # the first subjects also get a 4D NIfTI + atlas image
NIFTI_VOXEL_MM = 5.0  # voxel size of those images; an ROI is the voxels within ROI_RADIUS_MM
ROI_RADIUS_MM = 5.0
NEURAL_TAU_S = 1.5  # time constant of the latent AR(1) processes

# (TR in seconds, volumes per run) of the sites modelled on real datasets; others are hashed.
SITE_ACQUISITION: dict[str, tuple[float, int]] = {
    "dhcp-fetal": (2.0, 160),
    "dhcp-neonatal": (0.8, 240),
    "bcp": (0.8, 240),
    "calgary-preschool": (2.0, 160),
    "abcd": (0.8, 240),
    "hbn": (0.8, 240),
    "ping": (2.5, 160),
    "hcp-d": (0.72, 280),
    "abide": (2.0, 180),
    "hcp-ya": (0.72, 280),
    "camcan": (1.97, 200),
    "hcp-a": (0.72, 280),
    "ukb": (0.735, 260),
    "adni": (2.5, 160),
}


def site_acquisition(site: str) -> tuple[float, int]:
    """(TR seconds, volumes) of a site: its table entry, else derived from its name's hash."""
    if site in SITE_ACQUISITION:
        return SITE_ACQUISITION[site]
    h = zlib.crc32(site.encode())
    return round(0.7 + 1.8 * (h % 1000) / 999, 2), 160 + 40 * ((h >> 10) % 4)


def seitzman_atlas() -> pd.DataFrame:
    """The 300 Seitzman 2018 ROIs (nilearn, offline): x, y, z (MNI mm) and network."""
    from nilearn.datasets import fetch_coords_seitzman_2018

    rois = fetch_coords_seitzman_2018()
    table = rois.rois[["x", "y", "z"]].reset_index(drop=True).astype(float)
    table["network"] = [str(n) for n in rois.networks]
    table.insert(0, "index", np.arange(1, len(table) + 1))
    return table


def series_path(folder: Path, participant_id: str) -> Path:
    """Where `ensure_functional` puts a subject's parcel series (a .npy, [time, parcels]).

    Shared interface: `folder` is what ensure_functional returned, `participant_id` as in
    participants.tsv (e.g. 'sub-0001').
    """
    return (
        Path(folder) / participant_id / "func" / f"{participant_id}_task-rest_atlas-{ATLAS}"
        "_timeseries.npy"
    )


def _stream(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(b"fmri"), index])


def _subject_index(participant_id: str) -> int:
    digits = participant_id.removeprefix("sub-")
    return int(digits) if digits.isdigit() else zlib.crc32(participant_id.encode())


def segregation(age: float) -> float:
    """0 (fetal, integrated) -> 1 (young adult, segregated), falling again after 40 years."""
    development = 1 - np.exp(-(age + 0.4) / 7.0)
    ageing = max(0.0, age - 40.0) / 60.0
    return float(development - 0.8 * ageing)


class Generator:
    """The cohort-level structure (network mixing, parcel weights) and one subject's draw."""

    def __init__(self, seed: int, atlas: pd.DataFrame) -> None:
        rng = _stream(seed, 0)
        self.networks = sorted(atlas["network"].unique())
        self.member = np.array([self.networks.index(n) for n in atlas["network"]])
        k, p = len(self.networks), len(atlas)
        self.between = rng.normal(0, 0.35, (k, k))  # B: between-network mixing
        self.sex_mix = np.zeros((k, k))  # S: a few sex-dependent network pairs
        for _ in range(4):
            a, b = rng.choice(k, 2, replace=False)
            self.sex_mix[a, b] = rng.choice([-1, 1]) * 0.25
        self.parcel_weight = rng.uniform(0.75, 1.0, p)
        self.baseline = rng.uniform(400.0, 1200.0, p)
        self.motion_beta = rng.normal(0, 0.3, (6, p))

    def mixing(self, coupling: float, sex_sign: float) -> np.ndarray:
        k = len(self.networks)
        return np.eye(k) + coupling * self.between + sex_sign * self.sex_mix

    def network_correlation(self, coupling: float, sex_sign: float) -> np.ndarray:
        """The true correlation of the network time courses for these parameters."""
        m = self.mixing(coupling, sex_sign)
        cov = m @ m.T
        d = np.sqrt(np.diag(cov))
        return cov / np.outer(d, d)

    def subject(
        self, age: float, sex: str, site: str, noise: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(series [time, parcels], motion [time, 6], latents) of one subject."""
        from nilearn.glm.first_level import glover_hrf

        tr, n = site_acquisition(site)
        seg = segregation(age)
        coupling_z, loading_z, motion_z = rng.normal(0, 1, 3)
        coupling = max(0.05, 1.1 - 0.8 * seg + 0.12 * coupling_z)
        loading = float(np.clip(0.45 + 0.35 * seg + 0.06 * loading_z, 0.2, 0.95))
        sex_sign = 1.0 if sex == "F" else -1.0
        k, p = len(self.networks), len(self.member)
        burn = int(np.ceil(32.0 / tr))  # HRF length: discard the convolution's warm-up
        phi = np.exp(-tr / NEURAL_TAU_S)
        shocks = rng.normal(0, np.sqrt(1 - phi**2), (n + 2 * burn, k + p))
        neural = np.empty_like(shocks)
        neural[0] = rng.normal(0, 1, k + p)
        for t in range(1, len(shocks)):
            neural[t] = phi * neural[t - 1] + shocks[t]
        hrf = glover_hrf(tr, oversampling=1, time_length=32.0)
        bold = fftconvolve(neural, hrf[:, None], axes=0)[2 * burn : 2 * burn + n]
        bold /= bold.std(axis=0, keepdims=True)
        nets = bold[:, :k] @ self.mixing(coupling, sex_sign).T
        nets /= nets.std(axis=0, keepdims=True)
        a = loading * self.parcel_weight
        signal = a * nets[:, self.member] + np.sqrt(1 - a**2) * bold[:, k:]
        motion_scale = 0.02 * (1 + 1.5 * np.exp(-max(age, 0) / 6) + max(0, age - 60) / 30)
        motion_scale *= np.exp(0.3 * motion_z)
        motion = np.cumsum(rng.normal(0, motion_scale, (n, 6)), axis=0)
        spikes = rng.random(n) < 0.02
        motion[spikes] += rng.normal(0, 5 * motion_scale, (spikes.sum(), 6))
        motion -= motion.mean(axis=0)
        drift = np.linspace(-1, 1, n)[:, None] * rng.normal(0, 0.3, p)
        noisy = signal + motion @ self.motion_beta + drift + rng.normal(0, 8 * noise, (n, p))
        gain = rng.uniform(0.8, 1.2)
        series = gain * self.baseline * (1 + 0.01 * noisy)
        latents = {
            "tr": tr,
            "n_volumes": n,
            "segregation": seg,
            "coupling": coupling,
            "coupling_z": coupling_z,
            "loading": loading,
            "loading_z": loading_z,
            "sex_sign": sex_sign,
            "motion_scale": motion_scale,
            "noise": 8 * noise,
        }
        truth = self.network_correlation(coupling, sex_sign)
        for a, b in zip(*np.triu_indices(k, 1), strict=True):
            latents[f"fc_{self.networks[a]}_{self.networks[b]}"] = truth[a, b]
        return series.astype(np.float32), motion.astype(np.float32), latents


def atlas_grid() -> np.ndarray:
    """Affine of the small MNI grid (x -90..90, y -126..90, z -72..108 mm) of the NIfTI subset."""
    affine = np.diag([NIFTI_VOXEL_MM] * 3 + [1.0])
    affine[:3, 3] = (-90.0, -126.0, -72.0)
    return affine


def write_atlas_image(path: Path, atlas: pd.DataFrame) -> nib.Nifti1Image:
    """A labels image (0 = background, i = ROI i) of voxels within ROI_RADIUS_MM of an ROI."""
    affine = atlas_grid()
    shape = (37, 44, 37)
    ijk = np.indices(shape).reshape(3, -1).T
    xyz = ijk * NIFTI_VOXEL_MM + affine[:3, 3]
    centres = atlas[["x", "y", "z"]].to_numpy()
    labels = np.zeros(len(xyz), dtype=np.int16)
    best = np.full(len(xyz), np.inf)
    for i, centre in enumerate(centres):
        d = np.linalg.norm(xyz - centre, axis=1)
        closer = (d <= ROI_RADIUS_MM) & (d < best)
        labels[closer], best[closer] = i + 1, d[closer]
    for i, centre in enumerate(centres):  # every ROI keeps at least its centre voxel
        if not (labels == i + 1).any():
            labels[np.argmin(np.linalg.norm(xyz - centre, axis=1))] = i + 1
    image = nib.Nifti1Image(labels.reshape(shape), affine)
    image.set_qform(affine, code=4)
    image.set_sform(affine, code=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return image


def write_volume_run(
    folder: Path, participant_id: str, series: np.ndarray, tr: float, labels: nib.Nifti1Image
) -> Path:
    """A 4D NIfTI whose ROI voxels carry their parcel's series (+ voxel noise), zeros elsewhere."""
    lab = np.asarray(labels.dataobj)
    inside = np.flatnonzero(lab.ravel())
    rng = np.random.default_rng(zlib.crc32(participant_id.encode()))
    voxels = series[:, lab.ravel()[inside] - 1]
    voxels = voxels * (1 + 0.002 * rng.standard_normal(voxels.shape))
    data = np.zeros((lab.size, len(series)), dtype=np.float32)
    data[inside] = voxels.T
    image = nib.Nifti1Image(data.reshape(*lab.shape, len(series)), labels.affine)
    image.header.set_data_dtype(np.int16)  # scaled on save: small files
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = tr
    path = folder / participant_id / "func" / f"{participant_id}_task-rest_bold.nii.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)
    return path


def _cohort_seed(cohort_root: Path) -> int:
    marker = cohort_root / "derivatives" / "brainbench_synth.json"
    try:
        return int(json.loads(marker.read_text())["seed"])
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(
            f"{cohort_root} is not a generated synthetic cohort (no readable {marker}); "
            "create it with `brainbench synth`."
        ) from None


def _site_noise(site: str) -> float:
    from brainbench.data.synth.sites import SITE_BY_NAME

    return SITE_BY_NAME[site].noise if site in SITE_BY_NAME else 0.05


def ensure_functional(cohort_root: Path) -> Path:
    """The folder of the cohort's resting-state parcel series, generated once (atomic).

    Shared interface (fMRI tasks, multimodal model). One series per participants.tsv row at
    `series_path(folder, participant_id)`; deterministic for the cohort (its seed). Generation
    writes a hidden staging folder renamed onto `<cohort_root>/derivatives/fmri` when complete.
    """
    cohort_root = Path(cohort_root)
    folder = cohort_root / FOLDER
    marker = folder / MARKER
    if marker.is_file() and json.loads(marker.read_text()).get("version") == VERSION:
        return folder
    seed = _cohort_seed(cohort_root)
    staging = folder.with_name(f".fmri.tmp-{socket.gethostname()}-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        generate_functional(cohort_root, staging, seed)
        retired = folder.with_name(f".fmri.old-{socket.gethostname()}-{os.getpid()}")
        if folder.exists():
            os.rename(folder, retired)
        os.rename(staging, folder)
        shutil.rmtree(retired, ignore_errors=True)
    except OSError as exc:
        if not marker.is_file():
            raise DataError(f"cannot write the synthetic fMRI to {folder}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def generate_functional(cohort_root: Path, out: Path, seed: int) -> Path:
    """Write every subject's series, sidecars, confounds, atlas, latents and NIfTI subset."""
    participants = pd.read_csv(cohort_root / "participants.tsv", sep="\t")
    atlas = seitzman_atlas()
    gen = Generator(seed, atlas)
    labels = write_atlas_image(out / "nifti" / f"atlas-{ATLAS}_dseg.nii.gz", atlas)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for position, row in enumerate(participants.itertuples(index=False)):
        pid = str(row.participant_id)
        rng = _stream(seed, _subject_index(pid))
        series, motion, latents = gen.subject(
            float(row.age), str(row.sex), str(row.site), _site_noise(str(row.site)), rng
        )
        path = write_series(series_path(out, pid), series)
        stem = str(path).removesuffix("_timeseries.npy")
        Path(f"{stem}_bold.json").write_text(
            json.dumps({"RepetitionTime": latents["tr"], "Atlas": ATLAS}, indent=1) + "\n"
        )
        names = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
        pd.DataFrame(motion, columns=names).to_csv(
            f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, float_format="%.5g"
        )
        if position < NIFTI_SUBJECTS:
            write_volume_run(out / "nifti", pid, series, latents["tr"], labels)
        rows.append({"participant_id": pid, **latents})
    atlas.to_csv(out / "atlas.tsv", sep="\t", index=False)
    pd.DataFrame(rows).to_csv(out / "latents.tsv", sep="\t", index=False, float_format="%.6g")
    truth = {
        "networks": gen.networks,
        "between_mixing": gen.between.round(6).tolist(),
        "sex_mixing": gen.sex_mix.round(6).tolist(),
        "parcel_weight": gen.parcel_weight.round(6).tolist(),
    }
    (out / "ground_truth.json").write_text(json.dumps(truth) + "\n")
    marker = {"generator": "brainbench.data.synth.functional", "version": VERSION, "seed": seed}
    (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    return out
