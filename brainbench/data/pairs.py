"""A torch Dataset of (input volumes, target volume) pairs for voxel-wise tasks, read lazily.

Inputs are preprocessed as in VolumeDataset. The target is a label map ('seg': interpolated per
label, integer labels; on the image's grid or a finer one covering the same field of view) or
another image (e.g. 'T2w', scaled to [0, 1]); either way it is sampled on the grid of the first
input modality (cropped like it), so input and target align voxel for voxel.
"""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from nibabel.filebasedimages import ImageFileError
from torch.utils.data import Dataset

from brainbench.config import PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import LABEL_MODALITIES, VolumeDataset
from brainbench.data.nifti import load_nifti
from brainbench.data.preprocess import foreground, grid_affine
from brainbench.data.records import SubjectRecord
from brainbench.errors import DataError


def _uncovered_mm(label: Path, image: Path) -> tuple[float, float]:
    """How far (mm) the image's field of view reaches beyond the label map's, and the image's
    smallest voxel size (mm); headers only."""
    try:
        label_img, image_img = nib.load(label), nib.load(image)
    except (OSError, ImageFileError) as exc:
        raise DataError(f"{label} or {image} cannot be read ({exc}); replace the file.") from None
    edges = [[-0.5, n - 0.5] for n in image_img.shape[:3]]
    corners = np.array(np.meshgrid(*edges, indexing="ij")).reshape(3, -1).T
    to_label = np.linalg.inv(label_img.affine) @ image_img.affine
    index = nib.affines.apply_affine(to_label, corners)
    size = np.array(label_img.shape[:3])
    beyond = np.maximum(np.maximum(-0.5 - index, index - (size - 0.5)), 0.0)
    uncovered = (beyond * nib.affines.voxel_sizes(label_img.affine)).max()
    return float(uncovered), float(nib.affines.voxel_sizes(image_img.affine).min())


class PairDataset(VolumeDataset):
    """Item i is (x: float32 (C, *shape) inputs, y: float32 (1, *shape) target volume).

    A label-map target must have its image's voxel shape and labels in 0..n_labels-1 (checked
    on the header when built, and on the preprocessed labels when read); a DataError names the
    file otherwise.
    """

    def __init__(
        self,
        records: list[SubjectRecord],
        inputs: list[str],
        target: str,
        cfg: PreprocessConfig,
        cache: VolumeCache,
        *,
        n_labels: int,
        mix: bool = False,
    ) -> None:
        super().__init__(records, inputs, None, cfg, cache, mix=mix, also=(target,))
        self.target_modality = target
        self.is_label = target in LABEL_MODALITIES
        self.n_labels = n_labels
        for record in self.records:
            if target not in record.images:
                raise DataError(
                    f"subject '{record.key}' has no {target} volume, the target of this task; add "
                    "the file or drop the subject."
                )
            if self.is_label:
                label, image = record.images[target], record.images[inputs[0]]
                uncovered, voxel = _uncovered_mm(label, image)
                if uncovered > 0.5 * voxel:
                    raise DataError(
                        f"label map {label} does not cover the field of view of its image {image} "
                        f"(by up to {uncovered:.1f} mm); give labels on the image's grid or on a "
                        "finer grid over the same field of view."
                    )

    def reference(self, i: int, rendering: int = 0) -> Path:
        """The image whose grid the target of record i is sampled on (the first input)."""
        return self.renderings[i][rendering][0][self.modalities[0]]

    def target_volume(self, i: int, rendering: int = 0) -> np.ndarray:
        """The (*shape) float32 target of record i: integer labels or intensities in [0, 1]."""
        images, mask = self.renderings[i][rendering]
        path = images[self.target_modality]
        reference = self.reference(i, rendering)
        volume = self.cache.get(
            path, self.cfg, is_label=self.is_label, reference=reference, mask=mask
        )
        if self.is_label and volume.size and volume.max() >= self.n_labels:
            raise DataError(
                f"label map {path} has label {int(volume.max())}; labels must be 0..."
                f"{self.n_labels - 1}. Remap it to the task's structures."
            )
        return volume

    def mask(self, i: int) -> np.ndarray:
        """The brain mask of record i: the foreground of its preprocessed target image.

        Foreground = brighter than 10% of the 99.9th percentile (preprocess.foreground); for a
        label-map target, every labelled voxel.
        """
        volume = self.target_volume(i)
        return volume > 0 if self.is_label else foreground(volume)

    def affine(self, i: int) -> np.ndarray:
        """The RAS affine of record i's preprocessed grid (spacing mm, centred on its brain)."""
        return grid_affine(load_nifti(self.reference(i)), self.cfg)

    def item(self, i: int, key: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        volume, k = self.drawn(i, key)
        return torch.from_numpy(volume), torch.from_numpy(self.target_volume(i, k)[None])

    def warm(self) -> None:
        """Preprocess every input and target rendering once (and check the labels)."""
        for i, options in enumerate(self.renderings):
            for k in range(len(options)):
                self.volume(i, k)
                self.target_volume(i, k)


class PatchDataset(Dataset):
    """Random `patch` crops of a PairDataset's (input, target) volumes, for patch training.

    Each epoch yields `per_volume` crops per subject; with probability `foreground` a crop is
    centred on a random foreground voxel (a labelled voxel for label maps, the brain for images),
    otherwise anywhere. Crops near the border are shifted inside the volume; along an axis shorter
    than the patch a crop is the whole axis (a coarse grid trains on whole volumes). Draws come from
    numpy's global generator, which Lightning seeds (`seed_everything`) for each run.
    """

    def __init__(
        self, pairs: PairDataset, patch: tuple[int, int, int], per_volume: int, foreground: float
    ) -> None:
        shape = tuple(pairs.cfg.shape)
        self.pairs = pairs
        self.patch = tuple(min(p, s) for p, s in zip(patch, shape, strict=True))
        self.per_volume, self.foreground = per_volume, foreground
        self.n_labels = pairs.n_labels
        self._centres = [np.argwhere(pairs.mask(i)) for i in range(len(pairs))]

    def __len__(self) -> int:
        return len(self.pairs) * self.per_volume

    def corner(self, i: int) -> np.ndarray:
        """The low corner of a random crop of subject i."""
        shape, patch = np.array(self.pairs.cfg.shape), np.array(self.patch)
        fg = self._centres[i]
        if len(fg) and np.random.random() < self.foreground:
            centre = fg[np.random.randint(len(fg))]
        else:
            centre = np.array([np.random.randint(s) for s in shape])
        return np.clip(centre - patch // 2, 0, shape - patch)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = index // self.per_volume
        x, y = self.pairs[i]
        window = tuple(slice(c, c + p) for c, p in zip(self.corner(i), self.patch, strict=True))
        return x[(slice(None), *window)], y[(slice(None), *window)]
