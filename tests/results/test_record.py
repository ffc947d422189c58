import json
import os
import shutil
import socket
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from brainbench.errors import ResultsError
from brainbench.results.record import (
    REQUIRED_KEYS,
    check_writable,
    environment_info,
    is_complete,
    peak_memory_mb,
    read_records,
    run_dir,
    write_record,
)

PREDICTIONS = pd.DataFrame({"subject": ["a"], "y_pred": [1.0]})


def _crash(path: Path) -> None:
    path.write_text("half a checkpoint")
    raise RuntimeError("disk full")


def _headline(where: Path) -> float:
    return json.loads((where / "metrics.json").read_text())["headline"]["value"]


def _hidden(where: Path) -> list[Path]:
    return [p for p in where.parent.iterdir() if p.name.startswith(".")]


def test_run_dir_layout():
    assert run_dir("results", "mri/age", "sfcn", 33) == Path("results/runs/mri-age/sfcn/seed33")
    tagged = run_dir(Path("out"), "fmri/image", "mlp", 34, tag="synth/debug")
    assert tagged == Path("out/runs/fmri-image/mlp/synth-debug/seed34")


def test_record_files_and_schema(tmp_path, payload):
    data = payload()
    data["metrics"]["pearson_r"] = float("nan")
    extra = {"plot.png": lambda path: path.write_bytes(b"png")}
    where = write_record(
        tmp_path / "run",
        config={"task": "mri/age", "out": tmp_path},
        metrics=data,
        predictions=PREDICTIONS,
        files=extra,
    )
    assert sorted(p.name for p in where.iterdir()) == [
        "config.yaml",
        "metrics.json",
        "plot.png",
        "predictions.csv",
    ]
    saved = json.loads((where / "metrics.json").read_text())  # strict JSON
    assert set(REQUIRED_KEYS) <= saved.keys()
    assert saved["metrics"]["pearson_r"] is None
    assert set(saved["versions"]) == {
        "python",
        "brainbench",
        "torch",
        "lightning",
        "monai",
        "numpy",
        "scikit-learn",
        "nibabel",
        "nilearn",
    }
    assert saved["versions"]["numpy"] and saved["peak_memory_mb"] > 0
    datetime.fromisoformat(saved["created"])
    assert yaml.safe_load((where / "config.yaml").read_text())["out"] == str(tmp_path)
    assert pd.read_csv(where / "predictions.csv").equals(PREDICTIONS)
    assert is_complete(where) and not _hidden(where)


def test_missing_schema_keys_are_refused(tmp_path, payload):
    data = payload()
    del data["seed"]
    with pytest.raises(ValueError, match="seed"):
        write_record(tmp_path / "run", config={}, metrics=data, predictions=PREDICTIONS)
    assert not (tmp_path / "run").exists()


def test_crash_leaves_no_record(tmp_path, payload):
    where = tmp_path / "run"
    with pytest.raises(RuntimeError):
        write_record(
            where, config={}, metrics=payload(), predictions=PREDICTIONS, files={"x": _crash}
        )
    assert not where.exists() and not is_complete(where) and not _hidden(where)
    assert read_records(tmp_path) == []


def test_crash_keeps_previous_record(tmp_path, payload):
    where = write_record(
        tmp_path / "run", config={}, metrics=payload(mae=3.0), predictions=PREDICTIONS
    )
    with pytest.raises(RuntimeError):
        write_record(
            where, config={}, metrics=payload(mae=9.0), predictions=PREDICTIONS, files={"x": _crash}
        )
    assert is_complete(where) and _headline(where) == 3.0 and not _hidden(where)
    write_record(where, config={}, metrics=payload(mae=4.0), predictions=PREDICTIONS)
    assert _headline(where) == 4.0 and not _hidden(where)


def test_hard_crash_leftovers_are_ignored_then_cleaned(tmp_path, payload):
    where = write_record(
        tmp_path / "run", config={}, metrics=payload(mae=3.0), predictions=PREDICTIONS
    )
    # killed mid-write: a full temporary copy; killed mid-swap: the previous record set aside
    dead = f"{socket.gethostname()}-{2**22 + 4321}.abcdefgh"  # a process that has exited
    shutil.copytree(where, tmp_path / f".run.tmp-{dead}")
    os.replace(where, tmp_path / f".run.old-{dead}")
    # another run writing the same record right now: its folder must survive
    alive = tmp_path / f".run.tmp-{socket.gethostname()}-{os.getppid()}.12345678"
    alive.mkdir()
    assert not is_complete(where) and read_records(tmp_path) == []
    with pytest.raises(RuntimeError):
        write_record(
            where, config={}, metrics=payload(mae=9.0), predictions=PREDICTIONS, files={"x": _crash}
        )
    assert _headline(where) == 3.0 and _hidden(where) == [alive]  # the set-aside record is back


def test_is_complete(tmp_path, write):
    assert not is_complete(tmp_path / "nothing")
    where = write()
    assert is_complete(where)
    metrics = where / "metrics.json"
    metrics.write_text('{"task": "mri/age"}')
    assert not is_complete(where)
    metrics.write_text("{not json")
    assert not is_complete(where)


def test_read_records(tmp_path, write):
    assert read_records(tmp_path / "missing") == []
    first, second = write(seed=33), write(seed=34, model="sfcn")
    records = read_records(tmp_path)
    assert sorted(r["path"] for r in records) == sorted([str(first), str(second)])
    assert {r["seed"] for r in records} == {33, 34}
    (second / "metrics.json").write_text("{truncated")
    with pytest.raises(ResultsError, match=str(second / "metrics.json")):
        read_records(tmp_path)


def test_check_writable_under_a_file(tmp_path, payload):
    blocker = tmp_path / "some_file"
    blocker.write_text("not a directory")
    with pytest.raises(ResultsError, match=str(blocker / "results")):
        check_writable(blocker / "results")
    target = run_dir(blocker / "results", "mri/age", "ridge", 33)
    with pytest.raises(ResultsError, match="output_dir"):
        write_record(target, config={}, metrics=payload(), predictions=PREDICTIONS)
    assert check_writable(tmp_path / "new" / "results").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_check_writable_read_only_dir(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        with pytest.raises(ResultsError, match=str(locked)):
            check_writable(locked)
    finally:
        locked.chmod(0o700)


def test_environment_helpers():
    info = environment_info()
    assert info["versions"]["python"] and "code_version" in info
    assert 1 < peak_memory_mb() < 1e6


def test_record_without_config_is_not_complete(tmp_path, payload):
    where = tmp_path / "runs" / "mri-age" / "ridge" / "seed33"
    write_record(where, config={"a": 1}, metrics=payload(), predictions=PREDICTIONS)
    assert is_complete(where) and len(read_records(tmp_path)) == 1
    (where / "config.yaml").unlink()
    assert not is_complete(where)
    with pytest.raises(ResultsError, match="has no config.yaml"):
        read_records(tmp_path)
