"""Pretrain from the CLI, then scratch vs finetune vs probe side by side on one leaderboard."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from brainbench.api import resolve_config, suite_plan
from brainbench.cli import main
from brainbench.errors import ConfigError
from brainbench.registry import MODELS
from brainbench.suites import load_suite, suite_names


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


SUITE = """
pretrain:
  mae3d_cnn: [max_steps=1000]     # ignored under --debug (30 steps)
tasks:
  mri/age:
    models: [ridge, mae3d_cnn, {model: mae3d_cnn, init: mae3d_cnn},
             {model: mae3d_probe, init: mae3d_cnn}]
    label_fractions: [0.5, 1.0]
"""


def test_suite_pretrains_then_runs_pretrained_scratch_and_baselines(tmp_path: Path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE)
    out = tmp_path / "results"
    args = ["run", "--suite", str(suite), "--debug", f"output_dir={out}", "trainer.max_epochs=1"]
    assert main(args) == 0
    pretrained = json.loads(next(out.glob("pretrained/mae3d_cnn-*/metrics.json")).read_text())
    assert pretrained["steps"] == 30
    board = pd.read_csv(out / "leaderboard.csv")
    rows = set(zip(board["model"], board["protocol"], board["label_fraction"], strict=True))
    for fraction in (0.5, 1.0):
        assert {
            ("ridge", "baseline", fraction),
            ("mae3d_cnn", "scratch", fraction),
            ("mae3d_cnn", "finetune", fraction),
            ("mae3d_probe", "linear_probe", fraction),
        } <= rows
    assert list(out.glob("label_efficiency_mri-age_*.png"))


def test_suite_settings_then_task_overrides_then_the_command_line(tmp_path: Path):
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "settings: [trainer.max_epochs=2, trainer.lr=0.01, preprocess.spacing=8]\n"
        "tasks:\n  mri/age:\n    models: [sfcn]\n"
        "    overrides: [trainer.max_epochs=3, trainer.batch_size=2]\n"
        "  mri/sex:\n    models: [sfcn]\n"
    )
    experiments = suite_plan(str(suite), overrides=["trainer.batch_size=5", "seeds=[1]"])
    trainer = {e.config.task: e.config.trainer for e in experiments}
    assert (trainer["mri/age"].max_epochs, trainer["mri/age"].batch_size) == (3, 5)
    assert (trainer["mri/sex"].max_epochs, trainer["mri/sex"].lr) == (2, 0.01)
    assert {e.config.preprocess.spacing for e in experiments} == {8.0}


@pytest.mark.parametrize("name", suite_names())
def test_builtin_suites_name_real_tasks_and_models_that_support_them(name: str):
    suite = load_suite(name)
    for task, entry in suite.tasks.items():
        for model in entry.entries():
            init = [f"model.init={model.init}"] if model.init else []
            overrides = [*suite.settings, *entry.overrides, *init]
            resolve_config(task, model.model, debug=True, overrides=overrides)  # or raises
    assert set(suite.pretrain) <= set(MODELS)


@pytest.mark.parametrize(
    "args, text, expected",
    [
        (["run", "--suite", "mrii"], None, "unknown suite 'mrii'. Did you mean 'mri'?"),
        (["run", "mri/age", "--suite", "mri"], None, "give tasks or --suite mri, not both"),
        (["run", "--suite", "/no/such/suite.yaml"], None, "/no/such/suite.yaml does not exist"),
        (
            ["run", "--suite", "SUITE"],
            "tasks:\n  mri/age:\n    models: [{model: sfcn, init: mae3d_cnn}]\n",
            "tasks.mri/age: init 'mae3d_cnn' is not in the pretrain section",
        ),
        (
            ["run", "--suite", "SUITE"],
            "pretrain:\n  mae3d_cnn: []\n  mae3d_unet: []\ntasks:\n  mri/seg:\n    models:\n"
            "      - {model: mae3d_unet, init: mae3d_cnn}\n"
            "      - {model: mae3d_unet, init: mae3d_unet}\n",
            "tasks.mri/seg: mae3d_unet is listed twice (mae3d_cnn, mae3d_unet)",
        ),
        (
            ["run", "--suite", "SUITE"],
            "tasks:\n  mri/age:\n    models: [sfcn, ridge, sfcn]\n",
            "tasks.mri/age: sfcn is listed twice (scratch, scratch)",
        ),
        (
            ["run", "--suite", "SUITE"],
            "tasks:\n  mri/age:\n    modles: [sfcn]\n",
            "tasks.mri/age.modles: Extra inputs are not permitted",
        ),
        (
            ["run", "--suite", "SUITE"],
            "settings: 5\ntasks:\n  mri/age:\n    models: [ridge]\n",
            "settings: Input should be a valid list",
        ),
        (
            ["run", "--suite", "SUITE"],
            "settings: [trainer.lrr=0.1]\ntasks:\n  mri/age:\n    models: [ridge]\n",
            "unknown config key 'trainer.lrr' (from suite file SUITE (settings))",
        ),
        (
            ["run", "--suite", "SUITE"],
            "tasks:\n  mri/age:\n    models: [ridge]\n    overrides: [trainer.lrr=0.1]\n",
            "'trainer.lrr' (from suite file SUITE (tasks.mri/age.overrides))",
        ),
    ],
)
def test_suite_mistakes_exit_2(args, text, expected, tmp_path, capsys):
    if text is not None:
        suite = tmp_path / "bad.yaml"
        suite.write_text(text)
        args = [str(suite) if a == "SUITE" else a for a in args]
        expected = expected.replace("SUITE", str(suite))
    assert main([*args, "--debug", f"output_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_a_suite_pretraining_mistake_names_the_suite_file_and_key(tmp_path: Path):
    suite = tmp_path / "bad.yaml"
    suite.write_text(
        "pretrain:\n  mae3d_cnn: [mask_ratoi=0.5]\n"
        "tasks:\n  mri/age:\n    models: [{model: mae3d_cnn, init: mae3d_cnn}]\n"
    )
    where = f"(from suite file {suite} (pretrain.mae3d_cnn))"
    with pytest.raises(ConfigError, match=re.escape(where)):
        suite_plan(str(suite), overrides=[f"output_dir={tmp_path}"])
    assert not (tmp_path / "pretrained").exists()
