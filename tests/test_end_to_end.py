"""Brain age end to end on the debug cohort: records, skip/force, conflicts, sources, seeds."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from brainbench import api
from brainbench.cli import main
from brainbench.config import DataConfig
from brainbench.data.sources.synth import cohort_root

FAST = ["trainer.max_epochs=2"]


def records_under(out: Path) -> list[Path]:
    return sorted(out.rglob("metrics.json"))


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("e2e") / "results"
    assert main(["run", "--debug", f"output_dir={out}", *FAST]) == 0
    return out


def test_quick_suite_writes_records_and_leaderboard(debug_run: Path):
    records = records_under(debug_run / "runs")
    assert {json.loads(p.read_text())["model"] for p in records} == {"chance", "ridge", "sfcn"}
    for path in records:
        run = path.parent
        metrics = json.loads(path.read_text())
        assert metrics["headline"]["name"] == "mae" and metrics["seed"] == 33
        assert set(metrics["metrics"]) == {"mae", "rmse", "pearson_r", "r2"}
        assert metrics["per_stage"] and all("n" in v for v in metrics["per_stage"].values())
        assert metrics["versions"]["torch"] and metrics["peak_memory_mb"] > 0
        preds = pd.read_csv(run / "predictions.csv")
        assert len(preds) == metrics["n_test"]
        assert (run / "config.yaml").exists() and (run / "model.safetensors").exists()
        assert (run / "predictions.png").exists()
    for name in ("leaderboard.md", "leaderboard.csv", "dashboard.html"):
        assert (debug_run / name).stat().st_size > 0
    board = (debug_run / "leaderboard.md").read_text()
    assert "oracle" in board and "sfcn" in board and "young_adult" in board


def test_finished_runs_are_skipped_and_force_reruns(debug_run: Path, capsys):
    target = next(p for p in records_under(debug_run / "runs") if "chance" in str(p))
    before = target.stat().st_mtime_ns
    assert main(["mri", "age", "-m", "chance", "--debug", f"output_dir={debug_run}", *FAST]) == 0
    assert "done already" in capsys.readouterr().out
    assert target.stat().st_mtime_ns == before
    args = ["mri", "age", "-m", "chance", "--debug", "--force", f"output_dir={debug_run}", *FAST]
    assert main(args) == 0
    assert target.stat().st_mtime_ns != before


def test_changed_config_is_not_silently_skipped(debug_run: Path, capsys):
    target = next(p for p in records_under(debug_run / "runs") if "ridge" in str(p))
    before = target.read_bytes()
    args = [
        "mri",
        "age",
        "-m",
        "ridge",
        "--debug",
        f"output_dir={debug_run}",
        "preprocess.spacing=9",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "different config" in err and "--force" in err
    assert target.read_bytes() == before


def test_same_seed_same_metrics(debug_run: Path, tmp_path: Path):
    again = tmp_path / "again"
    api.run(["mri/age"], ["ridge", "sfcn"], debug=True, overrides=[f"output_dir={again}", *FAST])
    for model in ("ridge", "sfcn"):
        first = next(p for p in records_under(debug_run / "runs") if f"/{model}/" in str(p))
        second = next(p for p in records_under(again / "runs") if f"/{model}/" in str(p))
        assert json.loads(first.read_text())["metrics"] == json.loads(second.read_text())["metrics"]


def test_bids_and_manifest_sources_read_the_same_subjects(tmp_path: Path):
    root = cohort_root(DataConfig(preset="debug"))
    out = tmp_path / "bids"
    table = api.run(
        ["mri/age"],
        ["chance"],
        dataset="bids",
        debug=True,
        overrides=[f"data.path={root}", f"output_dir={out}"],
    )
    assert (table["model"] == "chance").any()
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    manifest = pd.DataFrame(
        {
            "subject": participants["participant_id"].str.removeprefix("sub-"),
            "age": participants["age"],
            "sex": participants["sex"],
            "site": participants["site"],
            "T1w": [f"{root}/{s}/anat/{s}_T1w.nii.gz" for s in participants["participant_id"]],
        }
    )
    csv = tmp_path / "manifest.csv"
    manifest.to_csv(csv, index=False)
    out2 = tmp_path / "manifest"
    api.run(
        ["mri/age"],
        ["chance"],
        dataset="manifest",
        debug=True,
        overrides=[f"data.path={csv}", f"output_dir={out2}"],
    )
    bids_preds = pd.read_csv(next((out / "runs").rglob("predictions.csv")))
    manifest_preds = pd.read_csv(next((out2 / "runs").rglob("predictions.csv")))
    assert sorted(bids_preds["subject"]) == sorted(manifest_preds["subject"])
    assert bids_preds["y_pred"].round(6).tolist() == manifest_preds["y_pred"].round(6).tolist()


def test_ddp_through_the_cli_writes_each_record_once(tmp_path: Path):
    """Lightning re-runs the command for rank 1; only rank 0 may write records and reports."""
    out = tmp_path / "ddp"
    args = ["mri", "age", "-m", "chance", "sfcn", "--debug", f"output_dir={out}", *FAST]
    ddp = ["trainer.accelerator=cpu", "trainer.devices=2", "trainer.strategy=ddp"]
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "brainbench"), *args, *ddp],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("wrote ") == 1  # one leaderboard, from rank 0
    models = sorted(json.loads(p.read_text())["model"] for p in records_under(out / "runs"))
    assert models == ["chance", "sfcn"]


def test_sex_classification_end_to_end(tmp_path: Path):
    out = tmp_path / "sex"
    table = api.run(["mri/sex"], ["chance", "ridge"], debug=True, overrides=[f"output_dir={out}"])
    assert set(table["model"]) == {"oracle", "chance", "ridge"}
    for path in records_under(out / "runs"):
        metrics = json.loads(path.read_text())
        assert metrics["headline"] == {
            "name": "balanced_accuracy",
            "value": metrics["metrics"]["balanced_accuracy"],
            "higher_is_better": True,
        }
        preds = pd.read_csv(path.parent / "predictions.csv")
        assert set(preds["y_true"]) == {0.0, 1.0}
        assert preds["y_pred"].between(0, 1).all()  # P(male)
    assert (table.loc[table["model"] == "chance", "balanced_accuracy_mean"] == 0.5).all()
