"""mae2d: 7-slice stacks in, the centre slice out; masked loss; the volume embedding."""

from __future__ import annotations

import pytest
import torch

from brainbench.errors import ConfigError
from brainbench.models.mae2d import MAE2D, MAE2DConfig, slice_stacks

TINY = MAE2DConfig(width=8, depth=1, groups=4)


def test_slice_stacks_take_neighbouring_axial_slices() -> None:
    x = torch.rand(2, 1, 8, 8, 12)
    stacks = slice_stacks(x, 7, torch.tensor([3, 8]))
    assert stacks.shape == (2, 7, 8, 8)
    torch.testing.assert_close(stacks[0], x[0, 0].permute(2, 0, 1)[0:7])
    torch.testing.assert_close(stacks[1], x[1, 0].permute(2, 0, 1)[5:12])


def test_masked_loss_reconstructs_the_centre_slice_on_masked_pixels() -> None:
    net = MAE2D(TINY)
    x = torch.rand(2, 1, 16, 16, 16)
    out = net.masked_loss(x, 8, 0.7, torch.Generator().manual_seed(0))
    assert out.target.shape == out.recon.shape == out.masked.shape == (2, 1, 16, 16)
    hidden = out.masked.eq(0) & out.target.ne(0)
    assert hidden.float().mean().item() == pytest.approx(0.75, abs=0.01)  # 3 of 4 squares
    torch.testing.assert_close(out.loss, ((out.recon - out.target) ** 2)[hidden].mean())


def test_encode_averages_slice_embeddings_and_training_reduces_loss() -> None:
    torch.manual_seed(0)
    net = MAE2D(TINY)
    x = torch.rand(2, 1, 16, 16, 12)
    emb = net.encode(x)
    stacks = slice_stacks(x, 7, torch.tensor([3, 3]))
    assert emb.shape == (2, 8)
    manual = torch.stack(
        [net.encoder.net.encode(slice_stacks(x, 7, torch.tensor([z, z]))) for z in range(3, 9)]
    ).mean(0)
    torch.testing.assert_close(emb, manual)
    assert stacks.shape == (2, 7, 16, 16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    first = None
    for step in range(15):
        loss = net.masked_loss(x, 4, 0.7, torch.Generator().manual_seed(step)).loss
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first
    with pytest.raises(ConfigError, match="7 axial slices"):
        net.encode(torch.rand(1, 1, 16, 16, 4))
    with pytest.raises(ValueError, match="odd"):
        MAE2DConfig(slices=6)
