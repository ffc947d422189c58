"""brainlm: a masked autoencoder over parcel x time matrices (BrainLM-style).

Each parcel's series is cut into patches of `patch` time points. A token is a linear embedding
of its patch + a linear embedding of its parcel's xyz coordinate + a sin/cos encoding of the
patch's time index. A CLS token is prepended; a random `mask_ratio` of the tokens (the same
count per sample) is hidden, and the transformer encoder sees only the visible ones (pre-norm
blocks on torch's scaled_dot_product_attention). A lighter decoder adds mask tokens back at the
hidden positions and predicts every patch; the loss is the MSE on the masked patches.

Embeddings: `encode` (CLS, or mean of the tokens) and `parcel_embeddings` (mean over each
parcel's time patches), always from the whole, unmasked window; `parcel_attention` is the
last encoder block's attention between parcels (zero-shot functional networks).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from brainbench.config import StrictModel
from brainbench.errors import DataError

COORD_SCALE_MM = 100.0  # xyz in MNI mm are divided by this before their linear embedding


class BrainLMConfig(StrictModel):
    """The network (shared by pretraining and every downstream protocol)."""

    patch: int = Field(20, ge=1, description="time points per patch (the reference: 20)")
    width: int = Field(64, ge=8, description="encoder token width")
    depth: int = Field(4, ge=1, description="encoder blocks")
    heads: int = Field(4, ge=1, description="encoder attention heads; must divide width")
    decoder_width: int = Field(32, ge=8, description="decoder token width")
    decoder_depth: int = Field(2, ge=1, description="decoder blocks")
    decoder_heads: int = Field(4, ge=1, description="decoder attention heads")
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> BrainLMConfig:
        if self.width % self.heads or self.decoder_width % self.decoder_heads:
            raise ValueError("heads must divide width and decoder_heads must divide decoder_width")
        return self


def time_encoding(n: int, width: int, device: torch.device | None = None) -> Tensor:
    """(n, width) sin/cos encoding of the positions 0..n-1 (the transformer's, base 10000)."""
    position = torch.arange(n, dtype=torch.float32, device=device)[:, None]
    half = width // 2
    freq = torch.exp(-math.log(10000.0) * torch.arange(half, device=device) / max(half, 1))
    angles = position * freq
    out = torch.zeros(n, width, device=device)
    out[:, 0 : 2 * half : 2] = torch.sin(angles)
    out[:, 1 : 2 * half : 2] = torch.cos(angles)
    return out


class Attention(nn.Module):
    def __init__(self, width: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.dropout = dropout

    def forward(self, x: Tensor) -> Tensor:
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout * self.training)
        return self.proj(out.transpose(1, 2).reshape(b, n, w))

    def weights(self, x: Tensor) -> Tensor:
        """(B, heads, N, N) attention probabilities (for analysis; not used in training)."""
        b, n, w = x.shape
        q, k, _ = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), dim=-1)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def random_mask(batch: int, n_tokens: int, ratio: float, generator=None, device=None) -> Tensor:
    """(batch, n_tokens) bool, True = hidden: round(ratio * n_tokens) random tokens per sample."""
    k = min(n_tokens - 1, max(1, round(ratio * n_tokens)))
    order = torch.rand(batch, n_tokens, generator=generator).argsort(dim=1)[:, :k]
    return torch.zeros(batch, n_tokens, dtype=torch.bool).scatter_(1, order, True).to(device)


def future_mask(batch: int, n_parcels: int, n_patches: int, horizon: int, device=None) -> Tensor:
    """(batch, parcels * patches) bool hiding the last `horizon` patches of every parcel."""
    mask = torch.zeros(n_parcels, n_patches, dtype=torch.bool, device=device)
    mask[:, n_patches - horizon :] = True
    return mask.flatten().expand(batch, -1).contiguous()


