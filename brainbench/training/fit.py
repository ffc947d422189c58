"""TorchEstimator: the one generic Lightning training loop behind every torch model.

A model family supplies two functions: `setup(train) -> meta`, the JSON-able facts its network
depends on that are learned from the training set (input shape, target range...), and
`build(meta) -> TorchModel`, the network plus its loss and its output -> prediction map. The
estimator trains with early stopping on `val_loss`, restores the best epoch's weights, and saves
them as safetensors with `meta` in the header, so `load` rebuilds the exact network.
"""

from __future__ import annotations

import json
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from brainbench.config import TrainerConfig
from brainbench.errors import ConfigError
from brainbench.models.base import META_KEY, read_meta
from brainbench.training.module import Augment, Loss, TrainingModule


@dataclass
class TorchModel:
    """A network, the loss it trains with and how its output becomes one prediction per sample.

    `infer(net, x)`, if given, replaces `net(x)` at prediction time (e.g. sliding windows).
    """

    net: nn.Module
    loss: Loss
    predict: Callable[[Tensor], Tensor]
    augment: Augment | None = None  # applied to training batches only
    infer: Callable[[nn.Module, Tensor], Tensor] | None = None


Setup = Callable[[Dataset], dict[str, Any]]
Build = Callable[[dict[str, Any]], TorchModel]


class TorchEstimator:
    """Estimator (see models/base.py) training a TorchModel with Lightning."""

    def __init__(self, setup: Setup, build: Build, trainer: TrainerConfig) -> None:
        self.setup = setup
        self.build = build
        self.trainer_cfg = trainer
        self.meta: dict[str, Any] | None = None
        self.model: TorchModel | None = None

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Train with early stopping on `val` and keep the best epoch's weights.

        Returns epochs_run, best_epoch (1-based), best_val_loss, n_params, epoch_s (seconds per
        epoch) and global_rank. Lightning's `ddp` strategy re-runs the calling script once per
        extra process; every process ends with the same best weights.
        """
        cfg = self.trainer_cfg
        L.seed_everything(seed, workers=True, verbose=False)
        self.meta = self.setup(train)
        self.model = self.build(self.meta)
        module = TrainingModule(
            self.model.net,
            self.model.loss,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            max_epochs=cfg.max_epochs,
            scheduler=cfg.scheduler,
            augment=self.model.augment,
        )
        checkpoint = ModelCheckpoint(
            dirpath=Path(run_dir) / "checkpoints",
            filename="best",
            monitor="val_loss",
            save_top_k=1,
            save_weights_only=True,
        )
        with quiet_lightning():
            trainer = self._trainer(run_dir, checkpoint)
            start = time.perf_counter()
            trainer.fit(module, self._loader(train, shuffle=True), self._loader(val))
            seconds = time.perf_counter() - start
        best_epoch = 0
        if checkpoint.best_model_path:  # Lightning checkpoints are pickles: read tensors only
            state = torch.load(checkpoint.best_model_path, map_location="cpu", weights_only=True)
            module.load_state_dict(state["state_dict"])
            best_epoch = int(state["epoch"]) + 1
        score = checkpoint.best_model_score
        return {
            "epochs_run": trainer.current_epoch,
            "best_epoch": best_epoch,
            "best_val_loss": float(score) if score is not None else math.nan,
            "n_params": sum(p.numel() for p in self.model.net.parameters()),
            "epoch_s": seconds / max(trainer.current_epoch, 1),
            "global_rank": trainer.global_rank,  # under `ddp`, only rank 0 should write results
        }

    def predict(self, data: Dataset) -> np.ndarray:
        """One prediction per sample of `data`, in its order (single process, eval mode).

        A prediction is whatever `TorchModel.predict` makes of a sample: a scalar, or a volume.
        """
        model = self._fitted()
        device = self._device()
        net = model.net.to(device).eval()
        infer = model.infer or (lambda n, x: n(x))
        outputs = []
        with torch.inference_mode():
            for x, _ in self._loader(data):
                outputs.append(model.predict(infer(net, x.to(device))).float().cpu())
        net.cpu()
        return torch.cat(outputs).numpy()

    def save(self, path: Path) -> None:
        """Write the weights as safetensors, with `meta` as JSON in the header."""
        model = self._fitted()
        state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
        save_file(state, str(path), metadata={META_KEY: json.dumps(self.meta)})

    def load(self, path: Path) -> None:
        """Restore weights written by `save` (this estimator must come from the same config)."""
        self.meta = read_meta(path)
        self.model = self.build(self.meta)
        self.model.net.load_state_dict(load_file(str(path)))

    def _trainer(self, run_dir: Path, checkpoint: ModelCheckpoint) -> L.Trainer:
        cfg = self.trainer_cfg
        early = EarlyStopping(monitor="val_loss", patience=cfg.patience)
        return make_trainer(cfg, run_dir, [early, checkpoint])

    def _fitted(self) -> TorchModel:
        if self.model is None:
            raise RuntimeError("fit() or load() must be called first")
        return self.model

    def _device(self) -> torch.device:
        gpu = self.trainer_cfg.accelerator in ("auto", "gpu", "cuda")
        return torch.device("cuda" if gpu and torch.cuda.is_available() else "cpu")

    def _loader(self, data: Dataset, *, shuffle: bool = False) -> DataLoader:
        workers = self.trainer_cfg.num_workers
        return DataLoader(
            data,
            batch_size=self.trainer_cfg.batch_size,
            shuffle=shuffle,
            num_workers=workers,
            persistent_workers=workers > 0,
        )


def make_trainer(
    cfg: TrainerConfig, log_dir: Path, callbacks: list[L.Callback], **extra: Any
) -> L.Trainer:
    """A Lightning Trainer from the trainer config; settings it rejects are a ConfigError."""
    try:
        return L.Trainer(
            max_epochs=cfg.max_epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            precision=cfg.precision,
            callbacks=callbacks,
            logger=CSVLogger(log_dir, name="logs", version=""),
            enable_progress_bar=cfg.progress_bar,
            enable_model_summary=False,
            deterministic=deterministic_mode(cfg),
            num_sanity_val_steps=0,
            log_every_n_steps=1,
            **extra,
        )
    except (ValueError, ImportError, MisconfigurationException) as exc:
        raise ConfigError(
            f"Lightning rejected the trainer settings: {exc} Check trainer.accelerator, "
            "trainer.devices, trainer.strategy and trainer.precision."
        ) from None


def deterministic_mode(cfg: TrainerConfig) -> bool | str:
    """True on CPU; 'warn' on GPU, where some 3D ops (max-pool backward) have no such kernel."""
    on_gpu = cfg.accelerator != "cpu" and torch.cuda.is_available()
    return "warn" if on_gpu else True


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Silence Lightning's per-run banners and hints (devices available, worker counts...)."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [lg.level for lg in loggers]
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=PossibleUserWarning)
        warnings.filterwarnings("ignore", message=r".*exists and is not empty")
        warnings.filterwarnings("ignore", message=r".*LeafSpec", category=FutureWarning)
        for lg in loggers:
            lg.setLevel(logging.WARNING)
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels, strict=True):
                lg.setLevel(level)
