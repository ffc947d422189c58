"""mae3d_cnn: the convolutional 3D masked autoencoder of the lifespan MRI benchmark.

Encoder: a 4^3 stride-4 convolutional stem, then residual blocks x + act(GroupNorm(conv 3^3 (x))).
Decoder: two stride-2 transposed convolutions back to the input grid, one channel per input
(`decoder=compact`), or the published MAE_CNN decoder (`decoder=reference`, ReferenceDecoder).
Pretraining (brainbench.training.pretrain) zeroes `mask_ratio` of the patches of each view in
place and scores the MSE on the masked voxels only. The 2.5-D variant (models/mae2d.py) is the
same network with 2-D convolutions (`dims=2`).

Downstream, `mae3d_cnn` is the encoder + a head, from scratch or fine-tuned with `init`; the
shared machinery (heads, weight matching, the probe `mae3d_probe`) is in models/mae.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from brainbench.config import StrictModel
from brainbench.models.mae import (  # noqa: F401  (re-exported: the U-Net and tests load weights)
    CONFIG,
    WEIGHTS,
    load_encoder,
    load_matching,
    read_weights,
    register_backbone,
    weights_path,
)
from brainbench.training.masking import MaskedOutput, check_patch, masked_mse, patch_mask
from brainbench.training.randomness import Generators

STEM_STRIDE = 4
REFERENCE_DECODER = (16, 16, 8)  # published decoder: width / 16 channels, then 16, GroupNorm(8)


class MAE3DConfig(StrictModel):
    """The network (shared by pretraining and every downstream protocol)."""

    width: int = Field(32, ge=1, description="channels of the stem and every block (ref. 512)")
    depth: int = Field(3, ge=0, description="residual blocks after the stem (the reference: 7)")
    groups: int = Field(8, ge=1, description="GroupNorm groups; must divide width")
    activation: Literal["gelu", "relu"] = "gelu"
    in_channels: int = Field(1, ge=1, description="input modalities")
    block: Literal["compact", "reference"] = Field(
        "compact",
        description="compact: x + act(norm(conv x)); reference: the published 3-conv pre-norm "
        "block (its weights load with init=PATH; width 512, depth 7, groups 32, relu)",
    )
    decoder: Literal["compact", "reference"] = Field(
        "compact",
        description="compact: two stride-2 transposed convs; reference: the published MAE_CNN "
        "decoder (stride-4 transposed conv to width/16 channels, a reference block to 16, "
        "GroupNorm, 3^3 conv, sigmoid), whose weights load with load_published",
    )

    @model_validator(mode="after")
    def _check(self) -> MAE3DConfig:
        if self.width % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide width ({self.width})")
        if self.decoder == "reference":
            ratio, _, groups = REFERENCE_DECODER
            up = self.width // ratio
            if self.width % ratio or (up >= groups and up % groups):
                raise ValueError(
                    f"the reference decoder needs width ({self.width}) a multiple of {ratio} "
                    f"whose width/{ratio} is below {groups} or a multiple of it (e.g. 512)"
                )
        return self


def _act(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU(inplace=True)


def _conv(dims: int, transposed: bool = False) -> type[nn.Module]:
    if transposed:
        return nn.ConvTranspose3d if dims == 3 else nn.ConvTranspose2d
    return nn.Conv3d if dims == 3 else nn.Conv2d


class ResidualBlock(nn.Module):
    def __init__(self, width: int, groups: int, activation: str, dims: int = 3) -> None:
        super().__init__()
        self.conv = _conv(dims)(width, width, 3, padding=1)
        self.norm = nn.GroupNorm(groups, width)
        self.act = _act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.act(self.norm(self.conv(x)))


class PreNormConv(nn.Sequential):
    """GroupNorm -> convolution without bias [-> activation]: the reference's 'gcr' layer."""

    def __init__(
        self, cin: int, cout: int, stride: int, groups: int, act: str | None, dims: int
    ) -> None:
        kernel, padding = (STEM_STRIDE, 0) if stride > 1 else (3, 1)
        super().__init__()
        self.norm = nn.GroupNorm(groups if cin >= groups else 1, cin)
        self.conv = _conv(dims)(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        if act is not None:
            self.act = _act(act)


class ReferenceBlock(nn.Module):
    """The published encoder block: y = conv1(x); act(conv3(conv2(y)) + y), convs pre-norm."""

    def __init__(
        self, cin: int, cout: int, stride: int, groups: int, activation: str, dims: int = 3
    ) -> None:
        super().__init__()
        self.conv1 = PreNormConv(cin, cout, stride, groups, activation, dims)
        self.conv2 = PreNormConv(cout, cout, 1, groups, activation, dims)
        self.conv3 = PreNormConv(cout, cout, 1, groups, None, dims)
        self.act = _act(activation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv1(x)
        return self.act(self.conv3(self.conv2(y)) + y)


class ReferenceDecoder(nn.Module):
    """The published MAE_CNN decoder, (B, width, *grid / 4) -> (B, out, *grid) in [0, 1].

    upsample: transposed conv 4^3 stride 4 to width/16 channels (with bias); block: a reference
    block (stride 1) to 16 channels, its first pre-norm GroupNorm(8) (1 group below 8 channels);
    norm: GroupNorm(8, 16); project: conv 3^3 (with bias) to `out` channels; then a sigmoid.
    """

    def __init__(self, cfg: MAE3DConfig, dims: int, out_channels: int) -> None:
        super().__init__()
        ratio, hidden, groups = REFERENCE_DECODER
        up = cfg.width // ratio
        self.upsample = _conv(dims, transposed=True)(cfg.width, up, STEM_STRIDE, stride=STEM_STRIDE)
        self.block = ReferenceBlock(up, hidden, 1, groups, cfg.activation, dims)
        self.norm = nn.GroupNorm(groups, hidden)
        self.project = _conv(dims)(hidden, out_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sigmoid(self.project(self.norm(self.block(self.upsample(x)))))


REFERENCE_BLOCK = re.compile(
    r"^(?:local_encoder\.(\d+)|local_decoder\.0)\.basic_module\.(conv[123])\.(groupnorm|conv)\."
)
REFERENCE_PREFIXES = {  # the published decoder's other layers
    "local_upsample.": "decoder.upsample.",
    "final_norm_local_recon.": "decoder.norm.",
    "final_projection_local_recon.": "decoder.project.",
}


def reference_names(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The published NeuroBench_LS MAE_CNN weights renamed to a reference mae3d_cnn.

    Their encoder is `local_encoder`, a ModuleList of Encoder(basic_module=ExtResNetBlock) whose
    convs are named conv1..3, each a GroupNorm 'groupnorm' and a Conv3d 'conv'. Entry 0 (the
    stride-4 block) becomes our stem, entry i our blocks.{i-1}. Their decoder (local_upsample,
    one ExtResNetBlock in local_decoder, final_norm_local_recon, final_projection_local_recon)
    becomes our ReferenceDecoder (decoder=reference):
      local_encoder.0.basic_module.convK.groupnorm.* -> encoder.stem.convK.norm.*
      local_encoder.0.basic_module.convK.conv.weight -> encoder.stem.convK.conv.weight
      local_encoder.I.basic_module.convK.*           -> encoder.blocks.{I-1}.convK.*
      local_upsample.*                               -> decoder.upsample.*
      local_decoder.0.basic_module.convK.*           -> decoder.block.convK.*
      final_norm_local_recon.*                       -> decoder.norm.*
      final_projection_local_recon.*                 -> decoder.project.*
    Other names (our own checkpoints, anything unknown) are kept unchanged.
    """
    out = {}
    for key, value in state.items():
        if match := REFERENCE_BLOCK.match(key):
            entry, conv, layer = match.groups()
            if entry is None:
                where = "decoder.block"
            else:
                where = "encoder.stem" if entry == "0" else f"encoder.blocks.{int(entry) - 1}"
            part = "norm" if layer == "groupnorm" else "conv"
            key = f"{where}.{conv}.{part}.{key[match.end() :]}"
        else:
            for theirs, ours in REFERENCE_PREFIXES.items():
                if key.startswith(theirs):
                    key = ours + key.removeprefix(theirs)
                    break
        out[key] = value
    return out


def load_published(net: nn.Module, path: Path) -> dict[str, Any]:
    """Load a published MAE_CNN state dict (weights-only .pth or safetensors) into a whole
    MAE3D (encoder and decoder) through reference_names; the report of load_matching (matched,
    unmatched, ignored). Build the network with block=reference, decoder=reference and the
    checkpoint's width / depth / groups: width 512, depth 7, groups 32, relu."""
    state = reference_names(read_weights(path))
    return load_matching(net, path, "encoder.stem.", state)


class Encoder(nn.Module):
    """Stem + residual blocks: (B, C, *grid) -> (B, width, *grid / 4); 3-D, or 2-D with dims=2."""

    def __init__(self, cfg: MAE3DConfig, dims: int = 3, in_channels: int | None = None) -> None:
        super().__init__()
        self.out_dim = cfg.width
        cin = in_channels or cfg.in_channels
        if cfg.block == "reference":
            self.stem = ReferenceBlock(
                cin, cfg.width, STEM_STRIDE, cfg.groups, cfg.activation, dims
            )
            blocks = [
                ReferenceBlock(cfg.width, cfg.width, 1, cfg.groups, cfg.activation, dims)
                for _ in range(cfg.depth)
            ]
        else:
            self.stem = nn.Sequential(
                _conv(dims)(cin, cfg.width, STEM_STRIDE, stride=STEM_STRIDE),
                nn.GroupNorm(cfg.groups, cfg.width),
                _act(cfg.activation),
            )
            blocks = [
                ResidualBlock(cfg.width, cfg.groups, cfg.activation, dims) for _ in range(cfg.depth)
            ]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))

    def encode(self, x: Tensor) -> Tensor:
        """(B, width): the global average of the feature map."""
        return self(x).flatten(2).mean(-1)


class MAE3D(nn.Module):
    """The masked autoencoder: `forward` reconstructs (B, C, *grid) from a (masked) input."""

    mask_unit = STEM_STRIDE

    def __init__(self, cfg: MAE3DConfig, dims: int = 3, in_channels: int | None = None) -> None:
        super().__init__()
        self.encoder = Encoder(cfg, dims, in_channels)
        if cfg.decoder == "reference":
            self.decoder: nn.Module = ReferenceDecoder(cfg, dims, cfg.in_channels)
        else:
            self.decoder = nn.Sequential(
                _conv(dims, transposed=True)(cfg.width, cfg.width, 2, stride=2),
                nn.GroupNorm(cfg.groups, cfg.width),
                _act(cfg.activation),
                _conv(dims, transposed=True)(cfg.width, cfg.in_channels, 2, stride=2),
            )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)

    def masked_loss(
        self, view: Tensor, patch: int, ratio: float, generator: Generators = None
    ) -> MaskedOutput:
        return masked_reconstruction(self, view, patch, ratio, generator, "mae3d_cnn")


def masked_reconstruction(
    net: nn.Module, view: Tensor, patch: int, ratio: float, generator: Generators, name: str
) -> MaskedOutput:
    """Zero `ratio` of the patch^3 patches of `view`, reconstruct it with `net` (whose
    `mask_unit` the patch must be a multiple of), MSE on the masked voxels."""
    check_patch(tuple(view.shape[2:]), patch, net.mask_unit, f"{name} mask patch")
    mask = patch_mask(view.shape, patch, ratio, generator, view.device)
    masked = view.masked_fill(mask, 0.0)
    recon = net(masked)
    return MaskedOutput(masked_mse(recon, view, mask), view, masked, recon)


MAE3DTaskConfig = register_backbone(
    "mae3d_cnn",
    MAE3DConfig,
    MAE3D,
    first_layer="encoder.stem.",
    rename=reference_names,
    reconstructs=True,
    description="3D CNN masked-autoencoder encoder",
)
