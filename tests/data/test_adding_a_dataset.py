"""docs/adding_a_dataset.md, done exactly as written: its source file and YAML, then a run."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from brainbench import registry
from brainbench.cli import main

DOC = Path(__file__).parents[2] / "docs" / "adding_a_dataset.md"
N_SUBJECTS, N_TIMES, N_PARCELS = 24, 80, 12


def _block(language: str) -> str:
    (block,) = re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)
    return block


@pytest.fixture
def toy_root(tmp_path: Path) -> Path:
    """The toy dataset the page describes, with an age signal in the parcels' coupling."""
    rng = np.random.default_rng(0)
    root = tmp_path / "toyfmri"
    (root / "series").mkdir(parents=True)
    ages = rng.uniform(20, 80, N_SUBJECTS)
    ids = [f"sub-{i:02d}" for i in range(N_SUBJECTS)]
    sexes = ["F", "M"] * (N_SUBJECTS // 2)
    table = pd.DataFrame({"participant_id": ids, "age": ages.round(1), "sex": sexes})
    table.to_csv(root / "participants.tsv", sep="\t", index=False)
    for pid, age in zip(ids, ages, strict=True):
        shared = rng.normal(size=(N_TIMES, 1)) * age / 40
        series = shared + rng.normal(size=(N_TIMES, N_PARCELS))
        np.save(root / "series" / f"{pid}.npy", series.astype(np.float32))
    np.savetxt(root / "coords.tsv", rng.uniform(-60, 60, (N_PARCELS, 3)))
    return root


@pytest.fixture
def toy_source(tmp_path: Path):
    """The page's file, imported the way brainbench imports data/sources/toyfmri.py."""
    registry.load_plugins()
    saved = dict(registry.SOURCES)
    path = tmp_path / "toyfmri.py"
    path.write_text(_block("python"))
    spec = importlib.util.spec_from_file_location("toyfmri", path)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    yield
    registry.SOURCES.clear()
    registry.SOURCES.update(saved)


def test_the_page_adds_a_dataset_in_one_file_and_a_yaml(toy_root, toy_source, tmp_path, capsys):
    config = yaml.safe_load(_block("yaml"))
    assert config["data"]["dataset"] == "toyfmri"
    config["data"]["path"] = str(toy_root)
    config_file = tmp_path / "toyfmri.yaml"
    config_file.write_text(yaml.safe_dump(config))
    assert main(["datasets"]) == 0
    assert "toyfmri" in capsys.readouterr().out
    args = ["fmri", "age", "-m", "connectome", "--config", str(config_file), "seeds=[33]"]
    assert main([*args, f"output_dir={tmp_path / 'results'}"]) == 0
    (record,) = (tmp_path / "results" / "runs" / "fmri-age").rglob("metrics.json")
    metrics = json.loads(record.read_text())
    assert metrics["dataset"].startswith("toyfmri-toyfmri-") and metrics["n_test"] >= 2
    assert not (tmp_path / "results" / "oracle").exists()  # real data: no oracle ceiling
