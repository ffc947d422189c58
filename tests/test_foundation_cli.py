"""Pretrain from the CLI, then scratch vs finetune vs probe side by side on one leaderboard."""

import json
from pathlib import Path

import pandas as pd
import pytest

from brainbench.cli import main


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrain")
    assert main(["pretrain", "mae3d_cnn", "--debug", f"output_dir={out}", "max_steps=10"]) == 0
    (folder,) = (out / "pretrained").iterdir()
    return folder


def test_pretrain_writes_weights_config_metrics_and_figure(pretrained: Path):
    for name in ("model.safetensors", "config.json", "metrics.json", "reconstructions.png"):
        assert (pretrained / name).is_file()
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert metrics["psnr"] > 0 and metrics["n"] > 0 and metrics["per_stage"]


def test_scratch_finetune_and_probe_are_separate_leaderboard_rows(pretrained: Path):
    out = pretrained.parent.parent  # the same results folder as the pretrained model
    common = ["--debug", f"output_dir={out}", "trainer.max_epochs=1"]
    assert main(["mri", "age", "-m", "mae3d_cnn", *common]) == 0
    assert main(["mri", "age", "-m", "mae3d_cnn", *common, f"model.init={pretrained}"]) == 0
    assert main(["mri", "age", "-m", "mae3d_probe", *common, f"model.init={pretrained}"]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    rows = set(zip(board["model"], board["protocol"], strict=True))
    assert {
        ("mae3d_cnn", "scratch"),
        ("mae3d_cnn", "finetune"),
        ("mae3d_probe", "linear_probe"),
    } <= rows
    finetune = next((out / "runs").rglob("finetune_*/seed33/metrics.json"))
    assert json.loads(finetune.read_text())["training"]["matched"] > 0


@pytest.mark.parametrize(
    "args, expected",
    [
        (["pretrain", "mae3d_vitt", "--debug"], "unknown pretrainable model 'mae3d_vitt'"),
        (["pretrain", "mae3d_cnn", "--debug", "mask_ratoi=0.5"], "Did you mean 'mask_ratio'?"),
        (["pretrain", "mae3d_cnn", "--debug", "--dataset", "nope"], "unknown dataset 'nope'"),
        (["mri", "age", "-m", "mae3d_cnn", "--debug", "model.init=/no/such/dir"], "/no/such/dir"),
    ],
)
def test_pretrain_and_finetune_mistakes_exit_2(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
