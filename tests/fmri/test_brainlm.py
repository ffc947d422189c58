from __future__ import annotations

import math

import pytest
import torch

from brainbench.errors import DataError
from brainbench.models.brainlm import (
    BrainLM,
    BrainLMConfig,
    future_mask,
    random_mask,
    time_encoding,
)

CFG = BrainLMConfig(
    patch=5, width=16, depth=1, heads=2, decoder_width=8, decoder_depth=1, decoder_heads=2
)


def _net(parcels: int = 6) -> BrainLM:
    torch.manual_seed(0)
    return BrainLM(CFG, torch.randn(parcels, 3) * 50)


def test_shapes_and_visible_only_encoder() -> None:
    net, x = _net(), torch.randn(3, 6, 20)
    mask = random_mask(3, 24, 0.75)
    assert int(mask.sum(1)[0]) == 18 and bool((mask.sum(1) == 18).all())
    seen = []
    net.blocks[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[1]))
    pred = net(x, mask)
    assert pred.shape == (3, 6, 4, 5) and seen == [1 + 6]  # CLS + the visible tokens only
    assert net.encode(x).shape == (3, 16) and net.encode(x, "mean").shape == (3, 16)
    coupling = net.parcel_coupling(x)
    assert coupling.shape == (6, 6) and torch.allclose(coupling, coupling.T, atol=1e-6)
    assert torch.allclose(coupling.diagonal(), torch.ones(6), atol=1e-5)


def test_loss_is_on_hidden_patches_only() -> None:
    net, x = _net(), torch.randn(2, 6, 20)
    mask = random_mask(2, 24, 0.5, torch.Generator().manual_seed(0))
    loss, pred = net.masked_loss(x, mask)
    hidden = mask.view(2, 6, 4)
    assert float(loss.detach()) == pytest.approx(
        float(((pred.detach() - x.view(2, 6, 4, 5)) ** 2)[hidden].mean())
    )
    loss.backward()
    assert net.patch_embed.weight.grad is not None


def test_time_encoding_and_future_mask() -> None:
    enc = time_encoding(3, 4)
    assert enc[2, 0] == pytest.approx(math.sin(2.0)) and enc[2, 3] == pytest.approx(
        math.cos(2 / 100)
    )
    mask = future_mask(2, 3, 4, 1).view(2, 3, 4)
    assert mask[:, :, -1].all() and not mask[:, :, :-1].any()


def test_bad_shapes() -> None:
    net = _net()
    with pytest.raises(DataError, match="5 parcels but the model was built for 6"):
        net.encode(torch.randn(1, 5, 20))
    with pytest.raises(DataError, match="multiple of the patch"):
        net.encode(torch.randn(1, 6, 22))


def test_forced_tokens_are_hidden_first_and_the_count_is_kept() -> None:
    forced = future_mask(4, 40, 4, 1)  # the last of 4 patches of each of 40 parcels
    forced[1] = False  # a sample with nothing forced
    mask = random_mask(4, 160, 0.5, torch.Generator().manual_seed(0), forced=forced)
    assert bool((mask.sum(1) == 80).all())
    assert bool(mask[forced].all())
    last = mask[1].view(40, 4)[:, 3].float().mean()
    assert 0.2 < float(last) < 0.8  # unforced: about half of the last patches, at random
