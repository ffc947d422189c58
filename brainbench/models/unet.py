"""A 3D U-Net (MONAI's `UNet`) for voxel-wise tasks: segmentation and image synthesis.

Segmentation: one logit per class and voxel, Dice + cross-entropy loss (MONAI's DiceCELoss), the
prediction is the arg-max label. Synthesis: one output channel, L1 or MSE loss, the prediction
is clipped to the [0, 1] intensity range of preprocessed volumes. The network trains on whole
preprocessed volumes (padded to a multiple of its total stride) or, with `patch_size`, on random
patches oversampling the foreground (data/pairs.py PatchDataset); inference runs on the whole
volume or, with `roi_size` (default: the patch size), by sliding windows (MONAI's
sliding_window_inference). `VoxelEstimator` is shared with the MAE-initialised U-Net.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch.nn.functional as F
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.networks.nets import UNet
from pydantic import Field, NonNegativeInt, PositiveInt, model_validator
from torch import Tensor, nn
from torch.utils.data import Dataset

from brainbench.config import StrictModel, TrainerConfig
from brainbench.data.pairs import PatchDataset
from brainbench.registry import register_model
from brainbench.spec import TaskSpec
from brainbench.training.fit import TorchEstimator, TorchModel


class PatchConfig(StrictModel):
    """Patch training and sliding-window inference, shared by the voxel-wise networks."""

    patch_size: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="train on random patches of this size (voxels); None = whole volumes"
    )
    patches_per_volume: PositiveInt = Field(4, description="patches per subject and epoch")
    foreground_ratio: float = Field(
        0.7, ge=0, le=1, description="share of patches centred on a foreground voxel"
    )
    roi_size: tuple[PositiveInt, PositiveInt, PositiveInt] | None = Field(
        None, description="sliding-window inference window (voxels); None = patch_size or whole"
    )
    sw_overlap: float = Field(0.25, ge=0, lt=1, description="overlap of sliding windows")

    @property
    def window(self) -> tuple[int, int, int] | None:
        """The sliding-window size at inference, None for whole volumes."""
        return self.roi_size or self.patch_size


class UNetConfig(PatchConfig):
    channels: list[PositiveInt] = Field(
        [8, 16, 32], min_length=2, description="feature channels per resolution level"
    )
    strides: list[PositiveInt] = Field(
        [2, 2], min_length=1, description="down-sampling stride between levels (one fewer)"
    )
    num_res_units: NonNegativeInt = Field(1, description="residual units per block")
    dropout: float = Field(0.0, ge=0, lt=1)
    synthesis_loss: Literal["l1", "mse"] = Field("l1", description="synthesis: voxel loss")

    @model_validator(mode="after")
    def _check(self) -> UNetConfig:
        if len(self.strides) != len(self.channels) - 1:
            raise ValueError(
                f"strides needs {len(self.channels) - 1} values (one fewer than channels)"
            )
        return self


class PaddedUNet(nn.Module):
    """MONAI's UNet, zero-padding inputs to a multiple of its total stride and cropping back."""

    def __init__(self, in_channels: int, out_channels: int, params: UNetConfig) -> None:
        super().__init__()
        self.multiple = math.prod(params.strides)
        self.unet = UNet(
            spatial_dims=3,
            in_channels=in_channels,
            out_channels=out_channels,
            channels=params.channels,
            strides=params.strides,
            num_res_units=params.num_res_units,
            dropout=params.dropout,
        )

    def forward(self, x: Tensor) -> Tensor:
        return padded(self.unet, x, self.multiple)


def padded(net: nn.Module, x: Tensor, multiple: int) -> Tensor:
    """`net` on `x` zero-padded to a multiple of `multiple` voxels, cropped back to x's grid."""
    shape = x.shape[2:]
    pad = [(-n) % multiple for n in shape]
    if any(pad):
        x = F.pad(x, [p for n in reversed(pad) for p in (0, n)])
    return net(x)[..., : shape[0], : shape[1], : shape[2]]


