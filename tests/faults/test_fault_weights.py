"""Tampered run records given to predict: exit 2 naming the file, no traceback, no output."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file, save_file

from brainbench.cli import main
from brainbench.data.synth import ensure_cohort


@pytest.fixture(scope="module")
def ridge_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("weights")
    assert main(["mri", "age", "-m", "ridge", "--debug", f"output_dir={out}"]) == 0
    return next((out / "runs").rglob("seed33"))


def _resave(path: Path, change) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as handle:
        metadata = handle.metadata()
    arrays = load_file(str(path))
    change(arrays, metadata)
    save_file(arrays, str(path), metadata=metadata)


def _short_coef(arrays, metadata) -> None:
    arrays["coef"] = arrays["coef"][:5]


def _bad_header(arrays, metadata) -> None:
    metadata["brainbench"] = "{not json"


# case -> (how the copy of the record is tampered, text the error must hold)
CASES = {
    "weights-wrong-shape": (lambda run: _resave(run / "model.safetensors", _short_coef), "fit"),
    "weights-truncated": (
        lambda run: (run / "model.safetensors").write_bytes(
            (run / "model.safetensors").read_bytes()[:100]
        ),
        "model.safetensors",
    ),
    "weights-header-not-json": (
        lambda run: _resave(run / "model.safetensors", _bad_header),
        "model.safetensors",
    ),
    "config-not-yaml": (lambda run: (run / "config.yaml").write_text("a: [1,\n"), "not valid YAML"),
    "config-a-list": (lambda run: (run / "config.yaml").write_text("- 1\n- 2\n"), "mapping"),
    "config-wrong-types": (
        lambda run: (run / "config.yaml").write_text(json.dumps({"task": 3, "model": "x"})),
        "config.yaml",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_tampered_record_exits_2(ridge_run, tmp_path, capsys, case) -> None:
    run = tmp_path / "run"
    shutil.copytree(ridge_run, run)
    tamper, message = CASES[case]
    tamper(run)
    scan = next(ensure_cohort("debug", 0).glob("sub-*/anat/sub-*_T1w.nii.gz"))
    out = tmp_path / "out"
    assert main(["predict", str(run), str(scan), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
