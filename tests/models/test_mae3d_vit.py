"""mae3d_vit: the encoder sees only visible tokens; shapes; the loss falls; fine-tuning."""

from __future__ import annotations

import pytest
import torch

from brainbench.errors import DataError
from brainbench.models.mae3d_vit import MAE3DViT, MAE3DViTConfig, MAE3DViTTaskConfig
from brainbench.registry import get_model
from brainbench.training.masking import patch_mask
from brainbench.training.pretrain import pretrain_config_class, write_pretrained

TINY = MAE3DViTConfig(width=12, depth=1, heads=2, decoder_width=6, decoder_depth=1, decoder_heads=1)


def test_encoder_sees_only_the_visible_tokens() -> None:
    net = MAE3DViT(TINY)
    x = torch.rand(2, 1, 16, 16, 16)  # 4^3 = 64 tokens of 4^3 voxels
    mask = patch_mask(x.shape, 8, 0.7, torch.Generator().manual_seed(0))  # 6 of 8 8^3 patches
    token_mask = net.patchify(mask.float()).amax(-1) > 0
    latent, pred = net.forward_masked(x, token_mask)
    assert token_mask.sum(1).tolist() == [48, 48]
    assert latent.shape == (2, 64 - 48, 12)
    assert pred.shape == (2, 64, 4**3)
    torch.testing.assert_close(net.unpatchify(net.patchify(x), (4, 4, 4)), x)


def test_loss_only_counts_masked_tokens_and_encode_shapes() -> None:
    net = MAE3DViT(TINY)
    x = torch.rand(2, 1, 16, 16, 16)
    out = net.masked_loss(x, 4, 0.7, torch.Generator().manual_seed(0))
    assert out.recon.shape == out.target.shape == x.shape
    mask = out.masked.eq(0) & x.ne(0)
    manual = ((out.recon - x) ** 2)[mask].mean()
    torch.testing.assert_close(out.loss, manual)
    assert net.encode(torch.rand(3, 1, 20, 24, 20)).shape == (3, 12)  # any grid of tokens


def test_norm_targets_and_training_reduce_the_loss() -> None:
    torch.manual_seed(0)
    net = MAE3DViT(TINY.model_copy(update={"norm_targets": True}))
    x = torch.rand(2, 1, 8, 8, 8).round()
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss = net.masked_loss(x, 4, 0.5, torch.Generator().manual_seed(step % 2)).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) < 0.85 * sum(losses[:5])


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="divisible by 6"):
        MAE3DViTConfig(width=16)


def test_finetune_loads_the_vit_encoder_and_refuses_a_cnn(
    tmp_path, volumes, spec, quick_trainer
) -> None:
    pre = tmp_path / "vit"
    pre.mkdir()
    config = pretrain_config_class("mae3d_vit")(name="mae3d_vit", model=TINY)
    write_pretrained(pre, MAE3DViT(TINY), config, {})
    trainer = quick_trainer.model_copy(update={"max_epochs": 1})
    build = get_model("mae3d_vit").build
    params = MAE3DViTTaskConfig(**TINY.model_dump(), init=pre)
    tuned = build(params, task=spec("regression"), trainer=trainer)
    info = tuned.fit(volumes(8, seed=0), volumes(4, seed=1), seed=0, run_dir=tmp_path / "a")
    assert info["matched"] == len(MAE3DViT(TINY).encoder.state_dict())
    assert tuned.predict(volumes(4, seed=1)).shape == (4,)
    cnn = get_model("mae3d_cnn").build
    wrong = cnn(
        get_model("mae3d_cnn").config_cls(init=pre), task=spec("regression"), trainer=trainer
    )
    with pytest.raises(DataError, match="pretrained as mae3d_vit"):
        wrong.fit(volumes(8, seed=0), volumes(4, seed=1), seed=0, run_dir=tmp_path / "b")
