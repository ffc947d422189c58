"""The reference BrainLM network (vandijklab/BrainLM, `brainlm_mae/modeling_brainlm.py`).

Module and parameter names follow the reference's `BrainLMForPretraining`, so a checkpoint's
state dict loads by name (`vit.*` encoder, `decoder.*` decoder). Each parcel's series is cut
into patches of `timepoint_patching_size` points; a token is the linear patch embedding plus a
linear embedding of the parcel's xyz coordinate plus the sin/cos encoding of the patch's index
in time. Tokens are ordered parcel-major, a CLS token (no position) goes first, and the layers
are transformers' `NystromformerLayer` (post-norm, with a depthwise convolution over the values
along the sequence), as in the reference; its released configs set `num_landmarks ==
segment_means_seq_len`, which makes the attention exact softmax attention.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from brainbench.errors import DataError

MODEL_TYPE = "brainlm_mae"
MAX_PATCHES = 5000  # length of the reference's sin/cos table
DEFAULTS: dict[str, Any] = {  # the reference BrainLMConfig's defaults, for keys a config omits
    "hidden_size": 256,
    "num_hidden_layers": 8,
    "num_attention_heads": 8,
    "intermediate_size": 1024,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.1,
    "layer_norm_eps": 1e-12,
    "patch_size": 16,
    "num_channels": 3,
    "decoder_num_attention_heads": 8,
    "decoder_hidden_size": 256,
    "decoder_num_hidden_layers": 4,
    "decoder_intermediate_size": 1024,
    "num_brain_voxels": 424,
    "timepoint_patching_size": 49,
    "use_tanh_decoder": False,
    "segment_means_seq_len": 64,
    "num_landmarks": 64,
    "conv_kernel_size": 65,
    "inv_coeff_init_option": False,
}


def _layers(
    config: dict[str, Any], width: int, depth: int, heads: int, inner: int
) -> nn.ModuleList:
    from transformers import NystromformerConfig
    from transformers.models.nystromformer.modeling_nystromformer import NystromformerLayer

    keys = ("hidden_act", "hidden_dropout_prob", "attention_probs_dropout_prob", "layer_norm_eps")
    keys += ("num_landmarks", "segment_means_seq_len", "conv_kernel_size", "inv_coeff_init_option")
    layer_config = NystromformerConfig(
        hidden_size=width,
        num_attention_heads=heads,
        intermediate_size=inner,
        **{k: config[k] for k in keys},
    )
    return nn.ModuleList(NystromformerLayer(layer_config) for _ in range(depth))


class TimeEncoding(nn.Module):
    """Adds the sin/cos encoding of each patch's index in time (axis -2), then dropout 0.1."""

    def __init__(self, width: int) -> None:
        super().__init__()
        position = torch.arange(MAX_PATCHES, dtype=torch.float32)[:, None]
        rate = torch.exp(torch.arange(0, width, 2) * (-math.log(10000.0) / width))
        pe = torch.zeros(MAX_PATCHES, width)
        pe[:, 0::2], pe[:, 1::2] = torch.sin(position * rate), torch.cos(position * rate)
        self.register_buffer("pe", pe)
        self.dropout = nn.Dropout(0.1)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(x + self.pe[: x.shape[-2]])


