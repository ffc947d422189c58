"""Masked-autoencoder pretraining: `pretrain(config) -> <output_dir>/pretrained/<model>-<dataset>/`.

Trains only on the dataset's 'train' subjects (its one split, shared with every task) and
monitors on 'val'; 'test' subjects are never read. Batches draw sites uniformly (weights
1/count(site)); training volumes get random flips and an intensity jitter. One view per volume:
the whole volume masked with cubic patches (the reference's second, local-crop view is not
implemented). Lightning checkpoints every `checkpoint_every` steps and a re-run resumes from the
last one. The result is model.safetensors + config.json, metrics.json (masked-voxel MSE and PSNR
on the val subjects, overall and per lifespan stage) and reconstructions.png.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from matplotlib.figure import Figure
from pydantic import Field
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, WeightedRandomSampler

from brainbench.config import (
    DataConfig,
    Layer,
    PreprocessConfig,
    SplitConfig,
    StrictModel,
    TrainerConfig,
    build_config,
    home,
)
from brainbench.data.cache import VolumeCache, atomic_write
from brainbench.data.dataset import VolumeDataset
from brainbench.data.splits import dataset_id, dataset_splits
from brainbench.errors import ConfigError, DataError, unknown
from brainbench.models.base import META_KEY
from brainbench.models.mae3d_cnn import (
    CONFIG,
    MAE3D,
    WEIGHTS,
    MAE3DConfig,
    check_grid,
    masked_mse,
    patch_mask,
)
from brainbench.results.plots import save_figure
from brainbench.results.record import environment_info, peak_memory_mb, to_json
from brainbench.stages import STAGE_NAMES
from brainbench.training.fit import make_trainer, quiet_lightning

PRETRAINABLE = ("mae3d_cnn",)
EVAL_SEED = 1234  # masks of the held-out evaluation: the same for every run


class PretrainTrainerConfig(TrainerConfig):
    """TrainerConfig with pretraining defaults (`patience` is unused: no early stopping)."""

    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(4, ge=1)


class PretrainConfig(StrictModel):
    name: Literal["mae3d_cnn"] = "mae3d_cnn"
    model: MAE3DConfig = MAE3DConfig()
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    trainer: PretrainTrainerConfig = PretrainTrainerConfig()
    modalities: list[str] = Field(["T1w"], min_length=1, description="input channels")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    mask_ratio: float = Field(0.7, gt=0, lt=1, description="share of patches zeroed")
    patch_size: int = Field(4, ge=4, description="mask patch edge (multiple of 4 voxels)")
    brain_only: bool = Field(False, description="score only masked voxels inside the brain")
    intensity_jitter: float = Field(0.1, ge=0, lt=1, description="random intensity scale +/-")
    checkpoint_every: int = Field(50, ge=1, description="Lightning checkpoint every N steps")
    seed: int = 0
    output_dir: Path = Path("results")


def build_pretrain_config(model: str, layers: list[Layer]) -> PretrainConfig:
    """Merge the layers in order and validate; errors name the key, its layer and a fix."""
    if model not in PRETRAINABLE:
        raise unknown("pretrainable model", model, PRETRAINABLE)
    return build_config([*layers, ("model name", {"name": model})], root=PretrainConfig)


def augment(x: Tensor, jitter: float) -> Tensor:
    """Random flips along each axis (per volume) and an intensity scale in 1 +/- jitter."""
    out = x.clone()
    for i in range(len(x)):
        dims = [d for d in (1, 2, 3) if torch.rand(()) < 0.5]
        if dims:
            out[i] = torch.flip(out[i], dims=dims)
    scale = 1 + jitter * (2 * torch.rand(len(x), 1, 1, 1, 1) - 1)
    return out * scale


class MAEModule(L.LightningModule):
    """Masked-autoencoder training: mask, reconstruct, MSE on the masked voxels."""

    def __init__(self, cfg: PretrainConfig, n_steps: int) -> None:
        super().__init__()
        self.net = MAE3D(cfg.model)
        self.cfg = cfg
        self.n_steps = n_steps

    def loss(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """(loss, reconstruction) of a batch with a random patch mask."""
        mask = patch_mask(x.shape, self.cfg.patch_size, self.cfg.mask_ratio, generator)
        mask = mask.to(x.device)
        recon = self.net(x.masked_fill(mask, 0.0))
        scored = mask & (x > 0) if self.cfg.brain_only else mask
        return masked_mse(recon, x, scored), recon

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        x = augment(batch[0], self.cfg.intensity_jitter)
        loss, _ = self.loss(x)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss, _ = self.loss(batch[0])
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch[0]), sync_dist=True)

    def configure_optimizers(self) -> dict:
        t = self.cfg.trainer
        optimizer = torch.optim.AdamW(self.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        total = self.n_steps if t.scheduler == "cosine" else 0
        cosine = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / total, 1))) if total else 1
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


def pretrained_dir(config: PretrainConfig) -> Path:
    return Path(config.output_dir) / "pretrained" / f"{config.name}-{dataset_id(config.data)}"


def _datasets(config: PretrainConfig, log: Callable[[str], Any]) -> dict[str, VolumeDataset]:
    """The 'train' and 'val' subjects having every modality; 'test' is never loaded."""
    records, splits = dataset_splits(config.data, config.split, config.output_dir)
    by_key = {r.key: r for r in records}
    cache = VolumeCache(config.data.cache_dir or home() / "cache")
    out = {}
    for name in ("train", "val"):
        subset = [by_key[k] for k in splits[name]]
        subset = [r for r in subset if all(m in r.images for m in config.modalities)]
        if len(subset) < 1 + (name == "train"):
            raise DataError(
                f"dataset '{config.data.dataset}' has {len(subset)} {name} subjects with "
                f"{', '.join(config.modalities)}; pretraining needs at least 2 train and 1 val "
                "subject. Check the data or the 'modalities' key."
            )
        out[name] = VolumeDataset(subset, config.modalities, None, config.preprocess, cache)
    log(f"pretrain {config.name}: train {len(out['train'])}, val {len(out['val'])} subjects")
    return out


def site_balanced_sampler(dataset: VolumeDataset, seed: int) -> WeightedRandomSampler:
    """Draws sites uniformly: each record weighs 1 / (records of its site)."""
    counts = Counter(r.site for r in dataset.records)
    weights = [1.0 / counts[r.site] for r in dataset.records]
    generator = torch.Generator().manual_seed(seed)
    return WeightedRandomSampler(weights, len(weights), replacement=True, generator=generator)


def pretrain(config: PretrainConfig, *, log: Callable[[str], Any] = print) -> Path:
    """Pretrain (or resume) and write the pretrained folder; returns its path."""
    check_grid(config.preprocess.shape, config.patch_size)
    if config.model.in_channels != len(config.modalities):
        raise ConfigError(
            f"model.in_channels={config.model.in_channels} but modalities lists "
            f"{len(config.modalities)}; make them agree."
        )
    out = pretrained_dir(config)
    data = _datasets(config, log)
    L.seed_everything(config.seed, workers=True, verbose=False)
    t = config.trainer
    loader = DataLoader(
        data["train"],
        batch_size=t.batch_size,
        sampler=site_balanced_sampler(data["train"], config.seed),
        num_workers=t.num_workers,
        persistent_workers=t.num_workers > 0,
        drop_last=len(data["train"]) > t.batch_size,
    )
    val_loader = DataLoader(data["val"], batch_size=t.batch_size, num_workers=t.num_workers)
    n_steps = config.max_steps or t.max_epochs * len(loader)
    module = MAEModule(config, n_steps)
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="{step}",
        every_n_train_steps=config.checkpoint_every,
        save_last=True,
    )
    last = out / "checkpoints" / "last.ckpt"
    with quiet_lightning():
        trainer = make_trainer(t, out, [checkpoints], max_steps=config.max_steps or -1)
        resume = last if last.is_file() else None
        if resume:
            log(f"pretrain {config.name}: resuming from {resume}")
        start, step0 = time.perf_counter(), _checkpoint_step(resume)
        try:
            trainer.fit(module, loader, val_loader, ckpt_path=resume)
        except RuntimeError as exc:
            if resume is None or "loading state_dict" not in str(exc):
                raise
            raise ConfigError(
                f"{resume} was saved by a pretraining run with another model config; delete "
                f"{out} to start afresh, or set output_dir elsewhere."
            ) from None
        seconds = time.perf_counter() - start
    if not trainer.is_global_zero:
        return out
    trained = trainer.global_step - step0
    metrics = evaluate(module.net.cpu().eval(), data["val"], config)
    metrics |= {
        "model": config.name,
        "dataset": dataset_id(config.data),
        "steps": trainer.global_step,
        "n_train": len(data["train"]),
        "n_val": len(data["val"]),
        "train_s": seconds,
        "volumes_per_s": trained * t.batch_size / seconds if trained else None,
        "peak_memory_mb": peak_memory_mb(),
        **environment_info(),
    }
    write_pretrained(out, module.net, config, metrics)
    plot_reconstructions(out / "reconstructions.png", module.net, data["val"], config)
    log(f"pretrain {config.name}: val masked MSE {metrics['mse']:.4f}, PSNR {metrics['psnr']:.1f}")
    return out


def _checkpoint_step(path: Path | None) -> int:
    if path is None:
        return 0
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


@torch.inference_mode()
def evaluate(net: MAE3D, data: VolumeDataset, config: PretrainConfig) -> dict[str, Any]:
    """Masked-voxel MSE and PSNR (intensities in [0, 1]) on `data`, overall and per stage."""
    generator = torch.Generator().manual_seed(EVAL_SEED)
    errors: dict[str, list[float]] = {}
    for i in range(len(data)):
        x = data[i][0][None]
        mask = patch_mask(x.shape, config.patch_size, config.mask_ratio, generator)
        recon = net(x.masked_fill(mask, 0.0))
        errors.setdefault(data.records[i].stage, []).append(float(masked_mse(recon, x, mask)))
    every = [e for stage in errors.values() for e in stage]

    def summary(values: list[float]) -> dict[str, float]:
        mse = float(np.mean(values))
        return {"mse": mse, "psnr": float(10 * np.log10(1.0 / max(mse, 1e-12))), "n": len(values)}

    per_stage = {s: summary(errors[s]) for s in STAGE_NAMES if s in errors}
    return summary(every) | {"per_stage": per_stage}


def write_pretrained(
    out: Path, net: MAE3D, config: PretrainConfig, metrics: dict[str, Any]
) -> None:
    """model.safetensors (config in the header too), config.json and metrics.json, atomically."""
    payload = config.model_dump(mode="json")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={META_KEY: json.dumps(payload)})
    tmp.replace(out / WEIGHTS)
    atomic_write(out / CONFIG, json.dumps(payload, indent=1).encode())
    atomic_write(out / "metrics.json", to_json(metrics).encode())


@torch.inference_mode()
def plot_reconstructions(
    path: Path, net: MAE3D, data: VolumeDataset, config: PretrainConfig
) -> Path:
    """Centre axial slices of input / masked input / reconstruction, one val subject per stage."""
    first: dict[str, int] = {}
    for i, record in enumerate(data.records):
        first.setdefault(record.stage, i)
    stages = [s for s in STAGE_NAMES if s in first]
    fig = Figure(figsize=(6, 2 * len(stages)))
    generator = torch.Generator().manual_seed(EVAL_SEED)
    for row, stage in enumerate(stages):
        x = data[first[stage]][0][None]
        mask = patch_mask(x.shape, config.patch_size, config.mask_ratio, generator)
        masked = x.masked_fill(mask, 0.0)
        images = (x, masked, net(masked).clamp(0, 1))
        z = x.shape[-1] // 2
        for col, (image, title) in enumerate(
            zip(images, ("input", "masked", "recon"), strict=True)
        ):
            ax = fig.add_subplot(len(stages), 3, 3 * row + col + 1)
            ax.imshow(image[0, 0, :, :, z].T.numpy(), cmap="gray", origin="lower", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{stage.replace('_', ' ')}: {title}" if col == 0 else title, fontsize=8)
    return save_figure(fig, path)
