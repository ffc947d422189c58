"""mae3d_unet as a masked autoencoder: it learns to fill masked patches, and its pretrained
weights load whole into the downstream U-Net (but the output layer of a segmentation)."""

from __future__ import annotations

import numpy as np
import torch
from safetensors.torch import save_file
from scipy.ndimage import gaussian_filter

from brainbench.models.mae import BACKBONES, load_matching
from brainbench.models.mae3d_unet import MAEUNet, MAEUNetShape

TINY = MAEUNetShape(width=8, depth=1, groups=4, skip_channels=4)


def _smooth_volumes(n: int, seed: int) -> torch.Tensor:
    """Standardised smooth random fields: a masked voxel is predictable from its neighbours."""
    rng = np.random.default_rng(seed)
    fields = [gaussian_filter(rng.standard_normal((16, 16, 16)), 2.5) for _ in range(n)]
    x = np.stack(fields)[:, None]
    return torch.from_numpy((x - x.mean()) / x.std()).float()


def test_pretraining_fills_masked_patches_from_their_surroundings() -> None:
    torch.manual_seed(0)
    net = BACKBONES["mae3d_unet"].network(TINY)
    optimiser = torch.optim.Adam(net.parameters(), lr=3e-3)
    for step in range(300):
        loss = net.masked_loss(_smooth_volumes(8, step), 4, 0.5).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        held_out = net.masked_loss(_smooth_volumes(16, 10_000), 4, 0.5).loss.item()
    # predicting the mean (0) scores the fields' variance, 1, on the masked voxels
    assert held_out < 0.5, held_out


def test_a_pretrained_unet_loads_whole_for_synthesis_and_but_its_output_for_segmentation(
    tmp_path,
) -> None:
    pretrained = BACKBONES["mae3d_unet"].network(TINY)
    save_file(pretrained.state_dict(), str(tmp_path / "model.safetensors"))
    synthesis = load_matching(MAEUNet(TINY, 1), tmp_path / "model.safetensors")
    assert synthesis["unmatched"] == [] and synthesis["matched"] == len(pretrained.state_dict())
    segmentation = load_matching(MAEUNet(TINY, 10), tmp_path / "model.safetensors")
    assert segmentation["unmatched"] == ["out.bias", "out.weight"]
    assert segmentation["ignored"] == 2
