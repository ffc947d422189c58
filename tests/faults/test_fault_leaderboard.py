"""Leaderboard faults: seeds run with different configs are never averaged together."""

from __future__ import annotations

import pandas as pd
import pytest

from brainbench.results.leaderboard import build_leaderboard, write_reports
from brainbench.results.record import run_dir, write_record
from brainbench.spec import REPORTS_LOCK


def _record(seed: int, mae: float, digest: str | None) -> dict:
    head = {"name": "mae", "value": mae, "higher_is_better": False}
    record = {"task": "mri/age", "task_version": 1, "model": "ridge", "protocol": "baseline"}
    record |= {"seed": seed, "dataset": "synth-debug", "headline": head, "metrics": {"mae": mae}}
    record |= {"per_stage": {"child": {"mae": mae, "n": 4}}, "n_train": 20, "n_val": 5}
    record |= {"n_test": 10, "timings": {"fit_s": 1.0, "predict_s": 0.1, "total_s": 1.1}}
    return record | ({"config_digest": digest} if digest else {})


# digests of the seeds 33, 34, 35 -> the (config, n_seeds, mean) rows expected
CASES = {
    "max-epochs-changed": (["aaaa1111", "aaaa1111", "bbbb2222"], {"aaaa1111": 2, "bbbb2222": 1}),
    "older-record-without-digest": (["aaaa1111", None, None], {"aaaa1111": 1, "unknown": 2}),
    "all-alike": (["aaaa1111"] * 3, {"": 3}),
}


@pytest.mark.parametrize("case", list(CASES))
def test_different_configs_are_separate_rows(tmp_path, case):
    digests, expected = CASES[case]
    records = [_record(33 + i, 5.0 + 10 * i, d) for i, d in enumerate(digests)]
    table = build_leaderboard(records)
    assert dict(zip(table.get("config", [""]), table["n_seeds"], strict=True)) == expected
    for record in records:
        where = run_dir(tmp_path, "mri/age", "ridge", record["seed"], "baseline")
        write_record(where, config={}, metrics=record, predictions=pd.DataFrame({"y": [1.0]}))
    table, paths = write_reports(tmp_path)
    assert len(table) == len(expected)
    markdown = paths["markdown"].read_text()
    assert all(f"config {c}" in markdown for c in expected if c)


def test_reports_wait_for_a_concurrent_writer(tmp_path, waits_for_lock):
    """Two runs finishing at once: the second reads the records once the first has written."""
    record = _record(33, 5.0, "aaaa1111")
    where = run_dir(tmp_path, "mri/age", "ridge", 33, "baseline")
    write_record(where, config={}, metrics=record, predictions=pd.DataFrame({"y": [1.0]}))
    waits_for_lock(tmp_path / REPORTS_LOCK, lambda: write_reports(tmp_path))
    assert (tmp_path / "leaderboard.md").is_file()
