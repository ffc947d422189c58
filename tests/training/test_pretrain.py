"""MAE pretraining on the debug cohort: artefacts, the test split untouched, resume, config."""

from __future__ import annotations

import json

import pytest
import torch

from brainbench.data.dataset import VolumeDataset
from brainbench.data.splits import dataset_splits
from brainbench.errors import ConfigError, DataError, UnknownNameError
from brainbench.models.base import read_meta
from brainbench.models.mae import load_encoder
from brainbench.models.mae3d_cnn import MAE3DConfig
from brainbench.training.pretrain import (
    PretrainConfig,
    build_pretrain_config,
    pretrain,
    site_weights,
)

TINY = {
    "data": {"preset": "debug"},
    "preprocess": {"spacing": 8.0, "shape": [20, 24, 20]},
    "model": {"width": 8, "depth": 1, "groups": 4},
    "trainer": {"batch_size": 4, "accelerator": "cpu", "progress_bar": False},
    "checkpoint_every": 2,
}


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tmp_path, **extra) -> PretrainConfig:
    layer = TINY | {"output_dir": str(tmp_path)} | extra
    return build_pretrain_config("mae3d_cnn", [("test", layer)])


def test_pretrain_writes_artefacts_resumes_and_never_reads_test(tmp_path, monkeypatch) -> None:
    loaded: set[str] = set()
    volume = VolumeDataset.volume

    def spy(self, i, rendering=0):
        loaded.add(self.records[i].key)
        return volume(self, i, rendering)

    monkeypatch.setattr(VolumeDataset, "volume", spy)
    config = _config(tmp_path, max_steps=4)
    logs: list[str] = []
    out = pretrain(config, log=logs.append)
    for name in ("model.safetensors", "config.json", "metrics.json", "reconstructions.png"):
        assert (out / name).is_file(), name
    assert read_meta(out / "model.safetensors")["model"]["width"] == 8
    assert json.loads((out / "config.json").read_text())["model"]["depth"] == 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 4 and metrics["psnr"] > 0 and metrics["per_stage"]
    assert metrics["mse"] == pytest.approx((metrics["mse_local"] + metrics["mse_global"]) / 2)
    assert (out / "checkpoints" / "last.ckpt").is_file()

    _, splits = dataset_splits(config.data, config.split, config.output_dir)
    assert loaded and not loaded & set(splits["test"])
    assert loaded <= set(splits["train"]) | set(splits["val"])

    logs.clear()
    pretrain(config.model_copy(update={"max_steps": 6}), log=logs.append)
    assert any("resuming" in line for line in logs)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steps"] == 6 and metrics["volumes_per_s"] > 0
    assert metrics["effective_batch_size"] == 4 and metrics["world_size"] == 1

    logs.clear()
    pretrain(config.model_copy(update={"max_steps": 6}), log=logs.append)  # nothing left to do
    assert any("already trained to step 6" in line for line in logs)
    assert json.loads((out / "metrics.json").read_text()) == metrics

    last = out / "checkpoints" / "last.ckpt"
    intact = last.read_bytes()
    last.write_bytes(intact[: len(intact) // 3])  # a disk that filled up while saving
    with pytest.raises(DataError, match="last.ckpt is damaged.*delete it"):
        pretrain(config.model_copy(update={"max_steps": 8}), log=logs.append)
    assert (out / "model.safetensors").is_file()  # nothing of the earlier run deleted
    last.write_bytes(intact)

    wider = MAE3DConfig(width=16, depth=1, groups=4)
    with pytest.raises(ConfigError, match="another config.*model.width: 8 -> 16"):
        pretrain(config.model_copy(update={"model": wider, "max_steps": 8}), log=logs.append)
    faster = config.trainer.model_copy(update={"lr": config.trainer.lr * 2})
    logged = sorted(p.name for p in out.rglob("*.csv"))
    with pytest.raises(ConfigError, match="trainer.lr"):  # it used to keep the old model silently
        pretrain(config.model_copy(update={"trainer": faster, "max_steps": 8}), log=logs.append)
    assert sorted(p.name for p in out.rglob("*.csv")) == logged  # and delete its logs
    assert json.loads((out / "metrics.json").read_text()) == metrics

    older = json.loads((out / "config.json").read_text())  # before a setting existed
    del older["augment"]["warp_probability"]
    (out / "config.json").write_text(json.dumps(older))
    with pytest.raises(ConfigError, match=r"warp_probability: \(absent: an older brainbench\)"):
        pretrain(config.model_copy(update={"max_steps": 6}), log=logs.append)

    (out / "config.json").write_text('{"model": ')  # cut short
    with pytest.raises(DataError, match=r"config.json is unreadable.*delete"):
        pretrain(config.model_copy(update={"max_steps": 6}), log=logs.append)
    assert json.loads((out / "metrics.json").read_text()) == metrics


def test_site_weights_draw_sites_uniformly(tmp_path) -> None:
    config = _config(tmp_path)
    records, splits = dataset_splits(config.data, config.split, config.output_dir)
    train = [r for r in records if r.key in splits["train"]]
    dataset = VolumeDataset(train, ["T1w"], None, config.preprocess, cache=None)
    weights = site_weights(dataset)
    per_site: dict[str, float] = {}
    for record, weight in zip(train, weights, strict=True):
        per_site[record.site] = per_site.get(record.site, 0.0) + weight
    assert len(per_site) > 1
    assert all(total == pytest.approx(1.0) for total in per_site.values())


def test_config_errors(tmp_path) -> None:
    partial = build_pretrain_config("mae3d_cnn", [("test", {"trainer": {"lr": 0.01}})])
    assert partial.trainer.batch_size == 4 and partial.trainer.max_epochs == 20  # defaults kept
    with pytest.raises(ConfigError, match=r"model\.widht.*from test.*Did you mean 'model\.width'"):
        build_pretrain_config("mae3d_cnn", [("test", {"model": {"widht": 8}})])
    with pytest.raises(UnknownNameError, match="mae3d_cnn"):
        build_pretrain_config("mae3d_cn", [])
    with pytest.raises(ConfigError, match=r"crop_size=24 exceeds .*preprocess\.shape"):
        pretrain(_config(tmp_path, crop_size=24))
    with pytest.raises(ConfigError, match=r"local_patch=6 must be a multiple of 4"):
        pretrain(_config(tmp_path, local_patch=6))


def test_vit_pretrains_and_its_encoder_is_probed(tmp_path) -> None:
    vit = {
        "width": 12,
        "depth": 1,
        "heads": 2,
        "decoder_width": 6,
        "decoder_depth": 1,
        "decoder_heads": 1,
    }
    layer = TINY | {"output_dir": str(tmp_path), "max_steps": 2, "model": vit}
    out = pretrain(build_pretrain_config("mae3d_vit", [("test", layer)]), log=lambda _: None)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "mae3d_vit" and metrics["psnr_local"] > 0
    assert json.loads((out / "config.json").read_text())["crop_size"] == 16
    encoder = load_encoder(out)
    assert encoder.encode(torch.rand(2, 1, 20, 24, 20)).shape == (2, 12)


def test_max_steps_outlasts_max_epochs(tmp_path) -> None:
    trainer = TINY["trainer"] | {"max_epochs": 1}  # the debug cohort: 7 steps per epoch
    out = pretrain(_config(tmp_path, max_steps=9, trainer=trainer), log=lambda _: None)
    assert json.loads((out / "metrics.json").read_text())["steps"] == 9
    last = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 9  # the final state, not the last multiple of checkpoint_every
