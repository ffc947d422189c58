"""Masks, views and the masked loss of the two-view pretraining scheme."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from brainbench.errors import ConfigError
from brainbench.training.masking import default_crop, masked_mse, patch_mask, two_views


@pytest.mark.parametrize(("grid", "patch"), [((16, 16, 16), 8), ((16, 16, 16), 4), ((8, 12), 4)])
def test_patch_mask_hides_whole_patches_at_the_ratio(grid, patch) -> None:
    mask = patch_mask((3, 2, *grid), patch, 0.7, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, *grid) and mask.dtype == torch.bool
    cells = [s // patch for s in grid]
    n = torch.tensor(cells).prod().item()
    pooled = (F.avg_pool3d if len(grid) == 3 else F.avg_pool2d)(mask.float(), patch)
    assert set(pooled.unique().tolist()) <= {0.0, 1.0}  # whole patches only
    assert (pooled.flatten(1).sum(1) == round(0.7 * n)).all()  # the same count in every sample


def test_patch_mask_is_seeded() -> None:
    a = patch_mask((2, 1, 16, 16, 16), 4, 0.7, torch.Generator().manual_seed(3))
    b = patch_mask((2, 1, 16, 16, 16), 4, 0.7, torch.Generator().manual_seed(3))
    c = patch_mask((2, 1, 16, 16, 16), 4, 0.7, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_masked_mse_counts_only_masked_voxels() -> None:
    target = torch.full((2, 1, 8, 8, 8), 5.0)
    mask = patch_mask(target.shape, 4, 0.5, torch.Generator().manual_seed(0))
    target[mask] = 1.0
    pred = torch.zeros_like(target)  # error 1 on masked voxels, 25 elsewhere
    assert masked_mse(pred, target, mask).item() == pytest.approx(1.0)
    pred[~mask] = 100.0  # changing visible voxels changes nothing
    assert masked_mse(pred, target, mask).item() == pytest.approx(1.0)


def test_two_views_crop_and_resize() -> None:
    x = torch.rand(2, 1, 20, 24, 20)
    local, whole = two_views(x, 16, torch.Generator().manual_seed(0))
    assert local.shape == whole.shape == (2, 1, 16, 16, 16)
    centre, _ = two_views(x, 16, centre=True)
    assert torch.equal(centre, x[:, :, 2:18, 4:20, 2:18])
    ref = F.interpolate(x, size=(16, 16, 16), mode="trilinear", align_corners=False)
    torch.testing.assert_close(whole, ref)
    found = any(  # the local view is a crop of its volume
        torch.equal(local[0], x[0, :, i : i + 16, j : j + 16, k : k + 16])
        for i in range(5)
        for j in range(9)
        for k in range(5)
    )
    assert found
    with pytest.raises(ConfigError, match="crop_size 24"):
        two_views(x, 24)


def test_default_crop() -> None:
    assert default_crop((20, 24, 20), 8) == 16
    assert default_crop((40, 48, 40), 8) == 32
    assert default_crop((8, 8, 8), 8) == 8
