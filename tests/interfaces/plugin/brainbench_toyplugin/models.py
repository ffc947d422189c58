"""`toy_linear`: a linear model on the average-pooled volume, trained by brainbench's loop."""

from __future__ import annotations

from functools import partial
from math import prod

import torch.nn.functional as F
from torch import Tensor, nn

from brainbench.config import StrictModel, TrainerConfig
from brainbench.registry import register_model
from brainbench.training.fit import TorchEstimator, TorchModel


class ToyConfig(StrictModel):
    pool: int = 4


class PooledLinear(nn.Module):
    def __init__(self, in_shape: list[int], pool: int) -> None:
        super().__init__()
        self.pool = pool
        channels, *shape = in_shape
        self.linear = nn.Linear(channels * prod(s // pool for s in shape), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(F.avg_pool3d(x, self.pool).flatten(1))


def _setup(train) -> dict:
    return {"in_shape": list(train[0][0].shape), "mean": float(train.targets.mean())}


def _build(params: ToyConfig, meta: dict) -> TorchModel:
    net = PooledLinear(meta["in_shape"], params.pool)
    nn.init.zeros_(net.linear.weight)
    nn.init.constant_(net.linear.bias, meta["mean"])
    return TorchModel(net, lambda out, y: F.mse_loss(out[:, 0], y), lambda out: out[:, 0])


@register_model("toy_linear", kind="torch", config=ToyConfig, description="plugin: pooled linear")
def build(params: ToyConfig, *, task, trainer: TrainerConfig) -> TorchEstimator:
    return TorchEstimator(_setup, partial(_build, params), trainer)
