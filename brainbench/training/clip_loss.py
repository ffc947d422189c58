"""CLIP contrastive loss between brain embeddings and image embeddings of a batch.

Each brain sample should be most similar to its own image among the batch's images (and, when
symmetric, each image to its own brain sample). Batch rows showing the same image are all
positives (the target distribution is uniform over them), so repeats and several subjects
seeing one image are not pushed apart.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Normalize = Literal["x", "y", "both", "none"]


class ClipLoss(nn.Module):
    """Cross-entropy over scaled similarities; `temperature` fixed or learned (log-parametrised)."""

    def __init__(
        self,
        *,
        normalize: Normalize = "both",
        temperature: float = 0.07,
        learn_temperature: bool = True,
        symmetric: bool = True,
    ) -> None:
        super().__init__()
        self.normalize = normalize
        self.symmetric = symmetric
        log_t = torch.tensor(math.log(temperature))
        if learn_temperature:
            self.log_temperature = nn.Parameter(log_t)
        else:
            self.register_buffer("log_temperature", log_t)

    @property
    def temperature(self) -> Tensor:
        return self.log_temperature.exp().clamp(min=1e-3, max=100.0)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if self.normalize in ("x", "both"):
            x = F.normalize(x, dim=-1)
        if self.normalize in ("y", "both"):
            y_n = F.normalize(y, dim=-1)
        else:
            y_n = y
        logits = x @ y_n.T / self.temperature
        same = (y[:, None, :] == y[None, :, :]).all(dim=-1).float()
        target = same / same.sum(dim=1, keepdim=True)
        loss = -(target * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        if self.symmetric:
            loss_t = -(target * F.log_softmax(logits.T, dim=1)).sum(dim=1).mean()
            loss = (loss + loss_t) / 2
        return loss
