"""mae3d_cnn: the convolutional 3D masked autoencoder of the lifespan MRI benchmark.

Encoder: a 4^3 stride-4 Conv3d stem, then residual blocks x + act(GroupNorm(Conv3d 3^3 (x))).
Decoder: two stride-2 transposed convolutions back to the input grid, one output channel.
Pretraining (brainbench.training.pretrain) zeroes a random `mask_ratio` of cubic patches in place
and scores the MSE on the masked voxels only.

Downstream, `mae3d_cnn` is the encoder + a head: SFCN's soft-label bins for regression, one logit
for classification (the sfcn module's losses, reused). With `init` it is fine-tuned from a
pretrained checkpoint: every weight whose name and shape match is loaded. A checkpoint whose stem
does not match (another width, input channels or architecture) is a DataError listing the
mismatches; one whose stem matches but whose blocks differ (e.g. another depth) loads what
matches and reports the rest in the fit info. `mae3d_probe` fits scikit-learn on the frozen
encoder's embeddings (brainbench.models.probe).
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn
from torch.utils.data import Dataset

from brainbench.config import StrictModel, TrainerConfig
from brainbench.errors import ConfigError, DataError
from brainbench.models.probe import ProbeConfig, ProbeEstimator
from brainbench.models.sfcn import (
    Bins,
    ExpectedValue,
    SoftLabelLoss,
    logit_loss,
    logit_probability,
    target_setup,
)
from brainbench.registry import register_model
from brainbench.tasks import TaskSpec
from brainbench.training.fit import TorchEstimator, TorchModel

STEM_STRIDE = 4
WEIGHTS = "model.safetensors"
CONFIG = "config.json"


class MAE3DConfig(StrictModel):
    """The network (shared by pretraining and every downstream protocol)."""

    width: int = Field(32, ge=1, description="channels of the stem and every block (ref. 512)")
    depth: int = Field(3, ge=0, description="residual blocks (the reference: 8)")
    groups: int = Field(8, ge=1, description="GroupNorm groups; must divide width")
    activation: Literal["gelu", "relu"] = "gelu"
    in_channels: int = Field(1, ge=1, description="input modalities")

    @model_validator(mode="after")
    def _check(self) -> MAE3DConfig:
        if self.width % self.groups:
            raise ValueError(f"groups ({self.groups}) must divide width ({self.width})")
        return self


def _act(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU(inplace=True)


class ResidualBlock(nn.Module):
    def __init__(self, width: int, groups: int, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv3d(width, width, 3, padding=1)
        self.norm = nn.GroupNorm(groups, width)
        self.act = _act(activation)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.act(self.norm(self.conv(x)))


class Encoder(nn.Module):
    """Stem + residual blocks: (B, C, X, Y, Z) -> (B, width, X/4, Y/4, Z/4)."""

    def __init__(self, cfg: MAE3DConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv3d(cfg.in_channels, cfg.width, STEM_STRIDE, stride=STEM_STRIDE),
            nn.GroupNorm(cfg.groups, cfg.width),
            _act(cfg.activation),
        )
        blocks = [ResidualBlock(cfg.width, cfg.groups, cfg.activation) for _ in range(cfg.depth)]
        self.blocks = nn.Sequential(*blocks)

    def forward(self, x: Tensor) -> Tensor:
        return self.blocks(self.stem(x))

    def encode(self, x: Tensor) -> Tensor:
        """(B, width): the global average of the feature map."""
        return self(x).mean(dim=(2, 3, 4))


class MAE3D(nn.Module):
    """The masked autoencoder: `forward` reconstructs (B, 1, X, Y, Z) from a (masked) input."""

    def __init__(self, cfg: MAE3DConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = nn.Sequential(
            nn.ConvTranspose3d(cfg.width, cfg.width, 2, stride=2),
            nn.GroupNorm(cfg.groups, cfg.width),
            _act(cfg.activation),
            nn.ConvTranspose3d(cfg.width, 1, 2, stride=2),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)


def check_grid(shape: tuple[int, ...], patch_size: int) -> None:
    """ConfigError unless every grid dimension is a multiple of the patch size."""
    if patch_size % STEM_STRIDE:
        raise ConfigError(
            f"patch_size={patch_size} must be a multiple of the stem stride {STEM_STRIDE}."
        )
    if any(s % patch_size for s in shape):
        raise ConfigError(
            f"input grid {tuple(shape)} is not divisible by patch_size={patch_size}; set "
            f"preprocess.shape to multiples of {patch_size} or choose another patch_size."
        )


def patch_mask(
    shape: tuple[int, ...], patch_size: int, ratio: float, generator: torch.Generator | None = None
) -> Tensor:
    """A boolean (B, 1, X, Y, Z) mask: round(ratio * patches) random cubic patches per sample."""
    batch, *grid = shape[0], *shape[-3:]
    check_grid(tuple(grid), patch_size)
    cells = [s // patch_size for s in grid]
    n = cells[0] * cells[1] * cells[2]
    k = min(n, max(1, round(ratio * n)))
    order = torch.rand(batch, n, generator=generator).argsort(dim=1)[:, :k]
    mask = torch.zeros(batch, n, dtype=torch.bool).scatter_(1, order, True)
    mask = mask.view(batch, 1, *cells)
    for dim in (2, 3, 4):
        mask = mask.repeat_interleave(patch_size, dim=dim)
    return mask


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the voxels where `mask` is True."""
    return ((pred.float() - target.float()) ** 2)[mask.expand_as(target)].mean()


