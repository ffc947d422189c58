"""fmri/image end to end on a miniature BOLD5000 copy, and the errors a user can cause."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from conftest import write_bold5000

from brainbench import api
from brainbench.data.sources.catalogue import check_dataset
from brainbench.errors import ConfigError, DataError

FAST = [
    "task_options.space=parcels",
    "seeds=[33]",
    "trainer.max_epochs=1",
    "trainer.progress_bar=false",
]


def run(path: Path, models: list[str], *extra: str):
    overrides = [f"data.path={path}", *FAST, *extra]
    return api.run(
        ["fmri/image"], models, dataset="bold5000", overrides=overrides, log=lambda _: None
    )


def test_bold5000_layout_runs_and_writes_records(bold5000):
    table = run(bold5000, ["ridge", "fmri_mlp"])
    assert set(table["model"]) == {"ridge", "fmri_mlp"}
    metrics = json.loads(next(Path("results/runs").rglob("ridge/**/metrics.json")).read_text())
    assert metrics["headline"]["name"] == "top5_subject"
    assert metrics["n_test"] == 2 * 6 * 2  # 2 subjects x 6 repeated images x 2 repeats
    assert metrics["metrics"]["top1_subject"] > 0.5  # the copy has a strong signal; chance 1/6
    assert "young_adult" in metrics["per_stage"]


def test_missing_folder_says_what_to_download(tmp_path):
    with pytest.raises(DataError, match="ds001499"):
        run(tmp_path / "nowhere", ["ridge"])


def test_model_window_mismatch_is_a_config_error(bold5000):
    with pytest.raises(ConfigError, match="model.n_trs"):
        run(bold5000, ["fmri_mlp"], "model.n_trs=2")


def test_stimulus_without_image(tmp_path, bold5000):
    copy = shutil.copytree(bold5000, tmp_path / "copy")
    next((copy / "stimuli").rglob("*.jpg")).unlink()
    with pytest.raises(DataError, match="has no image"):
        run(copy, ["ridge"])


def test_events_missing_the_stimulus_column(tmp_path, bold5000):
    copy = shutil.copytree(bold5000, tmp_path / "copy")
    events = next(copy.rglob("*_events.tsv"))
    events.write_text(events.read_text().replace("ImgName", "Image"))
    with pytest.raises(DataError, match="ImgName"):
        run(copy, ["ridge"])


def test_subjects_with_different_vertex_counts(tmp_path):
    root = write_bold5000(tmp_path / "gii", subjects=("CSI1",))
    for sub, n in (("A", 10), ("B", 12)):
        func = root / f"sub-{sub}" / "func"
        func.mkdir(parents=True)
        events = next(root.rglob("*_events.tsv"))
        shutil.copy(events, func / f"sub-{sub}_task-5000scenes_run-01_events.tsv")
        for hemi in ("L", "R"):
            arrays = [
                nib.gifti.GiftiDataArray(np.random.rand(n).astype(np.float32)) for _ in range(60)
            ]
            nib.save(
                nib.GiftiImage(darrays=arrays),
                func / f"sub-{sub}_task-5000scenes_run-01_hemi-{hemi}_bold.func.gii",
            )
    with pytest.raises(DataError, match="different numbers of features"):
        run(root, ["ridge"])


def test_prepared_data_is_not_shared_across_task_options(monkeypatch):
    spaces = ["mask", "parcels"]
    experiments = [
        api.resolve_config("fmri/image", "ridge", overrides=[f"task_options.space={s}"])
        for s in spaces
    ]
    seen = []
    runner = SimpleNamespace(
        prepare=lambda cfg, log: seen.append(cfg.task_options["space"]),
        run_experiment=lambda exp, prepared, force, log: None,
    )
    monkeypatch.setattr(api, "plan", lambda *a, **k: experiments)
    monkeypatch.setattr(api, "_runner", lambda spec: runner)
    monkeypatch.setattr(api, "report", lambda out, log, tasks=None: pd.DataFrame())
    api.run(["fmri/image"], ["ridge"], log=lambda _: None)
    assert seen == spaces


def test_datasets_check_knows_the_decoding_layout(tmp_path, bold5000):
    assert check_dataset("BOLD5000", bold5000) == []
    copy = shutil.copytree(bold5000, tmp_path / "copy")
    shutil.rmtree(copy / "stimuli")
    (problem,) = check_dataset("BOLD5000", copy)
    assert "no stimuli/ folder" in problem
