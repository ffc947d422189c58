"""Masked-autoencoder backbones: what pretraining and every downstream protocol share.

A backbone module (mae3d_cnn, mae3d_vit, mae2d) calls `register_backbone(name, config, network)`.
`network(cfg)` builds the autoencoder, an nn.Module with
- `encoder`: the part kept downstream, with `encode(x: (B, C, X, Y, Z)) -> (B, out_dim)`;
- `first_layer`: the state-dict prefix a checkpoint must match to be this architecture;
- `mask_unit`: masking patches must be multiples of it (voxels);
- `masked_loss(view, patch, ratio, generator) -> MaskedOutput` (training.masking).

Registering also registers the downstream torch model `name`: the encoder + a head (SFCN's
soft-label bins for regression, one logit for classification), from scratch or, with `init`,
fine-tuned from a pretrained checkpoint by loading every weight whose name and shape match. A
checkpoint whose first layer does not match is a DataError listing the mismatches. `mae3d_probe`
fits scikit-learn on the frozen encoder of any pretrained backbone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, create_model
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import Dataset

from brainbench.config import StrictModel, TrainerConfig
from brainbench.errors import DataError, unknown
from brainbench.models.probe import ProbeConfig, ProbeEstimator
from brainbench.models.sfcn import (
    Bins,
    ExpectedValue,
    SoftLabelLoss,
    logit_loss,
    logit_probability,
    target_setup,
)
from brainbench.registry import load_plugins, register_model
from brainbench.spec import MODEL_CONFIG as CONFIG
from brainbench.spec import WEIGHTS, TaskSpec
from brainbench.training.fit import TorchEstimator, TorchModel

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Backbone:
    name: str
    config: type[StrictModel]
    network: Callable[[Any], nn.Module]
    first_layer: str
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None  # foreign weights


BACKBONES: dict[str, Backbone] = {}


class HeadConfig(StrictModel):
    """The downstream fields every backbone's task config adds to its network config."""

    init: Path | None = Field(
        None, description="pretrained folder or weights file (finetune); None = scratch"
    )
    dropout: float = Field(0.2, ge=0, lt=1)
    bin_width: float | None = Field(
        None, gt=0, description="regression: soft-label bin width; None = target range / 48"
    )
    sigma: float = Field(1.0, gt=0, description="regression: soft-label std, in bin widths")


class EncoderHead(nn.Module):
    """An encoder, dropout and a linear head on its embedding."""

    def __init__(self, encoder: nn.Module, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.out_dim, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.encoder.encode(x)))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)


def weights_path(path: Path) -> Path:
    """`path` itself if a file, else `path`/model.safetensors; DataError if absent or unknown."""
    path = Path(path)
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"pretrained weights {file} do not exist; run `brainbench pretrain` first.")
    if file.suffix != ".safetensors" and file.suffix not in TORCH_SUFFIXES:
        raise DataError(
            f"{file} is neither .safetensors nor a torch state dict ({', '.join(TORCH_SUFFIXES)});"
            " point init at a pretrained folder, a model.safetensors or a weights-only .pth file."
        )
    return file


