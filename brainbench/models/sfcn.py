"""SFCN: the simple fully convolutional brain-age network of Peng et al. 2021.

"Accurate brain age prediction with lightweight deep neural networks", Medical Image Analysis 68.
Blocks of Conv3d 3x3x3 + BatchNorm + MaxPool(2) + ReLU, a last 1x1x1 block without pooling,
global average pooling, dropout and a 1x1x1 conv to the outputs. Regression uses the paper's
soft classification: the target range is cut into bins (equal in the target or, with
`log_offset`, in its log), the loss is the KL divergence to a Gaussian soft label, the
prediction is the expected bin centre. Classification uses one logit.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, PositiveInt
from torch import Tensor, nn
from torch.utils.data import Dataset

from brainbench.config import StrictModel, TrainerConfig
from brainbench.errors import ConfigError
from brainbench.models.classical import binary_targets
from brainbench.registry import register_model
from brainbench.spec import TaskSpec
from brainbench.training.augment import shift_and_mirror
from brainbench.training.fit import TorchEstimator, TorchModel

MAX_BINS = 10_000


class SFCNConfig(StrictModel):
    channels: list[PositiveInt] = Field(
        [8, 16, 32, 64, 64, 32],
        min_length=2,
        description="output channels per block (the paper: 32, 64, 128, 256, 256, 64); "
        "the last block is a 1x1x1 conv without pooling",
    )
    dropout: float = Field(0.5, ge=0, lt=1, description="dropout before the output conv")
    bin_width: float | None = Field(
        None,
        gt=0,
        description="regression: output bin width in target units (the paper: 1 year); "
        "None = the training target range / 48",
    )
    sigma: float = Field(1.0, gt=0, description="regression: soft-label std, in bin widths")
    log_offset: float | None = Field(
        None,
        gt=0,
        description="regression: equal-width bins in log(target + log_offset), not in the "
        "target, so that they are finer where the target is small (age in years: 0.769, so "
        "that they follow post-menstrual age and widen with it); bin_width is then in log units",
    )
    augment: bool = Field(
        False,
        description="random shifts of up to 2 voxels and left-right mirroring (the paper's, "
        "whose voxels are 1 mm: at 4 mm a shift reaches 8 mm)",
    )


def pooled_blocks(shape: Sequence[int], n_blocks: int) -> int:
    """How many leading blocks max-pool: as many as keep every dimension at >= 2 voxels."""
    smallest, pools = min(shape), 0
    while smallest // 2 >= 2 and pools < n_blocks - 1:
        smallest //= 2
        pools += 1
    if pools == 0:
        raise ConfigError(
            f"input grid {tuple(shape)} is too small for SFCN: every dimension needs at least "
            "4 voxels to pool once; increase preprocess.shape."
        )
    return pools


class SFCN(nn.Module):
    """The SFCN network; the pooling depth adapts to the input grid. Returns (B, n_outputs)."""

    def __init__(
        self,
        in_channels: int,
        in_shape: Sequence[int],
        channels: Sequence[int],
        n_outputs: int,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        pools = pooled_blocks(in_shape, len(channels))
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(channels[:-1]):
            layers += [nn.Conv3d(c_in, c_out, 3, padding=1), nn.BatchNorm3d(c_out)]
            if i < pools:
                layers.append(nn.MaxPool3d(2))
            layers.append(nn.ReLU(inplace=True))
            c_in = c_out
        layers += [nn.Conv3d(c_in, channels[-1], 1), nn.BatchNorm3d(channels[-1]), nn.ReLU(True)]
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Conv3d(channels[-1], n_outputs, 1)
        # Channels-last 3x3x3 convs are ~1.7x faster on CPU (oneDNN). 1x1x1 weights stay
        # contiguous: their grads come back contiguous and DDP warns on a layout mismatch.
        for conv in self.features:
            if isinstance(conv, nn.Conv3d) and conv.kernel_size != (1, 1, 1):
                conv.to(memory_format=torch.channels_last_3d)

    def forward(self, x: Tensor) -> Tensor:
        if not torch.onnx.is_in_onnx_export():  # ONNX has no memory formats
            x = x.contiguous(memory_format=torch.channels_last_3d)
        x = self.features(x)
        x = x.mean(dim=(2, 3, 4), keepdim=True)
        return self.head(self.dropout(x)).flatten(1)


@dataclass(frozen=True)
class Bins:
    """Equal-width output bins of the regression head, on the target's axis or, with
    `log_offset`, on log(target + log_offset); `start`, `width`, edges and centres are on it."""

    start: float
    width: float
    count: int
    log_offset: float | None = None

    def axis(self, y: Tensor) -> Tensor:
        """Targets on the bins' axis (below the first edge: at it)."""
        if self.log_offset is None:
            return y
        return torch.log(y.clamp(min=math.exp(self.start) - self.log_offset) + self.log_offset)

    def edges(self, device: torch.device | None = None) -> Tensor:
        steps = torch.arange(self.count + 1, dtype=torch.float64, device=device)
        return self.start + self.width * steps

    def centres(self) -> Tensor:
        return self.start + self.width * (torch.arange(self.count, dtype=torch.float64) + 0.5)

    def values(self) -> Tensor:
        """The bin centres in target units."""
        centres = self.centres()
        return centres if self.log_offset is None else centres.exp() - self.log_offset


