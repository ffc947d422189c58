"""`brainbench datasets check bids PATH`: exit 0 with a table per task for valid BIDS, exit 2
naming every problem otherwise."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from brainbench.cli import main
from brainbench.data.timeseries import write_series


@pytest.fixture
def valid(bids_root: Path) -> Path:
    description = {"Name": "tiny", "BIDSVersion": "1.9.0"}
    (bids_root / "dataset_description.json").write_text(json.dumps(description))
    return bids_root


def _check(root: Path, capsys) -> tuple[int, str, str]:
    code = main(["datasets", "check", "bids", str(root)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err


def _row(out: str, task: str) -> str:
    (line,) = [line for line in out.splitlines() if line.startswith(task + " ")]
    return line


def test_valid_folder_table(valid: Path, capsys, write_table: Callable) -> None:
    fmri = valid / "derivatives" / "fmri"
    fmri.mkdir(parents=True)
    (fmri / "atlas.tsv").write_text("index\tx\ty\tz\tnetwork\n1\t0\t0\t0\tA\n2\t9\t0\t0\tB\n")
    write_series(fmri / "sub-01/func/sub-01_task-rest_timeseries.npy", np.zeros((50, 2)))
    header = ["participant_id", "age", "sex", "site", "iq"]
    rows = [["sub-01", 25, "M", "a", 1], ["sub-02", 7, "F", "a", 2], ["sub-03", 70, "F", "b", 3]]
    write_table(valid / "participants.tsv", header, [*rows, ["sub-09", 40, "F", "b", 4]])
    code, out, _ = _check(valid, capsys)
    assert code == 0
    assert "valid BIDS, 3 subjects, 4 sessions" in out
    assert "lists 1 subjects without a folder: sub-09" in out
    assert "4/4" in _row(out, "mri/age") and "1/4  T1w" not in _row(out, "mri/age")
    assert "1/4" in _row(out, "mri/seg") and "seg image: 3" in _row(out, "mri/seg")
    assert "1/4" in _row(out, "fmri/networks") and "parcel series" in _row(out, "fmri/networks")
    assert "1/4" in _row(out, "mri/synthesis") and "T2w image: 3" in _row(out, "mri/synthesis")
    assert "0/4" in _row(out, "fmri/image") and "stimulus-evoked" in _row(out, "fmri/image")


def test_no_parcel_series(valid: Path, capsys) -> None:
    code, out, _ = _check(valid, capsys)
    assert code == 0 and "0/4" in _row(out, "fmri/recon")
    assert "network labels" in _row(out, "fmri/networks")


def _no_description(root: Path) -> None:
    (root / "dataset_description.json").unlink()


def _bad_json(root: Path) -> None:
    (root / "dataset_description.json").write_text("{Name: ")


def _no_version(root: Path) -> None:
    (root / "dataset_description.json").write_text('{"Name": "x"}')


def _no_participants(root: Path) -> None:
    (root / "participants.tsv").unlink()


def _no_sex(root: Path) -> None:
    (root / "participants.tsv").write_text("participant_id\tage\nsub-01\t3\n")


def _unlisted(root: Path) -> None:
    (root / "sub-04" / "anat").mkdir(parents=True)


def _corrupt(root: Path) -> None:
    (root / "sub-02/anat/sub-02_T1w.nii.gz").write_bytes(b"not a nifti")


@pytest.mark.parametrize(
    ("breaks", "message"),
    [
        (_no_description, "dataset_description.json is missing"),
        (_bad_json, "dataset_description.json is not readable JSON"),
        (_no_version, "dataset_description.json lacks BIDSVersion"),
        (_no_participants, "has no participants.tsv"),
        (_no_sex, r"lacks the columns ['sex']"),
        (_unlisted, "sub-04 is missing from"),
        (_corrupt, "1 NIfTI files have no readable header: sub-02_T1w.nii.gz"),
    ],
)
def test_invalid_folder(valid: Path, capsys, breaks: Callable, message: str) -> None:
    breaks(valid)
    code, out, err = _check(valid, capsys)
    assert code == 2 and "is not valid BIDS" in err and message in err and not out


def test_not_a_folder(tmp_path: Path, capsys) -> None:
    code, _, err = _check(tmp_path / "nope", capsys)
    assert code == 2 and "is not a folder" in err
