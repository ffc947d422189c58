"""Masks, views and the masked loss shared by every masked autoencoder (2-D and 3-D).

The scheme of the lifespan MRI benchmark: per volume a random local crop (masked with large
patches, 8^3) and the whole brain resized to the same grid (masked with small patches, 4^3);
`mask_ratio` of the patches of each view hidden; the MSE counted on the hidden voxels only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from brainbench.errors import ConfigError
from brainbench.training.randomness import Generators, batch_rand


@dataclass
class MaskedOutput:
    """A masked-reconstruction step: the loss and the images a figure shows (B, C, *grid)."""

    loss: Tensor
    target: Tensor
    masked: Tensor
    recon: Tensor


def check_patch(grid: tuple[int, ...], patch: int, unit: int, what: str) -> None:
    """ConfigError unless `patch` is a multiple of `unit` and divides every grid dimension."""
    if patch % unit:
        raise ConfigError(f"{what}: patch {patch} must be a multiple of {unit} voxels.")
    if any(s % patch for s in grid):
        raise ConfigError(
            f"{what}: grid {tuple(grid)} is not divisible by patch {patch}; choose a grid "
            f"(crop_size or preprocess.shape) made of multiples of {patch}."
        )


def masked_count(cells: int, ratio: float) -> int:
    """How many of `cells` patches a mask hides: round(ratio * cells), at least one."""
    return min(cells, max(1, round(ratio * cells)))


def patch_mask(
    shape: tuple[int, ...],
    patch: int,
    ratio: float,
    generator: Generators = None,
    device: torch.device | None = None,
) -> Tensor:
    """A boolean (B, 1, *grid) mask of masked_count(patches, ratio) random square/cubic patches.

    `shape` is (B, C, *grid) with a 2-D or 3-D grid; every sample hides the same number of
    patches. The draws are per sample (one number per patch); the mask is built on `device`.
    """
    batch, grid = shape[0], tuple(shape[2:])
    check_patch(grid, patch, 1, "mask")
    cells = [s // patch for s in grid]
    n = math.prod(cells)
    order = batch_rand(batch, n, generator=generator, device=device).argsort(dim=1)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    mask = mask.scatter_(1, order[:, : masked_count(n, ratio)], True).view(batch, 1, *cells)
    for dim in reversed(range(2, 2 + len(grid))):  # innermost first: later copies are blocks
        mask = mask.repeat_interleave(patch, dim=dim)
    return mask


def masked_mse(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the voxels where `mask` is True (no host sync)."""
    mask = mask.expand_as(target)
    return torch.where(mask, (pred.float() - target.float()) ** 2, 0).sum() / mask.sum()


def default_crop(shape: tuple[int, ...], patch: int) -> int:
    """The largest multiple of `patch` not above 0.8 x the smallest grid dimension (>= patch)."""
    return max(patch, int(0.8 * min(shape)) // patch * patch)


def two_views(
    x: Tensor, crop: int, generator: Generators = None, *, centre: bool = False
) -> tuple[Tensor, Tensor]:
    """(local, whole): a random crop^3 of each volume and the whole volume resized to crop^3.

    `centre` takes the central crop (evaluation). x is (B, C, X, Y, Z) with every side >= crop.
    """
    grid = x.shape[2:]
    if min(grid) < crop:
        raise ConfigError(f"crop_size {crop} exceeds the volume grid {tuple(grid)}.")
    room = torch.tensor([s - crop + 1 for s in grid])
    if centre:
        starts = ((room - 1) // 2).expand(len(x), 3)
    else:
        starts = (batch_rand(len(x), 3, generator=generator) * room).long()
    windows = x.unfold(2, crop, 1).unfold(3, crop, 1).unfold(4, crop, 1)  # (B, C, *room, *crop^3)
    sx, sy, sz = starts.to(x.device).unbind(1)
    local = windows[torch.arange(len(x), device=x.device), :, sx, sy, sz]
    whole = F.interpolate(x, size=(crop,) * 3, mode="trilinear", align_corners=False)
    return local, whole
