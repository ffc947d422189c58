"""Published BrainLM checkpoints, written locally with the reference's tensor names (no download).

The names and shapes below are those of vandijklab/BrainLM's `BrainLMForPretraining`
(brainlm_mae/modeling_brainlm.py, transformers 4.x): `vit` = BrainLMEmbeddings + Nystromformer
layers + LayerNorm, `decoder` = BrainLMDecoder (which keeps ViTMAE's unused `decoder_pred`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from brainbench import api
from brainbench.data.timeseries import read_atlas_table
from brainbench.errors import DataError
from brainbench.models.brainlm_reference import BrainLMReference
from brainbench.models.brainlm_vitmae import (
    ViTMAEEncoder,
    load_checkpoint,
    vitmae_embeddings,
    vitmae_image,
)

# vandijklab/brainlm on the Hugging Face hub, old_13M/config.json (the architecture keys)
OLD_13M = {
    "architectures": ["BrainLMForPretraining"],
    "model_type": "brainlm_mae",
    "hidden_size": 512,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "intermediate_size": 1024,
    "decoder_hidden_size": 512,
    "decoder_num_hidden_layers": 2,
    "decoder_num_attention_heads": 4,
    "decoder_intermediate_size": 1024,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.0,
    "attention_probs_dropout_prob": 0.1,
    "layer_norm_eps": 1e-12,
    "image_size": 224,
    "patch_size": 16,
    "num_channels": 3,
    "num_brain_voxels": 424,
    "num_timepoints_per_voxel": 200,
    "timepoint_patching_size": 20,
    "mask_ratio": 0.2,
    "num_landmarks": 64,
    "segment_means_seq_len": 64,
    "conv_kernel_size": 65,
    "inv_coeff_init_option": False,
    "use_tanh_decoder": False,
}
SMALL = OLD_13M | {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "intermediate_size": 64,
    "decoder_hidden_size": 32,
    "decoder_num_hidden_layers": 1,
    "decoder_intermediate_size": 64,
    "num_brain_voxels": 12,
    "num_timepoints_per_voxel": 60,
}


def reference_shapes(c: dict) -> dict[str, tuple[int, ...]]:
    """Every tensor of a reference BrainLMForPretraining state dict, with its shape."""
    h, dh, patch = c["hidden_size"], c["decoder_hidden_size"], c["timepoint_patching_size"]
    shapes = {
        "vit.embeddings.cls_token": (1, 1, h),
        "vit.embeddings.signal_embedding_projection.weight": (h, patch),
        "vit.embeddings.signal_embedding_projection.bias": (h,),
        "vit.embeddings.xyz_embedding_projection.weight": (h, 3),
        "vit.embeddings.xyz_embedding_projection.bias": (h,),
        "vit.embeddings.pos_embedding.pe": (5000, h),
        "vit.layernorm.weight": (h,),
        "vit.layernorm.bias": (h,),
        "decoder.mask_token": (1, 1, dh),
        "decoder.decoder_embed.weight": (dh, h),
        "decoder.decoder_embed.bias": (dh,),
        "decoder.decoder_norm.weight": (dh,),
        "decoder.decoder_norm.bias": (dh,),
        "decoder.decoder_pred.weight": (c["patch_size"] ** 2 * c["num_channels"], dh),
        "decoder.decoder_pred.bias": (c["patch_size"] ** 2 * c["num_channels"],),
        "decoder.decoder_xyz_projection.weight": (h, 3),
        "decoder.decoder_xyz_projection.bias": (h,),
        "decoder.pos_embedding.pe": (5000, h),
        "decoder.decoder_pred1.weight": (dh // 2, dh),
        "decoder.decoder_pred1.bias": (dh // 2,),
        "decoder.decoder_pred2.weight": (patch, dh // 2),
        "decoder.decoder_pred2.bias": (patch,),
    }
    for prefix, w, stack in (
        ("vit.encoder.layer", h, ""),
        ("decoder.decoder_layers", dh, "decoder_"),
    ):
        depth, heads = f"{stack}num_hidden_layers", f"{stack}num_attention_heads"
        inner = f"{stack}intermediate_size"
        for i in range(c[depth]):
            p, f, qkv = f"{prefix}.{i}.", c[inner], ("query", "key", "value")
            shapes |= {f"{p}attention.self.{n}.weight": (w, w) for n in qkv}
            shapes |= {f"{p}attention.self.{n}.bias": (w,) for n in qkv}
            shapes |= {
                f"{p}attention.self.conv.weight": (c[heads], 1, c["conv_kernel_size"], 1),
                f"{p}attention.output.dense.weight": (w, w),
                f"{p}attention.output.dense.bias": (w,),
                f"{p}attention.output.LayerNorm.weight": (w,),
                f"{p}attention.output.LayerNorm.bias": (w,),
                f"{p}intermediate.dense.weight": (f, w),
                f"{p}intermediate.dense.bias": (f,),
                f"{p}output.dense.weight": (w, f),
                f"{p}output.dense.bias": (w,),
                f"{p}output.LayerNorm.weight": (w,),
                f"{p}output.LayerNorm.bias": (w,),
            }
    return shapes


def sincos(width: int) -> torch.Tensor:
    """The reference PositionalEncoding table: sin at even, cos at odd dimensions."""
    pos, i = np.arange(5000)[:, None], np.arange(0, width, 2)[None]
    angle = pos / 10000.0 ** (i / width)
    table = np.zeros((5000, width))
    table[:, 0::2], table[:, 1::2] = np.sin(angle), np.cos(angle)
    return torch.tensor(table, dtype=torch.float32)


def write_checkpoint(folder: Path, config: dict, state: dict[str, torch.Tensor]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    save_file(state, folder / "model.safetensors")
    return folder


def random_state(config: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    state = {k: 0.2 * torch.randn(s, generator=g) for k, s in reference_shapes(config).items()}
    for k in state:
        if k.endswith(".pe"):
            state[k] = sincos(config["hidden_size"])
    return state


@pytest.fixture(scope="module")
def brainlm_checkpoint(tmp_path_factory) -> Path:
    return write_checkpoint(tmp_path_factory.mktemp("brainlm"), SMALL, random_state(SMALL))


def test_reference_checkpoint_loads_whole(brainlm_checkpoint: Path) -> None:
    model, report = load_checkpoint(brainlm_checkpoint)
    assert isinstance(model, BrainLMReference) and model.decoder is not None
    assert report.whole and len(report.matched) == len(reference_shapes(SMALL)) == 73
    assert report.renamed == 0 and report.summary().startswith("73 tensors matched from")
    state = random_state(SMALL)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_embeddings_as_the_reference_computes_them(brainlm_checkpoint: Path) -> None:
    model, _ = load_checkpoint(brainlm_checkpoint)
    s = random_state(SMALL)
    x, xyz = torch.randn(2, 12, 60), 40 * torch.randn(2, 12, 3)
    w, b = "vit.embeddings.signal_embedding_projection.", "vit.embeddings.xyz_embedding_projection."
    patches = x.reshape(2, 12, 3, 20) @ s[w + "weight"].T + s[w + "bias"]
    spatial = xyz @ s[b + "weight"].T + s[b + "bias"]
    expected = (patches + spatial[:, :, None] + sincos(32)[:3]).flatten(1, 2)  # parcel-major
    with torch.no_grad():
        assert torch.allclose(model.vit.embeddings(x, xyz), expected, atol=1e-5)
        hidden = model.vit(x, xyz)
    assert hidden.shape == (2, 1 + 12 * 3, 32)


def test_embeddings_deterministic_and_finite(brainlm_checkpoint: Path) -> None:
    windows, coords = torch.randn(3, 12, 40), np.random.default_rng(0).normal(size=(12, 3)) * 50
    cls = vitmae_embeddings(brainlm_checkpoint, windows, coords)
    mean = vitmae_embeddings(brainlm_checkpoint, windows, coords, pooling="mean")
    assert cls.shape == mean.shape == (3, 32) and torch.isfinite(cls).all()
    assert torch.equal(cls, vitmae_embeddings(brainlm_checkpoint, windows, coords))
    assert not torch.allclose(cls, mean)
    encoder = ViTMAEEncoder(load_checkpoint(brainlm_checkpoint)[0], "cls")
    encoder.coords = coords
    with pytest.raises(DataError, match="12 parcels"):
        encoder.encode(torch.randn(1, 11, 40))
    with pytest.raises(DataError, match="multiple of 20"):
        encoder.encode(torch.randn(1, 12, 50))


def test_reconstruction(brainlm_checkpoint: Path) -> None:
    model, _ = load_checkpoint(brainlm_checkpoint)
    x, coords = torch.randn(2, 12, 60), torch.randn(12, 3)
    keep = torch.rand(2, 36).argsort(1)[:, :18]  # the reference's argsort(noise), ratio 0.5
    with torch.no_grad():
        out = model.reconstruct(x, coords, keep)
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_bin_weights_and_encoder_only(tmp_path: Path) -> None:
    state = {k: v for k, v in random_state(SMALL).items() if k.startswith("vit.")}
    (tmp_path / "config.json").write_text(json.dumps(SMALL))
    torch.save({k[len("vit.") :]: v for k, v in state.items()}, tmp_path / "pytorch_model.bin")
    model, report = load_checkpoint(tmp_path)  # a BrainLMModel saved on its own: no prefix
    assert model.decoder is None and len(report.matched) == len(state) == 42
    assert report.file == tmp_path / "pytorch_model.bin"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.pop("vit.encoder.layer.1.output.dense.weight"), r"missing \(1\).*1\.output"),
        (
            lambda s: s.update({"vit.layernorm.weight": torch.ones(31)}),
            r"wrong shape.*vit\.layernorm\.weight 31 != 32",
        ),
        (lambda s: s.update({"vit.extra": torch.ones(2)}), r"unexpected \(1\): vit\.extra 2"),
    ],
)
def test_incomplete_checkpoints_are_refused(tmp_path: Path, change, message: str) -> None:
    state = random_state(SMALL)
    change(state)
    folder = write_checkpoint(tmp_path / "ckpt", SMALL, state)
    with pytest.raises(DataError, match=message) as error:
        load_checkpoint(folder)
    assert str(folder / "model.safetensors") in str(error.value)


def test_released_13m_architecture() -> None:
    with torch.device("meta"):
        net = BrainLMReference(OLD_13M)
    shapes = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    assert shapes == reference_shapes(OLD_13M) and len(shapes) == 124
    weights = sum(v.numel() for k, v in net.state_dict().items() if not k.endswith(".pe"))
    assert 13e6 < weights < 14e6  # "13M"


def test_probe_end_to_end(fmri: Path, tmp_path: Path) -> None:
    parcels = len(read_atlas_table(fmri))
    config = SMALL | {"num_brain_voxels": parcels}
    folder = write_checkpoint(tmp_path / "ckpt", config, random_state(config))
    api.run(
        ["fmri/age"],
        ["brainlm_vitmae"],
        debug=True,
        overrides=["task_options.window=40", f"model.init={folder}", f"output_dir={tmp_path}"],
        log=lambda s: None,
    )
    (metrics,) = tmp_path.rglob("metrics.json")
    record = json.loads(metrics.read_text())
    assert record["training"]["checkpoint_tensors"] == 73 and record["protocol"] == "linear_probe"


# --- ViTMAE checkpoints (vitmae_111M / vitmae_650M): the image view -----------------------------

VIT = {
    "image_size": 32,
    "patch_size": 8,
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "decoder_hidden_size": 16,
    "decoder_num_hidden_layers": 1,
    "decoder_num_attention_heads": 2,
    "decoder_intermediate_size": 32,
}


def legacy_name(name: str) -> str:
    name = re.sub(r"^vit\.layers\.", "vit.encoder.layer.", name)
    for new, old in [
        ("attention.q_proj", "attention.attention.query"),
        ("attention.k_proj", "attention.attention.key"),
        ("attention.v_proj", "attention.attention.value"),
        ("attention.o_proj", "attention.output.dense"),
        ("mlp.fc1", "intermediate.dense"),
        ("mlp.fc2", "output.dense"),
    ]:
        name = name.replace(new, old)
    return name


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    folder = tmp_path_factory.mktemp("vitmae")
    torch.manual_seed(0)
    ViTMAEForPreTraining(ViTMAEConfig(**VIT)).save_pretrained(folder)
    return folder


def test_image_orders_parcels_by_y_centres_and_pads_with_minus_one() -> None:
    x = torch.arange(3, dtype=torch.float32)[None, :, None].expand(1, 3, 4)
    coords = np.array([[0, 30, 0], [0, -10, 0], [0, 5, 0]], dtype=float)
    image = vitmae_image(x, coords, 8)
    assert image.shape == (1, 3, 8, 8)
    assert image[0, 0, 2:5, 2].tolist() == [1.0, 2.0, 0.0]  # y = -10, 5, 30
    inside = torch.zeros(8, 8, dtype=torch.bool)
    inside[2:5, 2:6] = True
    assert (image[0, :, ~inside] == -1).all() and torch.equal(image[0, 0], image[0, 2])
    with pytest.raises(DataError, match="does not fit"):
        vitmae_image(torch.zeros(1, 9, 4), np.zeros((9, 3)), 8)


def test_vitmae_embeddings_from_a_local_checkpoint(checkpoint: Path) -> None:
    model, report = load_checkpoint(checkpoint)
    assert report.whole and model.decoder is not None and len(report.matched) == 46
    windows, coords = torch.randn(2, 12, 20), np.random.default_rng(0).normal(size=(12, 3))
    cls = vitmae_embeddings(checkpoint, windows, coords)
    assert cls.shape == (2, 16) and torch.isfinite(cls).all()
    assert torch.equal(cls, vitmae_embeddings(checkpoint, windows, coords))  # no masking
    encoder = ViTMAEEncoder(model, "mean", parcels=424)
    encoder.coords = coords
    with pytest.raises(DataError, match="424 parcels"):
        encoder.encode(windows)


def test_vitmae_checkpoint_with_transformers_4_names(checkpoint: Path, tmp_path: Path) -> None:
    model, _ = load_checkpoint(checkpoint)
    state = {legacy_name(k): v for k, v in model.state_dict().items()}
    assert "vit.encoder.layer.0.attention.attention.query.weight" in state
    assert "decoder.decoder_layers.0.output.dense.weight" in state
    (tmp_path / "config.json").write_text((checkpoint / "config.json").read_text())
    torch.save(state, tmp_path / "pytorch_model.bin")
    again, report = load_checkpoint(tmp_path)
    assert report.whole and report.renamed == 28 and len(report.matched) == 46
    windows, coords = torch.randn(2, 12, 20), np.random.default_rng(1).normal(size=(12, 3))
    with torch.no_grad():
        assert torch.equal(
            model.encode(windows, torch.tensor(coords), "cls"),
            again.encode(windows, torch.tensor(coords), "cls"),
        )


def test_not_a_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no config.json"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    save_file({"a": torch.ones(1)}, tmp_path / "model.safetensors")
    with pytest.raises(DataError, match="model_type 'bert'"):
        load_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    with pytest.raises(DataError, match="has no weights"):
        load_checkpoint(tmp_path)