class BrainLM(nn.Module):
    """The masked autoencoder; `coords` is the (parcels, 3) MNI xyz of the atlas in mm."""

    def __init__(self, cfg: BrainLMConfig, coords: Tensor) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("coords", torch.as_tensor(coords, dtype=torch.float32))
        w, dw = cfg.width, cfg.decoder_width
        self.patch_embed = nn.Linear(cfg.patch, w)
        self.xyz_embed = nn.Linear(3, w)
        self.cls = nn.Parameter(torch.zeros(1, 1, w))
        self.blocks = nn.ModuleList(
            Block(w, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(w)
        self.decoder_embed = nn.Linear(w, dw)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dw))
        self.decoder_xyz = nn.Linear(3, dw)
        self.decoder_blocks = nn.ModuleList(
            Block(dw, cfg.decoder_heads, cfg.mlp_ratio, cfg.dropout)
            for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(dw)
        self.head = nn.Linear(dw, cfg.patch)
        nn.init.normal_(self.cls, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)

    @property
    def n_parcels(self) -> int:
        return self.coords.shape[0]

    def patchify(self, x: Tensor) -> Tensor:
        """(B, parcels, time) -> (B, parcels, patches, patch); time must be a multiple of patch."""
        b, p, t = x.shape
        if p != self.n_parcels:
            raise DataError(
                f"the data has {p} parcels but the model was built for {self.n_parcels}; use "
                "series parcellated with the checkpoint's atlas."
            )
        if t % self.cfg.patch:
            raise DataError(
                f"window of {t} time points is not a multiple of the patch size {self.cfg.patch}."
            )
        return x.view(b, p, t // self.cfg.patch, self.cfg.patch)

    def _position(self, linear: nn.Linear, n_patches: int, width: int) -> Tensor:
        """(parcels * patches, width): the xyz embedding + the time encoding of every token."""
        xyz = linear(self.coords / COORD_SCALE_MM)[:, None]
        time = time_encoding(n_patches, width, self.coords.device)[None]
        return (xyz + time).flatten(0, 1)

    def _embed(self, patches: Tensor, keep: Tensor | None) -> Tensor:
        """Encoder input (B, 1 + visible, width); `keep` (B, visible) indexes visible tokens."""
        b, p, n, _ = patches.shape
        tokens = self.patch_embed(patches).flatten(1, 2)
        tokens = tokens + self._position(self.xyz_embed, n, self.cfg.width)
        if keep is not None:
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return torch.cat([self.cls.expand(b, -1, -1), tokens], dim=1)

    def _encode_tokens(self, patches: Tensor, keep: Tensor | None) -> Tensor:
        """Encoder output (B, 1 + visible, width); `keep` (B, visible) indexes visible tokens."""
        x = self._embed(patches, keep)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        """Predicted patches (B, parcels, patches, patch) of x (B, parcels, time).

        `mask` (B, parcels * patches) bool, True = hidden, the same count in every sample.
        """
        patches = self.patchify(x)
        b, p, n, _ = patches.shape
        counts = (~mask).sum(dim=1)
        if not bool((counts == counts[0]).all()) or int(counts[0]) == 0:
            raise ValueError("every sample must keep the same, non-zero number of tokens")
        keep = (~mask).nonzero()[:, 1].view(b, -1)
        latent = self._encode_tokens(patches, keep)
        y = self.decoder_embed(latent)
        full = self.mask_token.expand(b, p * n, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, y.shape[-1]), y[:, 1:])
        full = full + self._position(self.decoder_xyz, n, self.cfg.decoder_width)
        y = torch.cat([y[:, :1], full], dim=1)
        for block in self.decoder_blocks:
            y = block(y)
        return self.head(self.decoder_norm(y[:, 1:])).view(b, p, n, self.cfg.patch)

    def masked_loss(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
        """(MSE on the hidden patches, prediction) for x and mask."""
        pred = self(x, mask)
        target = self.patchify(x)
        hidden = mask.view(pred.shape[:3])
        return ((pred - target) ** 2)[hidden].mean(), pred

    def tokens(self, x: Tensor) -> Tensor:
        """Encoder output (B, 1 + parcels * patches, width) of the whole window, CLS first."""
        return self._encode_tokens(self.patchify(x), None)

    def encode(self, x: Tensor, pooling: str = "cls") -> Tensor:
        """(B, width) embedding: the CLS token ('cls') or the mean of the other tokens ('mean')."""
        out = self.tokens(x)
        return out[:, 0] if pooling == "cls" else out[:, 1:].mean(dim=1)

    def parcel_embeddings(self, x: Tensor) -> Tensor:
        """(B, parcels, width): each parcel's tokens averaged over its time patches."""
        out = self.tokens(x)[:, 1:]
        return out.view(x.shape[0], self.n_parcels, -1, out.shape[-1]).mean(dim=2)

    def parcel_attention(self, x: Tensor) -> Tensor:
        """(B, parcels, parcels): the last encoder block's attention over the whole window.

        Heads are averaged, the CLS token is left out, and the weight a parcel's query patches
        give a parcel's key patches is summed over the keys and averaged over the queries.
        """
        h = self._embed(self.patchify(x), None)
        for block in self.blocks[:-1]:
            h = block(h)
        last = self.blocks[-1]
        weights = last.attn.weights(last.norm1(h))[:, :, 1:, 1:].mean(dim=1)
        p, n = self.n_parcels, x.shape[-1] // self.cfg.patch
        return weights.view(x.shape[0], p, n, p, n).sum(dim=4).mean(dim=2)


class Embedder(nn.Module):
    """A BrainLM seen as an encoder `encode(x) -> (B, width)` with a fixed pooling."""

    def __init__(self, net: BrainLM, pooling: str) -> None:
        super().__init__()
        self.net = net
        self.pooling = pooling

    def encode(self, x: Tensor) -> Tensor:
        return self.net.encode(x, self.pooling)
