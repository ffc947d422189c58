"""`brainbench parcellate` faults: bad confounds, filters or TR are refused with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbench.cli import main

N = 20  # time points of the tiny run


def _run(folder: Path) -> tuple[Path, Path]:
    """A 4x4x4 run of N volumes with two labels, and its atlas."""
    labels = np.zeros((4, 4, 4), np.int16)
    labels[:2], labels[2:] = 1, 2
    data = 100 + np.random.default_rng(0).normal(size=(4, 4, 4, N)).astype(np.float32)
    image = nib.Nifti1Image(data, np.eye(4))
    image.header.set_xyzt_units("mm", "sec")
    image.header["pixdim"][4] = 2.0
    nib.save(image, folder / "sub-01_task-rest_bold.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), folder / "atlas-toy_dseg.nii.gz")
    return folder / "sub-01_task-rest_bold.nii.gz", folder / "atlas-toy_dseg.nii.gz"


def _confounds(rows: list[str]) -> str:
    return "a\tb\n" + "".join(f"{row}\n" for row in rows)


GOOD = [f"{i}\t{i % 3}" for i in range(N)]
# case -> (confounds TSV text or None, extra arguments, sidecar TR or None, text of the error)
CASES = {
    "confounds-too-short": (_confounds(GOOD[:-3]), [], None, "has 17 rows but"),
    "confounds-too-long": (_confounds([*GOOD, "1\t1"]), [], None, "has 21 rows but"),
    "confounds-empty-file": ("", [], None, "cannot read the confounds file"),
    "confounds-infinite": (_confounds(["inf\t1", *GOOD[1:]]), [], None, "infinite values in"),
    "confounds-text": (_confounds(["x\t1", *GOOD[1:]]), [], None, "not numbers: ['a']"),
    "high-pass-above-low-pass": (
        None,
        ["--high-pass", "0.1", "--low-pass", "0.01"],
        None,
        "not below",
    ),
    "high-pass-equals-low-pass": (
        None,
        ["--high-pass", "0.1", "--low-pass", "0.1"],
        None,
        "not below",
    ),
    "negative-high-pass": (None, ["--high-pass", "-0.1"], None, "high_pass must be a positive"),
    "negative-tr": (None, ["--tr", "-2"], None, "tr (--tr) must be a positive"),
    "infinite-tr": (None, ["--tr", "inf"], None, "tr (--tr) must be a positive"),
    "negative-sidecar-tr": (None, [], -2, "RepetitionTime -2"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_exit_2(tmp_path, capsys, case):
    confounds, extra, sidecar_tr, message = CASES[case]
    run, atlas = _run(tmp_path)
    args = ["parcellate", str(run), "--atlas", str(atlas), "--out", str(tmp_path / "out")]
    if confounds is not None:
        (tmp_path / "confounds.tsv").write_text(confounds)
        args += ["--confounds", str(tmp_path / "confounds.tsv")]
    if sidecar_tr is not None:
        (tmp_path / "sub-01_task-rest_bold.json").write_text(
            json.dumps({"RepetitionTime": sidecar_tr})
        )
    assert main(args + extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
