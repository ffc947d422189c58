"""Masked-autoencoder pretraining: `pretrain(config) -> <output_dir>/pretrained/<model>-<dataset>/`.

Any registered backbone (models/mae.py: mae3d_cnn, mae3d_vit, mae2d). Trains only on the dataset's
'train' subjects (its one split, shared with every task) and monitors on 'val'; 'test' subjects are
never read. Batches draw sites uniformly (weights 1/count(site)). Each training volume is augmented
(random flips, a rotation/zoom of a share of them, a randomised upper-percentile renormalisation)
and gives two views (training.masking): a random local crop masked with `local_patch` patches and
the whole volume resized to the same grid masked with `global_patch` patches; the loss is the mean
of the two masked-voxel MSEs. Draws are sharded per rank and each sample's randomness is keyed to
its draw, so 1 and N processes (DDP) train the same network from the same seed. Lightning
checkpoints every `checkpoint_every` steps and a re-run resumes from the last one. The result is
model.safetensors + config.json, metrics.json (masked-voxel MSE and PSNR of both views on the val
subjects, overall and per lifespan stage) and reconstructions.png.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from matplotlib.figure import Figure
from pydantic import BaseModel, Field, create_model
from safetensors.torch import save_file
from torch import Tensor, nn

from brainbench.config import (
    DataConfig,
    Layer,
    PreprocessConfig,
    Seed,
    SplitConfig,
    StrictModel,
    TrainerConfig,
    build_config,
    flatten,
    home,
)
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import VolumeDataset
from brainbench.data.records import count_text
from brainbench.data.splits import dataset_id, dataset_splits, save_split, split_file
from brainbench.errors import ConfigError, DataError, unknown
from brainbench.memory import check_pretraining
from brainbench.models.base import META_KEY
from brainbench.models.mae import BACKBONES, CONFIG, WEIGHTS
from brainbench.models.mae3d_cnn import MAE3DConfig
from brainbench.owners import atomic_write, locked, pretraining_lock
from brainbench.registry import load_plugins
from brainbench.results.plots import save_figure
from brainbench.results.record import environment_info, peak_memory_mb, to_json
from brainbench.spec import METRICS
from brainbench.stages import STAGE_NAMES
from brainbench.tasks.runs import is_global_zero
from brainbench.training.augment import VolumeAugmentConfig, augment_volumes
from brainbench.training.fit import ShardedData, make_trainer, quiet_lightning
from brainbench.training.masking import MaskedOutput, default_crop, two_views
from brainbench.training.randomness import Generators

EVAL_SEED = 1234  # masks and slices of the held-out evaluation: the same for every run


class PretrainTrainerConfig(TrainerConfig):
    """TrainerConfig with pretraining defaults (`patience` is unused: no early stopping)."""

    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(4, ge=1)


class PretrainConfig(StrictModel):
    """Pretraining of `name`; `model` is that backbone's network config (mae3d_cnn's here)."""

    name: str = "mae3d_cnn"
    model: MAE3DConfig = MAE3DConfig()
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    trainer: PretrainTrainerConfig = PretrainTrainerConfig()
    augment: VolumeAugmentConfig = VolumeAugmentConfig()
    modalities: list[str] = Field(["T1w"], min_length=1, description="input channels")
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    mask_ratio: float = Field(0.7, gt=0, lt=1, description="share of patches masked per view")
    local_patch: int = Field(8, ge=1, description="mask patch edge of the local crop (voxels)")
    global_patch: int = Field(4, ge=1, description="mask patch edge of the whole-volume view")
    crop_size: int | None = Field(
        None,
        ge=4,
        description="edge of both views; None = the largest multiple of both "
        "patches up to 0.8 x the smallest preprocess.shape dimension",
    )
    checkpoint_every: int = Field(50, ge=1, description="Lightning checkpoint every N steps")
    seed: Seed = 0
    output_dir: Path = Path("results")


def pretrain_config_class(model: str) -> type[PretrainConfig]:
    """PretrainConfig whose `model` section is the config of backbone `model`."""
    load_plugins()
    if model not in BACKBONES:
        raise unknown("pretrainable model", model, BACKBONES)
    backbone = BACKBONES[model]
    return create_model(
        f"PretrainConfig_{model}",
        __base__=PretrainConfig,
        model=(backbone.config, backbone.config()),
    )


def build_pretrain_config(model: str, layers: list[Layer]) -> PretrainConfig:
    """Merge the layers in order and validate; errors name the key, its layer and a fix."""
    root = pretrain_config_class(model)
    return build_config([*layers, ("model name", {"name": model})], root=root)


def resolve_crop(config: PretrainConfig, net: nn.Module) -> PretrainConfig:
    """`config` with crop_size set; ConfigError unless both views can be masked by `net`."""
    unit = math.lcm(config.local_patch, config.global_patch, net.mask_unit)
    crop = config.crop_size or default_crop(config.preprocess.shape, unit)
    if crop > min(config.preprocess.shape):
        raise ConfigError(
            f"crop_size={crop} exceeds the smallest preprocess.shape dimension "
            f"{min(config.preprocess.shape)}; lower crop_size or enlarge preprocess.shape."
        )
    for key in ("local_patch", "global_patch"):
        patch = getattr(config, key)
        if patch % net.mask_unit or crop % patch:
            raise ConfigError(
                f"{key}={patch} must be a multiple of {net.mask_unit} (the {config.name} mask "
                f"unit) and divide crop_size={crop}; e.g. crop_size={unit * max(1, crop // unit)}."
            )
    return config.model_copy(update={"crop_size": crop})


def view_losses(
    net: nn.Module,
    x: Tensor,
    config: PretrainConfig,
    generator: Generators = None,
    *,
    centre: bool = False,
) -> tuple[MaskedOutput, MaskedOutput]:
    """The masked reconstructions of the local crop and of the whole volume resized."""
    local, whole = two_views(x, config.crop_size, generator, centre=centre)
    return (
        net.masked_loss(local, config.local_patch, config.mask_ratio, generator),
        net.masked_loss(whole, config.global_patch, config.mask_ratio, generator),
    )


class MAEModule(L.LightningModule):
    """Masked-autoencoder training: augment, two masked views, MSE on the masked voxels."""

    def __init__(self, cfg: PretrainConfig, net: nn.Module, n_steps: int) -> None:
        super().__init__()
        self.net = net
        self.cfg = cfg
        self.n_steps = n_steps

    def _loss(self, x: Tensor, generator: Generators = None, *, centre: bool) -> Tensor:
        local, whole = view_losses(self.net, x, self.cfg, generator, centre=centre)
        return (local.loss + whole.loss) / 2

    def training_step(
        self, batch: tuple[Tensor, Tensor, list[torch.Generator]], batch_idx: int
    ) -> Tensor:
        x, _, generators = batch
        x = augment_volumes(x, self.cfg.augment, generators)
        loss = self._loss(x, generators, centre=False)
        self.log("train_loss", loss, prog_bar=True, batch_size=len(x), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        loss = self._loss(batch[0], centre=True)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch[0]), sync_dist=True)

    def configure_optimizers(self) -> dict:
        t = self.cfg.trainer
        optimizer = torch.optim.AdamW(self.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        total = self.n_steps if t.scheduler == "cosine" else 0
        cosine = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / total, 1))) if total else 1
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


# settings a pretraining may resume under changed: how long and where it runs, not what it learns
RESUMABLE = {"max_steps", "checkpoint_every", "output_dir"} | {
    f"trainer.{key}"
    for key in ("max_epochs", "progress_bar", "num_workers", "accelerator", "devices", "strategy",
                "num_nodes", "precision")
}  # fmt: skip


def check_same_config(
    out: Path, config: BaseModel, ignored: set[str] = RESUMABLE, use: str = "resume"
) -> None:
    """ConfigError naming the settings (flattened keys, `ignored` aside) that differ from the
    pretraining already in `out`; `use` says what changing them back would do with it."""
    path = out / CONFIG
    if not path.is_file():
        return
    try:
        saved = flatten(json.loads(path.read_text()))
    except (ValueError, AttributeError):  # not JSON, or not an object
        raise DataError(
            f"{path} is unreadable (not a JSON object of settings); restore it, or delete {out} "
            "to pretrain again."
        ) from None
    now = flatten(config.model_dump(mode="json"))
    changed = sorted(
        key for key in saved.keys() | now.keys()
        if key not in ignored and saved.get(key) != now.get(key)
    )  # fmt: skip
    if changed:

        def shown(values: dict[str, Any], key: str) -> str:
            return repr(values[key]) if key in values else "(absent: an older brainbench)"

        listed = ", ".join(f"{k}: {shown(saved, k)} -> {shown(now, k)}" for k in changed[:5])
        raise ConfigError(
            f"{out} holds a pretraining with another config ({listed}); set output_dir elsewhere "
            f"to train this one beside it, or change the settings back to {use} it (a setting "
            "an older brainbench did not record cannot be: keep that folder as it is)."
        )


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
        mix = name == "train" and config.data.mix_renderings
        out[name] = VolumeDataset(
            subset, config.modalities, None, config.preprocess, cache, mix=mix
        )
    train, val = (count_text(out[name].records) for name in ("train", "val"))
    log(f"pretrain {config.name}: train {train}, val {val}")
    return out


def site_weights(dataset: VolumeDataset) -> list[float]:
    """Sampling weights that draw sites uniformly: 1 / (records of the record's site)."""
    counts = Counter(r.site for r in dataset.records)
    return [1.0 / counts[r.site] for r in dataset.records]


def pretrain(config: PretrainConfig, *, log: Callable[[str], Any] = print) -> Path:
    """Pretrain (or resume) and write the pretrained folder; returns its path."""
    L.seed_everything(config.seed, workers=True, verbose=False)  # the same initial weights
    net = BACKBONES[config.name].network(config.model)
    config = resolve_crop(config, net)
    if config.model.in_channels != len(config.modalities):
        raise ConfigError(
            f"model.in_channels={config.model.in_channels} but modalities lists "
            f"{len(config.modalities)}; make them agree."
        )
    check_pretraining(config)
    out = pretrained_dir(config)
    # one pretraining per folder at a time; DDP's extra processes run under rank 0's lock
    lock = locked(pretraining_lock(out), log) if is_global_zero() else nullcontext()
    with lock:
        return _pretrain_into(out, config, net, log)


def _pretrain_into(
    out: Path, config: PretrainConfig, net: nn.Module, log: Callable[[str], Any]
) -> Path:
    """Train `net` into `out` (resuming its last checkpoint) and write the pretrained folder."""
    check_same_config(out, config)
    data = _datasets(config, log)
    data["train"].reseed(config.seed)
    t = config.trainer
    batches = ShardedData(
        data["train"], data["val"], t, config.seed, site_weights(data["train"]), keyed=True
    )
    n_steps = config.max_steps or t.max_epochs * batches.steps_per_epoch()
    module = MAEModule(config, net, n_steps)
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints",
        filename="{step}",
        every_n_train_steps=config.checkpoint_every,
        save_last=True,
    )
    last = out / "checkpoints" / "last.ckpt"
    with quiet_lightning():
        trainer = make_trainer(
            t, out, [checkpoints], max_steps=config.max_steps or -1, use_distributed_sampler=False
        )
        save_split(split_file(config.data, config.split, config.output_dir))  # checkpoints use it
        resume = last if last.is_file() else None
        if resume:
            log(f"pretrain {config.name}: resuming from {resume}")
        start, step0 = time.perf_counter(), _checkpoint_step(resume)
        try:
            trainer.fit(module, datamodule=batches, ckpt_path=resume)
        except RuntimeError as exc:
            if resume is None or "loading state_dict" not in str(exc):
                raise
            raise ConfigError(
                f"{resume} was saved by a pretraining run with another model config; delete "
                f"{out} to start afresh, or set output_dir elsewhere."
            ) from None
        seconds = time.perf_counter() - start
        if trainer.global_step > step0:  # the final state, so a re-run has nothing to redo
            trainer.save_checkpoint(last)
    if not trainer.is_global_zero:
        return out
    trained = trainer.global_step - step0
    if not trained and (out / WEIGHTS).is_file():
        log(f"pretrain {config.name}: already trained to step {step0}; kept {out}")
        return out
    metrics = evaluate(module.net.cpu().float().eval(), data["val"], config)  # any precision
    metrics |= {
        "model": config.name,
        "dataset": dataset_id(config.data),
        "steps": trainer.global_step,
        "n_train": len(data["train"]),
        "n_val": len(data["val"]),
        "world_size": trainer.world_size,
        "effective_batch_size": t.batch_size,
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
    """The step a checkpoint was saved at (0 for none); DataError for a damaged file."""
    if path is None:
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])
    except (OSError, RuntimeError, EOFError, KeyError, ValueError, pickle.UnpicklingError) as exc:
        raise DataError(
            f"the checkpoint {path} is damaged ({type(exc).__name__}); delete it to start this "
            "pretraining afresh (the other checkpoints beside it are kept), or set output_dir "
            "elsewhere."
        ) from None


