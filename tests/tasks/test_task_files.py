"""Task YAML parsing: required keys, kinds and runner modules are checked with clear errors."""

from pathlib import Path

import pytest

from brainbench.errors import ConfigError
from brainbench.tasks import _parse, all_tasks

BASE = """name: demo/x
description: d
kind: {kind}
inputs: [T1w]
target: age
headline: mae
metrics: [mae]
models: [ridge]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "x.yaml"
    path.write_text(text)
    return path


def test_default_runner_follows_kind(tmp_path):
    assert _parse(_write(tmp_path, BASE.format(kind="regression"))).runner.endswith("supervised")
    assert _parse(_write(tmp_path, BASE.format(kind="synthesis"))).runner.endswith("voxelwise")


@pytest.mark.parametrize(
    "text, needle",
    [
        (BASE.format(kind="regression") + "runner: nowhere\n", "brainbench.tasks.nowhere"),
        (BASE.format(kind="telepathy"), "kind must be one of"),
        (BASE.format(kind="regression") + "colour: red\n", "unknown keys ['colour']"),
        (BASE.format(kind="regression").replace("headline: mae\n", ""), "'headline'"),
        (BASE.format(kind="regression") + "model_config: [unet]\n", "model_config must map"),
        (BASE.format(kind="regression") + "model_config: {ridge: 3}\n", "model_config must map"),
        (BASE.format(kind="regression") + "debug: [1]\n", "debug must be a mapping"),
    ],
)
def test_bad_task_file_names_the_file_and_key(tmp_path, text, needle):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        _parse(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_every_builtin_task_has_an_importable_runner():
    import importlib

    for spec in all_tasks().values():
        module = importlib.import_module(spec.runner)
        assert callable(module.prepare) and callable(module.run_experiment)
