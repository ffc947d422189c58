"""Refuse a run that cannot fit, before it writes anything: its cache on the disk, one training
batch in memory.

Cache: every image the run may read (the task's image inputs and target of every record of the
dataset, in every rendering it mixes) is one float32 array of preprocess.shape; an upper bound,
since entries already cached cost nothing. It is refused only when it exceeds the free disk plus
everything the cache folder already holds, so a rerun is never refused.

Training (on the CPU; a GPU's memory is not checked): per-device batch x input float32 bytes x
the model's activation factor (ACTIVATION, PRETRAINING), scaled by its first layer's width
against the default's. Models without a measured factor are not checked.
"""

from __future__ import annotations

import math
import os
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from brainbench.config import DataConfig, PreprocessConfig, TrainerConfig, home
from brainbench.data.dataset import record_renderings
from brainbench.data.sources.base import open_source
from brainbench.data.sources.table import MODALITIES
from brainbench.errors import TooLargeError

FLOAT32 = 4
SMALLER = (
    "a smaller preprocess.shape (with a larger preprocess.spacing to keep the whole brain in view)"
)


@dataclass(frozen=True)
class Factor:
    """Peak training memory per float32 input byte at a model's default width."""

    per_input_byte: float
    width: Callable[[Any], int]  # the first layer's width of the model's parameters
    default_width: int

    def of(self, params: Any) -> float:
        return self.per_input_byte * self.width(params) / self.default_width


# Measured once with benchmarks/activation_memory.py: the peak resident memory of one forward
# and backward pass on the CPU at batch 2 and batch 4 (64^3 voxels, default parameters, each in
# a fresh process); the difference over the two extra samples' input bytes.
ACTIVATION = {
    "sfcn": Factor(30.6, lambda p: p.channels[0], 8),
    "unet": Factor(59.4, lambda p: p.channels[0], 8),
    "mae3d_cnn": Factor(10.8, lambda p: p.width, 32),
}
# The masked autoencoder on a view (crop_size^3); a pretraining step runs two views per sample.
PRETRAINING = {"mae3d_cnn": Factor(45.3, lambda p: p.width, 32)}


def gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def available_ram() -> int:
    """Memory a new allocation can get: MemAvailable (free + reclaimable) where /proc/meminfo
    has it, else the free physical pages (os.sysconf)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_disk(folder: Path) -> int:
    """Free bytes on the disk of `folder` (or of its nearest existing parent)."""
    folder = Path(folder).absolute()
    while not folder.exists():
        folder = folder.parent
    return shutil.disk_usage(folder).free


def cached_bytes(root: Path) -> int:
    """What the cache folder holds already (its .npy entries)."""
    return sum(p.stat().st_size for p in Path(root).glob("*/*.npy"))


def cache_root(data: DataConfig) -> Path:
    return Path(data.cache_dir or home() / "cache")


def image_count(data: DataConfig, modalities: Iterable[str], strip: bool) -> int:
    """Cache entries the dataset's records can need for `modalities`, every rendering mixed."""
    wanted = list(modalities)
    count = 0
    for record in open_source(data).records():
        have = [m for m in wanted if m in record.images]
        if have:
            renderings = record_renderings(record, have, strip, data.mix_renderings)
            count += len(renderings) * len(have)
    return count


def check_cache(needs: Iterable[tuple[DataConfig, PreprocessConfig, set[str]]]) -> None:
    """TooLargeError when the cache entries of the (data, preprocess, modalities) `needs`
    would overfill the disk of their cache folder."""
    by_root: dict[Path, list[tuple[int, PreprocessConfig]]] = {}
    for data, prep, modalities in needs:
        count = image_count(data, modalities, prep.skull_strip == "mask")
        by_root.setdefault(cache_root(data), []).append((count, prep))
    for root, parts in by_root.items():
        need = sum(n * math.prod(p.shape) * FLOAT32 for n, p in parts)
        free = free_disk(root)
        if need > free and need > free + cached_bytes(root):
            count, prep = max(parts, key=lambda part: part[0] * math.prod(part[1].shape))
            each = math.prod(prep.shape) * FLOAT32
            raise TooLargeError(
                f"the preprocessed-volume cache {root} would need up to {gib(need)} ({count} "
                f"images of preprocess.shape={list(prep.shape)} in float32, {each / 2**20:.0f} "
                f"MiB each); its disk has {gib(free)} free. Use {SMALLER}, free disk space, or "
                "set data.cache_dir=PATH on a larger disk."
            )


def trains_on_cpu(trainer: TrainerConfig) -> bool:
    return trainer.accelerator == "cpu" or not (
        trainer.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    )


def per_device_batch(trainer: TrainerConfig) -> int:
    devices = trainer.devices if isinstance(trainer.devices, int) and trainer.devices > 0 else 1
    shares = devices * trainer.num_nodes * trainer.accumulate_grad_batches
    return max(1, trainer.batch_size // shares)


def check_training(
    what: str,
    factor: Factor | None,
    params: Any,
    trainer: TrainerConfig,
    sample: tuple[int, ...],
    fixes: list[str],
) -> None:
    """TooLargeError when a training batch of (channels, *grid) `sample`s exceeds the RAM."""
    if factor is None or not trains_on_cpu(trainer):
        return
    batch = per_device_batch(trainer)
    need = batch * math.prod(sample) * FLOAT32 * factor.of(params)
    limit = available_ram()
    if need > limit:
        raise TooLargeError(
            f"training {what} would need about {gib(need)} of memory ({batch} samples of "
            f"{list(sample)} float32 voxels per batch x {factor.of(params):.0f} bytes per input "
            f"byte, as measured); {gib(limit)} is available. Use "
            f"{', '.join(fixes[:-1])} or {fixes[-1]}."
        )


def check_experiments(experiments: Sequence[Any]) -> None:
    """TooLargeError for the first of `experiments` (tasks.runs.Experiment) that cannot fit."""
    needs: dict[tuple[str, str], tuple[DataConfig, PreprocessConfig, set[str]]] = {}
    for exp in experiments:
        cfg, spec = exp.config, exp.spec
        volumes = [m for m in (*spec.inputs, spec.target) if m in MODALITIES]
        if volumes:  # tasks on series or features cache no volumes: their source stays closed
            key = (cfg.data.model_dump_json(), cfg.preprocess.model_dump_json())
            needs.setdefault(key, (cfg.data, cfg.preprocess, set()))[2].update(volumes)
    check_cache(needs.values())
    for exp in experiments:
        cfg, spec = exp.config, exp.spec
        fixes = [SMALLER, "a smaller trainer.batch_size"]
        patch = getattr(exp.params, "patch_size", None)
        if hasattr(exp.params, "patch_size"):
            fixes.append(
                "a smaller model.patch_size"
                if patch
                else "patches, e.g. model.patch_size=[32,32,32]"
            )
        check_training(
            f"{cfg.model_name} on {cfg.task}",
            ACTIVATION.get(cfg.model_name),
            exp.params,
            cfg.trainer,
            (len(spec.inputs), *(patch or cfg.preprocess.shape)),
            fixes,
        )


def check_pretraining(config: Any) -> None:
    """TooLargeError when a pretraining (training.pretrain.PretrainConfig) cannot fit."""
    check_cache([(config.data, config.preprocess, set(config.modalities))])
    check_training(
        f"{config.name} (pretraining, two crop_size={config.crop_size} views per sample)",
        PRETRAINING.get(config.name),
        config.model,
        config.trainer,
        (2 * len(config.modalities), *[config.crop_size] * 3),
        ["a smaller crop_size", SMALLER, "a smaller trainer.batch_size"],
    )
