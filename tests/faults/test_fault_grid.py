"""Grid faults: the default `brainbench grid multimodal` starts; binary targets need no setting;
runs made with different configs are never averaged into one cell."""

from __future__ import annotations

import pandas as pd
import pytest

import brainbench.grid
from brainbench.cli import main
from brainbench.data.records import SubjectRecord
from brainbench.grid import write_grid_csv
from brainbench.results.grid_dashboard import grid_section
from brainbench.results.record import run_dir, write_record
from brainbench.spec import REPORTS_LOCK
from brainbench.tasks import get_task
from brainbench.tasks.multimodal import MultimodalOptions, target_coder


class Started(Exception):
    """Raised in place of running the grid's jobs: every check before them passed."""


@pytest.mark.parametrize(
    "values",
    [[0, 1], [0.0, 1.0], ["0", "1"], ["0.0", "1.0"], [False, True], [0, 1.0]],
    ids=["int", "float", "text", "text-float", "bool", "mixed"],
)
def test_binary_zero_one_target_needs_no_positive(values):
    records = [
        SubjectRecord(str(i), 30.0, "F", "x", phenotypes={"dementia": values[i % 2]})
        for i in range(10)
    ]
    code = target_coder(get_task("multimodal/dementia"), MultimodalOptions(), records)
    assert [code(r) for r in records[:2]] == [0.0, 1.0]


def test_default_grid_starts(monkeypatch, capsys):
    def run_jobs(todo, **_):
        raise Started(len(todo))

    monkeypatch.setattr(brainbench.grid, "run_jobs", run_jobs)
    with pytest.raises(Started):
        main(["grid", "multimodal", "--debug"])
    assert "error" not in capsys.readouterr().err


def _grid_record(out, seed: int, digest: str | None, y_pred: list[float]) -> None:
    """A fusion run record of multimodal/age on T1w, as the grid's runner writes it."""
    head = {"name": "r2", "value": 0.5, "higher_is_better": True}
    metrics = {"task": "multimodal/age", "task_version": 1, "model": "fusion", "seed": seed}
    metrics |= {"protocol": "scratch", "dataset": "synth-debug-seed0", "headline": head}
    metrics |= {"metrics": {"r2": 0.5, "pearson_r": 0.9}, "per_stage": {}, "n_train": 20}
    metrics |= {"n_val": 5, "n_test": 6, "timings": {"fit_s": 1.0, "predict_s": 0.1}}
    metrics |= {"config_digest": digest} if digest else {}
    config = {"data": {"dataset": "synth", "preset": "debug"}, "model_params": {"inputs": ["T1w"]}}
    y_true = [20.0, 30, 40, 50, 60, 70]
    predictions = pd.DataFrame(
        {"subject": [f"s{i}" for i in range(6)], "y_true": y_true, "y_pred": y_pred}
    )
    where = run_dir(out, "multimodal/age", "fusion", seed, "scratch_T1w")
    write_record(where, config=config, metrics=metrics, predictions=predictions)


# digests of the seeds 33, 34, 35 -> the (config, n_seeds) cells expected
MIXED = {
    "max-epochs-changed": (["aaaa1111", "aaaa1111", "bbbb2222"], {"aaaa1111": 2, "bbbb2222": 1}),
    "older-record-without-digest": (["aaaa1111", None, None], {"aaaa1111": 1, "unknown": 2}),
    "all-alike": (["aaaa1111"] * 3, {"": 3}),
}


@pytest.mark.parametrize("case", list(MIXED))
def test_grid_never_averages_different_configs(tmp_path, case):
    digests, expected = MIXED[case]
    for i, digest in enumerate(digests):
        _grid_record(tmp_path, 33 + i, digest, [25.0, 31, 38 + i, 52, 59, 71 - 3 * i])
    cells = write_grid_csv(tmp_path)
    assert dict(zip(cells["config"], cells["n_seeds"], strict=True)) == expected
    runs = pd.read_csv(tmp_path / "grid" / "multimodal.csv", keep_default_na=False)
    assert sorted(runs["config"]) == sorted(c for c, n in expected.items() for _ in range(n))
    page = grid_section(tmp_path)  # the dashboard shows each config apart too
    assert all((f"@{c}" in page) == bool(c) for c in expected)


def test_grid_csv_waits_for_a_concurrent_writer(tmp_path, waits_for_lock):
    _grid_record(tmp_path, 33, "aaaa1111", [25.0, 31, 38, 52, 59, 71])
    waits_for_lock(tmp_path / REPORTS_LOCK, lambda: write_grid_csv(tmp_path))
    assert (tmp_path / "grid" / "multimodal.csv").is_file()
