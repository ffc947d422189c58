from collections.abc import Callable
from pathlib import Path

import pytest

from brainbench.config import DataConfig
from brainbench.data.sources import bids
from brainbench.data.sources.bids import read_bids
from brainbench.errors import ConfigError, DataError
from brainbench.registry import SOURCES


def test_reads_records(bids_root: Path) -> None:
    records = {r.key: r for r in read_bids(bids_root)}
    assert sorted(records) == ["sub-01", "sub-02", "sub-03_ses-1", "sub-03_ses-2"]
    one = records["sub-01"]
    assert (one.subject, one.age, one.sex, one.site) == ("01", 25.5, "M", "siteA")
    assert one.phenotypes == {"iq": 1.5}
    assert sorted(one.images) == ["T1w", "T2w", "dwi", "seg"]
    assert one.images["seg"].name == "sub-01_dseg.nii.gz"
    two = records["sub-02"]
    assert (two.site, two.phenotypes["iq"], sorted(two.images)) == ("unknown", None, ["T1w"])
    three = records["sub-03_ses-2"]
    assert (three.session, three.sex, three.age) == ("2", "F", 70.0)
    assert three.images["T1w"].name == "sub-03_ses-2_run-1_T1w.nii"


def test_session_ages(bids_root: Path, write_table: Callable) -> None:
    write_table(bids_root / "sub-03/sub-03_sessions.tsv", ["session_id", "age"], [["ses-2", 72]])
    ages = {r.key: r.age for r in read_bids(bids_root)}
    assert (ages["sub-03_ses-1"], ages["sub-03_ses-2"]) == (70.0, 72.0)


def test_column_mapping(bids_root: Path, write_table: Callable) -> None:
    rows = [["sub-01", 1, "M"], ["sub-02", 2, "F"], ["sub-03", 3, "F"]]
    write_table(bids_root / "participants.tsv", ["participant_id", "AGE", "SEX"], rows)
    records = read_bids(bids_root, {"age": "AGE", "sex": "SEX"})
    assert [r.age for r in records][:2] == [1.0, 2.0]


def test_registered_loader(bids_root: Path) -> None:
    assert SOURCES["bids"].load is bids.load
    load = bids.load
    assert len(load(DataConfig(dataset="bids", path=bids_root))) == 4
    with pytest.raises(ConfigError, match="data.path=/path/to/bids"):
        load(DataConfig(dataset="bids"))


def test_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        read_bids(tmp_path / "nope")


def test_no_participants(bids_root: Path) -> None:
    (bids_root / "participants.tsv").unlink()
    with pytest.raises(DataError, match="has no participants.tsv"):
        read_bids(bids_root)


def test_missing_columns(bids_root: Path, write_table: Callable) -> None:
    write_table(bids_root / "participants.tsv", ["participant_id", "age"], [["sub-01", 3]])
    with pytest.raises(DataError, match=r"lacks the columns \['sex'\]"):
        read_bids(bids_root)


def test_subject_missing_from_participants(bids_root: Path, write_table: Callable) -> None:
    rows = [["sub-01", 3, "M"], ["sub-02", 4, "F"]]
    write_table(bids_root / "participants.tsv", ["participant_id", "age", "sex"], rows)
    with pytest.raises(DataError, match="sub-03 is missing from .*participants.tsv"):
        read_bids(bids_root)


@pytest.mark.parametrize("age", ["n/a", "old", ""])
def test_bad_age(bids_root: Path, write_table: Callable, age: str) -> None:
    rows = [["sub-01", 3, "M"], ["sub-02", age, "F"], ["sub-03", 5, "F"]]
    write_table(bids_root / "participants.tsv", ["participant_id", "age", "sex"], rows)
    with pytest.raises(DataError, match="subject '02' has age .*not a number"):
        read_bids(bids_root)


def test_duplicate_subject(bids_root: Path, write_table: Callable) -> None:
    rows = [["sub-01", 3, "M"], ["sub-01", 4, "F"]]
    write_table(bids_root / "participants.tsv", ["participant_id", "age", "sex"], rows)
    with pytest.raises(DataError, match="'01' is listed twice"):
        read_bids(bids_root)


def test_no_subjects(tmp_path: Path, write_table: Callable) -> None:
    write_table(tmp_path / "participants.tsv", ["participant_id", "age", "sex"], [])
    with pytest.raises(DataError, match="no sub-\\* folders"):
        read_bids(tmp_path)
