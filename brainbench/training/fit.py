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
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import move_data_to_device
from lightning.pytorch.utilities.warnings import PossibleUserWarning
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from brainbench.config import TrainerConfig
from brainbench.errors import ConfigError
from brainbench.models.base import META_KEY, read_meta
from brainbench.training.module import Augment, Finetune, Loss, TrainingModule
from brainbench.training.randomness import sample_generators


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
    finetune: Finetune | None = None  # how pretrained weights train (see TrainingModule)


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
            finetune=self.model.finetune,
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
            data = ShardedData(train, val, cfg, seed)
            start = time.perf_counter()
            trainer.fit(module, datamodule=data)
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
            "world_size": trainer.world_size,
            "effective_batch_size": cfg.batch_size,
            "per_device_batch_size": data.per_device,
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
                x = move_data_to_device(x, device)  # a tensor or a dict of tensors
                outputs.append(model.predict(infer(net, x)).float().cpu())
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
        # ShardedData shards the training batches itself
        return make_trainer(cfg, run_dir, [early, checkpoint], use_distributed_sampler=False)

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


class ShardedBatchSampler(Sampler[list]):
    """Global batches of a seeded per-epoch order, each cut into one slice per rank and step.

    An epoch draws `draws` samples (default n): shuffles of the n samples one after another, or
    draws with replacement by `weights` (e.g. site-balanced).
    Rank r's j-th micro-batch of global batch k is the slice (j * world + r) of batch k, so the
    union over ranks and accumulation steps is the batch a single process would draw: the same
    seed gives the same training whatever the number of processes. An incomplete last global
    batch is dropped (when there is more than one batch). `keyed` yields (index, key) pairs, key
    = the draw's position over all epochs, to seed that sample's own randomness
    (training.randomness).
    """

    def __init__(
        self,
        n: int,
        batch: int,
        world: int,
        rank: int,
        steps: int,
        seed: int,
        weights: Sequence[float] | None = None,
        *,
        keyed: bool = False,
        draws: int | None = None,
    ) -> None:
        self.n, self.batch, self.world, self.rank = n, batch, world, rank
        self.steps, self.seed, self.epoch = steps, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.keyed, self.draws = keyed, draws or n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> int:
        """Global batches (optimizer steps) per epoch."""
        full = self.draws // self.batch
        return full if full else 1

    def __len__(self) -> int:
        return self.batches() * self.steps

    def _order(self) -> list[int]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is not None:
            return torch.multinomial(self.weights, self.draws, True, generator=generator).tolist()
        shuffles = -(-self.draws // self.n)
        order = torch.cat([torch.randperm(self.n, generator=generator) for _ in range(shuffles)])
        return order[: self.draws].tolist()

    def __iter__(self) -> Iterator[list]:
        order, first_key = self._order(), self.epoch * self.draws
        for k in range(self.batches()):
            first = k * self.batch
            positions = range(first, min(first + self.batch, self.draws))
            micro = max(1, len(positions) // (self.world * self.steps))
            for j in range(self.steps):
                start = (j * self.world + self.rank) * micro
                mine = positions[start : start + micro]
                yield [(order[p], first_key + p) if self.keyed else order[p] for p in mine]


class KeyedDataset(Dataset):
    """dataset[(index, key)] -> (*dataset[index], key): a sample with its draw key, which also
    keys the sample's own draws when the dataset draws (`item(index, key)`, VolumeDataset)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> tuple:
        index, key = item
        draws = getattr(self.dataset, "item", None)
        return (*(draws(index, key) if draws else self.dataset[index]), key)


class ShardedData(L.LightningDataModule):
    """Training batches sharded per rank (ShardedBatchSampler); every rank validates on all of val.

    `batch_size` is the effective batch of one optimizer step: devices x nodes x accumulation
    steps x the per-device batch, which must divide it. With `weights` the training order is
    drawn with replacement by them; `keyed` training batches end with one generator per sample,
    seeded by (seed, the sample's draw key) (training.randomness), made on the CPU before the
    batch moves to the device.
    """

    def __init__(
        self,
        train: Dataset,
        val: Dataset,
        cfg: TrainerConfig,
        seed: int,
        weights: Sequence[float] | None = None,
        *,
        keyed: bool = False,
    ) -> None:
        super().__init__()
        self.train, self.val, self.cfg, self.seed = train, val, cfg, seed
        self.weights, self.keyed = weights, keyed
        self.per_device = cfg.batch_size

    def steps_per_epoch(self) -> int:
        """Optimizer steps per epoch (independent of the number of processes)."""
        n, batch = len(self.train), self.cfg.batch_size
        return ShardedBatchSampler(n, batch, 1, 0, 1, 0, draws=self._draws()).batches()

    def _draws(self) -> int:
        """Samples per epoch: trainer.epoch_passes (default 1) times the training set."""
        return max(1, round(len(self.train) * (self.cfg.epoch_passes or 1.0)))

    def train_dataloader(self) -> DataLoader:
        cfg, world, rank = self.cfg, self.trainer.world_size, self.trainer.global_rank
        shares = world * cfg.accumulate_grad_batches
        if cfg.batch_size % shares:
            raise ConfigError(
                f"trainer.batch_size={cfg.batch_size} (the effective batch) must be a multiple "
                f"of devices x nodes x trainer.accumulate_grad_batches = {shares}."
            )
        self.per_device = cfg.batch_size // shares
        sampler = ShardedBatchSampler(
            len(self.train),
            cfg.batch_size,
            world,
            rank,
            cfg.accumulate_grad_batches,
            self.seed,
            self.weights,
            keyed=self.keyed,
            draws=self._draws(),
        )
        train = KeyedDataset(self.train) if self.keyed else self.train
        return DataLoader(train, batch_sampler=sampler, **self._workers())

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.keyed and self.trainer.training:
            *sample, keys = batch
            return (*sample, sample_generators(self.seed, keys.tolist()))
        return batch

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.per_device, **self._workers())

    def _workers(self) -> dict[str, Any]:
        workers = self.cfg.num_workers
        return {"num_workers": workers, "persistent_workers": workers > 0}


class ProgressBar(RichProgressBar):
    """Lightning's rich bar; when max_steps drives training (no epoch total) it counts steps
    instead of showing 'Epoch 62/-2'."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_steps > 0 and trainer.max_epochs == -1:
            return f"Epoch {current_epoch}, step {trainer.global_step}/{trainer.max_steps}"
        return super()._get_train_description(current_epoch)


def make_trainer(
    cfg: TrainerConfig, log_dir: Path, callbacks: list[L.Callback], **extra: Any
) -> L.Trainer:
    """A Lightning Trainer from the trainer config; settings it rejects are a ConfigError.

    A positive `max_steps` in `extra` decides alone when training stops (no epoch cap).
    """
    by_steps = extra.get("max_steps", -1) > 0
    if cfg.progress_bar:
        callbacks = [*callbacks, ProgressBar()]
    try:
        return L.Trainer(
            max_epochs=-1 if by_steps else cfg.max_epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            precision=cfg.precision,
            num_nodes=cfg.num_nodes,
            accumulate_grad_batches=cfg.accumulate_grad_batches,
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
