from collections.abc import Callable
from pathlib import Path

import numpy as np
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


def test_several_runs_chosen_by_rule_and_reported(bids_root: Path, write_nifti: Callable) -> None:
    anat = bids_root / "sub-01/anat"
    vol = np.zeros((4, 4, 4), np.float32)
    for name in ("sub-01_run-2_T1w.nii.gz", "sub-01_acq-fast_T1w.nii.gz", "sub-01_T1w.json"):
        write_nifti(anat / name, vol) if name.endswith(".gz") else (anat / name).write_text("{}")
    (anat / "sub-01_T1w.nii.gz").rename(anat / "sub-01_run-3_T1w.nii.gz")
    with pytest.warns(UserWarning, match=r"1 of 4 records have several T1w files") as told:
        records = {r.key: r for r in read_bids(bids_root)}
    assert len(told) == 1 and "chose sub-01_run-2_T1w.nii.gz" in str(told[0].message)
    assert "data.filters.T1w" in str(told[0].message)
    assert records["sub-01"].images["T1w"].name == "sub-01_run-2_T1w.nii.gz"
    records = {r.key: r for r in read_bids(bids_root, filters={"T1w": "run-03"})}
    assert records["sub-01"].images["T1w"].name == "sub-01_run-3_T1w.nii.gz"
    assert "T1w" not in records["sub-02"].images  # the filter leaves sub-02 no T1w file
    records = {r.key: r for r in read_bids(bids_root, filters={"T1w": "acq-fast"})}
    assert records["sub-01"].images["T1w"].name == "sub-01_acq-fast_T1w.nii.gz"


def test_filter_through_data_config(bids_root: Path) -> None:
    config = DataConfig(dataset="bids", path=bids_root, filters={"T1w": "ses-2"})
    keys = sorted(r.key for r in bids.load(config) if "T1w" in r.images)
    assert keys == ["sub-03_ses-2"]


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"T1": "run-1"}, "data.filters.T1: no such modality; filter one of FLAIR, T1w"),
        ({"T1w": "run-9"}, "data.filters.T1w=run-9 matches no T1w file"),
        ({"seg": "run_1"}, "data.filters.seg: 'run_1' is not a BIDS entity filter"),
    ],
)
def test_bad_filters(bids_root: Path, filters: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_bids(bids_root, filters=filters)


def test_non_bids_names_ignored(bids_root: Path, write_nifti: Callable) -> None:
    write_nifti(bids_root / "sub-02/anat/T1w_copy_T1w.nii.gz", np.zeros((4, 4, 4), np.float32))
    (two,) = [r for r in read_bids(bids_root) if r.subject == "02"]
    assert two.images["T1w"].name == "sub-02_T1w.nii.gz"
