from pathlib import Path

import pytest

from brainbench.bids_names import choose, parse_filter, parse_name


def test_parse_name() -> None:
    name = parse_name("sub-01_ses-1_acq-mprage_run-02_T1w.nii.gz")
    assert name.entities == {"sub": "01", "ses": "1", "acq": "mprage", "run": "02"}
    assert (name.suffix, name.extension) == ("T1w", ".nii.gz")
    assert parse_name("/data/sub-01/anat/sub-01_T1w.nii").entities == {"sub": "01"}
    assert name.matches({"run": "2", "acq": "mprage"}) and not name.matches({"run": "1"})


@pytest.mark.parametrize(
    "bad", ["T1w.nii.gz", "sub-01_T1w", "notes_T1w.nii", "sub-01__T1w.nii",
            "sub-01_run-1_run-2_T1w.nii", "sub-01_run-1_T1-w.nii"],
)  # fmt: skip
def test_not_bids_names(bad: str) -> None:
    assert parse_name(bad) is None


def test_parse_filter() -> None:
    assert parse_filter("acq-mprage_run-2") == {"acq": "mprage", "run": "2"}
    for bad in ("run_1", "run-", "Run-1", "run-1_", "", "run-1.5"):
        with pytest.raises(ValueError, match="not a BIDS entity filter"):
            parse_filter(bad)


def test_choose_rule() -> None:
    names = ["sub-1_run-2_T1w.nii", "sub-1_acq-fast_run-1_T1w.nii", "sub-1_run-10_T1w.nii",
             "sub-1_desc-preproc_T1w.nii", "sub-1_run-3_T1w.nii"]  # fmt: skip
    assert choose(Path(n) for n in names).name == "sub-1_run-2_T1w.nii"  # no variant, lowest run
    assert choose([Path("sub-1_run-1_T1w.nii"), Path("sub-1_T1w.nii")]).name == "sub-1_T1w.nii"
    assert choose([Path(names[1]), Path(names[3])]).name == names[3]  # one variant each: no run
    assert choose([Path("sub-1_acq-b_T1w.nii"), Path("sub-1_acq-a_T1w.nii")]).name[6] == "a"
    assert choose([]) is None
