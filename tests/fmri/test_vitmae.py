"""The published-checkpoint adapter, on a tiny ViTMAE saved locally (no download)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from brainbench.errors import DataError
from brainbench.models.brainlm_vitmae import (
    ViTMAEEncoder,
    load_vitmae,
    vitmae_embeddings,
    vitmae_image,
)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    folder = tmp_path_factory.mktemp("vitmae")
    config = ViTMAEConfig(
        image_size=32,
        patch_size=8,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        decoder_hidden_size=16,
        decoder_num_hidden_layers=1,
        decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )
    torch.manual_seed(0)
    ViTMAEForPreTraining(config).save_pretrained(folder)
    return folder


def test_image_orders_parcels_by_y_and_pads() -> None:
    x = torch.arange(3, dtype=torch.float32)[None, :, None].expand(1, 3, 4)
    coords = np.array([[0, 30, 0], [0, -10, 0], [0, 5, 0]], dtype=float)
    image = vitmae_image(x, coords, 8)
    assert image.shape == (1, 3, 8, 8)
    assert image[0, 0, :3, 0].tolist() == [1.0, 2.0, 0.0]  # y = -10, 5, 30
    assert image[0, :, 3:].abs().sum() == 0 and image[0, :, :, 4:].abs().sum() == 0
    assert torch.equal(image[0, 0], image[0, 2])
    with pytest.raises(DataError, match="does not fit"):
        vitmae_image(torch.zeros(1, 9, 4), np.zeros((9, 3)), 8)


def test_embeddings_from_a_local_checkpoint(checkpoint: Path) -> None:
    windows, coords = torch.randn(2, 12, 20), np.random.default_rng(0).normal(size=(12, 3))
    cls = vitmae_embeddings(checkpoint, windows, coords)
    assert cls.shape == (2, 16) and torch.isfinite(cls).all()
    again = vitmae_embeddings(checkpoint, windows, coords)
    assert torch.equal(cls, again)  # no random masking at inference
    encoder = ViTMAEEncoder(load_vitmae(checkpoint), "mean", parcels=424)
    encoder.coords = coords
    with pytest.raises(DataError, match="424 parcels"):
        encoder.encode(windows)


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no config.json"):
        load_vitmae(tmp_path)
