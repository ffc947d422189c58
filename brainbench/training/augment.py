"""Label-preserving training augmentation for whole-brain volumes (B, C, X, Y, Z in RAS)."""

from __future__ import annotations

import torch
from torch import Tensor


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
