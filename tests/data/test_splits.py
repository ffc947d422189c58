import json
from pathlib import Path

import pytest

from brainbench.config import SplitConfig
from brainbench.data.records import SubjectRecord, count_text
from brainbench.data.splits import load_or_create_splits, make_splits, save_split
from brainbench.errors import DataError

AGES = [-0.2, 0.01, 1.0, 8.0, 15.0, 30.0, 50.0, 80.0]


def cohort(n: int = 120) -> list[SubjectRecord]:
    """n subjects spread over the stages and 3 sites; every fourth has two sessions."""
    records = []
    for i in range(n):
        age = AGES[i % len(AGES)] + (i % 5) * 0.01
        sessions = ["1", "2"] if i % 4 == 0 else [None]
        for ses in sessions:
            records.append(SubjectRecord(f"{i:03d}", age, "F", f"site{i % 3}", session=ses))
    return records


def subject_of(key: str) -> str:
    return key.split("_")[0]


def test_subject_level_and_complete() -> None:
    records = cohort()
    splits = make_splits(records, SplitConfig())
    by_split = {name: {subject_of(k) for k in keys} for name, keys in splits.items()}
    assert not by_split["train"] & by_split["val"]
    assert not by_split["train"] & by_split["test"]
    assert not by_split["val"] & by_split["test"]
    assert sorted(k for keys in splits.values() for k in keys) == sorted(r.key for r in records)
    assert len(by_split["test"]) == 30 and len(by_split["val"]) == 18


def test_deterministic() -> None:
    records = cohort()
    assert make_splits(records, SplitConfig(seed=1)) == make_splits(
        records[::-1], SplitConfig(seed=1)
    )
    assert make_splits(records, SplitConfig(seed=1)) != make_splits(records, SplitConfig(seed=2))


def test_stratified_by_stage() -> None:
    records = cohort() + [SubjectRecord("lonely", 0.05, "M", "x")]  # a one-subject stage
    stage = {r.key: r.stage for r in records}
    splits = make_splits(records, SplitConfig())
    assert {stage[k] for k in splits["train"]} == set(stage.values())
    for name in ("val", "test"):  # every well-populated stage shows up in evaluation too
        assert len({stage[k] for k in splits[name]}) >= 7


def test_saved_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "splits" / "mri_age.json"
    records = cohort(40)
    first = load_or_create_splits(records, SplitConfig(), path)
    assert not path.exists()  # written once a run's results depend on it
    save_split(path)
    saved = json.loads(path.read_text())
    assert saved["train"] == first["train"]
    mtime = path.stat().st_mtime_ns
    assert load_or_create_splits(records, SplitConfig(), path) == first
    assert path.stat().st_mtime_ns == mtime


def test_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "s.json"
    load_or_create_splits(cohort(40), SplitConfig(), path)
    save_split(path)
    with pytest.raises(DataError, match=r"s.json does not match the data .*delete"):
        load_or_create_splits(cohort(41), SplitConfig(), path)
    with pytest.raises(DataError, match=r"s.json was made with split config"):
        load_or_create_splits(cohort(40), SplitConfig(seed=3), path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="unreadable"):
        load_or_create_splits(cohort(40), SplitConfig(), path)


def test_sessions_across_stages_stay_together() -> None:
    """A subject scanned at 17 and at 19 (two stages) lands whole in one split."""
    records = cohort(40)
    for i in range(40):
        records.append(SubjectRecord(f"{i:03d}", 19.0 + i, "F", f"site{i % 3}", session="late"))
    for seed in range(5):
        splits = make_splits(records, SplitConfig(seed=seed))
        owner = {subject_of(k): name for name, keys in splits.items() for k in keys}
        for name, keys in splits.items():
            assert all(owner[subject_of(k)] == name for k in keys)


def test_count_text() -> None:
    assert count_text(cohort(8)) == "8 subjects, 10 sessions"
    assert count_text([r for r in cohort(8) if r.session is None]) == "6 subjects"
    assert count_text(cohort(1)) == "1 subject, 2 sessions"