@torch.inference_mode()
def evaluate(net: nn.Module, data: VolumeDataset, config: PretrainConfig) -> dict[str, Any]:
    """Masked-voxel MSE and PSNR (intensities in [0, 1]) of both views, overall and per stage.

    Each val volume gives its centre crop and the whole volume resized, with seeded masks.
    """
    generator = torch.Generator().manual_seed(EVAL_SEED)
    errors: dict[str, list[tuple[float, float]]] = {}
    for i in range(len(data)):
        local, whole = view_losses(net, data[i][0][None], config, generator, centre=True)
        stage = data.records[i].stage
        errors.setdefault(stage, []).append((float(local.loss), float(whole.loss)))

    def summary(rows: list[tuple[float, float]]) -> dict[str, float]:
        local, whole = np.mean(rows, axis=0)
        mse = float(local + whole) / 2
        return {
            "mse": mse,
            "psnr": _psnr(mse),
            "mse_local": float(local),
            "psnr_local": _psnr(local),
            "mse_global": float(whole),
            "psnr_global": _psnr(whole),
            "n": len(rows),
        }

    per_stage = {s: summary(errors[s]) for s in STAGE_NAMES if s in errors}
    return summary([row for rows in errors.values() for row in rows]) | {"per_stage": per_stage}


def _psnr(mse: float) -> float:
    return float(10 * np.log10(1.0 / max(float(mse), 1e-12)))


