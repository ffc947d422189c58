"""brainlm_vitmae: published BrainLM checkpoints (a local Hugging Face folder) as a frozen encoder.

config.json's `model_type` says which network a checkpoint is (vandijklab/brainlm on the hub):

- `brainlm_mae` (`BrainLMForPretraining`, the `old_13M` folder): BrainLM's own network
  (brainlm_reference.py): patches of 20 time points per parcel, the parcels in the atlas's own
  order with their xyz coordinates.
- `vit_mae` (`ViTMAEForPreTraining`, `vitmae_111M` / `vitmae_650M`): the parcel x time matrix
  as an image, as the reference's `modeling_vit_mae_with_padding.py` and tutorial build it:
  parcels ordered by their Y coordinate, repeated to 3 channels, centred in the square
  `image_size` and padded with -1.

Every tensor of the weights file is loaded by name and shape (hf_checkpoint.load_whole), or the
load is refused. Embeddings (CLS or the mean of the tokens, no masking) feed the same probes as
`brainlm_probe`. Nothing is downloaded.
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
from brainbench.models.brainlm_reference import MODEL_TYPE, BrainLMReference
from brainbench.models.hf_checkpoint import LoadReport, load_whole, read_config, read_state_dict
from brainbench.models.probe import ProbeEstimator
from brainbench.registry import register_model
from brainbench.spec import TaskSpec

PAD_VALUE = -1.0  # the reference pads the image with -1
# transformers 4.x ViTMAE names (the published checkpoints) -> the installed version's, if newer
VITMAE_RENAMES = (
    ("encoder.layer.", "layers."),
    ("attention.attention.query", "attention.q_proj"),
    ("attention.attention.key", "attention.k_proj"),
    ("attention.attention.value", "attention.v_proj"),
    ("attention.output.dense", "attention.o_proj"),
    ("intermediate.dense", "mlp.fc1"),
    ("output.dense", "mlp.fc2"),
)


def vitmae_image(x: Tensor, coords: np.ndarray, image_size: int) -> Tensor:
    """(B, parcels, time) scaled windows -> (B, 3, S, S) images: Y-ordered rows, centred, -1 pad."""
    b, p, t = x.shape
    if p > image_size or t > image_size:
        raise DataError(
            f"a {p} parcels x {t} time points window does not fit the checkpoint's "
            f"{image_size}x{image_size} input; use its atlas (e.g. 424 parcels) and window "
            f"(e.g. 200)."
        )
    order = torch.from_numpy(np.argsort(np.asarray(coords)[:, 1], kind="stable"))
    top, left = (image_size - p) // 2, (image_size - t) // 2
    image = torch.full((b, 3, image_size, image_size), PAD_VALUE, dtype=x.dtype)
    image[:, :, top : top + p, left : left + t] = x[:, order][:, None]
    return image


class ViTMAEImage(nn.Module):
    """A ViTMAE checkpoint's `vit` (encoder) and optionally `decoder`, on the image view."""

    def __init__(self, config: Any, decoder: bool) -> None:
        from transformers import ViTMAEModel
        from transformers.models.vit_mae.modeling_vit_mae import ViTMAEDecoder

        super().__init__()
        self.vit = ViTMAEModel(config)
        patches = self.vit.embeddings.patch_embeddings.num_patches
        self.decoder = ViTMAEDecoder(config, num_patches=patches) if decoder else None

    def encode(self, x: Tensor, coords: Tensor, pooling: str) -> Tensor:
        """(B, hidden) CLS or mean patch-token embedding; no masking, no shuffling."""
        size = self.vit.config.image_size
        size = size[0] if isinstance(size, list | tuple) else size
        n_patches = self.vit.embeddings.patch_embeddings.num_patches
        order = torch.arange(n_patches, dtype=torch.float32).expand(len(x), -1)
        image = vitmae_image(x, coords.numpy(), size)
        out = self.vit(pixel_values=image, noise=order).last_hidden_state
        return out[:, 0] if pooling == "cls" else out[:, 1:].mean(dim=1)


def _build(folder: Path, config: dict[str, Any], decoder: bool) -> tuple[nn.Module, tuple]:
    """The (meta-device) network config.json describes, and the renames its weights need."""
    kind = config.get("model_type")
    if kind == MODEL_TYPE:
        return BrainLMReference(config, decoder=decoder), ()
    if kind == "vit_mae":
        from transformers import ViTMAEConfig

        vit_config = ViTMAEConfig.from_dict(config)
        vit_config.mask_ratio = 0.0
        return ViTMAEImage(vit_config, decoder), VITMAE_RENAMES
    raise DataError(
        f"{folder / 'config.json'} has model_type {kind!r}; brainlm_vitmae reads BrainLM "
        f"checkpoints of model_type '{MODEL_TYPE}' (BrainLMForPretraining) or 'vit_mae'."
    )


def load_checkpoint(folder: Path) -> tuple[nn.Module, LoadReport]:
    """The network of a local checkpoint folder with all its weights, and what was matched."""
    folder = Path(folder)
    config = read_config(folder)
    state, file = read_state_dict(folder)
    if state and not any(k.startswith("vit.") for k in state):  # an encoder saved on its own
        state = {f"vit.{k}": v for k, v in state.items()}
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    with torch.device("meta"):
        model, renames = _build(folder, config, any(k.startswith("decoder.") for k in state))
    report = load_whole(model, state, file, renames)
    return model.eval().requires_grad_(False), report


class ViTMAEEncoder(nn.Module):
    """encode(x) -> (B, hidden) with a loaded checkpoint; `coords` (parcels, 3) set before use."""

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
        coords = torch.as_tensor(np.asarray(self.coords), dtype=torch.float32)
        return self.model.encode(x.float(), coords, self.pooling)


class ViTMAEProbeConfig(BrainLMProbeConfig):
    parcels: int | None = None  # the checkpoint's parcel count; None = any that fits


class ViTMAEProbe(BrainLMProbe):
    """BrainLMProbe whose frozen encoder is a published BrainLM checkpoint."""

    def __init__(self, params: ViTMAEProbeConfig, task: TaskSpec) -> None:
        model, self.report = load_checkpoint(params.init)
        ProbeEstimator.__init__(
            self, ViTMAEEncoder(model, params.pooling, params.parcels), params, task
        )

    def embed(self, data: Any) -> np.ndarray:
        self.encoder.coords = data.coords
        return super().embed(data)

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        info = super().fit(train, val, seed=seed, run_dir=run_dir)
        return info | {"checkpoint_tensors": len(self.report.matched)}


@register_model(
    "brainlm_vitmae",
    kind="sklearn",
    config=ViTMAEProbeConfig,
    description="Published BrainLM checkpoint (local HF folder) embeddings -> linear / MLP / kNN",
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
    encoder = ViTMAEEncoder(load_checkpoint(folder)[0], pooling)
    encoder.coords = coords
    return encoder.encode(windows)
