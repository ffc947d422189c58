"""A third-party plugin (tests/interfaces/plugin) registers a model, task and source.

The test "installs" it the way pip does: a dist-info folder with entry_points.txt on sys.path,
so importlib.metadata finds it. check-model validates the plugin model.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from brainbench import api, registry
from brainbench.cli import main
from brainbench.errors import BrainbenchError

PLUGIN = Path(__file__).parent / "plugin"


def _install(root: Path, name: str, entry_points: str) -> None:
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)


@pytest.fixture
def fresh_registry(monkeypatch):
    """The registries, restored after the test to what brainbench itself registers."""
    registry.load_plugins()
    saved = [(table, dict(table)) for table in (registry.MODELS, registry.SOURCES)]
    yield monkeypatch
    for table, before in saved:
        table.clear()
        table.update(before)


def _with_plugin(monkeypatch, tmp_path: Path, name: str, entry_points: str) -> None:
    site = tmp_path / "site"
    _install(site, name, entry_points)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(PLUGIN))
    monkeypatch.setattr(registry, "_loaded", False)
    # built-in modules are imported already: reloading only runs the entry points
    monkeypatch.setattr(registry, "BUILTIN_PACKAGES", ())


TOY = """[brainbench.models]
toy = brainbench_toyplugin.models
[brainbench.sources]
toy = brainbench_toyplugin.sources
[brainbench.tasks]
toy = brainbench_toyplugin.tasks
"""


def test_plugin_model_task_and_source_appear_and_run(fresh_registry, tmp_path, capsys) -> None:
    _with_plugin(fresh_registry, tmp_path, "brainbench_toyplugin", TOY)
    assert main(["models"]) == 0
    assert "toy_linear" in capsys.readouterr().out
    assert main(["tasks"]) == 0
    assert "mri/toy_age" in capsys.readouterr().out
    assert main(["datasets"]) == 0
    assert "toy_synth" in capsys.readouterr().out

    overrides = ["trainer.max_epochs=1", "trainer.progress_bar=false", "output_dir=out"]
    table = api.run(
        ["mri/toy_age"], None, dataset="toy_synth", debug=True, overrides=overrides, log=print
    )
    row = table[table["model"] == "toy_linear"].iloc[0]
    assert row["task"] == "mri/toy_age" and row["headline_mean"] > 0
    assert list(Path("out/runs/mri-toy_age/toy_linear").glob("*/seed33/model.safetensors"))

    assert main(["check-model", "toy_linear"]) == 0
    assert "passed 3 checks" in capsys.readouterr().out


def test_plugin_taking_a_used_name_is_refused(fresh_registry, tmp_path) -> None:
    taken = "[brainbench.models]\ntaken = brainbench_taken\n"
    _with_plugin(fresh_registry, tmp_path, "brainbench_taken", taken)
    with pytest.raises(BrainbenchError, match=r"plugin brainbench_taken .*'sfcn' is registered"):
        api.list_models()
