"""mae3d_unet: a U-Net whose encoder is the mae3d_cnn masked-autoencoder encoder.

The encoder (4^3 stride-4 stem + residual blocks, at 1/4 resolution) keeps the names of the
pretrained network (`encoder.stem.*`, `encoder.blocks.*`). Two small convolutional skip
branches (full and half resolution) and a decoder of transposed convolutions bring the features
back to the input grid: one logit per class (segmentation, Dice + CE) or one intensity
(synthesis, L1/MSE), as the MONAI U-Net (models/unet.py), with the same patch training and
sliding-window inference.

`finetune` (model.init=PATH) loads every weight whose name and shape match and records the
matched and unmatched ones: from a pretrained mae3d_cnn, the encoder; from the U-Net itself
pretrained as a masked autoencoder (`brainbench pretrain mae3d_unet`: it reconstructs its input,
the masked patches zeroed, MSE on them; registered with `register_pretrainable`), the whole
network, skips and decoder included, but for a segmentation output layer of another shape.
Pretraining the whole U-Net is what Wald et al. 2025 (CVPR, "Revisiting MAE pre-training for 3D
medical image segmentation") found to pay off for CNNs.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, PositiveInt, model_validator
from torch import Tensor, nn

from brainbench.config import TrainerConfig
from brainbench.models.mae import register_pretrainable
from brainbench.models.mae3d_cnn import (
    STEM_STRIDE,
    Encoder,
    MAE3DConfig,
    load_matching,
    masked_reconstruction,
    weights_path,
)
from brainbench.models.unet import PatchConfig, VoxelEstimator, padded, voxel_model, voxel_setup
from brainbench.registry import register_model
from brainbench.spec import TaskSpec
from brainbench.training.fit import TorchModel
from brainbench.training.masking import MaskedOutput
from brainbench.training.module import FinetuneConfig
from brainbench.training.randomness import Generators


class MAEUNetShape(MAE3DConfig):
    """The network, for pretraining and every downstream protocol."""

    skip_channels: PositiveInt = Field(8, description="channels of the full-resolution skip")

    @model_validator(mode="after")
    def _own_decoder(self) -> MAEUNetShape:
        if self.decoder != "compact":
            raise ValueError(
                "decoder applies to mae3d_cnn's masked-autoencoder decoder; mae3d_unet decodes "
                "through its own U-Net path: leave model.decoder unset"
            )
        return self


class MAEUNetConfig(MAEUNetShape, PatchConfig, FinetuneConfig):
    init: Path | None = Field(
        None,
        description="pretrained mae3d_cnn or mae3d_unet folder or model.safetensors; "
        "None = scratch",
    )
    synthesis_loss: Literal["l1", "mse"] = Field("l1", description="synthesis: voxel loss")


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(min(4, cout), cout),
        nn.GELU(),
    )


class MAEUNet(nn.Module):
    """(B, C, X, Y, Z) -> (B, K, X, Y, Z); X, Y, Z are padded to multiples of 4 and cropped."""

    mask_unit = STEM_STRIDE

    def __init__(self, cfg: MAEUNetShape, out_channels: int) -> None:
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

    def masked_loss(
        self, view: Tensor, patch: int, ratio: float, generator: Generators = None
    ) -> MaskedOutput:
        return masked_reconstruction(self, view, patch, ratio, generator, "mae3d_unet")

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


register_pretrainable(
    "mae3d_unet",
    MAEUNetShape,
    lambda cfg: MAEUNet(cfg, cfg.in_channels),
    first_layer="encoder.stem.",
    reconstructs=True,
)