def write_pretrained(
    out: Path, net: nn.Module, config: PretrainConfig, metrics: dict[str, Any]
) -> None:
    """model.safetensors (config in the header too), config.json and metrics.json, atomically."""
    payload = config.model_dump(mode="json")
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={META_KEY: json.dumps(payload)})
    tmp.replace(out / WEIGHTS)
    atomic_write(out / CONFIG, json.dumps(payload, indent=1).encode())
    atomic_write(out / METRICS, to_json(metrics).encode())


@torch.inference_mode()
def plot_reconstructions(
    path: Path, net: nn.Module, data: VolumeDataset, config: PretrainConfig
) -> Path:
    """Input / masked / reconstruction of both views, one val subject per lifespan stage.

    The reconstruction panel shows the network's output on the masked voxels and the input on
    the visible ones (the loss ignores the output there, so it is noise). Volumes show their
    centre axial slice; 2.5-D models show their reconstructed slice.
    """
    first: dict[str, int] = {}
    for i, record in enumerate(data.records):
        first.setdefault(record.stage, i)
    stages = [s for s in STAGE_NAMES if s in first]
    fig = Figure(figsize=(11, 2 * len(stages)))
    generator = torch.Generator().manual_seed(EVAL_SEED)
    for row, stage in enumerate(stages):
        views = view_losses(net, data[first[stage]][0][None], config, generator, centre=True)
        panels = [
            (image, f"{view} {title}")
            for view, out in zip(("local", "whole"), views, strict=True)
            for image, title in (
                (out.target, "input"),
                (out.masked, "masked"),
                (torch.where(out.masked != 0, out.target, out.recon), "recon"),
            )
        ]
        for col, (image, title) in enumerate(panels):
            plane = image[0, 0] if image.ndim == 4 else image[0, 0, :, :, image.shape[-1] // 2]
            ax = fig.add_subplot(len(stages), len(panels), len(panels) * row + col + 1)
            ax.imshow(plane.clamp(0, 1).T.numpy(), cmap="gray", origin="lower", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{stage.replace('_', ' ')}: {title}" if col == 0 else title, fontsize=7)
    return save_figure(fig, path)
