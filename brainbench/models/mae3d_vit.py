"""mae3d_vit: a 3-D ViT masked autoencoder whose encoder sees only the visible tokens.

The efficient MAE of He et al. (2022) on volumes: patch^3 voxel tokens (a strided Conv3d), fixed
3-D sine-cosine position embeddings (so any grid divisible by the patch works downstream); the
masked tokens are dropped before the encoder (a stable sort puts the visible tokens first, the
inverse permutation restores the order), the decoder appends a learned mask token for each
dropped one, unshuffles and predicts every token's voxels; the loss is the MSE on the masked
tokens, optionally against per-token normalised targets. Attention is
torch.nn.functional.scaled_dot_product_attention. Masks come from training.masking, so a mask
patch may span several tokens (8^3 local patches over 4^3 tokens).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from brainbench.config import StrictModel
from brainbench.models.mae import register_backbone
from brainbench.training.masking import MaskedOutput, check_patch, masked_count, patch_mask
from brainbench.training.randomness import Generators


class MAE3DViTConfig(StrictModel):
    patch: int = Field(4, ge=1, description="token edge (voxels)")
    width: int = Field(96, ge=1, description="encoder embedding size (divisible by 6 and heads)")
    depth: int = Field(4, ge=1, description="encoder transformer blocks")
    heads: int = Field(4, ge=1)
    decoder_width: int = Field(48, ge=1, description="divisible by 6 and decoder_heads")
    decoder_depth: int = Field(2, ge=1)
    decoder_heads: int = Field(4, ge=1)
    mlp_ratio: float = Field(4.0, gt=0)
    norm_targets: bool = Field(False, description="loss against per-token normalised voxels")
    in_channels: int = Field(1, ge=1, description="input modalities")

    @model_validator(mode="after")
    def _check(self) -> MAE3DViTConfig:
        for width, heads in ((self.width, self.heads), (self.decoder_width, self.decoder_heads)):
            if width % 6 or width % heads:
                raise ValueError(f"width {width} must be divisible by 6 and by its heads {heads}")
        return self


def sincos_position(
    grid: tuple[int, int, int], dim: int, device: torch.device | None = None
) -> Tensor:
    """(prod(grid), dim) fixed embeddings: dim/3 sin/cos features per axis (dim % 6 == 0)."""
    per_axis = dim // 3
    steps = torch.arange(per_axis // 2, dtype=torch.float64, device=device)
    freqs = 1.0 / 10000 ** (steps / (per_axis // 2))
    axes = torch.meshgrid(
        *[torch.arange(n, dtype=torch.float64, device=device) for n in grid], indexing="ij"
    )
    parts = []
    for coord in axes:
        angles = coord.reshape(-1, 1) * freqs
        parts += [angles.sin(), angles.cos()]
    return torch.cat(parts, dim=1).float()


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each (B, heads, N, d/heads)
        attn = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(attn)
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Tokens -> transformer; `encode` is the mean of the final tokens of the whole volume."""

    def __init__(self, cfg: MAE3DViTConfig) -> None:
        super().__init__()
        self.patch = cfg.patch
        self.out_dim = cfg.width
        self.patch_embed = nn.Conv3d(cfg.in_channels, cfg.width, cfg.patch, stride=cfg.patch)
        self.blocks = nn.Sequential(
            *[Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.depth)]
        )
        self.norm = nn.LayerNorm(cfg.width)

    def tokens(self, x: Tensor) -> tuple[Tensor, tuple[int, int, int]]:
        """(B, N, width) token embeddings with positions, and the token grid."""
        check_patch(tuple(x.shape[2:]), self.patch, 1, "mae3d_vit tokens (model.patch)")
        feats = self.patch_embed(x)
        grid = tuple(feats.shape[2:])
        pos = sincos_position(grid, self.out_dim, feats.device).to(feats.dtype)
        return feats.flatten(2).transpose(1, 2) + pos, grid

    def forward(self, tokens: Tensor) -> Tensor:
        return self.norm(self.blocks(tokens))

    def encode(self, x: Tensor) -> Tensor:
        return self(self.tokens(x)[0]).mean(dim=1)


