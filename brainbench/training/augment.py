"""Training augmentation for whole-brain volumes (B, C, X, Y, Z in RAS).

`shift_and_mirror` preserves labels (supervised training); `augment_volumes` is the pretraining
augmentation of the masked autoencoders: random flips, a small rotation/zoom (torch affine_grid)
and a percentile renormalisation whose upper percentile is drawn at random.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import Tensor

from brainbench.config import StrictModel
from brainbench.training.randomness import Generators, batch_rand


def shift_and_mirror(x: Tensor, max_shift: int = 2) -> Tensor:
    """Shift each volume by up to `max_shift` voxels per axis and mirror half of them left-right.

    The augmentation of Peng et al. 2021 for brain age. Shifts roll the grid; after preprocessing
    the border is background, so what wraps around is background too.
    """
    out = torch.empty_like(x)
    shifts = torch.randint(-max_shift, max_shift + 1, (len(x), 3)).tolist()
    mirror = (torch.rand(len(x)) < 0.5).tolist()
    for i, volume in enumerate(x):
        volume = torch.roll(volume, shifts=shifts[i], dims=(1, 2, 3))
        out[i] = torch.flip(volume, dims=(1,)) if mirror[i] else volume
    return out


class VolumeAugmentConfig(StrictModel):
    """Random augmentation of pretraining volumes (intensities in [0, 1], background 0)."""

    flip: float = Field(0.5, ge=0, le=1, description="probability of flipping each axis")
    rotation: float = Field(10.0, ge=0, le=180, description="max rotation about each axis (deg)")
    scale: float = Field(0.1, ge=0, lt=1, description="max zoom, 1 +/- scale per axis")
    upper_percentile: tuple[float, float] = Field(
        (98.0, 100.0), description="renormalise by a foreground percentile drawn in this range"
    )

    @model_validator(mode="after")
    def _check(self) -> VolumeAugmentConfig:
        low, high = self.upper_percentile
        if not 50 <= low <= high <= 100:
            raise ValueError("upper_percentile must satisfy 50 <= low <= high <= 100")
        return self


def _uniform(shape: tuple[int, int], low: float, high: float, generator: Generators) -> Tensor:
    return low + (high - low) * batch_rand(*shape, generator=generator, dtype=torch.float64)


def random_flip(x: Tensor, p: float, generator: Generators = None) -> Tensor:
    """Flip each volume of (B, C, *grid) along each spatial axis with probability p."""
    flips = (batch_rand(len(x), x.ndim - 2, generator=generator) < p).tolist()
    out = x.clone()
    for i, axes in enumerate(flips):
        dims = [d + 1 for d, flip in enumerate(axes) if flip]
        if dims:
            out[i] = torch.flip(x[i], dims=dims)
    return out


def rotation_matrices(angles: Tensor) -> Tensor:
    """(B, 3, 3) rotations R_x(a) R_y(b) R_z(c) from (B, 3) angles in radians."""
    c, s = angles.cos(), angles.sin()
    one, zero = torch.ones_like(c[:, 0]), torch.zeros_like(c[:, 0])

    def stack(rows: list[list[Tensor]]) -> Tensor:
        return torch.stack([torch.stack(row, -1) for row in rows], -2)

    rx = stack([[one, zero, zero], [zero, c[:, 0], -s[:, 0]], [zero, s[:, 0], c[:, 0]]])
    ry = stack([[c[:, 1], zero, s[:, 1]], [zero, one, zero], [-s[:, 1], zero, c[:, 1]]])
    rz = stack([[c[:, 2], -s[:, 2], zero], [s[:, 2], c[:, 2], zero], [zero, zero, one]])
    return rx @ ry @ rz


def affine_warp(x: Tensor, matrices: Tensor) -> Tensor:
    """Resample (B, C, X, Y, Z) through (B, 3, 3) voxel-space maps about the grid centre.

    Output voxel v (centred, voxel units) takes the trilinear value of the input at M v; outside
    the grid is 0. The map acts in voxel units, so rotations stay rigid on non-cubic grids.
    """
    size = torch.tensor(x.shape[2:], dtype=matrices.dtype).flip(0)  # affine_grid order: z, y, x
    perm = torch.tensor([2, 1, 0])
    m = matrices[:, perm][:, :, perm]  # the map in (z, y, x) coordinate order
    theta = torch.diag(1 / size) @ m @ torch.diag(size)  # normalised coordinates
    theta = torch.cat([theta, torch.zeros(len(x), 3, 1, dtype=theta.dtype)], dim=2)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def random_affine(x: Tensor, rotation: float, scale: float, generator: Generators = None) -> Tensor:
    """Rotate each volume by up to `rotation` degrees per axis and zoom it by 1 +/- `scale`."""
    n = len(x)
    angles = torch.deg2rad(_uniform((n, 3), -rotation, rotation, generator))
    zoom = _uniform((n, 3), 1 - scale, 1 + scale, generator)
    return affine_warp(x, rotation_matrices(angles) @ torch.diag_embed(1 / zoom))


def random_upper_percentile(
    x: Tensor, low: float, high: float, generator: Generators = None
) -> Tensor:
    """Divide each volume/channel by a foreground (> 0) percentile drawn in [low, high], clip."""
    q = _uniform(tuple(x.shape[:2]), low, high, generator) / 100
    out = torch.empty_like(x)
    for i in range(x.shape[0]):
        for c in range(x.shape[1]):
            values = x[i, c][x[i, c] > 0].float()
            top = torch.quantile(values, float(q[i, c])) if values.numel() else x.new_tensor(1.0)
            out[i, c] = (x[i, c] / top.clamp_min(1e-6)).clamp(0, 1)
    return out


def augment_volumes(x: Tensor, cfg: VolumeAugmentConfig, generator: Generators = None) -> Tensor:
    """Flips, a small affine and a randomised upper-percentile renormalisation, in that order."""
    x = random_flip(x, cfg.flip, generator)
    if cfg.rotation or cfg.scale:
        x = random_affine(x, cfg.rotation, cfg.scale, generator)
    low, high = cfg.upper_percentile
    return random_upper_percentile(x, low, high, generator)