def weights_path(path: Path) -> Path:
    """`path` itself if a file, else `path`/model.safetensors; DataError if absent or pickled."""
    path = Path(path)
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"pretrained weights {file} do not exist; run `brainbench pretrain` first.")
    if file.suffix != ".safetensors":
        raise DataError(
            f"{file} is not a .safetensors file; only safetensors weights are read (pickled "
            "checkpoints are refused). Point init at a pretrained folder or model.safetensors."
        )
    return file


def read_weights(path: Path) -> dict[str, Tensor]:
    file = weights_path(path)
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{file} is not a readable safetensors file: {exc}") from None


def load_matching(net: nn.Module, path: Path) -> dict[str, Any]:
    """Load every weight of `path` whose name and shape match `net`; report what matched.

    DataError listing the mismatches when the stem does not match (another architecture).
    """
    source = read_weights(path)
    target = net.state_dict()
    matched = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    stem = [k for k in target if k.startswith("encoder.stem.")]
    if not all(k in matched for k in stem):
        problems = [
            f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
            if k in source
            else f"{k}: missing in checkpoint"
            for k in target
            if k not in matched
        ]
        raise DataError(
            f"{weights_path(path)} does not fit the mae3d_cnn encoder (the stem must match; set "
            f"model.width/depth/in_channels as in its {CONFIG}). Mismatches: "
            + "; ".join(problems[:8])
            + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
        )
    net.load_state_dict(matched, strict=False)
    return {"matched": len(matched), "unmatched": sorted(set(target) - set(matched))}


def pretrained_config(path: Path) -> MAE3DConfig:
    """The network config saved next to pretrained weights (config.json 'model')."""
    file = weights_path(path).parent / CONFIG
    try:
        return MAE3DConfig.model_validate(json.loads(file.read_text())["model"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise DataError(
            f"{file} is missing or not a brainbench pretraining config ({exc}); pretrained "
            "weights must sit next to the config.json `brainbench pretrain` writes."
        ) from None


class EncoderHead(nn.Module):
    """The MAE encoder, dropout and a linear head on the global-average embedding."""

    def __init__(self, cfg: MAE3DConfig, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(cfg.width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.encoder.encode(x)))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)


class MAE3DTaskConfig(MAE3DConfig):
    init: Path | None = Field(
        None, description="pretrained folder or model.safetensors (finetune); None = scratch"
    )
    dropout: float = Field(0.2, ge=0, lt=1)
    bin_width: float | None = Field(
        None, gt=0, description="regression: soft-label bin width; None = target range / 48"
    )
    sigma: float = Field(1.0, gt=0, description="regression: soft-label std, in bin widths")


def _build(params: MAE3DTaskConfig, task: TaskSpec, meta: dict[str, Any]) -> TorchModel:
    cfg = MAE3DConfig.model_validate(params.model_dump(include=set(MAE3DConfig.model_fields)))
    if task.kind == "regression":
        bins = Bins(**meta["bins"])
        net = EncoderHead(cfg, bins.count, params.dropout)
        return TorchModel(net, SoftLabelLoss(bins, params.sigma), ExpectedValue(bins))
    return TorchModel(EncoderHead(cfg, 1, params.dropout), logit_loss, logit_probability)


class MAE3DEstimator(TorchEstimator):
    """TorchEstimator whose fresh network loads the `init` weights before fine-tuning."""

    def __init__(self, params: MAE3DTaskConfig, task: TaskSpec, trainer: TrainerConfig) -> None:
        self._plain = partial(_build, params, task)
        super().__init__(partial(target_setup, params, task), self._plain, trainer)
        self.init = params.init
        self.report: dict[str, Any] = {}

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Fit as TorchEstimator does; when fine-tuning, info adds the matched weights."""
        if self.init is not None:
            weights_path(self.init)  # fail before any training
            self.build = self._initialised  # only while fitting: `load` restores saved weights
        try:
            return super().fit(train, val, seed=seed, run_dir=run_dir) | self.report
        finally:
            self.build = self._plain

    def _initialised(self, meta: dict[str, Any]) -> TorchModel:
        model = self._plain(meta)
        self.report = load_matching(model.net, self.init)
        return model


@register_model(
    "mae3d_cnn",
    kind="torch",
    config=MAE3DTaskConfig,
    description="3D CNN masked-autoencoder encoder + head; scratch, or finetune with init=PATH",
    task_kinds=("regression", "classification"),
    defaults={"trainer": {"lr": 0.001, "max_epochs": 30, "patience": 8}},
    protocol=lambda params: "finetune" if params.init else "scratch",
)
def build_mae3d_cnn(
    params: MAE3DTaskConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> MAE3DEstimator:
    """The encoder + head estimator for `task`, from scratch or from `params.init`."""
    return MAE3DEstimator(params, task, trainer)


def load_encoder(path: Path) -> Encoder:
    """The pretrained encoder at `path` (folder or model.safetensors), in eval mode."""
    encoder = MAE3D(pretrained_config(path)).encoder
    state = {k.removeprefix("encoder."): v for k, v in read_weights(path).items()}
    missing = set(encoder.state_dict()) - set(state)
    if missing:
        raise DataError(f"{weights_path(path)} lacks encoder weights: {', '.join(sorted(missing))}")
    encoder.load_state_dict({k: state[k] for k in encoder.state_dict()})
    return encoder.eval()


@register_model(
    "mae3d_probe",
    kind="sklearn",
    config=ProbeConfig,
    description="Frozen pretrained mae3d_cnn embeddings -> ridge/logistic or MLP (CV on train)",
    task_kinds=("regression", "classification"),
    protocol=lambda params: f"{params.head}_probe",
)
def build_mae3d_probe(
    params: ProbeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ProbeEstimator:
    """A linear or MLP probe on the frozen encoder of the pretrained model at `params.init`."""
    return ProbeEstimator(load_encoder(params.init), params, task)
