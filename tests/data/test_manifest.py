from collections.abc import Callable
from pathlib import Path

import pytest

from brainbench.config import DataConfig
from brainbench.data.sources import manifest as manifest_source
from brainbench.data.sources.manifest import read_manifest
from brainbench.errors import ConfigError, DataError
from brainbench.registry import SOURCES

HEADER = ["subject", "session", "age", "sex", "site", "T1w", "seg", "score"]


@pytest.fixture
def manifest(tmp_path: Path, brain: Callable, write_nifti: Callable) -> Path:
    write_nifti(tmp_path / "img/a.nii.gz", brain())
    write_nifti(tmp_path / "img/b.nii.gz", brain())
    return tmp_path / "m.csv"


def write(path: Path, rows: list[list[object]], write_table: Callable, header=HEADER) -> Path:
    return write_table(path, header, rows, sep=",")


def test_reads_rows(manifest: Path, write_table: Callable) -> None:
    rows = [
        ["sub-01", "", 30, "M", "s1", "img/a.nii.gz", "", 2.5],
        ["02", "ses-b", -0.2, "F", "", str(manifest.parent / "img/b.nii.gz"), "img/a.nii.gz", "x"],
    ]
    records = read_manifest(write(manifest, rows, write_table))
    assert [r.key for r in records] == ["sub-01", "sub-02_ses-b"]
    assert records[0].images == {"T1w": (manifest.parent / "img/a.nii.gz").resolve()}
    assert records[0].phenotypes == {"score": 2.5}
    assert (records[1].stage, records[1].site, records[1].phenotypes) == (
        "fetal",
        "unknown",
        {"score": "x"},
    )
    assert sorted(records[1].images) == ["T1w", "seg"]


def test_registered_loader(manifest: Path, write_table: Callable) -> None:
    write(manifest, [["01", "", 30, "M", "s1", "img/a.nii.gz", "", 1]], write_table)
    assert SOURCES["manifest"].load is manifest_source.load
    load = manifest_source.load
    assert len(load(DataConfig(dataset="manifest", path=manifest))) == 1
    with pytest.raises(ConfigError, match="data.path=/path/to/manifest.csv"):
        load(DataConfig(dataset="manifest"))


def test_missing_image(manifest: Path, write_table: Callable) -> None:
    write(manifest, [["07", "", 30, "M", "s1", "img/gone.nii.gz", "", 1]], write_table)
    with pytest.raises(DataError, match="line 2 \\(subject '07'\\): T1w file .*gone.nii.gz"):
        read_manifest(manifest)


def test_duplicate(manifest: Path, write_table: Callable) -> None:
    row = ["07", "1", 30, "M", "s1", "img/a.nii.gz", "", 1]
    write(manifest, [row, row], write_table)
    with pytest.raises(DataError, match="line 3 .*repeats"):
        read_manifest(manifest)


@pytest.mark.parametrize("age", ["", "n/a", "ten"])
def test_bad_age(manifest: Path, write_table: Callable, age: str) -> None:
    write(manifest, [["07", "", age, "M", "s1", "img/a.nii.gz", "", 1]], write_table)
    with pytest.raises(DataError, match="subject '07' has age"):
        read_manifest(manifest)


def test_no_subject_column(manifest: Path, write_table: Callable) -> None:
    write(manifest, [["07", 3]], write_table, header=["id", "age"])
    with pytest.raises(DataError, match="no 'subject' column"):
        read_manifest(manifest)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_manifest(tmp_path / "none.csv")
