"""The command line: help, listings, and user mistakes -> clear message, exit 2, no traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel

from brainbench import api
from brainbench.cli import main
from brainbench.config import ExperimentConfig, key_summary


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "brainbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=300,
    )


@pytest.mark.parametrize(
    "args",
    [[], ["run"], ["mri"], ["mri", "age"], ["pretrain"], ["synth"], ["report"], ["tasks"],
     ["models"], ["datasets"]],
)  # fmt: skip
def test_help_of_every_verb(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: brainbench" in out


def _help(capsys, *args: str) -> str:
    with pytest.raises(SystemExit):
        main([*args, "--help"])
    return capsys.readouterr().out


def test_help_of_every_modality(capsys):  # hba1c's "(%)" once broke `multimodal --help`
    for modality in sorted({spec.name.partition("/")[0] for spec in api.list_tasks()}):
        assert "usage: brainbench" in _help(capsys, modality)


def test_pretrain_help_lists_every_pretrainable_model(capsys):
    out = _help(capsys, "pretrain")
    assert set(api.pretrain_configs()) >= {"mae3d_cnn", "mae3d_vit", "mae2d", "brainlm"}
    for name, config in api.pretrain_configs().items():
        assert name in out.split("config keys")[0]
        assert key_summary(config, open_sections=("model",)) in out


def test_each_task_help_says_what_it_measures(capsys):
    for spec in api.list_tasks():
        modality, _, task = spec.name.partition("/")
        out = " ".join(_help(capsys, modality, task).split())  # unwrapped
        assert " ".join(spec.description.split()) in out
        assert f"{spec.headline} (the headline;" in out
        assert all(m in out for m in (*spec.metrics, *spec.models)), spec.name


def test_help_key_list_is_the_config(capsys):
    """Every section and top-level key of the experiment config is in --help, and no other."""
    out = _help(capsys, "run").split("config keys")[1]
    listed = dict(re.findall(r"(\w+)\.\{([^}]*)\}", out))
    for name, field in ExperimentConfig.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseModel):
            keys = [key.strip() for key in listed.pop(name).split(",")]
            assert keys == list(section.model_fields), name
        else:
            assert re.search(rf"\b{name}(\.<parameter>)?\b", out), name
    assert not listed


def test_listings(capsys):
    assert main(["tasks"]) == 0
    assert "mri/age" in capsys.readouterr().out
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("chance", "ridge", "sfcn"))
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("synth", "bids", "manifest", "ABIDE", "UK Biobank"))


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "mri/agee", "--debug"], "unknown task 'mri/agee'. Did you mean 'mri/age'?"),
        (["mri", "age", "-m", "sfnc", "--debug"], "unknown model 'sfnc'. Did you mean 'sfcn'?"),
        (["mri", "age", "--dataset", "bidz", "--debug"], "unknown dataset 'bidz'"),
        (["mri", "age", "--debug", "trainer.max_epoch=3"], "Did you mean 'trainer.max_epochs'?"),
        (["mri", "age", "--debug", "max_epochs=3"], "Did you mean 'trainer.max_epochs'?"),
        (["mri", "agee"], "unknown task 'agee'. Did you mean 'age'?"),
        (["mrii", "age"], "unknown command 'mrii'. Did you mean 'mri'?"),
        (["mri", "age", "--cluster", "slrum"], "unknown cluster 'slrum'. Did you mean 'slurm'?"),
        (["pretrain", "brainlmm"], "pretrainable model 'brainlmm'. Did you mean 'brainlm'?"),
        (["mri", "age", "--debug", "trainer.max_epochs=many"], "trainer.max_epochs"),
        (["mri", "age", "--dataset", "bids", "--debug"], "data.path"),
        (["mri", "age", "--debug", "--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
        (["report", "/nonexistent-results"], "brainbench run"),
        (["synth", "--preset", "hugee"], "preset"),
        (["datasets", "check", "NOPE", "/tmp"], "unknown dataset 'NOPE'"),
        (["mri", "seg", "-m", "mae3d_unet", "--debug", "model.decoder=reference"], "model.decoder"),
        (["pretrain", "mae3d_unet", "--debug", "model.decoder=reference"], "model.decoder"),
    ],
)
def test_user_errors_exit_2_without_traceback(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainbench: error:") and err.count("\n") == 1  # one line
    assert expected in err
    assert "Traceback" not in err


def test_console_entry_point_exits_2_on_error():
    proc = run_cli("run", "mri/nope")
    assert proc.returncode == 2
    assert "unknown task 'mri/nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unwritable_results_dir_is_refused_before_any_work(tmp_path: Path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["mri", "age", "-m", "chance", "--debug", f"output_dir={blocker}/results"]) == 2
    err = capsys.readouterr().err
    assert str(blocker) in err and "Traceback" not in err
