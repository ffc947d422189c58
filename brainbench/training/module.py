"""The one LightningModule every torch model trains with: a network, a loss and AdamW."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lightning as L
import torch
from pydantic import Field
from torch import Tensor, nn

from brainbench.config import StrictModel

Loss = Callable[[Tensor, Tensor], Tensor]  # (network output, targets) -> scalar
Augment = Callable[[Tensor], Tensor]  # a batch of inputs -> an augmented batch


@dataclass(frozen=True)
class Finetune:
    """How a pretrained part of a network (parameters named `prefix`...) is fine-tuned.

    The head alone trains for `freeze_epochs` on the frozen pretrained part (a linear probe),
    then the part joins at `lr_scale` x the learning rate: linear probing then fine-tuning
    (Kumar et al. 2022, ICLR) with a lower rate for pretrained weights (Howard & Ruder 2018),
    so a random head's first gradients do not wash out what pretraining learned.
    """

    prefix: str
    lr_scale: float
    freeze_epochs: int


class FinetuneConfig(StrictModel):
    """How a model's pretrained part is fine-tuned (see Finetune); scratch ignores it.

    The defaults were chosen on the validation split (docs/finetuning.md).
    """

    encoder_lr: float = Field(
        1.0, gt=0, le=1, description="finetune: encoder learning rate as a share of trainer.lr"
    )
    freeze_epochs: int = Field(
        0, ge=0, description="finetune: epochs training the head alone on the frozen encoder"
    )

    def finetune(self, prefix: str) -> Finetune:
        """Fine-tuning of the parameters whose names start with `prefix`."""
        return Finetune(prefix, self.encoder_lr, self.freeze_epochs)


class TrainingModule(L.LightningModule):
    """Wraps any `nn.Module` and a loss; logs `train_loss` and `val_loss` once per epoch.

    `augment`, if given, transforms training batches only; `scheduler` 'cosine' anneals the
    learning rate to zero over `max_epochs`; `finetune`, if given, freezes then slows the
    pretrained part.
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
        finetune: Finetune | None = None,
    ) -> None:
        super().__init__()
        self.net = net
        self.loss = loss
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.scheduler = scheduler
        self.augment = augment
        self.finetune = finetune

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

    def _pretrained(self) -> list[nn.Parameter]:
        if self.finetune is None:
            return []
        prefix = self.finetune.prefix
        return [p for n, p in self.net.named_parameters() if n.startswith(prefix)]

    def on_train_epoch_start(self) -> None:
        if self.finetune is not None:
            frozen = self.current_epoch < self.finetune.freeze_epochs
            for parameter in self._pretrained():
                parameter.requires_grad_(not frozen)

    def configure_optimizers(self) -> torch.optim.Optimizer | dict:
        pretrained = {id(p) for p in self._pretrained()}
        trainable = [p for p in self.parameters() if p.requires_grad]  # frozen blocks stay out
        groups = [{"params": [p for p in trainable if id(p) not in pretrained]}]
        if pretrained:
            scale = self.finetune.lr_scale
            groups.append({"params": [p for p in trainable if id(p) in pretrained],
                           "lr": self.lr * scale})  # fmt: skip
        optimizer = torch.optim.AdamW(groups, lr=self.lr, weight_decay=self.weight_decay)
        if self.scheduler == "constant":
            return optimizer
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "epoch"}}
