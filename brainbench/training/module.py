"""The one LightningModule every torch model trains with: a network, a loss and AdamW."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
import torch
from torch import Tensor, nn

Loss = Callable[[Tensor, Tensor], Tensor]  # (network output, targets) -> scalar
Augment = Callable[[Tensor], Tensor]  # a batch of inputs -> an augmented batch


class TrainingModule(L.LightningModule):
    """Wraps any `nn.Module` and a loss; logs `train_loss` and `val_loss` once per epoch.

    `augment`, if given, transforms training batches only; `scheduler` 'cosine' anneals the
    learning rate to zero over `max_epochs`.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: Loss,
        *,
        lr: float,
        weight_decay: float,
        max_epochs: int = 1,
        scheduler: str = "constant",
        augment: Augment | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.scheduler = scheduler
        self.augment = augment

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)

    def _step(self, batch: tuple[Tensor, Tensor], name: str) -> Tensor:
        x, y = batch
        if self.augment is not None and name == "train_loss":
            x = self.augment(x)
        loss = self.loss(self.net(x), y)
        self.log(
            name,
            loss,
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(y),  # inputs may be a dict of tensors
            sync_dist=True,
        )
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "train_loss")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        return self._step(batch, "val_loss")

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        trainable = [p for p in self.parameters() if p.requires_grad]  # frozen blocks stay out
        optimizer = torch.optim.AdamW(trainable, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler == "constant":
            return optimizer
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
