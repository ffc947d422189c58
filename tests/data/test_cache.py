import os
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from brainbench.config import PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.errors import DataError

CFG = PreprocessConfig(spacing=4.0, shape=(12, 14, 12))


@pytest.fixture
def image(tmp_path: Path, brain: Callable, write_nifti: Callable) -> Path:
    return write_nifti(tmp_path / "img.nii.gz", brain())


def entries(root: Path) -> list[Path]:
    return sorted(root.rglob("*.npy"))


def test_second_read_hits(tmp_path: Path, image: Path) -> None:
    cache = VolumeCache(tmp_path / "cache")
    first = cache.get(image, CFG)
    second = cache.get(image, CFG)
    assert (cache.misses, cache.hits) == (1, 1)
    np.testing.assert_array_equal(first, second)
    assert first.shape == CFG.shape and first.dtype == np.float32
    other = VolumeCache(tmp_path / "cache")  # a second run reads the same entry
    other.get(image, CFG)
    assert (other.misses, other.hits) == (0, 1)
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_changed_file_invalidates(
    tmp_path: Path, image: Path, brain: Callable, write_nifti: Callable
) -> None:
    cache = VolumeCache(tmp_path / "cache")
    before = cache.get(image, CFG)
    write_nifti(image, brain(radius=0.25, seed=5))
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    after = cache.get(image, CFG)
    assert cache.misses == 2 and not np.array_equal(before, after)


def test_changed_config_invalidates(tmp_path: Path, image: Path) -> None:
    cache = VolumeCache(tmp_path / "cache")
    cache.get(image, CFG)
    cache.get(image, CFG.model_copy(update={"percentiles": (1.0, 99.0)}))
    assert cache.misses == 2 and len(entries(tmp_path / "cache")) == 2


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_checksum"])
def test_corrupted_entry_rebuilt(tmp_path: Path, image: Path, damage: str) -> None:
    cache = VolumeCache(tmp_path / "cache")
    good = cache.get(image, CFG)
    (entry,) = entries(tmp_path / "cache")
    raw = entry.read_bytes()
    if damage == "truncate":
        entry.write_bytes(raw[: len(raw) // 2])
    elif damage == "flip":
        entry.write_bytes(raw[:-1] + bytes([raw[-1] ^ 0xFF]))
    else:
        entry.with_suffix(".crc32").unlink()
    np.testing.assert_array_equal(cache.get(image, CFG), good)
    assert cache.misses == 2
    cache.get(image, CFG)
    assert cache.hits == 1


def test_checksum_checked_once_while_the_entry_is_unchanged(
    tmp_path: Path, image: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    VolumeCache(tmp_path / "cache").get(image, CFG)
    checked = []
    crc32 = zlib.crc32
    monkeypatch.setattr(zlib, "crc32", lambda data: checked.append(1) or crc32(data))
    cache = VolumeCache(tmp_path / "cache")
    first = cache.get(image, CFG)
    np.testing.assert_array_equal(cache.get(image, CFG), first)
    assert cache.hits == 2 and len(checked) == 1
    (entry,) = entries(tmp_path / "cache")
    stat = entry.stat()
    os.utime(entry, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # touched: checked again
    cache.get(image, CFG)
    assert cache.hits == 3 and len(checked) == 2


def test_label_keyed_by_reference(
    tmp_path: Path, image: Path, brain: Callable, write_nifti: Callable
) -> None:
    labels = write_nifti(tmp_path / "seg.nii.gz", (brain() > 50).astype(np.uint8))
    other = write_nifti(tmp_path / "other.nii.gz", brain(radius=0.2))
    cache = VolumeCache(tmp_path / "cache")
    out = cache.get(labels, CFG, is_label=True, reference=image)
    assert set(np.unique(out)) == {0.0, 1.0}
    cache.get(labels, CFG, is_label=True, reference=other)
    assert cache.misses == 2


def test_errors_name_the_file(tmp_path: Path, brain: Callable, write_nifti: Callable) -> None:
    cache = VolumeCache(tmp_path / "cache")
    with pytest.raises(DataError, match="gone.nii.gz does not exist"):
        cache.get(tmp_path / "gone.nii.gz", CFG)
    bad = write_nifti(tmp_path / "bad.nii.gz", brain() / 7)
    with pytest.raises(DataError, match="bad.nii.gz: label map values"):
        cache.get(bad, CFG, is_label=True, reference=bad)
