"""Housekeeping: tampered cache entries are rebuilt, written files are readable by a lab sharing
the folder (0666 less the umask, not mkstemp's 0600), the leftovers of killed processes are
removed (only theirs), and a run that fails leaves no split file."""

from __future__ import annotations

import os
import socket
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbench.cli import main
from brainbench.config import PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.errors import DataError
from brainbench.owners import atomic_write, owner_tag, remove_dead


def _image(tmp_path):
    data = np.zeros((12, 12, 12), np.float32)
    data[3:9, 3:9, 3:9] = np.random.default_rng(0).uniform(1, 2, (6, 6, 6))
    path = tmp_path / "sub-01_T1w.nii"
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)
    return path


@pytest.mark.parametrize("tamper", ["shape", "dtype"])
def test_tampered_cache_entry_is_rebuilt(tmp_path, tamper) -> None:
    path, cfg = _image(tmp_path), PreprocessConfig(shape=(8, 8, 8))
    cache = VolumeCache(tmp_path / "cache")
    good = cache.get(path, cfg)
    (entry,) = (tmp_path / "cache").rglob("*.npy")
    bad = np.zeros((2, 3), np.float32) if tamper == "shape" else good.astype(np.float64)
    np.save(entry, bad, allow_pickle=False)
    entry.with_suffix(".crc32").write_text(str(zlib.crc32(entry.read_bytes())))
    again = VolumeCache(tmp_path / "cache").get(path, cfg)
    assert again.shape == (8, 8, 8) and again.dtype == np.float32
    np.testing.assert_array_equal(again, good)


def test_written_files_follow_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        cache = VolumeCache(tmp_path / "cache")
        cache.get(_image(tmp_path), PreprocessConfig(shape=(8, 8, 8)))
    finally:
        os.umask(old)
    for entry in (tmp_path / "cache").rglob("*.*"):
        assert entry.stat().st_mode & 0o777 == 0o644, entry


def test_unwritable_cache_is_a_clear_error(tmp_path) -> None:
    """A cache folder that cannot be written (here: a file in its place, which even root cannot
    write into) names the folder and the setting that moves it."""
    (tmp_path / "cache").write_text("not a folder")
    cache = VolumeCache(tmp_path / "cache")
    with pytest.raises(DataError, match="cannot write the preprocessed-volume cache.*cache_dir"):
        cache.get(_image(tmp_path), PreprocessConfig(shape=(8, 8, 8)))


def test_only_dead_runs_leftovers_are_removed(tmp_path) -> None:
    """Scratch folders carry '<host>-<pid>': a run removes those of exited processes only, so
    two runs in one results folder never delete each other's work."""
    host = socket.gethostname()
    dead = tmp_path / f"{host}-{2**22 + 999}.k3j_9x1a"
    alive = tmp_path / f"{host}-{os.getppid()}.abcdefgh"
    other_host = tmp_path / f"elsewhere-{2**22 + 999}.abcdefgh"
    unknown = tmp_path / "notes"
    for folder in (dead, alive, other_host, unknown):
        folder.mkdir()
    remove_dead(tmp_path, "")
    assert sorted(tmp_path.iterdir()) == sorted([alive, other_host, unknown])
    assert owner_tag() == f"{host}-{os.getpid()}"


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_only_dead_writers_leftovers_are_removed(tmp_path, kind) -> None:
    """A killed writer's temporary file (or folder) beside its target goes at the next write."""
    host = socket.gethostname()
    dead = tmp_path / f".entry.npy.{host}-{2**22 + 999}.k3j_9x1a"
    alive = tmp_path / f".entry.npy.{host}-{os.getppid()}.abcdefgh"
    for leftover in (dead, alive):
        leftover.mkdir() if kind == "folder" else leftover.write_bytes(b"half")
    atomic_write(tmp_path / "entry.npy", b"whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == [alive.name, "entry.npy"]


DEBUG = ["--debug", "-m", "chance"]
# case -> a command that fails after it computed the dataset's split
FAILING = {
    "no-subjects-in-stage": ["mri", "age", *DEBUG, "--train-stages", "fetal"],
    "bad-trainer-value": ["mri", "age", "--debug", "-m", "sfcn",
                          "trainer.accumulate_grad_batches=3"],
    "pretrain-missing-modality": ["pretrain", "mae3d_cnn", "--debug", "modalities=[T1w,PD]",
                                  "model.in_channels=2"],
}  # fmt: skip
SPLITS = Path("results/debug/splits")


@pytest.mark.parametrize("case", list(FAILING))
def test_failed_run_leaves_no_split_file(capsys, case) -> None:
    assert main(FAILING[case]) == 2
    assert "error" in capsys.readouterr().err
    assert not SPLITS.exists() or not list(SPLITS.iterdir())


def test_failed_run_keeps_the_split_of_earlier_runs(capsys) -> None:
    assert main(["mri", "age", *DEBUG]) == 0
    (split,) = SPLITS.iterdir()
    before = split.read_bytes(), split.stat().st_mtime_ns
    assert main(FAILING["no-subjects-in-stage"]) == 2
    assert (split.read_bytes(), split.stat().st_mtime_ns) == before
