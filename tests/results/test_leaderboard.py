import math

import numpy as np
import pandas as pd
import pytest

from brainbench import api
from brainbench.errors import ResultsError
from brainbench.results.leaderboard import (
    build_leaderboard,
    format_table,
    load_leaderboard,
    write_reports,
)
from brainbench.results.plots import plot_predictions, plot_stage_metric
from brainbench.results.record import read_oracles, write_oracle
from brainbench.results.tables import stage_table
from brainbench.spec import REPORTS_LOCK

ORACLE = {
    "task": "mri/age",
    "headline": {"name": "mae", "value": 1.25, "higher_is_better": False},
    "metrics": {"mae": 1.25, "r2": 0.95},
    "per_stage": {"child": {"mae": 1.0, "n": 4}},
    "description": "gradient boosting on the true latents",
}


def _row(df, model, task="mri/age"):
    rows = df[(df["model"] == model) & (df["task"] == task)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_mean_std_over_seeds(payload):
    maes = [4.0, 5.0, 7.5]
    records = [payload(seed=s, mae=m, r2=m / 10) for s, m in zip((33, 34, 35), maes, strict=True)]
    row = _row(build_leaderboard(records), "ridge")
    assert row["n_seeds"] == 3 and row["headline"] == "mae"
    assert row["headline_mean"] == pytest.approx(np.mean(maes))
    assert row["headline_std"] == pytest.approx(np.std(maes, ddof=1))
    assert row["r2_std"] == pytest.approx(np.std(np.array(maes) / 10, ddof=1))
    assert row["stage_child"] == pytest.approx(np.mean(maes) - 1)
    assert row["stage_older_adult"] == pytest.approx(np.mean(maes) + 1)
    single = _row(build_leaderboard(records[:1]), "ridge")
    assert single["n_seeds"] == 1 and math.isnan(single["headline_std"])


def test_ranks_respect_direction(payload):
    lower = [payload(model=m, mae=v) for m, v in [("a", 3.0), ("b", 1.0), ("c", 2.0)]]
    higher = [
        payload(task="mri/sex", model=m, r2=v, headline="r2", higher_is_better=True)
        for m, v in [("a", 0.3), ("b", 0.1), ("c", 0.2)]
    ]
    df = build_leaderboard(lower + higher)
    assert [_row(df, m)["rank"] for m in "abc"] == [3, 1, 2]
    assert [_row(df, m, "mri/sex")["rank"] for m in "abc"] == [1, 3, 2]
    age = df[df["task"] == "mri/age"]
    assert list(age["model"]) == ["b", "c", "a"]  # sorted by rank within the task


def test_protocols_and_datasets_are_separate_rows(payload):
    records = [
        payload(model="sfcn", protocol="scratch", mae=4.0),
        payload(model="sfcn", protocol="finetune", mae=3.0),
        payload(model="sfcn", protocol="finetune", mae=6.0, dataset="abcd"),
    ]
    df = build_leaderboard(records)
    assert len(df) == 3
    synth = df[df["dataset"] == "synth-debug"]
    assert list(zip(synth["protocol"], synth["rank"], strict=True)) == [
        ("finetune", 1),
        ("scratch", 2),
    ]
    assert df.loc[df["dataset"] == "abcd", "rank"].tolist() == [1]


def test_oracle_row(tmp_path, payload):
    path = write_oracle(tmp_path, "mri/age", ORACLE)
    assert path == tmp_path / "oracle" / "mri-age.json"
    oracles = read_oracles(tmp_path)
    df = build_leaderboard([payload(mae=3.0), payload(model="sfcn", mae=2.0)], oracles)
    oracle = _row(df, "oracle")
    assert oracle["protocol"] == "oracle ceiling" and pd.isna(oracle["rank"])
    assert oracle["headline_mean"] == 1.25 and oracle["stage_child"] == 1.0
    assert _row(df, "sfcn")["rank"] == 1  # the oracle is not ranked
    assert df.iloc[0]["model"] == "oracle"
    with pytest.raises(ValueError):
        write_oracle(tmp_path, "mri/other", ORACLE)
    (tmp_path / "oracle" / "bad.json").write_text("[]")
    with pytest.raises(ResultsError, match="bad.json"):
        read_oracles(tmp_path)


def test_write_reports(tmp_path, write):
    for seed, (ridge, sfcn) in zip((33, 34), [(5.0, 3.0), (6.0, 2.0)], strict=True):
        write(model="ridge", seed=seed, mae=ridge)
        write(model="sfcn", seed=seed, mae=sfcn, protocol="scratch")
    write_oracle(tmp_path, "mri/age", ORACLE)
    _, paths = write_reports(tmp_path)
    assert {p.name for p in paths.values()} == {
        "leaderboard.md",
        "leaderboard.csv",
        "dashboard.html",
    }
    csv = pd.read_csv(paths["csv"])
    assert list(csv["model"]) == ["oracle", "sfcn", "ridge"]
    assert csv["headline_mean"].tolist() == pytest.approx([1.25, 2.5, 5.5])
    md = paths["markdown"].read_text()
    assert "## mri/age (synth-debug)" in md
    assert "| 1 | sfcn | scratch | 2.5 ± 0.71 | 2 |" in md
    assert "| – | oracle | oracle ceiling | 1.25 | – |" in md
    assert "mae per lifespan stage" in md and "| sfcn · scratch | 1.5 | 3.5 |" in md
    hidden = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert hidden == [REPORTS_LOCK]  # no temporary files left; the lock file stays
    text = format_table(load_leaderboard(tmp_path))
    assert "sfcn" in text and "2.5 ± 0.71" in text and "oracle ceiling" in text


def test_terminal_tables_of_the_tasks_run_with_their_stages(tmp_path, write):
    write(model="ridge", mae=5.0)
    write(model="ridge", task="mri/sex", headline="r2", higher_is_better=True)
    lines: list[str] = []
    api.report(tmp_path, tasks={"mri/age"}, log=lines.append)
    text = lines[0]
    assert "mri/age" in text and "mri/sex" not in text  # only the task that was run
    stages = text.split("mae per lifespan stage (mean over seeds):")[1].splitlines()
    assert stages[1].split() == ["child", "older"] and stages[3].split() == [
        "ridge",
        "·",
        "baseline",
        "4",
        "6",
    ]
    api.report(tmp_path, log=lines.append)  # `brainbench report`: every task
    assert "mri/sex" in lines[-2] and "r2 per lifespan stage" in lines[-2]


def test_no_records_is_an_error(tmp_path):
    with pytest.raises(ResultsError, match="brainbench run"):
        write_reports(tmp_path / "results")
    with pytest.raises(ResultsError, match=str(tmp_path)):
        load_leaderboard(tmp_path)
    with pytest.raises(ResultsError, match="brainbench run"):
        build_leaderboard([])


def test_plots(tmp_path, payload):
    ages = np.array([-0.2, 0.01, 1.0, 5.0, 15.0, 30.0, 50.0, 80.0])
    png = plot_predictions(tmp_path / "p.png", ages, ages + 1, ages, "mri/age ridge")
    assert png.read_bytes()[:4] == b"\x89PNG"
    table = stage_table(build_leaderboard([payload(), payload(model="sfcn", mae=2.0)]))
    png = plot_stage_metric(tmp_path / "s.png", table, "mae")
    assert png.read_bytes()[:4] == b"\x89PNG"
