"""brainlm: a masked autoencoder over parcel x time matrices (BrainLM-style).

Each parcel's series is cut into patches of `patch` time points. A token is a linear embedding
of its patch + an embedding of its parcel (Fourier features of the xyz coordinate through an
MLP, plus a learned vector per atlas parcel) + a sin/cos encoding of the patch's time index.
A CLS token is prepended; a random `mask_ratio` of the tokens (the same count per sample) is
hidden, and the transformer encoder sees only the visible ones (pre-norm blocks on torch's
scaled_dot_product_attention). The decoder puts mask tokens back at the hidden positions and
runs axial blocks on the parcel x patch grid: attention across the parcels of one time patch
(keys: the visible tokens), then across the patches of one parcel. The loss is the MSE on the
masked patches. Why this shape: docs/brainlm_diagnosis.md.

Embeddings: `encode` (CLS, or mean of the tokens), always from the whole, unmasked window;
for zero-shot functional networks, `parcel_coupling` (how the parcels' token embeddings move
together over a run) and `parcel_attention` (the last encoder block's attention between
parcels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor, nn

from brainbench.config import StrictModel
from brainbench.errors import DataError


class BrainLMConfig(StrictModel):
    """The network (shared by pretraining and every downstream protocol)."""

    patch: int = Field(20, ge=1, description="time points per patch (the reference: 20)")
    width: int = Field(64, ge=8, description="encoder token width")
    depth: int = Field(4, ge=1, description="encoder blocks")
    heads: int = Field(4, ge=1, description="encoder attention heads; must divide width")
    decoder_width: int = Field(64, ge=8, description="decoder token width")
    decoder_depth: int = Field(2, ge=1, description="decoder blocks (parcel, then time attention)")
    decoder_heads: int = Field(4, ge=1, description="decoder attention heads")
    mlp_ratio: float = Field(4.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    coord_bandwidth_mm: float = Field(
        25.0, gt=0, description="length scale of the Fourier features of a parcel's xyz"
    )
    parcel_embedding: bool = Field(
        True, description="add a learned embedding per parcel of the atlas to its xyz embedding"
    )

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

    def forward(self, x: Tensor, keys: Tensor | None = None, bias: Tensor | None = None) -> Tensor:
        """Self-attention over x (B, N, width).

        `keys` (B, N) bool limits what is attended to; `bias` (heads, N, N) is added to the
        attention logits.
        """
        b, n, w = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        allowed = None if keys is None else keys[:, None, None, :]
        if bias is not None:
            hidden = torch.zeros((), dtype=bias.dtype, device=bias.device)
            if allowed is not None:
                hidden = torch.where(allowed, hidden, float("-inf"))
            allowed = bias[None] + hidden
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.dropout * self.training
        )
        return self.proj(out.transpose(1, 2).reshape(b, n, w))

    def weights(self, x: Tensor) -> Tensor:
        """(B, heads, N, N) attention probabilities (for analysis; not used in training)."""
        b, n, w = x.shape
        q, k, _ = self.qkv(x).view(b, n, 3, self.heads, w // self.heads).permute(2, 0, 3, 1, 4)
        return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(w // self.heads), dim=-1)


def _mlp(width: int, ratio: float, dropout: float) -> nn.Sequential:
    hidden = int(width * ratio)
    return nn.Sequential(
        nn.Linear(width, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, width)
    )


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads, dropout)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = _mlp(width, mlp_ratio, dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class AxialBlock(nn.Module):
    """Pre-norm block on a (B, parcels, patches, width) grid: attention across the parcels of
    each time patch, then across the time patches of each parcel, then an MLP.

    A hidden token finds the visible tokens of the same time in one step, and a step costs
    parcels * patches * (parcels + patches) instead of (parcels * patches)^2. The parcel
    attention's logits fall with distance, by -slope * mm / 10 with a fixed slope per head
    spaced geometrically (as ALiBi does over positions): BOLD correlation falls with distance,
    and heads with a slope near 0 still look brain-wide, at networks. Learned slopes stayed
    where they started (docs/brainlm_diagnosis.md).
    """

    SLOPES = (0.05, 3.0)  # slopes of the first and last head, per 10 mm

    def __init__(self, width: int, heads: int, mlp_ratio: float, dropout: float) -> None:
        super().__init__()
        self.norm_space = nn.LayerNorm(width)
        self.space = Attention(width, heads, dropout)
        slope = torch.logspace(*(math.log10(s) for s in self.SLOPES), heads)
        self.register_buffer("slope", slope[:, None, None])
        self.norm_time = nn.LayerNorm(width)
        self.time = Attention(width, heads, dropout)
        self.norm_mlp = nn.LayerNorm(width)
        self.mlp = _mlp(width, mlp_ratio, dropout)

    def forward(self, x: Tensor, visible: Tensor, distance: Tensor) -> Tensor:
        """`visible` (B, parcels, patches) bool: the tokens the parcel attention may look at;
        `distance` (parcels, parcels) between the parcels in units of 10 mm."""
        b, p, n, w = x.shape
        keys = visible.transpose(1, 2).reshape(b * n, p)
        keys = keys | ~keys.any(dim=1, keepdim=True)  # a time with no visible parcel: all
        bias = -self.slope * distance
        across = self.norm_space(x.transpose(1, 2).reshape(b * n, p, w))
        x = x + self.space(across, keys, bias).view(b, n, p, w).transpose(1, 2)
        along = x.reshape(b * p, n, w)
        x = x + self.time(self.norm_time(along)).view(b, p, n, w)
        return x + self.mlp(self.norm_mlp(x))


class ParcelEmbedding(nn.Module):
    """(parcels, width): where a parcel is and which parcel it is.

    Random Fourier features of the xyz coordinate (fixed frequencies at `bandwidth_mm`) through
    an MLP, so that any smooth function of position (a network spread over the brain, say) can
    be represented, plus, optionally, a learned vector per parcel of the atlas. That vector
    starts as a unit-variance random code: from zero, or from the coordinates alone, every
    parcel first looks alike to the attention and training sits at the mean of all parcels for
    hundreds of steps (docs/brainlm_diagnosis.md).
    """

    FEATURES = 32

    def __init__(self, n_parcels: int, width: int, bandwidth_mm: float, per_parcel: bool) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        freq = torch.randn(3, self.FEATURES, generator=generator) / bandwidth_mm
        self.register_buffer("freq", freq)
        self.mlp = nn.Sequential(nn.Linear(2 * self.FEATURES, width), nn.GELU())
        self.out = nn.Linear(width, width)
        self.parcel = nn.Parameter(torch.randn(n_parcels, width)) if per_parcel else None

    def forward(self, coords: Tensor) -> Tensor:
        angles = 2 * math.pi * coords @ self.freq
        out = self.out(self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1)))
        return out if self.parcel is None else out + self.parcel


def hidden_count(n_tokens: int, ratio: float) -> int:
    """How many of `n_tokens` tokens `random_mask` hides at `ratio` (at least 1, not all)."""
    return min(n_tokens - 1, max(1, round(ratio * n_tokens)))


def random_mask(
    batch: int, n_tokens: int, ratio: float, generator=None, device=None, forced=None
) -> Tensor:
    """(batch, n_tokens) bool, True = hidden: `hidden_count` random tokens per sample.

    `forced` (batch, n_tokens) bool: tokens hidden first (at most `hidden_count`), the rest
    drawn at random. Drawn on `device` (the generator's device when one is given).
    """
    k = hidden_count(n_tokens, ratio)
    where = generator.device if generator is not None else device
    keys = torch.rand(batch, n_tokens, generator=generator, device=where)
    if forced is not None:
        keys = keys - forced.to(where, keys.dtype)  # forced tokens sort first
    order = keys.argsort(dim=1)[:, :k]
    mask = torch.zeros(batch, n_tokens, dtype=torch.bool, device=where)
    return mask.scatter_(1, order, True).to(device)


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
        w, dw, p = cfg.width, cfg.decoder_width, len(self.coords)
        self.patch_embed = nn.Linear(cfg.patch, w)
        self.parcel_embed = ParcelEmbedding(p, w, cfg.coord_bandwidth_mm, cfg.parcel_embedding)
        self.cls = nn.Parameter(torch.zeros(1, 1, w))
        self.blocks = nn.ModuleList(
            Block(w, cfg.heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(w)
        self.decoder_embed = nn.Linear(w, dw)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dw))
        self.decoder_parcel = ParcelEmbedding(p, dw, cfg.coord_bandwidth_mm, cfg.parcel_embedding)
        self.decoder_blocks = nn.ModuleList(
            AxialBlock(dw, cfg.decoder_heads, cfg.mlp_ratio, cfg.dropout)
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

    def _position(self, parcel: ParcelEmbedding, n_patches: int, width: int) -> Tensor:
        """(parcels * patches, width): the parcel embedding + the time encoding of every token."""
        time = time_encoding(n_patches, width, self.coords.device)[None]
        return (parcel(self.coords)[:, None] + time).flatten(0, 1)

    def _embed(self, patches: Tensor, keep: Tensor | None) -> Tensor:
        """Encoder input (B, 1 + visible, width); `keep` (B, visible) indexes visible tokens."""
        b, p, n, _ = patches.shape
        tokens = self.patch_embed(patches).flatten(1, 2)
        tokens = tokens + self._position(self.parcel_embed, n, self.cfg.width)
        if keep is not None:
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return torch.cat([self.cls.expand(b, -1, -1), tokens], dim=1)

    def _encode_tokens(self, patches: Tensor, keep: Tensor | None) -> Tensor:
        """Encoder output (B, 1 + visible, width); `keep` (B, visible) indexes visible tokens."""
        x = self._embed(patches, keep)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x: Tensor, mask: Tensor, n_hidden: int | None = None) -> Tensor:
        """Predicted patches (B, parcels, patches, patch) of x (B, parcels, time).

        `mask` (B, parcels * patches) bool, True = hidden, the same count in every sample:
        `n_hidden` when given (no host sync: training steps pass it), else counted and checked.
        """
        patches = self.patchify(x)
        b, p, n, _ = patches.shape
        if n_hidden is None:
            low, high = torch.stack([mask.sum(1).min(), mask.sum(1).max()]).tolist()
            if low != high or high == mask.shape[1]:
                raise ValueError("every sample must keep the same, non-zero number of tokens")
            n_hidden = int(high)
        keep = mask.to(torch.int8).argsort(dim=1, stable=True)[:, : p * n - n_hidden]
        y = self.decoder_embed(self._encode_tokens(patches, keep)[:, 1:])
        full = self.mask_token.expand(b, p * n, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, y.shape[-1]), y)
        full = full + self._position(self.decoder_parcel, n, self.cfg.decoder_width)
        grid = full.view(b, p, n, -1)
        visible = ~mask.view(b, p, n)
        distance = torch.cdist(self.coords, self.coords) / 10.0
        for block in self.decoder_blocks:
            grid = block(grid, visible, distance)
        return self.head(self.decoder_norm(grid))

    def masked_loss(
        self, x: Tensor, mask: Tensor, n_hidden: int | None = None
    ) -> tuple[Tensor, Tensor]:
        """(MSE on the hidden patches, prediction) for x and mask (see `forward`)."""
        pred = self(x, mask, n_hidden)
        error = ((pred - self.patchify(x)) ** 2).mean(dim=-1)
        hidden = mask.view(error.shape).to(error.dtype)
        return (error * hidden).sum() / hidden.sum(), pred

    def tokens(self, x: Tensor) -> Tensor:
        """Encoder output (B, 1 + parcels * patches, width) of the whole window, CLS first."""
        return self._encode_tokens(self.patchify(x), None)

    def encode(self, x: Tensor, pooling: str = "cls") -> Tensor:
        """(B, width) embedding: the CLS token ('cls') or the mean of the other tokens ('mean')."""
        out = self.tokens(x)
        return out[:, 0] if pooling == "cls" else out[:, 1:].mean(dim=1)

    def parcel_coupling(self, x: Tensor) -> Tensor:
        """(parcels, parcels): correlation of the parcels' token embeddings over time.

        x (B, parcels, time) are windows of one run. Each embedding dimension of a parcel is
        centred over the run's tokens (all windows and patches), which removes the fixed
        parcel and time codes and keeps what moves with the signal; two parcels are coupled
        when their embeddings move together.
        """
        out = self.tokens(x)[:, 1:]
        p, w = self.n_parcels, out.shape[-1]
        z = out.view(x.shape[0], p, -1, w).transpose(0, 1).reshape(p, -1, w)
        z = (z - z.mean(dim=1, keepdim=True)).flatten(1)
        z = z / z.norm(dim=1, keepdim=True).clamp_min(1e-8)
        return z @ z.T

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
