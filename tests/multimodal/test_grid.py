"""The grid: one record per run, the CSV, resuming, the target graph and the utility model."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import r2_score, roc_auc_score

from brainbench import api
from brainbench.data.records import SubjectRecord
from brainbench.grid import combinations
from brainbench.results.utility import utility_table, write_utility


def test_grid_csv_has_one_row_per_run_with_metrics_and_flags(grid_dir):
    table = pd.read_csv(grid_dir / "grid" / "multimodal.csv")
    assert len(table) == 6
    assert set(table["inputs"]) == {"T1w", "metadata", "T1w+metadata"}
    assert set(table["target"]) == {"age", "handedness"}
    row = table[(table["target"] == "age") & (table["inputs"] == "T1w+metadata")].iloc[0]
    assert (row["uses_T1w"], row["uses_metadata"], row["uses_FLAIR"]) == ("yes", "yes", "no")
    assert row["domain"] == "constitutional" and row["train_s"] > 0
    for _, r in table.iterrows():  # metrics agree with scikit-learn on the saved predictions
        pred = pd.read_csv(os.path.join(r["path"], "predictions.csv"))
        if r["target"] == "age":
            assert r["r2"] == pytest.approx(r2_score(pred["y_true"], pred["y_pred"]))
        elif pred["y_true"].nunique() == 2:
            assert r["auroc"] == pytest.approx(roc_auc_score(pred["y_true"], pred["y_pred"]))


def test_metadata_withholds_the_targets_domain(grid_dir):
    run = next((grid_dir / "runs").glob("multimodal-handedness/fusion/*metadata*/seed*"))
    assert (run / "metrics.json").is_file()
    from brainbench.config import DataConfig
    from brainbench.data.sources.synth import SynthSource
    from brainbench.tasks.multimodal import MultimodalOptions, metadata_columns

    record = SubjectRecord(
        "1", 30.0, "F", "x", phenotypes={"cognition": 99, "migraine": 0, "weight": 70}
    )
    domains = SynthSource(DataConfig()).column_domains()
    columns = metadata_columns("handedness", MultimodalOptions(), [record], domains)
    assert "age" not in columns and "weight" not in columns and "sex" not in columns
    assert "cognition" in columns and "migraine" in columns


def test_target_graph_has_mutual_information_edges(grid_dir):
    graph = json.loads((grid_dir / "grid" / "targets.json").read_text())
    assert {n["target"] for n in graph["nodes"]} == {"age", "handedness"}
    assert graph["edges"][0]["mi"] >= 0 and graph["edges"][0]["n"] >= 10


def test_rerun_skips_finished_runs_and_redoes_half_finished_ones(grid_dir, quick, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(grid_dir, copy)
    runs = sorted((copy / "runs").rglob("metrics.json"))
    stamps = {p: p.stat().st_mtime_ns for p in runs}
    (runs[0]).unlink()  # a run that died before its record was complete
    lines: list[str] = []
    api.grid(
        ["age", "handedness"],
        ["T1w", "metadata"],
        debug=True,
        overrides=[*quick, f"output_dir={copy}"],
        log=lines.append,
    )
    assert "grid: 6 runs, 5 finished already, 1 to run" in lines
    assert runs[0].is_file()
    assert all(p.stat().st_mtime_ns == stamps[p] for p in runs[1:])
    assert len(list((copy / "runs").rglob("metrics.json"))) == 6


def test_combinations_are_every_non_empty_subset():
    assert combinations(["metadata", "T1w"]) == [("T1w",), ("metadata",), ("T1w", "metadata")]
    assert len(combinations(["T1w", "FLAIR", "dwi", "connectivity", "metadata"])) == 31


def test_utility_finds_the_input_that_helps():
    rng = np.random.default_rng(0)
    rows = []
    for t, base in enumerate([0.1, 0.3, 0.2, 0.4]):
        for combo in combinations(["T1w", "FLAIR", "metadata"]):
            for _ in range(2):
                skill = base + 0.4 * ("T1w" in combo) + rng.normal(0, 0.03)
                flags = {
                    f"uses_{i}": "yes" if i in combo else "no" for i in ["T1w", "FLAIR", "metadata"]
                }
                rows.append({"target": f"t{t}", "domain": "disease", "skill": skill, **flags})
    table = utility_table(pd.DataFrame(rows)).set_index(["domain", "input"])
    t1 = table.loc[("disease", "T1w")]
    assert t1["coef"] == pytest.approx(0.4, abs=0.05) and t1["p_value"] < 1e-6
    assert t1["method"] == "mixedlm"
    assert table.loc[("disease", "FLAIR"), "p_value"] > 0.01
    assert t1["ci_low"] < 0.4 < t1["ci_high"]


def test_report_utility_adds_the_coefficient_plot(grid_dir, tmp_path):
    copy = tmp_path / "results"
    shutil.copytree(grid_dir, copy)
    table = write_utility(copy)
    assert set(table["input"]) == {"T1w", "metadata"}
    api.report(copy, log=lambda _: None)
    page = (copy / "dashboard.html").read_text()
    assert 'id="grid-coefficients"' in page and 'id="grid-heatmap"' in page
