"""`brainbench parcellate` faults: bad confounds, filters, TR, atlases or hemispheres: exit 2."""

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
    "sidecar-tr-in-ms": (None, [], 2000, "repetition time of 2000 s (milliseconds? that is 2 s)"),
    "tr-option-in-ms": (None, ["--tr", "2000"], None, "--tr 2000 is outside the plausible"),
    "band-pass-on-short-run": (
        None,
        ["--high-pass", "0.01", "--low-pass", "0.1"],
        None,
        f"has {N} volumes, too few for the band-pass filter",
    ),
    "unknown-atlas-name": (None, ["--atlas", "seitzman30"], None, "Did you mean 'seitzman300'?"),
    "builtin-atlas-outside-run": (None, ["--atlas", "power264"], None, "--drop-empty-labels"),
    "atlas-hemispheres-on-volumes": (None, ["--atlas-lh", "lh.annot"], None, "surface runs"),
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


# xyzt time units, pixdim[4] -> text of the error
HEADER_TR = {
    "seconds-but-milliseconds": ("sec", 2000.0, "2000 s (milliseconds? that is 2 s)"),
    "unknown-units-milliseconds": ("unknown", 2000.0, "(2000 unknown)"),
    "milliseconds-too-short": ("msec", 2.0, "0.002 s, outside the plausible"),
    "microseconds-too-long": ("usec", 9e7, "90 s, outside the plausible"),
}


@pytest.mark.parametrize("case", list(HEADER_TR))
def test_implausible_header_tr(tmp_path, capsys, case):
    units, step, message = HEADER_TR[case]
    run, atlas = _run(tmp_path)
    image = nib.load(run)
    image.header.set_xyzt_units("mm", units)
    image.header["pixdim"][4] = step
    nib.save(nib.Nifti1Image(np.asarray(image.dataobj), image.affine, image.header), run)
    assert main(["parcellate", str(run), "--atlas", str(atlas), "--out", "out"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(run) in err and "--tr" in err
    assert not Path("out").exists()


def _surface(folder: Path, name: str, vertices: int = 6) -> Path:
    data = np.random.default_rng(len(name)).normal(size=(vertices, N)).astype(np.float32)
    path = folder / name
    nib.save(nib.GiftiImage(darrays=[nib.gifti.GiftiDataArray(d) for d in data.T]), path)
    return path


def _labels(folder: Path, name: str, vertices: int = 6) -> Path:
    np.save(folder / name, np.arange(vertices) % 3 + 1)
    return folder / name


LEFT, RIGHT = "sub-01_hemi-L_bold.func.gii", "sub-01_hemi-R_bold.func.gii"
# case -> (runs, labels files (name, vertices), options naming them by position, error text)
SURFACE = {
    "one-atlas-both-hemispheres": ([LEFT, RIGHT], [("x.npy", 6)], ["--atlas", 0], "both hemi"),
    "left-run-right-labels": ([LEFT], [("rh.x.npy", 6)], ["--atlas", 0], "named as the right"),
    "left-run-hemi-R-labels": ([LEFT], [("atlas-x_hemi-R.npy", 6)], ["--atlas", 0], "right one"),
    "vertex-count": ([LEFT], [("lh.x.npy", 5)], ["--atlas", 0], "has 6 vertices but the labels"),
    "missing-right-labels": ([LEFT, RIGHT], [("l.npy", 6)], ["--atlas-lh", 0], "no --atlas-rh"),
    "swapped-hemispheres": (
        [LEFT, RIGHT],
        [("rh.a.npy", 6), ("lh.a.npy", 6)],
        ["--atlas-lh", 0, "--atlas-rh", 1],
        "--atlas-lh",
    ),
    "unpaired-run": (
        [LEFT, RIGHT.replace("sub-01", "sub-02")],
        [("lh.a.npy", 6), ("rh.a.npy", 6)],
        ["--atlas-lh", 0, "--atlas-rh", 1],
        "has no right-hemisphere file",
    ),
    "no-hemisphere-in-name": (
        ["sub-01_bold.func.gii"],
        [("lh.a.npy", 6)],
        ["--atlas-lh", 0],
        "cannot tell the hemisphere",
    ),
    "one-mesh-both-hemispheres": (
        [LEFT, RIGHT],
        [("lh.a.npy", 6), ("rh.a.npy", 6)],
        ["--atlas-lh", 0, "--atlas-rh", 1, "--mesh", 0],
        "--mesh-lh and --mesh-rh",
    ),
    "builtin-atlas-on-surface": ([LEFT], [], ["--atlas", "seitzman300"], "MNI volume"),
    "filter-on-surface": ([LEFT], [("lh.a.npy", 6)], ["--atlas", 0, "--detrend"], "volume runs"),
}


@pytest.mark.parametrize("case", list(SURFACE))
def test_surface_refused_with_exit_2(tmp_path, capsys, case):
    runs, labels, options, message = SURFACE[case]
    paths = [str(_surface(tmp_path, run)) for run in runs]
    files = [str(_labels(tmp_path, name, n)) for name, n in labels]
    options = [files[o] if isinstance(o, int) else o for o in options]
    args = ["parcellate", *paths, *options, "--tr", "2", "--out", str(tmp_path / "out")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err, err
    if case.startswith(("left-run", "vertex")):  # both files named
        assert paths[0] in err and files[0] in err
    assert not (tmp_path / "out").exists()
