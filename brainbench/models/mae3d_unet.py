"""mae3d_unet: a U-Net whose encoder is the mae3d_cnn masked-autoencoder encoder.

The encoder (4^3 stride-4 stem + residual blocks, at 1/4 resolution) keeps the names of the
pretrained network (`encoder.stem.*`, `encoder.blocks.*`), so `finetune` (model.init=PATH) loads
it through mae3d_cnn's name-and-shape matching and records the matched and unmatched weights.
Two small convolutional skip branches (full and half resolution) and a decoder of transposed
convolutions bring the features back to the input grid: one logit per class (segmentation,
Dice + CE) or one intensity (synthesis, L1/MSE), as the MONAI U-Net (models/unet.py), with the
same patch training and sliding-window inference.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt
from torch import Tensor, nn

from brainbench.config import TrainerConfig
from brainbench.models.mae3d_cnn import (
    STEM_STRIDE,
    Encoder,
    MAE3DConfig,
    load_matching,
    weights_path,
)
from brainbench.models.unet import PatchConfig, VoxelEstimator, padded, voxel_model, voxel_setup
from brainbench.registry import register_model
from brainbench.spec import TaskSpec
from brainbench.training.fit import TorchModel
from brainbench.training.module import FinetuneConfig


class MAEUNetConfig(MAE3DConfig, PatchConfig, FinetuneConfig):
    init: Path | None = Field(
        None, description="pretrained mae3d_cnn folder or model.safetensors; None = scratch"
    )
    skip_channels: PositiveInt = Field(8, description="channels of the full-resolution skip")
    synthesis_loss: Literal["l1", "mse"] = Field("l1", description="synthesis: voxel loss")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(min(4, cout), cout),
        nn.GELU(),
    )


class MAEUNet(nn.Module):
    """(B, C, X, Y, Z) -> (B, K, X, Y, Z); X, Y, Z are padded to multiples of 4 and cropped."""

    def __init__(self, cfg: MAEUNetConfig, out_channels: int) -> None:
        super().__init__()
        enc = MAE3DConfig.model_validate(cfg.model_dump(include=set(MAE3DConfig.model_fields)))
        s = cfg.skip_channels
        self.encoder = Encoder(enc)
        self.skip_full = _conv(cfg.in_channels, s)
        self.skip_half = _conv(s, 2 * s, stride=2)
        self.up_half = nn.ConvTranspose3d(cfg.width, 2 * s, 2, stride=2)
        self.fuse_half = _conv(4 * s, 2 * s)
        self.up_full = nn.ConvTranspose3d(2 * s, s, 2, stride=2)
        self.fuse_full = _conv(2 * s, s)
        self.out = nn.Conv3d(s, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        return padded(self._forward, x, STEM_STRIDE)

    def _forward(self, x: Tensor) -> Tensor:
        full = self.skip_full(x)
        half = self.skip_half(full)
        h = self.fuse_half(torch.cat([self.up_half(self.encoder(x)), half], dim=1))
        h = self.fuse_full(torch.cat([self.up_full(h), full], dim=1))
        return self.out(h)


def _build(params: MAEUNetConfig, task: TaskSpec, meta: dict[str, Any]) -> TorchModel:
    if meta["in_channels"] != params.in_channels:
        params = params.model_copy(update={"in_channels": meta["in_channels"]})
    net = MAEUNet(params, meta["out_channels"])
    model = voxel_model(net, task, params, params.synthesis_loss)
    if params.init is not None:
        model.finetune = params.finetune("encoder.")
    return model


@register_model(
    "mae3d_unet",
    kind="torch",
    config=MAEUNetConfig,
    description="U-Net on the mae3d_cnn encoder: scratch, or finetune with init=PATH",
    task_kinds=("segmentation", "synthesis"),
    needs_volume=True,
    defaults={"trainer": {"lr": 0.003, "max_epochs": 60, "patience": 10, "batch_size": 4}},
    protocol=lambda params: "finetune" if params.init else "scratch",
)
def build_mae3d_unet(
    params: MAEUNetConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> VoxelEstimator:
    """The MAE-encoder U-Net for a segmentation or synthesis `task`, scratch or from `init`."""
    init = None
    if params.init is not None:
        weights_path(params.init)  # a missing or pickled checkpoint fails before any work
        init = partial(load_matching, path=params.init)
    build = partial(_build, params, task)
    return VoxelEstimator(partial(voxel_setup, task), build, trainer, params, init=init)