def make_bins(
    targets: np.ndarray, bin_width: float | None, sigma: float, log_offset: float | None = None
) -> Bins:
    """Bins over the training target range plus a margin of 5% and 3 soft-label sigmas, on the
    target's axis or on log(target + log_offset)."""
    if log_offset is not None:
        if np.min(targets) + log_offset <= 0:
            raise ConfigError(
                f"model.log_offset={log_offset:g} is too small: the training targets go down "
                f"to {np.min(targets):g}; log_offset must exceed {-np.min(targets):g}."
            )
        targets = np.log(np.asarray(targets, dtype=float) + log_offset)
    low, high = float(np.min(targets)), float(np.max(targets))
    span = high - low or 1.0
    width = bin_width or span / 48
    margin = max(0.05 * span, 3 * sigma * width)
    count = math.ceil((high - low + 2 * margin) / width)
    if count > MAX_BINS:
        raise ConfigError(
            f"model.bin_width={bin_width} gives {count} bins over the target range "
            f"[{low:g}, {high:g}]; use a larger bin_width (at most {MAX_BINS} bins)."
        )
    return Bins(low - margin, width, count, log_offset)


def soft_labels(y: Tensor, bins: Bins, sigma: float) -> Tensor:
    """Gaussian soft labels: the probability mass of N(y, (sigma * width)^2) in each bin."""
    edges = bins.edges(y.device)
    y = bins.axis(y.double()).clamp(bins.start, bins.start + bins.width * bins.count)
    cdf = 0.5 * (1 + torch.erf((edges - y[:, None]) / (sigma * bins.width * math.sqrt(2))))
    mass = cdf[:, 1:] - cdf[:, :-1]
    return (mass / mass.sum(dim=1, keepdim=True)).float()


class SoftLabelLoss:
    """KL divergence between the softmax over bins and the Gaussian soft label (batch mean)."""

    def __init__(self, bins: Bins, sigma: float) -> None:
        self.bins = bins
        self.sigma = sigma

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        log_probs = F.log_softmax(logits.float(), dim=1)
        return F.kl_div(log_probs, soft_labels(y, self.bins, self.sigma), reduction="batchmean")


class ExpectedValue:
    """The prediction of a soft-classification head: the expected bin centre, in target units."""

    def __init__(self, bins: Bins) -> None:
        self.centres = bins.values().float()

    def __call__(self, logits: Tensor) -> Tensor:
        probs = F.softmax(logits.float(), dim=1)
        return probs @ self.centres.to(logits.device)


def logit_loss(logits: Tensor, y: Tensor) -> Tensor:
    """Binary cross-entropy on the single logit."""
    return F.binary_cross_entropy_with_logits(logits[:, 0].float(), y.float())


def logit_probability(logits: Tensor) -> Tensor:
    """P(y = 1) from the single logit."""
    return torch.sigmoid(logits[:, 0].float())


def target_setup(
    params: StrictModel, task: TaskSpec, train: Dataset, *, log_offset: float | None = None
) -> dict[str, Any]:
    """The input shape and, for regression, the bins (`params.bin_width`, `params.sigma`)."""
    x, _ = train[0]
    meta: dict[str, Any] = {"in_shape": list(x.shape)}
    targets = np.asarray(train.targets, dtype=float)
    if task.kind == "regression":
        meta["bins"] = asdict(make_bins(targets, params.bin_width, params.sigma, log_offset))
    else:
        binary_targets(targets)
    return meta


def _build(params: SFCNConfig, task: TaskSpec, meta: dict[str, Any]) -> TorchModel:
    in_channels, *shape = meta["in_shape"]
    augment = shift_and_mirror if params.augment else None
    if task.kind == "regression":
        bins = Bins(**meta["bins"])
        net = SFCN(in_channels, shape, params.channels, bins.count, params.dropout)
        return TorchModel(net, SoftLabelLoss(bins, params.sigma), ExpectedValue(bins), augment)
    net = SFCN(in_channels, shape, params.channels, 1, params.dropout)
    return TorchModel(net, logit_loss, logit_probability, augment)


@register_model(
    "sfcn",
    kind="torch",
    config=SFCNConfig,
    description="Simple fully convolutional network (Peng et al. 2021), soft-label brain age",
    task_kinds=("regression", "classification"),
    needs_volume=True,
    # ~6 min per seed for ~200 training volumes of 40x48x40 on 2 CPU cores. Measured on the
    # default cohort (test MAE over seeds 33-35). Generator v6: 50 cosine epochs 8.73 +- 0.8,
    # validation loss still falling at the end; 100 epochs 5.68 +- 0.53. Dropout 0.1 instead
    # of 0.5 at 100 epochs: 5.10 / 6.19 for seeds 33 / 34. Generator v7: 100 epochs 5.96 +-
    # 0.45 (best validation loss 0.95 / 0.97 / 0.96); 200 epochs, whose cosine is still high
    # when early stopping ends them (epochs 104-122), 5.13 +- 0.68 (0.84 / 0.89 / 0.90).
    defaults={"trainer": {"lr": 0.003, "max_epochs": 200, "patience": 30}},
)
def build_sfcn(params: SFCNConfig, *, task: TaskSpec, trainer: TrainerConfig) -> TorchEstimator:
    """An SFCN estimator for `task` (regression: soft-label bins; classification: one logit)."""
    return TorchEstimator(
        partial(target_setup, params, task, log_offset=params.log_offset),
        partial(_build, params, task),
        trainer,
    )