class Embeddings(nn.Module):
    """(B, parcels, time) signal + (B, parcels, 3) xyz -> (B, parcels * patches, width) tokens."""

    def __init__(self, width: int, patch: int) -> None:
        super().__init__()
        self.patch = patch
        self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
        self.signal_embedding_projection = nn.Linear(patch, width)
        self.xyz_embedding_projection = nn.Linear(3, width)
        self.pos_embedding = TimeEncoding(width)

    def forward(self, signal: Tensor, xyz: Tensor) -> Tensor:
        b, p, t = signal.shape
        patches = self.signal_embedding_projection(signal.reshape(b, p, t // self.patch, -1))
        tokens = self.pos_embedding(patches + self.xyz_embedding_projection(xyz)[:, :, None])
        return tokens.flatten(1, 2)


class Layers(nn.Module):
    def __init__(self, layer: nn.ModuleList) -> None:
        super().__init__()
        self.layer = layer


class BrainLMEncoder(nn.Module):
    """The reference's `vit`: embeddings, Nystromformer layers, final LayerNorm."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        width = config["hidden_size"]
        self.embeddings = Embeddings(width, config["timepoint_patching_size"])
        self.encoder = Layers(
            _layers(
                config,
                width,
                config["num_hidden_layers"],
                config["num_attention_heads"],
                config["intermediate_size"],
            )
        )
        self.layernorm = nn.LayerNorm(width, eps=config["layer_norm_eps"])

    def forward(self, signal: Tensor, xyz: Tensor, keep: Tensor | None = None) -> Tensor:
        """(B, 1 + tokens, width): CLS then the tokens `keep` (B, n) indexes, default all."""
        tokens = self.embeddings(signal, xyz)
        if keep is not None:
            tokens = tokens.gather(1, keep[..., None].expand(-1, -1, tokens.shape[-1]))
        hidden = torch.cat([self.embeddings.cls_token.expand(len(tokens), -1, -1), tokens], 1)
        for layer in self.encoder.layer:
            hidden = layer(hidden)[0]
        return self.layernorm(hidden)


class BrainLMDecoder(nn.Module):
    """The reference's `decoder`: fills masked tokens and predicts every patch's time points."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        width, inner = config["hidden_size"], config["decoder_hidden_size"]
        patch, self.tanh = config["timepoint_patching_size"], config["use_tanh_decoder"]
        self.decoder_embed = nn.Linear(width, inner)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, inner))
        self.decoder_layers = _layers(
            config,
            inner,
            config["decoder_num_hidden_layers"],
            config["decoder_num_attention_heads"],
            config["decoder_intermediate_size"],
        )
        self.decoder_norm = nn.LayerNorm(inner, eps=config["layer_norm_eps"])
        # ViTMAE's pixel head: the reference keeps it (so its checkpoints hold it) but never uses it
        pixels = config["patch_size"] ** 2 * config["num_channels"]
        self.decoder_pred = nn.Linear(inner, pixels)
        self.decoder_xyz_projection = nn.Linear(3, width)
        self.pos_embedding = TimeEncoding(width)
        self.decoder_pred1 = nn.Linear(inner, inner // 2)
        self.decoder_pred2 = nn.Linear(inner // 2, patch)

    def forward(self, latent: Tensor, xyz: Tensor, keep: Tensor, patches: int) -> Tensor:
        """(B, parcels, patches, patch) predictions from the encoder output on tokens `keep`."""
        x = self.decoder_embed(latent)
        b, p, width = len(x), xyz.shape[1], x.shape[-1]
        full = self.mask_token.expand(b, p * patches, -1).clone()
        full.scatter_(1, keep[..., None].expand(-1, -1, width), x[:, 1:])
        full = full.reshape(b, p, patches, width) + self.decoder_xyz_projection(xyz)[:, :, None]
        hidden = torch.cat([x[:, :1], self.pos_embedding(full).flatten(1, 2)], 1)
        for layer in self.decoder_layers:
            hidden = layer(hidden)[0]
        hidden = self.decoder_pred1(self.decoder_norm(hidden))
        out = self.decoder_pred2(nn.functional.leaky_relu(hidden, 0.1))
        out = torch.tanh(out) if self.tanh else out
        return out[:, 1:].reshape(b, p, patches, -1)


class BrainLMReference(nn.Module):
    """A reference BrainLM checkpoint's network: `vit` (encoder) and optionally `decoder`."""

    def __init__(self, config: dict[str, Any], decoder: bool = True) -> None:
        super().__init__()
        config = DEFAULTS | config
        self.parcels = config["num_brain_voxels"]
        self.patch = config["timepoint_patching_size"]
        self.vit = BrainLMEncoder(config)
        self.decoder = BrainLMDecoder(config) if decoder else None

    def check(self, x: Tensor, coords: Tensor) -> None:
        """DataError unless (B, parcels, time) windows fit the checkpoint."""
        if x.shape[1] != self.parcels or len(coords) != self.parcels:
            raise DataError(
                f"the checkpoint was trained on {self.parcels} parcels but the data has "
                f"{x.shape[1]}; parcellate with the checkpoint's atlas (A424 for BrainLM)."
            )
        if x.shape[2] % self.patch or not 0 < x.shape[2] // self.patch <= MAX_PATCHES:
            raise DataError(
                f"a window of {x.shape[2]} time points is not a whole number of the checkpoint's "
                f"{self.patch}-point patches; set the window to a multiple of {self.patch}."
            )

    def encode(self, x: Tensor, coords: Tensor, pooling: str) -> Tensor:
        """(B, width) CLS or mean token embedding of every token (no masking, parcel order)."""
        self.check(x, coords)
        hidden = self.vit(x, coords.to(x)[None].expand(len(x), -1, -1))
        return hidden[:, 0] if pooling == "cls" else hidden[:, 1:].mean(dim=1)

    def reconstruct(self, x: Tensor, coords: Tensor, keep: Tensor) -> Tensor:
        """(B, parcels, time) prediction of every patch when only tokens `keep` (B, n) are seen.

        Tokens are indexed parcel-major (parcel * patches + patch), as the reference flattens
        them; `keep` in the reference's order is `argsort(noise)[:, :n]`.
        """
        if self.decoder is None:
            raise DataError("this checkpoint has no decoder; it cannot reconstruct.")
        self.check(x, coords)
        xyz = coords.to(x)[None].expand(len(x), -1, -1)
        latent = self.vit(x, xyz, keep)
        return self.decoder(latent, xyz, keep, x.shape[2] // self.patch).flatten(2)
