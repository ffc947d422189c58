"""brainlm_vitmae: the published BrainLM checkpoints (Hugging Face ViTMAE) as a frozen encoder.

Those models take the parcel x time matrix as an image: parcels ordered by their Y (anterior-
posterior) coordinate, robust-scaled, repeated to 3 channels and zero-padded to the square
`image_size` of the checkpoint (424 parcels x 200 time points for the released ones). The
checkpoint is read from a local folder (`config.json` + weights, as `save_pretrained` writes)
through transformers with `local_files_only`; nothing is downloaded. Embeddings (CLS or the
mean of the patch tokens, no masking) feed the same probes as `brainlm_probe`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from brainbench.config import TrainerConfig
from brainbench.errors import DataError
from brainbench.models.brainlm_estimators import BrainLMProbe, BrainLMProbeConfig
from brainbench.models.probe import ProbeEstimator
from brainbench.registry import register_model
from brainbench.tasks import TaskSpec


def load_vitmae(folder: Path) -> nn.Module:
    """The ViTMAEModel (encoder) of a local checkpoint folder, with masking switched off."""
    from transformers import ViTMAEConfig, ViTMAEModel

    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise DataError(
            f"{folder} is not a Hugging Face checkpoint folder (no config.json); download the "
            "BrainLM checkpoint and give its local folder as model.init."
        )
    try:
        config = ViTMAEConfig.from_pretrained(folder, local_files_only=True)
        config.mask_ratio = 0.0
        return ViTMAEModel.from_pretrained(folder, config=config, local_files_only=True).eval()
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot load the ViTMAE checkpoint in {folder}: {exc}") from None


def vitmae_image(x: Tensor, coords: np.ndarray, image_size: int) -> Tensor:
    """(B, parcels, time) scaled windows -> (B, 3, S, S) images: Y-ordered rows, zero padding."""
    b, p, t = x.shape
    if p > image_size or t > image_size:
        raise DataError(
            f"a {p} parcels x {t} time points window does not fit the checkpoint's "
            f"{image_size}x{image_size} input; use its atlas (e.g. 424 parcels) and window "
            f"(e.g. 200)."
        )
    order = torch.from_numpy(np.argsort(np.asarray(coords)[:, 1], kind="stable"))
    image = torch.zeros(b, 3, image_size, image_size, dtype=x.dtype)
    image[:, :, :p, :t] = x[:, order][:, None]
    return image


class ViTMAEEncoder(nn.Module):
    """encode(x) -> (B, hidden) with a ViTMAE; `coords` (parcels, 3) set before use."""

    def __init__(self, model: nn.Module, pooling: str, parcels: int | None = None) -> None:
        super().__init__()
        self.model, self.pooling = model, pooling
        self.parcels = parcels
        self.coords: np.ndarray | None = None

    def encode(self, x: Tensor) -> Tensor:
        if self.coords is None:
            raise RuntimeError("set coords before encoding")
        if self.parcels is not None and x.shape[1] != self.parcels:
            raise DataError(
                f"the checkpoint was trained on {self.parcels} parcels but the data has "
                f"{x.shape[1]}; parcellate with the checkpoint's atlas."
            )
        size = self.model.config.image_size
        size = size[0] if isinstance(size, list | tuple) else size
        n_patches = (size // self.model.config.patch_size) ** 2
        order = torch.arange(n_patches, dtype=torch.float32).expand(len(x), -1)  # no shuffling
        out = self.model(pixel_values=vitmae_image(x, self.coords, size), noise=order)
        out = out.last_hidden_state
        return out[:, 0] if self.pooling == "cls" else out[:, 1:].mean(dim=1)


class ViTMAEProbeConfig(BrainLMProbeConfig):
    parcels: int | None = None  # the checkpoint's parcel count; None = any that fits


class ViTMAEProbe(BrainLMProbe):
    """BrainLMProbe whose frozen encoder is a Hugging Face ViTMAE checkpoint."""

    def __init__(self, params: ViTMAEProbeConfig, task: TaskSpec) -> None:
        encoder = ViTMAEEncoder(load_vitmae(params.init), params.pooling, params.parcels)
        ProbeEstimator.__init__(self, encoder, params, task)

    def embed(self, data: Any) -> np.ndarray:
        self.encoder.coords = data.coords
        return super().embed(data)


@register_model(
    "brainlm_vitmae",
    kind="sklearn",
    config=ViTMAEProbeConfig,
    description="Published BrainLM (HF ViTMAE, local folder) embeddings -> linear / MLP / kNN",
    task_kinds=("regression", "classification"),
    protocol=lambda params: f"{params.head}_probe",
)
def build_brainlm_vitmae(
    params: ViTMAEProbeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ViTMAEProbe:
    return ViTMAEProbe(params, task)


@torch.inference_mode()
def vitmae_embeddings(folder: Path, windows: Tensor, coords: np.ndarray, pooling: str = "cls"):
    """(B, hidden) embeddings of scaled (B, parcels, time) windows by the checkpoint at `folder`."""
    encoder = ViTMAEEncoder(load_vitmae(folder), pooling)
    encoder.coords = coords
    return encoder.encode(windows)
