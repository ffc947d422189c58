"""The command line: help, listings, and user mistakes -> clear message, exit 2, no traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from brainbench.cli import main


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "brainbench.cli", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=os.environ.copy(),
        timeout=300,
    )


@pytest.mark.parametrize(
    "args", [[], ["run"], ["mri"], ["synth"], ["report"], ["tasks"], ["models"], ["datasets"]]
)
def test_help_of_every_verb(args, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: brainbench" in out


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
        (["mri", "age", "--debug", "trainer.max_epoch=3"], "Did you mean 'max_epochs'?"),
        (["mri", "age", "--debug", "trainer.max_epochs=many"], "trainer.max_epochs"),
        (["mri", "age", "--dataset", "bids", "--debug"], "data.path"),
        (["mri", "age", "--debug", "--config", "/nonexistent.yaml"], "/nonexistent.yaml"),
        (["report", "/nonexistent-results"], "brainbench run"),
        (["synth", "--preset", "hugee"], "preset"),
        (["datasets", "check", "NOPE", "/tmp"], "unknown dataset 'NOPE'"),
    ],
)
def test_user_errors_exit_2_without_traceback(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainbench: error:")
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