def read_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file or of a weights-only torch file (pickles are refused)."""
    file = weights_path(path)
    if file.suffix == ".safetensors":
        try:
            return load_file(str(file))
        except (SafetensorError, OSError) as exc:
            raise DataError(f"{file} is not a readable safetensors file: {exc}") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise DataError(
            f"{file} is not a weights-only torch state dict ({type(exc).__name__}); pickled "
            "checkpoints are refused. Save it with torch.save(model.state_dict(), ...)."
        ) from None
    for key in ("state_dict", "model"):  # common wrappers of a state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = (
        {k: v for k, v in state.items() if isinstance(v, Tensor)} if isinstance(state, dict) else {}
    )
    if not tensors:
        raise DataError(f"{file} holds no tensors; expected a state dict (name -> tensor).")
    return tensors


def load_matching(
    net: nn.Module, path: Path, first: str = "encoder.stem.", state: dict[str, Tensor] | None = None
) -> dict[str, Any]:
    """Load every weight of `path` (or `state`) whose name and shape match `net`; report them.

    DataError listing the mismatches when the weights under `first` (the first layer) do not all
    match: another architecture or width.
    """
    source = read_weights(path) if state is None else state
    target = net.state_dict()
    matched = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    if not all(k in matched for k in target if k.startswith(first)):
        problems = [
            f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
            if k in source
            else f"{k}: missing in checkpoint"
            for k in target
            if k not in matched
        ]
        raise DataError(
            f"{path} does not fit this encoder (its first layer '{first}' must match; set the "
            f"model.* keys as in its {CONFIG}). Mismatches: "
            + "; ".join(problems[:8])
            + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
        )
    net.load_state_dict(matched, strict=False)
    return {
        "matched": len(matched),
        "unmatched": sorted(set(target) - set(matched)),
        "ignored": len(source) - len(matched),
    }


def pretrained_backbone(path: Path) -> tuple[Backbone, StrictModel]:
    """The backbone and network config saved next to pretrained weights (config.json)."""
    file = weights_path(path).parent / CONFIG
    load_plugins()  # every backbone module registered
    try:
        saved = json.loads(file.read_text())
        name = saved.get("name", "mae3d_cnn")
        if name not in BACKBONES:
            raise unknown("pretrained backbone", name, BACKBONES)
        backbone = BACKBONES[name]
        return backbone, backbone.config.model_validate(saved["model"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{file} is missing or not a brainbench pretraining config ({exc}); pretrained "
            "weights must sit next to the config.json `brainbench pretrain` writes."
        ) from None


def load_encoder(path: Path) -> nn.Module:
    """The pretrained encoder at `path` (folder or model.safetensors), in eval mode."""
    backbone, cfg = pretrained_backbone(path)
    encoder = backbone.network(cfg).encoder
    state = {k.removeprefix("encoder."): v for k, v in read_weights(path).items()}
    missing = set(encoder.state_dict()) - set(state)
    if missing:
        raise DataError(f"{weights_path(path)} lacks encoder weights: {', '.join(sorted(missing))}")
    encoder.load_state_dict({k: state[k] for k in encoder.state_dict()})
    return encoder.eval()


def _build(
    backbone: Backbone, params: HeadConfig, task: TaskSpec, meta: dict[str, Any]
) -> TorchModel:
    cfg = backbone.config.model_validate(
        params.model_dump(include=set(backbone.config.model_fields))
    )
    encoder = backbone.network(cfg).encoder
    if task.kind == "regression":
        bins = Bins(**meta["bins"])
        net = EncoderHead(encoder, bins.count, params.dropout)
        return TorchModel(net, SoftLabelLoss(bins, params.sigma), ExpectedValue(bins))
    return TorchModel(EncoderHead(encoder, 1, params.dropout), logit_loss, logit_probability)


class MAEEstimator(TorchEstimator):
    """TorchEstimator whose fresh network loads the `init` weights before fine-tuning."""

    def __init__(
        self, backbone: Backbone, params: HeadConfig, task: TaskSpec, trainer: TrainerConfig
    ) -> None:
        self._plain = partial(_build, backbone, params, task)
        super().__init__(partial(target_setup, params, task), self._plain, trainer)
        self.backbone = backbone
        self.init = params.init
        self.report: dict[str, Any] = {}

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Fit as TorchEstimator does; when fine-tuning, info adds the matched weights."""
        if self.init is not None:
            self._check_init()  # fail before any training
            self.build = self._initialised  # only while fitting: `load` restores saved weights
        try:
            return super().fit(train, val, seed=seed, run_dir=run_dir) | self.report
        finally:
            self.build = self._plain

    def _check_init(self) -> None:
        config = weights_path(self.init).parent / CONFIG
        if config.is_file():
            name = pretrained_backbone(self.init)[0].name
            if name != self.backbone.name:
                raise DataError(
                    f"{self.init} was pretrained as {name}, not {self.backbone.name}; fine-tune "
                    f"it with -m {name}."
                )

    def _initialised(self, meta: dict[str, Any]) -> TorchModel:
        model = self._plain(meta)
        state = read_weights(self.init)
        if self.backbone.rename is not None:
            state = self.backbone.rename(state)
        self.report = load_matching(model.net, self.init, self.backbone.first_layer, state)
        return model


def register_backbone(
    name: str,
    config: type[StrictModel],
    network: Callable[[Any], nn.Module],
    *,
    first_layer: str,
    description: str,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
) -> type[StrictModel]:
    """Register a pretrainable backbone and its downstream model `name`; return its task config.

    `rename` maps the parameter names of published foreign weights onto this backbone's.
    """
    backbone = Backbone(name, config, network, first_layer, rename)
    BACKBONES[name] = backbone
    task_name = config.__name__.removesuffix("Config") + "TaskConfig"
    task_config = create_model(task_name, __base__=(config, HeadConfig))

    @register_model(
        name,
        kind="torch",
        config=task_config,
        description=f"{description} + head; scratch, or finetune with init=PATH",
        task_kinds=("regression", "classification"),
        needs_volume=True,
        defaults={"trainer": {"lr": 0.001, "max_epochs": 30, "patience": 8}},
        protocol=lambda params: "finetune" if params.init else "scratch",
    )
    def build(params: HeadConfig, *, task: TaskSpec, trainer: TrainerConfig) -> MAEEstimator:
        return MAEEstimator(backbone, params, task, trainer)

    return task_config


@register_model(
    "mae3d_probe",
    kind="sklearn",
    config=ProbeConfig,
    description="Frozen pretrained MAE embeddings (any backbone) -> ridge/logistic or MLP (CV)",
    task_kinds=("regression", "classification"),
    needs_volume=True,
    protocol=lambda params: f"{params.head}_probe",
)
def build_mae3d_probe(
    params: ProbeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ProbeEstimator:
    """A linear or MLP probe on the frozen encoder of the pretrained model at `params.init`."""
    return ProbeEstimator(load_encoder(params.init), params, task)
