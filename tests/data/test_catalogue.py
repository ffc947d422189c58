from collections.abc import Callable
from pathlib import Path

import pytest

from brainbench.data.sources.catalogue import catalogue, check_dataset, get_dataset
from brainbench.data.sources.table import MODALITIES
from brainbench.errors import UnknownNameError

EXPECTED = {
    "ABCD", "ABIDE", "ADHD-200", "ADNI", "BCP", "dHCP", "HBCD", "HBN", "HCP-Aging",
    "HCP-Development", "HCP-YA", "PING", "FeTA", "UKBiobank", "OASIS-3", "BOLD5000", "NSD",
    "THINGS-fMRI",
}  # fmt: skip


def test_entries_complete() -> None:
    entries = catalogue()
    assert set(entries) == EXPECTED
    for info in entries.values():
        assert info.full_name and info.licence and info.access and info.home.startswith("http")
        assert info.age_years[0] < info.age_years[1]
        assert info.layout in ("bids", "manifest") and set(info.images) <= set(MODALITIES)
    feta = get_dataset("feta")
    assert feta.licence == "CC BY-NC-SA 4.0" and feta.age_years[1] < 0
    assert get_dataset("UKBiobank").age_years == (45, 82)


def test_unknown_name() -> None:
    with pytest.raises(UnknownNameError, match="Did you mean 'UKBiobank'"):
        get_dataset("UKBiobnk")


def test_check_ok(bids_root: Path) -> None:
    assert check_dataset("BOLD5000", bids_root) == []


def test_check_reports_missing_modality(bids_root: Path) -> None:
    (problem,) = check_dataset("HBCD", bids_root)
    assert problem.startswith("T2w missing for 3 of 4: sub-02, sub-03_ses-1")


def test_check_reports_layout_problems(bids_root: Path, tmp_path: Path) -> None:
    assert "does not exist" in check_dataset("HBN", tmp_path / "nope")[0]
    (bids_root / "participants.tsv").unlink()
    assert "has no participants.tsv" in check_dataset("HBN", bids_root)[0]
    assert "read through a CSV manifest" in check_dataset("UKBiobank", bids_root)[0]


def test_check_manifest(
    tmp_path: Path, brain: Callable, write_nifti: Callable, write_table: Callable
) -> None:
    write_nifti(tmp_path / "a.nii.gz", brain())
    rows = [["1", 60, "F", "a.nii.gz"], ["2", 61, "M", "a.nii.gz"]]
    csv = write_table(tmp_path / "m.csv", ["subject", "age", "sex", "T1w"], rows, sep=",")
    assert check_dataset("ADNI", csv) == []
    assert check_dataset("UKBiobank", csv) == [
        "no subject has all of T1w, FLAIR.",
        "FLAIR missing for 2 of 2: sub-1, sub-2",
    ]
