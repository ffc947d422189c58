"""Datasets too small to split: models that need no training run on every subject as a test
subject; models that train, and tasks that always train, are refused with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from brainbench.cli import main
from brainbench.config import DataConfig, SplitConfig
from brainbench.data.splits import dataset_splits
from brainbench.data.timeseries import write_series
from brainbench.errors import DataError
from brainbench.registry import get_model
from brainbench.tasks import get_task

NETWORKS, PER_NETWORK, TIME = 3, 5, 120


def _bids(root: Path, subjects: int, sessions: tuple[str | None, ...] = (None,)) -> Path:
    """`subjects` adults with parcel series of 3 clear networks (and an atlas table)."""
    rng = np.random.default_rng(0)
    fmri = root / "derivatives" / "fmri"
    fmri.mkdir(parents=True)
    rows = ["index\tx\ty\tz\tnetwork"]
    for p in range(NETWORKS * PER_NETWORK):
        rows.append(f"{p + 1}\t{rng.normal() * 40:.1f}\t{p * 3.0}\t{p % 4 * 5.0}\tnet{p // 5}")
    (fmri / "atlas.tsv").write_text("\n".join(rows) + "\n")
    table = ["participant_id\tage\tsex"]
    for s in range(subjects):
        sub = f"sub-{s:02d}"
        table.append(f"{sub}\t{30 + s}\tF")
        for ses in sessions:
            folder = root / sub / (f"ses-{ses}" if ses else "") / "anat"
            folder.mkdir(parents=True)
            run = fmri / sub / (f"ses-{ses}" if ses else "") / "func"
            shared = rng.normal(size=(TIME, NETWORKS)).repeat(PER_NETWORK, axis=1)
            write_series(
                run / f"{sub}_task-rest_timeseries.npy",
                shared + rng.normal(size=shared.shape) * 0.5,
            )
    (root / "participants.tsv").write_text("\n".join(table) + "\n")
    return root


def _args(task: str, model: str, root: Path, out: Path) -> list[str]:
    return ["fmri", task, "-m", model, "--dataset", "bids", f"data.path={root}",
            "task_options.window=40", "seeds=[33]", f"output_dir={out}"]  # fmt: skip


@pytest.mark.parametrize(("task", "model"), [("networks", "connectome"), ("recon", "parcel_mean")])
def test_one_subject_without_training(tmp_path: Path, task: str, model: str) -> None:
    root = _bids(tmp_path / "bids", 1)
    assert main(_args(task, model, root, tmp_path / "out")) == 0
    (record,) = (tmp_path / "out" / "runs").rglob("metrics.json")
    metrics = json.loads(record.read_text())
    assert (metrics["n_train"], metrics["n_val"], metrics["n_test"]) == (0, 0, 1)
    if task == "networks":
        assert metrics["metrics"]["ari"] > 0.9  # three clear networks, from one run
    assert not (tmp_path / "out" / "splits").exists()  # nothing was split


def test_model_that_trains_is_refused(tmp_path: Path, capsys) -> None:
    root = _bids(tmp_path / "bids", 3)
    assert main(_args("recon", "conditional_gaussian", root, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "none are left to train conditional_gaussian" in err and "Traceback" not in err
    assert not list((tmp_path / "out").rglob("metrics.json"))


def test_task_that_trains_is_refused(tmp_path: Path, capsys) -> None:
    root = _bids(tmp_path / "bids", 4, sessions=("1", "2", "3"))
    assert main(_args("age", "connectome", root, tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "has 4 subjects, 12 sessions; at least 10 subjects" in err and "Traceback" not in err


def test_sessions_do_not_count_as_subjects(tmp_path: Path) -> None:
    data = DataConfig(dataset="bids", path=_bids(tmp_path / "bids", 5, sessions=("1", "2")))
    with pytest.raises(DataError, match="5 subjects, 10 sessions"):
        dataset_splits(data, SplitConfig(), tmp_path)
    records, splits = dataset_splits(data, SplitConfig(), tmp_path, training=False)
    assert (splits["train"], splits["val"], len(splits["test"])) == ([], [], 10)


@pytest.mark.parametrize(
    ("model", "task", "params", "learns"),
    [
        ("connectome", "fmri/networks", {}, False),
        ("connectome", "fmri/age", {}, True),
        ("chance", "fmri/recon", {}, False),
        ("chance", "mri/age", {}, True),
        ("parcel_mean", "fmri/recon", {}, False),
        ("conditional_gaussian", "fmri/recon", {}, True),
        ("brainlm", "fmri/networks", {}, True),
        ("brainlm", "fmri/networks", {"init": "pretrained"}, False),
        ("brainlm", "fmri/age", {"init": "pretrained"}, True),
        ("ridge", "mri/age", {}, True),
    ],
)
def test_learns_capability(model: str, task: str, params: dict, learns: bool) -> None:
    entry = get_model(model)
    assert entry.learns(entry.config_cls(**params), get_task(task)) is learns
