"""Files a user can get wrong, through the CLI: exit 2, the file named, no traceback, no record."""

import gzip
import shutil
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainbench.cli import main
from brainbench.config import DataConfig
from brainbench.data.sources.synth import cohort_root

T1 = "sub-0001/anat/sub-0001_T1w.nii.gz"


def truncate(root: Path) -> str:
    path = root / T1
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return "sub-0001_T1w.nii.gz"


def not_nifti(root: Path) -> str:
    with gzip.open(root / T1, "wb") as f:
        f.write(b"this is not an image")
    return "sub-0001_T1w.nii.gz"


def four_d(root: Path) -> str:
    img = nib.load(root / T1)
    data = np.stack([img.get_fdata()] * 2, axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(data, img.affine), root / T1)
    return "sub-0001_T1w.nii.gz"


def nan_voxels(root: Path) -> str:
    img = nib.load(root / T1)
    data = img.get_fdata().astype(np.float32)
    data[5, 5, 5] = np.nan
    nib.save(nib.Nifti1Image(data, img.affine), root / T1)
    return "sub-0001_T1w.nii.gz"


def edit_participants(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], str]:
    def apply(root: Path) -> str:
        path = root / "participants.tsv"
        table = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)
        change(table).to_csv(path, sep="\t", index=False)
        return "participants.tsv"

    return apply


def no_participants(root: Path) -> str:
    (root / "participants.tsv").unlink()
    return "participants.tsv"


def set_age(value: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def change(table: pd.DataFrame) -> pd.DataFrame:
        table.loc[0, "age"] = value
        return table

    return change


CASES = {
    "truncated NIfTI": truncate,
    "not a NIfTI": not_nifti,
    "4D where 3D is expected": four_d,
    "NaN voxels": nan_voxels,
    "no participants.tsv": no_participants,
    "subject missing from participants.tsv": edit_participants(lambda t: t.iloc[1:]),
    "non-numeric age": edit_participants(set_age("forty")),
    "missing age": edit_participants(set_age("n/a")),
    "duplicate subject ids": edit_participants(lambda t: pd.concat([t, t.iloc[:1]])),
}


@pytest.fixture(scope="module")
def cohort() -> Path:
    return cohort_root(DataConfig(preset="debug"))


@pytest.mark.parametrize("case", CASES)
def test_bad_bids_input(case: str, cohort: Path, tmp_path: Path, capsys):
    root = tmp_path / "bids"
    shutil.copytree(cohort, root)
    named = CASES[case](root)
    out = tmp_path / "results"
    args = ["mri", "age", "-m", "chance", "--dataset", "bids", "--debug"]
    assert main([*args, f"data.path={root}", f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("brainbench: error:") and "Traceback" not in err
    assert named in err
    assert not list(out.rglob("metrics.json"))


def test_manifest_listing_a_missing_file(cohort: Path, tmp_path: Path, capsys):
    csv = tmp_path / "subjects.csv"
    rows = [
        {"subject": f"{i:04d}", "age": 30 + i, "sex": "F", "T1w": str(cohort / T1)}
        for i in range(12)
    ]
    rows[3]["T1w"] = str(tmp_path / "gone_T1w.nii.gz")
    pd.DataFrame(rows).to_csv(csv, index=False)
    args = ["mri", "age", "-m", "chance", "--dataset", "manifest", "--debug"]
    assert main([*args, f"data.path={csv}", f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err
    assert "gone_T1w.nii.gz" in err and "Traceback" not in err


def test_earlier_results_survive_a_failed_run(cohort: Path, tmp_path: Path, capsys):
    root = tmp_path / "bids"
    shutil.copytree(cohort, root)
    out = tmp_path / "results"
    args = ["mri", "age", "-m", "chance", "--dataset", "bids", "--debug", f"output_dir={out}"]
    assert main([*args, f"data.path={root}"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    truncate(root)
    assert main([*args, f"data.path={root}", "--force"]) == 2
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
