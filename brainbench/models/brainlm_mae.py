"""BrainLM's masked-autoencoder training and checkpoint folder, shared by pretraining
(training/pretrain_brainlm.py) and the brainlm estimators (models/brainlm_estimators.py).

`train_mae` fits a BrainLM in place on random windows (Lightning `MAEModule`); `reconstruct`
scores any `Predict` on hidden patches with fixed masks; a pretrained folder holds
model.safetensors (the config in its header too) and config.json.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from pydantic import Field
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor
from torch.utils.data import DataLoader

from brainbench.config import DataConfig, Seed, SplitConfig, StrictModel, TrainerConfig
from brainbench.data.timeseries import SubjectWindows
from brainbench.errors import DataError
from brainbench.models.base import META_KEY
from brainbench.models.brainlm import (
    BrainLM,
    BrainLMConfig,
    future_mask,
    hidden_count,
    random_mask,
)
from brainbench.owners import atomic_write
from brainbench.spec import MODEL_CONFIG as CONFIG
from brainbench.spec import WEIGHTS
from brainbench.training.fit import make_trainer, quiet_lightning

EVAL_SEED = 1234  # masks of held-out evaluations: the same for every run and model


class PretrainTrainerConfig(TrainerConfig):
    """TrainerConfig with pretraining defaults (`patience` is unused: no early stopping)."""

    max_epochs: int = Field(20, ge=1)
    batch_size: int = Field(8, ge=1)
    lr: float = Field(5e-4, gt=0)


class BrainLMPretrainConfig(StrictModel):
    name: Literal["brainlm"] = "brainlm"
    model: BrainLMConfig = BrainLMConfig()
    data: DataConfig = DataConfig()
    split: SplitConfig = SplitConfig()
    trainer: PretrainTrainerConfig = PretrainTrainerConfig()
    window: int = Field(160, ge=2, description="time points per training window")
    demean: bool = Field(True, description="centre each run on its mean per parcel before scaling")
    mask_ratio: float = Field(0.75, gt=0, lt=1, description="share of tokens hidden")
    forecast_share: float = Field(
        0.0, ge=0, le=1, description="share of windows whose last patch is always hidden"
    )
    eval_ratios: list[float] = Field([0.2, 0.5, 0.75, 0.9], min_length=1)
    max_steps: int | None = Field(None, ge=1, description="stop after this many steps")
    seed: Seed = 0
    output_dir: Path = Path("results")


class MAEModule(L.LightningModule):
    """Masked-autoencoder training of a BrainLM: random mask per sample, MSE on hidden patches.

    In a `forecast_share` of the samples the last patch of every parcel is among the hidden
    tokens (the rest random), so that the model also learns to forecast.
    """

    def __init__(
        self,
        net: BrainLM,
        mask_ratio: float,
        *,
        lr: float,
        weight_decay: float,
        n_steps: int,
        forecast_share: float = 0.0,
    ) -> None:
        super().__init__()
        self.net = net
        self.mask_ratio, self.forecast_share = mask_ratio, forecast_share
        self.lr, self.weight_decay, self.n_steps = lr, weight_decay, n_steps

    def _loss(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        p, n = self.net.n_parcels, x.shape[-1] // self.net.cfg.patch
        where = generator.device if generator is not None else x.device
        forced = None
        if self.forecast_share > 0:
            chosen = torch.rand(len(x), 1, generator=generator, device=where) < self.forecast_share
            forced = future_mask(len(x), p, n, 1, where) & chosen
        mask = random_mask(len(x), p * n, self.mask_ratio, generator, x.device, forced)
        return self.net.masked_loss(x, mask, hidden_count(p * n, self.mask_ratio))[0]

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        loss = self._loss(batch[0])
        self.log("train_loss", loss, prog_bar=True, batch_size=len(batch[0]), sync_dist=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        generator = torch.Generator().manual_seed(EVAL_SEED + batch_idx)
        loss = self._loss(batch[0], generator)
        self.log("val_loss", loss, prog_bar=True, batch_size=len(batch[0]), sync_dist=True)

    def configure_optimizers(self) -> dict:
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        warmup = max(1, self.n_steps // 20)

        def schedule(step: int) -> float:  # linear warm-up, then cosine to zero
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min((step - warmup) / (self.n_steps - warmup), 1)))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }


def train_mae(
    net: BrainLM,
    train: SubjectWindows,
    val: SubjectWindows,
    trainer_cfg: PretrainTrainerConfig,
    *,
    mask_ratio: float,
    seed: int,
    run_dir: Path,
    max_steps: int | None = None,
    forecast_share: float = 0.0,
) -> dict[str, Any]:
    """Train `net` in place on random windows of `train`; returns steps, seconds, windows/s."""
    L.seed_everything(seed, workers=True, verbose=False)
    train.random = True
    loader = DataLoader(
        train,
        batch_size=trainer_cfg.batch_size,
        shuffle=True,
        drop_last=len(train) > trainer_cfg.batch_size,
        num_workers=trainer_cfg.num_workers,
    )
    val_loader = DataLoader(val, batch_size=trainer_cfg.batch_size)
    n_steps = max_steps or trainer_cfg.max_epochs * len(loader)
    module = MAEModule(
        net,
        mask_ratio,
        lr=trainer_cfg.lr,
        weight_decay=trainer_cfg.weight_decay,
        n_steps=n_steps,
        forecast_share=forecast_share,
    )
    try:
        with quiet_lightning():
            trainer = make_trainer(
                trainer_cfg, run_dir, [], max_steps=max_steps or -1, enable_checkpointing=False
            )
            start = time.perf_counter()
            trainer.fit(module, loader, val_loader)
            seconds = time.perf_counter() - start
    finally:
        train.random = False
    net.cpu().float().eval()  # trained at any trainer.precision
    return {
        "steps": trainer.global_step,
        "train_s": seconds,
        "windows_per_s": trainer.global_step * trainer_cfg.batch_size / seconds,
        "final_train_loss": float(trainer.callback_metrics.get("train_loss", math.nan)),
    }


Predict = Callable[[Tensor, Tensor], Tensor]  # (x, hidden) -> x_hat, both (B, parcels, time)


@torch.inference_mode()
def reconstruct(
    predict: Predict, data: SubjectWindows, ratio: float, patch: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(true, predicted, sample index) of every hidden value of `data`'s windows at `ratio`.

    A random `ratio` of each window's patches (`patch` time points of one parcel) is hidden;
    the masks come from a fixed seed, so every model is scored on the same hidden values.
    """
    generator = torch.Generator().manual_seed(EVAL_SEED)
    truth, preds, owner = [], [], []
    for i in range(len(data)):
        x = data[i][0][None]
        n_tokens = x.shape[1] * (x.shape[2] // patch)
        mask = random_mask(1, n_tokens, ratio, generator)
        hidden = mask.view(1, x.shape[1], -1).repeat_interleave(patch, dim=2)
        pred = predict(x, hidden)
        truth.append(x[hidden].numpy())
        preds.append(pred[hidden].numpy())
        owner.append(np.full(int(hidden.sum()), i))
    return np.concatenate(truth), np.concatenate(preds), np.concatenate(owner)


def brainlm_predictor(net: BrainLM) -> Predict:
    """The Predict of a BrainLM: hidden values must be whole patches."""
    patch = net.cfg.patch

    def predict(x: Tensor, hidden: Tensor) -> Tensor:
        return net(x, hidden[..., ::patch].flatten(1)).flatten(2)

    return predict


def write_pretrained(out: Path, net: BrainLM, config: BrainLMPretrainConfig) -> None:
    """model.safetensors (config in its header) and config.json, atomically."""
    payload = config.model_dump(mode="json")
    out.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    tmp = out / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={META_KEY: json.dumps(payload)})
    tmp.replace(out / WEIGHTS)
    atomic_write(out / CONFIG, json.dumps(payload, indent=1).encode())


def load_pretrained(path: Path) -> tuple[BrainLM, BrainLMPretrainConfig]:
    """The BrainLM saved at `path` (a pretrained folder or its model.safetensors), eval mode."""
    path = Path(path)
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise DataError(
            f"pretrained weights {file} do not exist; run `brainbench pretrain brainlm` first."
        )
    try:
        state = load_file(str(file))
        config = BrainLMPretrainConfig.model_validate_json((file.parent / CONFIG).read_text())
    except (SafetensorError, OSError, ValueError) as exc:
        raise DataError(
            f"{file} is not a brainlm checkpoint (model.safetensors + config.json written by "
            f"`brainbench pretrain brainlm`): {exc}"
        ) from None
    if "coords" not in state:
        raise DataError(f"{file} has no parcel coordinates; it is not a brainlm checkpoint.")
    net = BrainLM(config.model, state["coords"])
    net.load_state_dict(state)
    return net.eval(), config
