"""A torch Dataset of preprocessed volumes read lazily through the on-disk cache, and the one
reader of a record's target columns (`column_value`, `has_target`, `target_value`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from brainbench.config import PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.data.records import SubjectRecord
from brainbench.errors import DataError

LABEL_MODALITIES = ("seg",)
# Training draws a contrast exponent per image in this range (log-uniform): grey/white contrast
# differs across scanners and sequences more than between adults, so it must not read as age.
CONTRAST_GAMMA = (0.67, 1.5)
AS_GIVEN_SHARE = 0.5  # of training draws that show the scan as given (the rest: any rendering)


def column_value(record: SubjectRecord, column: str) -> float | str | None:
    """A participants column of a record: 'age', 'sex' or a phenotype (None if missing)."""
    if column == "age":
        return record.age
    if column == "sex":
        return record.sex if record.sex in ("M", "F") else None
    return record.phenotypes.get(column)


def has_target(record: SubjectRecord, target: str) -> bool:
    """Whether a record can be a subject of a `target` task (age and sex: always)."""
    return target in ("age", "sex") or record.phenotypes.get(target) is not None


def target_value(record: SubjectRecord, name: str) -> float:
    """The target of a record: 'age', 'sex' (M = 1, F = 0) or a numeric phenotype column."""
    if name == "age":
        return float(record.age)
    if name == "sex":
        if record.sex not in ("M", "F"):
            raise DataError(
                f"subject '{record.key}' has sex '{record.sex}'; the sex target needs M or F. "
                "Fix the participants table or drop the subject."
            )
        return 1.0 if record.sex == "M" else 0.0
    value = record.phenotypes.get(name)
    if not isinstance(value, int | float):
        problem = "has no" if value is None else f"has a non-numeric ({value!r})"
        raise DataError(
            f"subject '{record.key}' {problem} value in column '{name}'; fill it in or "
            "drop the subject."
        )
    return float(value)


class SubjectDataset(Dataset):
    """A dataset of one item per subject record: targets, ages, keys and stages by record.

    Subclasses set `records` (list of SubjectRecord) and `_targets` (float32 array).
    """

    records: list[SubjectRecord]
    _targets: np.ndarray

    @property
    def targets(self) -> np.ndarray:
        return self._targets.copy()

    @property
    def ages(self) -> np.ndarray:
        return np.array([r.age for r in self.records], dtype=np.float64)

    @property
    def keys(self) -> list[str]:
        return [r.key for r in self.records]

    @property
    def stages(self) -> np.ndarray:
        return np.array([r.stage for r in self.records], dtype=object)


Rendering = tuple[dict[str, Path], Path | None]  # images by modality, brain mask to apply


def record_renderings(
    record: SubjectRecord, modalities: list[str], strip: bool, mix: bool
) -> list[Rendering]:
    """The (images, mask) ways a record can be shown; the first is the scans as given.

    `strip` (preprocess.skull_strip=mask) applies the brain mask always; `mix` adds the scans
    skull-stripped by their mask and the standard-space renderings that hold every modality.
    """
    sets = [(record.images, record.brain_mask)]
    sets += [
        (space.images, space.brain_mask)
        for space in record.spaces
        if mix and all(m in space.images for m in modalities)
    ]
    out: list[Rendering] = []
    for images, mask in sets:
        if strip and mask is not None:
            out.append((images, mask))
        elif not strip:
            out += [(images, None)] + ([(images, mask)] if mix and mask is not None else [])
    return out if mix else out[:1]


class VolumeDataset(SubjectDataset):
    """Item i is (x: float32 tensor (C, *cfg.shape), y: float32 scalar tensor; NaN if no target).

    Channels follow `modalities`; a label modality ('seg') is cropped like the record's first
    image modality. With `mix` (training) an item may be another of the record's renderings
    (`drawn`), each holding `modalities` and `also`; `volume(i)` is always the scans as given.
    Holds no open files, so it pickles into DataLoader workers.
    """

    def __init__(
        self,
        records: list[SubjectRecord],
        modalities: list[str],
        target: str | None,
        cfg: PreprocessConfig,
        cache: VolumeCache,
        *,
        mix: bool = False,
        also: tuple[str, ...] = (),
    ) -> None:
        strip = cfg.skull_strip == "mask"
        for record in records:
            for modality in modalities:
                if modality not in record.images:
                    have = ", ".join(sorted(record.images)) or "none"
                    raise DataError(
                        f"subject '{record.key}' has no {modality} image (has: {have}); add the "
                        f"file or drop the subject from the dataset."
                    )
            if strip and record.brain_mask is None:
                raise DataError(
                    f"subject '{record.key}' has no brain mask, which preprocess.skull_strip=mask "
                    f"needs; add derivatives/<pipeline>/sub-{record.subject}/anat/"
                    f"sub-{record.subject}_desc-brain_mask.nii.gz or set "
                    "preprocess.skull_strip=none."
                )
        self.records = list(records)
        self.modalities = list(modalities)
        self.target = target
        self.cfg = cfg
        self.cache = cache
        self.mix = mix
        self.reseed(0)
        needs = [*self.modalities, *also]
        self.renderings = [record_renderings(r, needs, strip, mix) for r in self.records]
        values = [target_value(r, target) if target else np.nan for r in self.records]
        self._targets = np.asarray(values, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.records)

    def volume(self, i: int, rendering: int = 0) -> np.ndarray:
        """The (C, *shape) float32 array of record i (as given, or its rendering number k)."""
        record = self.records[i]
        images, mask = self.renderings[i][rendering]
        reference = self._reference(record, images)
        channels = [
            self.cache.get(
                images[m],
                self.cfg,
                is_label=m in LABEL_MODALITIES,
                reference=reference if m in LABEL_MODALITIES else None,
                mask=mask,
            )
            for m in self.modalities
        ]
        stacked = np.stack(channels) if len(channels) > 1 else channels[0][None]  # 1: no copy
        return stacked.astype(np.float32, copy=False)

    def _reference(self, record: SubjectRecord, images: dict[str, Path]) -> Path | None:
        """The image a label map is cropped like: the first requested image modality it has."""
        if not any(m in LABEL_MODALITIES for m in self.modalities):
            return None
        for modality in [*self.modalities, *images]:
            if modality not in LABEL_MODALITIES and modality in images:
                return images[modality]
        if self.cfg.crop_to_brain:
            raise DataError(
                f"subject '{record.key}' has a label map but no image to crop it like; add its "
                "T1w or set preprocess.crop_to_brain=false."
            )
        return None

    def reseed(self, seed: int) -> None:
        """Start a fit's training draws: item i's n-th draw comes from (seed, i, n)."""
        self._seed, self._draws = seed, [0] * len(self.records)

    def drawn(self, i: int, key: int | None = None) -> tuple[np.ndarray, int]:
        """Record i's volume as training shows it, and the rendering's number.

        With `mix`: half the time as given, else a random rendering at a random contrast, drawn
        from (seed, i, n) for its n-th draw or from (seed, key) for a keyed draw
        (training.fit.KeyedDataset). Without: as given.
        """
        if not self.mix:
            return self.volume(i), 0
        if key is None:
            entropy = [self._seed, i, self._draws[i]]
            self._draws[i] += 1
        else:
            entropy = [self._seed, key]
        rng = np.random.default_rng(entropy)
        if rng.random() < AS_GIVEN_SHARE:
            return self.volume(i), 0
        rendering = int(rng.integers(len(self.renderings[i])))
        volume = self.volume(i, rendering)
        low, high = np.log(CONTRAST_GAMMA)
        for c, modality in enumerate(self.modalities):
            if modality not in LABEL_MODALITIES:
                volume[c] = volume[c] ** np.float32(np.exp(rng.uniform(low, high)))
        return volume, rendering

    def item(self, i: int, key: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Item i (as `dataset[i]`), its draw keyed by `key` when given."""
        return torch.from_numpy(self.drawn(i, key)[0]), torch.tensor(self._targets[i])

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.item(i)

    def to_array(self) -> np.ndarray:
        """Every volume as given, stacked: (N, C, *shape) float32."""
        return np.stack([self.volume(i) for i in range(len(self))])

    def warm(self) -> None:
        """Preprocess every rendering once so later epochs only read the cache."""
        for i, options in enumerate(self.renderings):
            for k in range(len(options)):
                self.volume(i, k)