class SegmentationLoss:
    """MONAI's Dice + cross-entropy on logits (B, K, ...) and integer labels (B, 1, ...)."""

    def __init__(self) -> None:
        self.loss = DiceCELoss(to_onehot_y=True, softmax=True)

    def __call__(self, logits: Tensor, y: Tensor) -> Tensor:
        return self.loss(logits.float(), y)


def arg_max_label(logits: Tensor) -> Tensor:
    return logits.argmax(dim=1)


def clipped_intensity(out: Tensor) -> Tensor:
    return out[:, 0].clamp(0.0, 1.0)


def sliding_window(
    net: nn.Module, x: Tensor, *, roi_size: tuple[int, ...], overlap: float
) -> Tensor:
    """The network's output on whole volumes, stitched from overlapping `roi_size` windows."""
    return sliding_window_inference(x, roi_size, 4, net, overlap=overlap, mode="gaussian")


def voxel_setup(task: TaskSpec, train: Dataset) -> dict[str, Any]:
    """The network's input channels and outputs (one per class, or one intensity)."""
    x, _ = train[0]
    outputs = train.n_labels if task.kind == "segmentation" else 1
    return {"in_channels": int(x.shape[0]), "out_channels": int(outputs)}


def voxel_model(
    net: nn.Module, task: TaskSpec, params: PatchConfig, synthesis_loss: str = "l1"
) -> TorchModel:
    """`net` with the task's loss, prediction map and (sliding-window) inference."""
    infer = None
    if params.window is not None:
        infer = partial(sliding_window, roi_size=params.window, overlap=params.sw_overlap)
    if task.kind == "segmentation":
        return TorchModel(net, SegmentationLoss(), arg_max_label, infer=infer)
    loss = F.l1_loss if synthesis_loss == "l1" else F.mse_loss
    return TorchModel(net, loss, clipped_intensity, infer=infer)


def _build(params: UNetConfig, task: TaskSpec, meta: dict[str, Any]) -> TorchModel:
    net = PaddedUNet(meta["in_channels"], meta["out_channels"], params)
    return voxel_model(net, task, params, params.synthesis_loss)


class VoxelEstimator(TorchEstimator):
    """TorchEstimator training on random patches when `patch_size` is set.

    `init(net) -> report`, if given, initialises the fresh network before training (e.g. from a
    pretrained checkpoint) and its report joins the fit info; `load` never calls it.
    """

    def __init__(
        self,
        setup: Callable[[Dataset], dict[str, Any]],
        build: Callable[[dict[str, Any]], TorchModel],
        trainer: TrainerConfig,
        patches: PatchConfig,
        init: Callable[[nn.Module], dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(setup, build, trainer)
        self.patches = patches
        self.init = init

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Fit as TorchEstimator does, on patches of `train` when configured."""
        p = self.patches
        if p.patch_size is not None:
            train = PatchDataset(train, p.patch_size, p.patches_per_volume, p.foreground_ratio)
        plain, report = self.build, {}
        if self.init is not None:

            def initialised(meta: dict[str, Any]) -> TorchModel:
                model = plain(meta)
                report.update(self.init(model.net))
                return model

            self.build = initialised
        try:
            info = super().fit(train, val, seed=seed, run_dir=run_dir)
        finally:
            self.build = plain
        return info | {"patch_size": p.patch_size} | report


@register_model(
    "unet",
    kind="torch",
    config=UNetConfig,
    description="3D U-Net (MONAI), Dice+CE segmentation or L1 image synthesis, from scratch",
    task_kinds=("segmentation", "synthesis"),
    needs_volume=True,
    defaults={"trainer": {"lr": 0.01, "max_epochs": 60, "patience": 10, "batch_size": 4}},
)
def build_unet(params: UNetConfig, *, task: TaskSpec, trainer: TrainerConfig) -> VoxelEstimator:
    """A U-Net estimator for a segmentation or synthesis `task`."""
    return VoxelEstimator(
        partial(voxel_setup, task), partial(_build, params, task), trainer, params
    )
