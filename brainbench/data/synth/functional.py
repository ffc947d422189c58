"""Synthetic resting-state fMRI for the embedded cohort: parcel time series on the Seitzman ROIs.

Generative model, per subject (every draw from the stream ('fmri', subject index) of the cohort
seed, so it does not depend on the preset's size or on the anatomy). Every latent process is
Gaussian noise with power ~ 1 / f^NEURAL_EXPONENT drawn in the Fourier domain and convolved
with the Glover (1999) HRF at the site's TR, so all share one spectrum:

- 14 network time courses (the 13 Seitzman 2018 networks + 'unassigned') are a mixture
  n = M s of independent such processes s. M = I + coupling * B + sex_sign * S, with B and S
  fixed for the cohort, so the true network correlation is corr(M M^T). Between-network
  coupling falls through development (segregation) and rises again in old age
  (dedifferentiation); S strengthens some network pairs in females and weakens them in males.
- Parcel i of network k: x_i = a w_i n_k + sqrt(1 - (a w_i)^2) e_i, with a the within-network
  loading (same segregation curve) and w_i a fixed parcel weight. The non-network parts e are
  correlated in space: corr(e) = (1 - SPATIAL_SHARE) I + SPATIAL_SHARE exp(-d / SPATIAL_LENGTH_MM),
  d the distance between ROI centres, so correlation falls with distance as in real data.
- Plus white measurement noise (the site's noise level); head motion, a random walk with rare
  jerks in mm and radians whose framewise displacement (FD, Power 2012) averages about
  0.1-0.2 mm in young adults and more in children and older adults, entering the signal through
  the position and through each frame's FD (signal drops at motion spikes); respiration
  (0.2-0.33 Hz) and cardiac pulsation (0.9-1.3 Hz), quasi-periodic traces sampled at the TR and
  so aliased as in the scanner, loading more on outer (respiration) and inferior-medial
  (cardiac) parcels (Glover 2000, RETROICOR); a slow drift; and a per-parcel baseline
  intensity times a per-run scanner gain.

Calibrated (fmri_stats.py, `brainbench synth` prints them) against approximate published
ranges: spectral exponent about 0.8 over 0.01-0.1 Hz (He 2011), within-network correlation
well above between-network and falling with distance (Power 2011), mean FD 0.1-0.3 mm in
adults, higher in youth (Power 2012, 2014; Satterthwaite 2012), and a conditional-Gaussian R^2
of a hidden parcel from the others near 0.4-0.5 in young adults.

References: Glover GH (1999) NeuroImage 9:416-429; Glover GH, Li TQ, Ress D (2000) Magn Reson
Med 44:162-167; He BJ (2011) J Neurosci; Power JD et al. (2011) Neuron 72:665-678; Power JD et
al. (2012) NeuroImage 59:2142-2154; Power JD et al. (2014) NeuroImage 84:320-341;
Satterthwaite TD et al. (2012) NeuroImage 60:623-632; Seitzman BA et al. (2020) NeuroImage
206:116290.

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
from threadpoolctl import threadpool_limits

from brainbench.data.timeseries import write_series
from brainbench.errors import DataError
from brainbench.progress import track

VERSION = "2"  # 2: spatial smoothness, 1/f spectrum, calibrated motion, physiology
FOLDER = Path("derivatives") / "fmri"
MARKER = "brainbench_fmri.json"
TRUTH = "ground_truth.json"  # per-parcel truth: network weights, spatial correlation
ATLAS = "Seitzman300"
HEAD_RADIUS_MM = 50.0  # the sphere converting rotations to mm of framewise displacement
NIFTI_SUBJECTS = 4  # the first subjects also get a 4D NIfTI + atlas image
NIFTI_VOXEL_MM = 5.0  # voxel size of those images; an ROI is the voxels within ROI_RADIUS_MM
ROI_RADIUS_MM = 5.0
NEURAL_EXPONENT = 0.85  # neural power ~ 1 / f^NEURAL_EXPONENT before the HRF
SPATIAL_LENGTH_MM = 30.0  # length scale of the spatial component's exp(-d / length)
SPATIAL_SHARE = 0.85  # share of a parcel's non-network variance that is spatially smooth
MOTION_BETA = 0.05  # std of the signal change per mm of head displacement
FD_BETA = 0.5  # std of the signal change per mm of framewise displacement
HEAD_MM = 50.0  # radius turning rotations into displacements (Power 2012)
JERK_RATE, JERK_SIZE = 0.02, 6.0  # share of frames with a jerk, and its size in steps
PHYSIO_AMPLITUDE = 0.3  # std of respiration / cardiac noise at full loading

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


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """FD per volume (the first is 0) from [time, 6] motion: mm translations, radian rotations."""
    step = np.abs(np.diff(np.asarray(motion, dtype=np.float64), axis=0))
    fd = step[:, :3].sum(axis=1) + HEAD_RADIUS_MM * step[:, 3:].sum(axis=1)
    return np.concatenate([[0.0], fd])


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


def powerlaw_bold(
    rng: np.random.Generator, n: int, tr: float, columns: int, exponent: float
) -> np.ndarray:
    """[n, columns] independent unit-variance BOLD series: 1/f^exponent noise, HRF-convolved.

    Drawn in the Fourier domain over twice the run (so the start does not wrap onto the end),
    the Glover HRF applied as its transfer function.
    """
    from nilearn.glm.first_level import glover_hrf

    size = 2 * n
    freq = np.fft.rfftfreq(size, tr)
    gain = np.zeros(len(freq))
    gain[1:] = freq[1:] ** (-exponent / 2)
    gain = gain * np.fft.rfft(glover_hrf(tr, oversampling=1, time_length=32.0), size)
    parts = rng.standard_normal((2, len(freq), columns))
    coef = parts[0] + 1j * parts[1]
    bold = np.fft.irfft(coef * gain[:, None], size, axis=0)[:n]
    return bold / bold.std(axis=0, keepdims=True)


def private_correlation(
    coords: np.ndarray, share: float = SPATIAL_SHARE, length_mm: float = SPATIAL_LENGTH_MM
) -> np.ndarray:
    """Correlation of the parcels' non-network parts: (1 - share) I + share exp(-d / length_mm).

    Shared interface (fmri/perturb's truth): `coords` [parcels, 3] in mm, d their distances.
    """
    coords = np.asarray(coords, dtype=float)
    distance = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    return (1 - share) * np.eye(len(coords)) + share * np.exp(-distance / length_mm)


def physiology(rng: np.random.Generator, n: int, tr: float, rate_hz: float) -> np.ndarray:
    """A quasi-periodic unit-variance trace (drifting rate, slow amplitude swell) every TR.

    Sampling at the TR aliases it: only its phase at the volumes is kept, as in the scanner.
    """
    rate = rate_hz * (1 + np.cumsum(rng.normal(0, 0.05, n)) / np.sqrt(n))
    phase = 2 * np.pi * np.cumsum(rate * tr) + rng.uniform(0, 2 * np.pi)
    trace = np.sin(phase) * (
        1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.002, 0.01) * tr * np.arange(n))
    )
    return trace / trace.std()


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
        coords = atlas[["x", "y", "z"]].to_numpy(float)
        self.private_factor = np.linalg.cholesky(private_correlation(coords))
        # motion: signal change (in neural-signal std, about 1% BOLD) per mm of displacement
        # (rotations as arc length) and per mm of framewise displacement (Power 2012)
        self.motion_beta = rng.normal(0, MOTION_BETA, (6, p)) * np.repeat([1, HEAD_MM], 3)[:, None]
        self.fd_beta = -np.abs(rng.normal(0, FD_BETA, p))
        # physiological loadings: respiration grows away from the centre of the head, the
        # cardiac pulse towards the inferior, medial parcels (large vessels, ventricles)
        radius = np.linalg.norm(coords - coords.mean(axis=0), axis=1)
        self.resp_loading = rng.uniform(0.5, 1.0, p) * radius / radius.max()
        inferior = np.exp(-(coords[:, 2] - coords[:, 2].min()) / 40.0)
        medial = np.exp(-np.abs(coords[:, 0]) / 30.0)
        self.cardiac_loading = rng.uniform(0.5, 1.0, p) * (inferior + medial) / 2

    def mixing(self, coupling: float, sex_sign: float) -> np.ndarray:
        k = len(self.networks)
        return np.eye(k) + coupling * self.between + sex_sign * self.sex_mix

    def network_correlation(self, coupling: float, sex_sign: float) -> np.ndarray:
        """The true correlation of the network time courses for these parameters."""
        m = self.mixing(coupling, sex_sign)
        cov = m @ m.T
        d = np.sqrt(np.diag(cov))
        return cov / np.outer(d, d)

    def motion(self, rng: np.random.Generator, n: int, scale: float) -> np.ndarray:
        """[n, 6] head position (mm, radians): a random walk with rare jerks, centred."""
        steps = rng.normal(0, scale, (n, 6))
        jerks = rng.random(n) < JERK_RATE
        steps[jerks] *= JERK_SIZE
        motion = np.cumsum(steps, axis=0) / np.repeat([1, HEAD_MM], 3)
        return motion - motion.mean(axis=0)

    def subject(
        self, age: float, sex: str, site: str, noise: float, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, dict]:
        """(series [time, parcels], motion [time, 6], latents) of one subject."""
        tr, n = site_acquisition(site)
        seg = segregation(age)
        coupling_z, loading_z, motion_z = rng.normal(0, 1, 3)
        coupling = max(0.05, 1.1 - 0.8 * seg + 0.12 * coupling_z)
        loading = float(np.clip(0.4 + 0.3 * seg + 0.06 * loading_z, 0.2, 0.95))
        sex_sign = 1.0 if sex == "F" else -1.0
        k, p = len(self.networks), len(self.member)
        bold = powerlaw_bold(rng, n, tr, k + p, NEURAL_EXPONENT)
        nets = bold[:, :k] @ self.mixing(coupling, sex_sign).T
        nets /= nets.std(axis=0, keepdims=True)
        private = bold[:, k:] @ self.private_factor.T
        a = loading * self.parcel_weight
        signal = a * nets[:, self.member] + np.sqrt(1 - a**2) * private
        motion_scale = 0.025 * (1 + 1.5 * np.exp(-max(age, 0) / 6) + max(0, age - 60) / 30)
        motion_scale *= np.exp(0.3 * motion_z)
        motion = self.motion(rng, n, motion_scale)
        fd = framewise_displacement(motion)
        artefact = motion @ self.motion_beta + (fd - fd.mean())[:, None] * self.fd_beta
        physio = PHYSIO_AMPLITUDE * (
            physiology(rng, n, tr, rng.uniform(0.2, 0.33))[:, None] * self.resp_loading
            + physiology(rng, n, tr, rng.uniform(0.9, 1.3))[:, None] * self.cardiac_loading
        )
        drift = np.linspace(-1, 1, n)[:, None] * rng.normal(0, 0.3, p)
        white = rng.normal(0, 8 * noise, (n, p))
        noisy = signal + artefact + physio + drift + white
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
            "mean_fd": float(fd[1:].mean()),
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


@threadpool_limits.wrap(limits=1, user_api="blas")  # small products: threads only add overhead
def generate_functional(cohort_root: Path, out: Path, seed: int) -> Path:
    """Write every subject's series, sidecars, confounds, atlas, latents and NIfTI subset."""
    participants = pd.read_csv(cohort_root / "participants.tsv", sep="\t")
    atlas = seitzman_atlas()
    gen = Generator(seed, atlas)
    labels = write_atlas_image(out / "nifti" / f"atlas-{ATLAS}_dseg.nii.gz", atlas)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    subjects = participants.itertuples(index=False)
    what = "synthetic resting-state fMRI (first use only)"
    for position, row in enumerate(track(subjects, len(participants), what)):
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
        "spatial_share": SPATIAL_SHARE,
        "spatial_length_mm": SPATIAL_LENGTH_MM,
    }
    (out / TRUTH).write_text(json.dumps(truth) + "\n")
    marker = {"generator": "brainbench.data.synth.functional", "version": VERSION, "seed": seed}
    (out / MARKER).write_text(json.dumps(marker, indent=1) + "\n")
    return out
