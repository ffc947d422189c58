"""Is an input scan like the scans a model was trained on? Per-input flags with reasons.

At training, `fit_profile` summarises every training rendering of each input modality (as
given, skull-stripped, standard space): the foreground intensity histogram after
normalisation, a signature of the deep brain (contrast), the foreground volume on the
preprocessed grid, the voxel size and how much of the head a field-of-view border cuts.
`Profile.check` compares one input with it; `predict` writes the flags into predictions.tsv.

Histogram and signature are compared with the nearest training scan; every threshold is what
the training scans reach (each against the nearest other subject), widened by a margin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from weakref import WeakKeyDictionary

import nibabel as nib
import numpy as np
from nibabel.orientations import io_orientation
from safetensors import safe_open
from safetensors.numpy import save_file
from scipy import ndimage

from brainbench.data.dataset import LABEL_MODALITIES, VolumeDataset
from brainbench.data.nifti import load_nifti
from brainbench.data.preprocess import foreground

PROFILE_FILE = "input_profile.safetensors"
BINS = 16
POOL = 2  # signatures: the central half of the grid, averaged over 2x2x2 blocks
MAX_SIGNATURES = 256  # training signatures kept in a profile (a seeded sample)
MARGIN = {"histogram": 1.5, "volume": 1.25, "signature": 0.05, "cut": 0.1, "voxel": 1.5}
HEAD_FRACTION = 0.3  # of the way from the border's median to the 99th percentile, smoothed
CUT_FLOOR = 0.25  # a border cutting this share of the head's largest section is flagged


def signature(volume: np.ndarray) -> np.ndarray:
    """The central half of a preprocessed volume (deep grey matter, ventricles), pooled and
    z-scored: where T1w and T2w differ most, whatever the age."""
    box = tuple(slice(n // 4, n // 4 + (n // 2) // POOL * POOL) for n in volume.shape)
    centre = volume[box]
    shape = [n // POOL for n in centre.shape]
    pooled = centre.reshape(shape[0], POOL, shape[1], POOL, shape[2], POOL).mean(axis=(1, 3, 5))
    flat = pooled.ravel() - pooled.mean()
    return (flat / max(float(np.linalg.norm(flat)), 1e-12)).astype(np.float32)


def histogram(volume: np.ndarray) -> np.ndarray:
    """Share of the foreground voxels in each of BINS intensity bins over [0, 1]."""
    values = volume[foreground(volume)] if volume.any() else volume.ravel()
    counts, _ = np.histogram(values, bins=BINS, range=(0.0, 1.0))
    return counts / max(counts.sum(), 1)


def _nearest_other(features: np.ndarray, owner: np.ndarray, similarity: bool) -> np.ndarray:
    """Per row, the best match among rows of other subjects (correlation or L1 distance)."""
    if similarity:
        scores = features @ features.T
        scores[owner[:, None] == owner[None]] = -np.inf
        return scores.max(axis=1)
    scores = np.abs(features[:, None] - features[None]).sum(axis=2)
    scores[owner[:, None] == owner[None]] = np.inf
    return scores.min(axis=1)


def border_cut(img: nib.spatialimages.SpatialImage) -> float:
    """The largest share of the head's biggest section that a non-inferior FOV border cuts.

    0 for a head inside its field of view; the inferior border is left out, since most
    scans end in the neck.
    """
    data = ndimage.gaussian_filter(np.asanyarray(img.dataobj).astype(np.float32), 1.0)
    faces = [np.moveaxis(data, a, 0)[[0, -1]].ravel() for a in range(3)]
    background = float(np.median(np.concatenate(faces)))  # noise floor: most border voxels
    mask = data > background + HEAD_FRACTION * (np.percentile(data, 99) - background)
    worst = 0.0
    for axis, (world, flip) in enumerate(io_orientation(img.affine).astype(int)):
        counts = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        largest = max(int(counts.max()), 1)
        inferior = 0 if flip > 0 else len(counts) - 1
        for side in (0, len(counts) - 1):
            if not (world == 2 and side == inferior):
                worst = max(worst, counts[side] / largest)
    return float(worst)


def voxel_mm(img: nib.spatialimages.SpatialImage) -> float:
    """The largest voxel dimension (mm)."""
    return float(nib.affines.voxel_sizes(img.affine).max())


@dataclass
class Profile:
    """The training inputs of one modality, summarised."""

    modality: str
    histograms: np.ndarray  # (renderings, BINS)
    histogram_max: float  # largest L1 distance of a training histogram to another subject's
    signatures: np.ndarray  # (renderings, features)
    signature_min: float  # lowest best correlation of a training signature with another's
    volume_ml: tuple[float, float]
    cut_max: float
    voxel_max: float

    def scalars(self) -> dict[str, Any]:
        """Everything but the arrays (stored as safetensors metadata)."""
        return {
            "modality": self.modality,
            "histogram_max": self.histogram_max,
            "signature_min": self.signature_min,
            "volume_ml": list(self.volume_ml),
            "cut_max": self.cut_max,
            "voxel_max": self.voxel_max,
        }

    def check(
        self, volume: np.ndarray | None, img: nib.spatialimages.SpatialImage, spacing: float
    ) -> list[str]:
        """Why `volume` (preprocessed, None if unusable) and its image are unlike training."""
        if volume is None or np.ptp(np.asanyarray(img.dataobj)) == 0:
            return ["constant image (every voxel the same value)"]
        reasons = []
        distance = float(np.abs(self.histograms - histogram(volume)).sum(axis=1).min())
        if distance > MARGIN["histogram"] * self.histogram_max:
            reasons.append(
                f"intensity histogram unlike any training {self.modality} (distance "
                f"{distance:.2f}, training up to {self.histogram_max:.2f})"
            )
        match = float((self.signatures @ signature(volume)).max())
        if match < self.signature_min - MARGIN["signature"]:
            reasons.append(
                f"deep brain unlike any training {self.modality} (best correlation {match:.2f}, "
                f"training from {self.signature_min:.2f}): another contrast or orientation?"
            )
        ml = float(foreground(volume).sum()) * spacing**3 / 1000.0
        low, high = self.volume_ml
        if not low / MARGIN["volume"] <= ml <= high * MARGIN["volume"]:
            reasons.append(
                f"foreground volume {ml:.0f} ml outside training {low:.0f}-{high:.0f} ml"
            )
        cut = border_cut(img)
        if cut > max(CUT_FLOOR, self.cut_max + MARGIN["cut"]):
            reasons.append(f"partial field of view (a border cuts {cut:.0%} of the head)")
        size = voxel_mm(img)
        if size > max(MARGIN["voxel"] * self.voxel_max, spacing):
            reasons.append(f"voxels of {size:.1f} mm, coarser than training ({self.voxel_max:.1f})")
        return reasons


def fit_profile(dataset: VolumeDataset, channel: int) -> Profile:
    """The profile of channel `channel` of a VolumeDataset, over every training rendering."""
    modality = dataset.modalities[channel]
    spacing = dataset.cfg.spacing
    hists, signatures, ml, owner = [], [], [], []
    files: dict[Path, tuple[float, float]] = {}  # (border cut, voxel size) per image file
    for i, options in enumerate(dataset.renderings):
        for k, (images, _) in enumerate(options):
            volume = dataset.volume(i, k)[channel]
            owner.append(i)
            hists.append(histogram(volume))
            signatures.append(signature(volume))
            ml.append(float(foreground(volume).sum()) * spacing**3 / 1000.0)
            if images[modality] not in files:  # a stripped rendering shares its image file
                img = load_nifti(images[modality])
                files[images[modality]] = (border_cut(img), voxel_mm(img))
    cuts, sizes = zip(*files.values(), strict=True)
    owner_array = np.asarray(owner)
    keep = np.random.default_rng(0).permutation(len(owner))[:MAX_SIGNATURES]
    kept = owner_array[keep]
    nearest_hist = _nearest_other(np.asarray(hists), owner_array, similarity=False)
    nearest_sig = _nearest_other(np.asarray(signatures)[keep], kept, similarity=True)
    return Profile(
        modality=modality,
        histograms=np.asarray(hists),
        histogram_max=float(nearest_hist[np.isfinite(nearest_hist)].max(initial=0.0)),
        signatures=np.asarray(signatures)[keep],
        signature_min=float(nearest_sig[np.isfinite(nearest_sig)].min(initial=1.0)),
        volume_ml=(min(ml), max(ml)),
        cut_max=max(cuts),
        voxel_max=max(sizes),
    )


_FITTED: WeakKeyDictionary[VolumeDataset, list[Profile]] = WeakKeyDictionary()


def fit_profiles(dataset: VolumeDataset) -> list[Profile]:
    """One profile per image modality of a training dataset, fitted once per dataset object
    (every model of a task trains on the same one)."""
    if dataset not in _FITTED:
        _FITTED[dataset] = [
            fit_profile(dataset, c)
            for c, m in enumerate(dataset.modalities)
            if m not in LABEL_MODALITIES
        ]
    return _FITTED[dataset]


def write_profiles(profiles: list[Profile], path: Path) -> None:
    """input_profile.safetensors: the arrays as tensors, the thresholds as metadata."""
    arrays = {}
    for profile in profiles:
        arrays[f"{profile.modality}.histograms"] = profile.histograms.astype(np.float32)
        arrays[f"{profile.modality}.signatures"] = profile.signatures.astype(np.float16)
    metadata = {"profiles": json.dumps([profile.scalars() for profile in profiles])}
    save_file(arrays, str(path), metadata=metadata)


def read_profiles(run_dir: Path) -> dict[str, Profile]:
    """The profiles of a run record by modality ({} for records written before them)."""
    path = Path(run_dir) / PROFILE_FILE
    if not path.is_file():
        return {}
    with safe_open(str(path), framework="np") as handle:
        scalars = json.loads((handle.metadata() or {})["profiles"])
        arrays = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    return {
        item["modality"]: Profile(
            item["modality"],
            arrays[f"{item['modality']}.histograms"],
            item["histogram_max"],
            arrays[f"{item['modality']}.signatures"].astype(np.float32),
            item["signature_min"],
            tuple(item["volume_ml"]),  # type: ignore[arg-type]
            item["cut_max"],
            item["voxel_max"],
        )
        for item in scalars
    }
