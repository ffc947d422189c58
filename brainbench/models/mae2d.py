"""mae2d: the 2.5-D masked autoencoder of the lifespan MRI benchmark.

Input: `slices` neighbouring axial slices as channels (7 in the reference); output: the centre
slice. The network is mae3d_cnn's with 2-D convolutions. Pretraining hides `ratio` of the
patch^2 squares of the stack (the same squares in every slice) and scores the MSE on the hidden
pixels of the centre slice. Downstream, a volume's embedding is the mean over its axial slice
stacks of the 2-D encoder's embedding.
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from brainbench.errors import ConfigError
from brainbench.models.mae import register_backbone
from brainbench.models.mae3d_cnn import MAE3D, MAE3DConfig
from brainbench.training.masking import MaskedOutput, check_patch, masked_mse, patch_mask
from brainbench.training.randomness import Generators, batch_rand


class MAE2DConfig(MAE3DConfig):
    slices: int = Field(7, ge=1, description="neighbouring axial slices per stack (odd)")

    @model_validator(mode="after")
    def _odd(self) -> MAE2DConfig:
        if self.slices % 2 == 0:
            raise ValueError(f"slices ({self.slices}) must be odd: a centre slice and neighbours")
        return self


def slice_stacks(x: Tensor, slices: int, centres: Tensor) -> Tensor:
    """(B, C * slices, X, Y): for volume i the `slices` axial slices around centres[i]."""
    first = centres.to(x.device) - slices // 2
    stacks = x.unfold(4, slices, 1)[torch.arange(len(x), device=x.device), ..., first, :]
    return stacks.permute(0, 1, 4, 2, 3).flatten(1, 2)  # (B, C, X, Y, S) -> (B, C * S, X, Y)


class Encoder2D(nn.Module):
    """Encodes a volume (B, C, X, Y, Z) as the mean 2-D embedding of all its slice stacks."""

    def __init__(self, cfg: MAE2DConfig, encoder: nn.Module) -> None:
        super().__init__()
        self.slices = cfg.slices
        self.out_dim = cfg.width
        self.net = encoder

    def forward(self, stacks: Tensor) -> Tensor:
        return self.net(stacks)

    def encode(self, x: Tensor) -> Tensor:
        b, z = len(x), x.shape[-1]
        if z < self.slices:
            raise ConfigError(
                f"mae2d needs at least {self.slices} axial slices, the volume has {z}; enlarge "
                "preprocess.shape or lower model.slices."
            )
        stacks = x.unfold(4, self.slices, 1)  # (B, C, X, Y, centres, S)
        stacks = stacks.permute(4, 0, 1, 5, 2, 3).flatten(2, 3).flatten(0, 1)
        return self.net.encode(stacks).view(z - self.slices + 1, b, -1).mean(dim=0)


class MAE2D(nn.Module):
    def __init__(self, cfg: MAE2DConfig) -> None:
        super().__init__()
        self.slices = cfg.slices
        cnn = MAE3D(cfg, dims=2, in_channels=cfg.slices * cfg.in_channels)
        self.mask_unit = cnn.mask_unit
        self.encoder = Encoder2D(cfg, cnn.encoder)
        self.decoder = cnn.decoder

    def forward(self, stacks: Tensor) -> Tensor:
        """(B, C * slices, X, Y) -> the reconstructed centre slices (B, C, X, Y)."""
        return self.decoder(self.encoder(stacks))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)

    def masked_loss(
        self, view: Tensor, patch: int, ratio: float, generator: Generators = None
    ) -> MaskedOutput:
        """One random slice stack per volume of `view` (B, C, X, Y, Z), masked with patch^2."""
        check_patch(tuple(view.shape[2:4]), patch, self.mask_unit, "mae2d mask patch")
        b, c, z, half = len(view), view.shape[1], view.shape[-1], self.slices // 2
        centres = half + (batch_rand(b, generator=generator) * (z - 2 * half)).long()
        stacks = slice_stacks(view, self.slices, centres)
        mask = patch_mask((b, 1, *view.shape[2:4]), patch, ratio, generator, view.device)
        masked = stacks.masked_fill(mask, 0.0)
        recon = self(masked)
        target = stacks.view(b, c, self.slices, *stacks.shape[2:])[:, :, half]
        shown = masked.view(b, c, self.slices, *stacks.shape[2:])[:, :, half]
        return MaskedOutput(masked_mse(recon, target, mask), target, shown, recon)


MAE2DTaskConfig = register_backbone(
    "mae2d",
    MAE2DConfig,
    MAE2D,
    first_layer="encoder.net.stem.",
    description="2.5D CNN masked-autoencoder (7-slice stacks) encoder",
)
