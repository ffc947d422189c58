"""mae3d_cnn: masking, the masked loss, encode, finetune weight matching and the probes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from brainbench.errors import ConfigError, DataError
from brainbench.models.mae import EncoderHead, build_mae3d_probe, load_matching
from brainbench.models.mae3d_cnn import MAE3D, Encoder, MAE3DConfig, MAE3DTaskConfig
from brainbench.models.probe import ProbeConfig
from brainbench.registry import MODELS, get_model
from brainbench.training.masking import masked_mse, patch_mask
from brainbench.training.pretrain import PretrainConfig, write_pretrained

TINY = MAE3DConfig(width=8, depth=1, groups=4)


def build_mae3d_cnn(params, **kwargs):
    return get_model("mae3d_cnn").build(params, **kwargs)


def _head(cfg: MAE3DConfig = TINY) -> EncoderHead:
    return EncoderHead(Encoder(cfg), 1, 0.0)


def _pretrained(folder, cfg: MAE3DConfig = TINY):
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    net = MAE3D(cfg)
    write_pretrained(folder, net, PretrainConfig(model=cfg), {})
    return folder, net


def test_patch_mask_ratio_and_patches() -> None:
    mask = patch_mask((3, 1, 8, 8, 16), 4, 0.5, torch.Generator().manual_seed(0))
    assert mask.shape == (3, 1, 8, 8, 16) and mask.dtype == torch.bool
    cells = mask.view(3, 2, 4, 2, 4, 4, 4).float()  # (B, cx, 4, cy, 4, cz, 4)
    per_patch = cells.mean(dim=(2, 4, 6))
    assert set(per_patch.unique().tolist()) <= {0.0, 1.0}  # whole patches only
    assert (per_patch.sum(dim=(1, 2, 3)) == 8).all()  # half of the 16 patches
    assert (mask.float().mean(dim=(1, 2, 3, 4)) == 0.5).all()


def test_masked_mse_counts_only_masked_voxels() -> None:
    target = torch.full((1, 1, 8, 8, 8), 5.0)
    mask = torch.zeros_like(target, dtype=torch.bool)
    mask[..., :4] = True
    target[mask] = 1.0
    pred = torch.zeros_like(target)  # error 1 on masked voxels, 25 elsewhere
    assert masked_mse(pred, target, mask).item() == pytest.approx(1.0)


# what a fine-tuned network has and a pretrained one lacks: the head and its input's normalisation
NOT_PRETRAINED = ["head.bias", "head.weight", "norm.num_batches_tracked", "norm.running_mean",
                  "norm.running_var"]  # fmt: skip


def test_grid_not_divisible_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"not divisible by patch 8"):
        patch_mask((1, 1, 20, 24, 20), 8, 0.7)
    with pytest.raises(ConfigError, match="multiple of 4"):
        MAE3D(TINY).masked_loss(torch.rand(1, 1, 24, 24, 24), 6, 0.7)


def test_reconstruction_and_encode_shapes() -> None:
    net = MAE3D(TINY)
    x = torch.rand(2, 1, 20, 24, 20)
    assert net(x).shape == x.shape
    assert net.encode(x).shape == (2, 8)


def test_registered() -> None:
    for name, kind in (("mae3d_cnn", "torch"), ("mae3d_probe", "sklearn")):
        entry = MODELS[name]
        assert entry.kind == kind and entry.task_kinds == ("regression", "classification")


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_scratch_and_finetune(kind, volumes, spec, quick_trainer, tmp_path) -> None:
    folder, mae = _pretrained(tmp_path / "pre")
    target = "age" if kind == "regression" else "sex"
    train, val = volumes(16, seed=0, target=target), volumes(8, seed=1, target=target)
    trainer = quick_trainer.model_copy(update={"max_epochs": 1})
    params = TINY.model_dump()
    scratch = build_mae3d_cnn(MAE3DTaskConfig(**params), task=spec(kind), trainer=trainer)
    assert "matched" not in scratch.fit(train, val, seed=0, run_dir=tmp_path / "a")
    tuned = build_mae3d_cnn(
        MAE3DTaskConfig(**params, init=folder), task=spec(kind), trainer=trainer
    )
    info = tuned.fit(train, val, seed=0, run_dir=tmp_path / "b")
    n_encoder = len(mae.encoder.state_dict())
    assert info["matched"] == n_encoder
    assert sorted(info["unmatched"]) == NOT_PRETRAINED
    assert "probe_alpha" in info  # the head started from the linear probe
    assert tuned.predict(val).shape == (8,)


def test_protocol_follows_the_parameters(tmp_path) -> None:
    entry = get_model("mae3d_cnn")
    assert entry.protocol_of(MAE3DTaskConfig(**TINY.model_dump())) == "scratch"
    assert entry.protocol_of(MAE3DTaskConfig(**TINY.model_dump(), init=tmp_path)) == "finetune"
    probe = get_model("mae3d_probe")
    assert probe.protocol_of(ProbeConfig(init=tmp_path, head="mlp")) == "mlp_probe"


def test_matching_weights_are_loaded(tmp_path) -> None:
    folder, mae = _pretrained(tmp_path)
    net = _head()
    load_matching(net, folder / "model.safetensors")
    for name, value in mae.encoder.state_dict().items():
        torch.testing.assert_close(net.encoder.state_dict()[name], value)


def test_other_depth_loads_the_matching_part(tmp_path) -> None:
    folder, _ = _pretrained(tmp_path, TINY)
    deeper = _head(TINY.model_copy(update={"depth": 2}))
    report = load_matching(deeper, folder)
    assert "encoder.blocks.1.conv.weight" in report["unmatched"]


def test_wrong_architecture_lists_mismatches(tmp_path) -> None:
    folder, _ = _pretrained(tmp_path, MAE3DConfig(width=16, depth=1, groups=4))
    with pytest.raises(DataError, match=r"encoder\.stem\.0\.weight: checkpoint \(16, 1, 4, 4, 4\)"):
        load_matching(_head(), folder)


def test_pickled_or_missing_checkpoint_is_refused(tmp_path) -> None:
    torch.save({"w": torch.nn.Linear(1, 1)}, tmp_path / "model.pt")  # a pickled module
    with pytest.raises(DataError, match="pickled"):
        load_matching(_head(), tmp_path / "model.pt")
    with pytest.raises(DataError, match="pretrain"):
        load_matching(_head(), tmp_path / "nowhere")


@pytest.mark.parametrize(
    ("kind", "head"),
    [("regression", "linear"), ("regression", "mlp"), ("classification", "mlp")],
)
def test_probes(kind, head, volumes, spec, quick_trainer, tmp_path) -> None:
    folder, _ = _pretrained(tmp_path / "pre")
    target = "age" if kind == "regression" else "sex"
    train, test = volumes(24, seed=0, target=target), volumes(8, seed=1, target=target)
    params = ProbeConfig(init=folder, head=head, n_alphas=3)
    probe = build_mae3d_probe(params, task=spec(kind), trainer=quick_trainer)
    info = probe.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["embedding_dim"] == 8
    y = probe.predict(test)
    assert y.shape == (8,) and np.isfinite(y).all()
    if kind == "classification":
        assert ((y >= 0) & (y <= 1)).all()
    probe.save(tmp_path / "probe.safetensors")
    again = build_mae3d_probe(params, task=spec(kind), trainer=quick_trainer)
    again.load(tmp_path / "probe.safetensors")
    np.testing.assert_allclose(again.predict(test), y)


def _published_state(width: int, blocks: int) -> dict[str, torch.Tensor]:
    """A state dict named like the published NeuroBench_LS 3D MAE (local_encoder.*)."""
    state = {}
    for i in range(blocks):
        for k in (1, 2, 3):
            cin = 1 if i == 0 and k == 1 else width
            kernel = 4 if i == 0 and k == 1 else 3
            prefix = f"local_encoder.{i}.basic_module.conv{k}"
            state[f"{prefix}.groupnorm.weight"] = torch.rand(cin)
            state[f"{prefix}.groupnorm.bias"] = torch.rand(cin)
            state[f"{prefix}.conv.weight"] = torch.rand(width, cin, kernel, kernel, kernel)
    state["local_upsample.weight"] = torch.rand(width, 2, 4, 4, 4)  # decoder: not used
    return state


def test_published_weights_load_through_the_name_mapping(volumes, spec, quick_trainer, tmp_path):
    state = _published_state(8, 2)
    torch.save(state, tmp_path / "published.pth")  # a weights-only torch file
    cfg = TINY.model_copy(update={"block": "reference", "activation": "relu"})
    params = MAE3DTaskConfig(**cfg.model_dump(), init=tmp_path / "published.pth")
    trainer = quick_trainer.model_copy(update={"max_epochs": 1})
    tuned = build_mae3d_cnn(params, task=spec("regression"), trainer=trainer)
    info = tuned.fit(volumes(8, seed=0), volumes(4, seed=1), seed=0, run_dir=tmp_path / "ft")
    assert info["matched"] == len(state) - 1 == len(Encoder(cfg).state_dict())
    assert info["ignored"] == 1 and sorted(info["unmatched"]) == NOT_PRETRAINED
    with pytest.raises(DataError, match=r"encoder\.stem\.0\.weight: missing"):  # compact block
        build_mae3d_cnn(
            MAE3DTaskConfig(**TINY.model_dump(), init=tmp_path / "published.pth"),
            task=spec("regression"),
            trainer=trainer,
        ).fit(volumes(8, seed=0), volumes(4, seed=1), seed=0, run_dir=tmp_path / "x")


def test_reference_block_shapes() -> None:
    cfg = MAE3DConfig(width=8, depth=2, groups=4, block="reference", activation="relu")
    net = MAE3D(cfg)
    x = torch.rand(2, 1, 16, 16, 16)
    assert net(x).shape == x.shape and net.encode(x).shape == (2, 8)
    assert "encoder.blocks.1.conv3.norm.weight" in net.state_dict()


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_probe_on_too_few_subjects_predicts_the_training_mean(
    head, volumes, spec, quick_trainer, tmp_path
) -> None:
    folder, _ = _pretrained(tmp_path / "pre")
    train, test = volumes(3, seed=0), volumes(6, seed=1)
    probe = build_mae3d_probe(
        ProbeConfig(init=folder, head=head), task=spec(), trainer=quick_trainer
    )
    with pytest.warns(UserWarning, match="3 training subjects.*cannot choose the penalty"):
        info = probe.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["alpha"] is None and info["penalty"].startswith("fallback: 3 training subjects")
    np.testing.assert_allclose(probe.predict(test), np.full(6, train.targets.mean()), rtol=1e-5)


def _mae_cnn_state(embed_dim: int, depth: int) -> dict[str, torch.Tensor]:
    """Random weights under the exact names and shapes of NeuroBench_LS MAE_CNN(embed_dim, depth).

    Its layout (MAE_Model/MAE_3D/model/mae_cnn.py, blocks.py), each ExtResNetBlock being
    conv1..conv3 of GroupNorm 'groupnorm' (on the input channels) + bias-free Conv3d 'conv':
    - local_encoder.0..depth-1: blocks of embed_dim channels, entry 0 from 1 channel with a
      4^3 stride-4 conv1, the rest 3^3;
    - local_upsample: ConvTranspose3d(embed_dim, embed_dim // 16, 4, stride 4), with bias;
    - local_decoder.0: a block from embed_dim // 16 to 16 channels, 3^3 convs;
    - final_norm_local_recon: GroupNorm(8, 16); final_projection_local_recon: Conv3d(16, 1, 3).
    """
    g = torch.Generator().manual_seed(0)

    def rand(*shape: int, scale: float = 0.1, offset: float = 0.0) -> torch.Tensor:
        return offset + scale * torch.randn(*shape, generator=g)

    def block(prefix: str, cin: int, cout: int, kernel: int) -> dict[str, torch.Tensor]:
        out = {}
        for k, (i, size) in enumerate(((cin, kernel), (cout, 3), (cout, 3)), start=1):
            fan_in = i * size**3
            out[f"{prefix}.conv{k}.groupnorm.weight"] = rand(i, offset=1.0)
            out[f"{prefix}.conv{k}.groupnorm.bias"] = rand(i)
            out[f"{prefix}.conv{k}.conv.weight"] = rand(cout, i, size, size, size) / fan_in**0.5
        return out

    state = {}
    for i in range(depth):
        cin, kernel = (1, 4) if i == 0 else (embed_dim, 3)
        state |= block(f"local_encoder.{i}.basic_module", cin, embed_dim, kernel)
    up = embed_dim // 16
    state["local_upsample.weight"] = rand(embed_dim, up, 4, 4, 4) / embed_dim**0.5
    state["local_upsample.bias"] = rand(up)
    state |= block("local_decoder.0.basic_module", up, 16, 3)
    state["final_norm_local_recon.weight"] = rand(16, offset=1.0)
    state["final_norm_local_recon.bias"] = rand(16)
    state["final_projection_local_recon.weight"] = rand(1, 16, 3, 3, 3) / (16 * 27) ** 0.5
    state["final_projection_local_recon.bias"] = rand(1)
    return state


def _mae_cnn_forward(state: dict[str, torch.Tensor], x: torch.Tensor, depth: int) -> torch.Tensor:
    """MAE_CNN's encoder + local decoder written out with torch.nn.functional, from `state`.

    Layer order 'gcr': GroupNorm (32 groups in the encoder, 8 in the decoder, 1 below that many
    channels) -> conv -> ReLU; conv3 has no ReLU, the block adds conv1's output then applies it.
    """
    F = torch.nn.functional

    def block(prefix: str, h: torch.Tensor, groups: int, stride: int) -> torch.Tensor:
        def gc(k: int, h: torch.Tensor, stride: int = 1) -> torch.Tensor:
            name = f"{prefix}.conv{k}"
            n = groups if h.shape[1] >= groups else 1
            h = F.group_norm(
                h, n, state[f"{name}.groupnorm.weight"], state[f"{name}.groupnorm.bias"]
            )
            return F.conv3d(
                h, state[f"{name}.conv.weight"], stride=stride, padding=int(stride == 1)
            )

        y = F.relu(gc(1, h, stride))
        return F.relu(gc(3, F.relu(gc(2, y))) + y)

    for i in range(depth):
        x = block(f"local_encoder.{i}.basic_module", x, 32, 4 if i == 0 else 1)
    x = F.conv_transpose3d(
        x, state["local_upsample.weight"], state["local_upsample.bias"], stride=4
    )
    x = block("local_decoder.0.basic_module", x, 8, 1)
    x = F.group_norm(
        x, 8, state["final_norm_local_recon.weight"], state["final_norm_local_recon.bias"]
    )
    weight, bias = (
        state["final_projection_local_recon.weight"],
        state["final_projection_local_recon.bias"],
    )
    return torch.sigmoid(F.conv3d(x, weight, bias, padding=1))


@pytest.mark.parametrize("embed_dim", [32, 128])  # decoder's first GroupNorm: 1 group, 8 groups
def test_published_mae_cnn_loads_whole_encoder_and_decoder(embed_dim, tmp_path) -> None:
    from brainbench.models.mae3d_cnn import load_published

    depth = 2  # the reference's depth counts the stride-4 entry: ours is depth - 1
    state = _mae_cnn_state(embed_dim, depth)
    torch.save(state, tmp_path / "mae.pth")
    cfg = MAE3DConfig(
        width=embed_dim,
        depth=depth - 1,
        groups=32,
        activation="relu",
        block="reference",
        decoder="reference",
    )
    net = MAE3D(cfg).eval()
    report = load_published(net, tmp_path / "mae.pth")
    assert report == {"matched": len(state), "unmatched": [], "ignored": 0}
    assert len(net.state_dict()) == len(state) == 9 * depth + 15
    loaded = net.state_dict()
    decoder = {"decoder.upsample.weight": "local_upsample.weight"}
    decoder |= {"decoder.project.bias": "final_projection_local_recon.bias"}
    decoder |= {
        "decoder.block.conv1.norm.weight": "local_decoder.0.basic_module.conv1.groupnorm.weight"
    }
    for ours, theirs in decoder.items():
        torch.testing.assert_close(loaded[ours], state[theirs], rtol=0, atol=0)
    x = torch.rand(2, 1, 16, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = _mae_cnn_forward(state, x, depth), net(x)
    assert got.shape == x.shape and expected.std() > 1e-3  # not saturated
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_published_mae_cnn_decoder_names_are_ignored_downstream() -> None:
    from brainbench.models.mae3d_cnn import reference_names

    renamed = reference_names(_mae_cnn_state(32, 3))
    assert "encoder.blocks.1.conv3.norm.bias" in renamed and "decoder.norm.weight" in renamed
    head = _head(MAE3DConfig(width=32, depth=2, groups=32, activation="relu", block="reference"))
    report = load_matching(head, "unused", state=renamed)
    assert report["matched"] == 27 and report["ignored"] == 15
    assert sorted(report["unmatched"]) == NOT_PRETRAINED


def test_reference_decoder_width_must_fit_its_group_norm() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        MAE3DConfig(width=8, groups=4, decoder="reference")
    with pytest.raises(ValueError, match="multiple of it"):
        MAE3DConfig(width=144, groups=8, decoder="reference")  # 9 channels, GroupNorm(8)