class MAE3DViT(nn.Module):
    def __init__(self, cfg: MAE3DViTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mask_unit = cfg.patch
        self.encoder = ViTEncoder(cfg)
        self.decoder_embed = nn.Linear(cfg.width, cfg.decoder_width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_width))
        self.decoder_blocks = nn.Sequential(
            *[
                Block(cfg.decoder_width, cfg.decoder_heads, cfg.mlp_ratio)
                for _ in range(cfg.decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(cfg.decoder_width)
        self.decoder_pred = nn.Linear(cfg.decoder_width, cfg.patch**3 * cfg.in_channels)
        nn.init.normal_(self.mask_token, std=0.02)

    def patchify(self, x: Tensor) -> Tensor:
        """(B, C, X, Y, Z) -> (B, N, p^3 C), tokens in the patch_embed order."""
        b, c, *grid = x.shape
        p = self.cfg.patch
        gx, gy, gz = (s // p for s in grid)
        x = x.reshape(b, c, gx, p, gy, p, gz, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(b, gx * gy * gz, p**3 * c)

    def unpatchify(self, tokens: Tensor, grid: tuple[int, int, int]) -> Tensor:
        b, p, c = len(tokens), self.cfg.patch, self.cfg.in_channels
        x = tokens.reshape(b, *grid, p, p, p, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, c, *(g * p for g in grid))

    def forward_masked(
        self, x: Tensor, token_mask: Tensor, hidden: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """(visible encoder tokens, per-token predictions (B, N, p^3 C)) for a (B, N) mask.

        Every sample must hide the same number of tokens, `hidden` (None: counted from the
        mask, a host sync on a GPU).
        """
        tokens, _ = self.encoder.tokens(x)
        b, n, d = tokens.shape
        keep = n - (int(token_mask[0].sum()) if hidden is None else hidden)
        ids_shuffle = torch.argsort(token_mask.int(), dim=1, stable=True)  # visible first
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        visible = torch.gather(tokens, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        latent = self.encoder(visible)
        y = self.decoder_embed(latent)
        y = torch.cat([y, self.mask_token.expand(b, n - keep, -1)], dim=1)
        y = torch.gather(y, 1, ids_restore[:, :, None].expand(-1, -1, y.shape[-1]))
        grid = tuple(s // self.cfg.patch for s in x.shape[2:])
        y = y + sincos_position(grid, y.shape[-1], y.device).to(y.dtype)
        return latent, self.decoder_pred(self.decoder_norm(self.decoder_blocks(y)))

    def masked_loss(
        self, view: Tensor, patch: int, ratio: float, generator: Generators = None
    ) -> MaskedOutput:
        """Hide `ratio` of the patch^3 patches, encode the rest, MSE on the hidden tokens.

        With norm_targets the reconstruction shown is de-normalised with the true token
        statistics (as He et al. visualise), so its PSNR is optimistic.
        """
        check_patch(tuple(view.shape[2:]), patch, self.mask_unit, "mae3d_vit mask patch")
        mask = patch_mask(view.shape, patch, ratio, generator, view.device)
        token_mask = self.patchify(mask.float()).amax(dim=-1) > 0  # (B, N)
        patches = math.prod(s // patch for s in view.shape[2:])
        hidden = masked_count(patches, ratio) * (patch // self.cfg.patch) ** 3
        _, pred = self.forward_masked(view, token_mask, hidden)
        target = self.patchify(view)
        mean = target.mean(dim=-1, keepdim=True)
        std = (target.var(dim=-1, keepdim=True) + 1e-6).sqrt()
        if self.cfg.norm_targets:
            loss = ((pred - (target - mean) / std) ** 2).mean(dim=-1)
            pred = pred * std + mean
        else:
            loss = ((pred - target) ** 2).mean(dim=-1)
        loss = torch.where(token_mask, loss, 0).sum() / token_mask.sum()
        grid = tuple(s // self.cfg.patch for s in view.shape[2:])
        recon = self.unpatchify(pred, grid)
        return MaskedOutput(loss, view, view.masked_fill(mask, 0.0), recon)

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)


MAE3DViTTaskConfig = register_backbone(
    "mae3d_vit",
    MAE3DViTConfig,
    MAE3DViT,
    first_layer="encoder.patch_embed.",
    description="3D ViT masked-autoencoder encoder (visible tokens only)",
)
