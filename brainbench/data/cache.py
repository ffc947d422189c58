"""On-disk cache of preprocessed volumes, keyed by file content and preprocessing config.

Entries are `<key>.npy` plus `<key>.crc32` (checksum of the .npy bytes), written atomically;
an entry whose checksum does not match (corrupted, truncated), or whose array has another shape
or dtype than the config's (tampered), is rebuilt. A process checks an entry's checksum and
parses its header once while the file keeps its modification time and size, so later epochs
read only its data (benchmarks/data_pipeline.py measures this against MONAI's caches).
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import zlib
from pathlib import Path

import numpy as np

from brainbench.config import PreprocessConfig
from brainbench.data.nifti import load_nifti
from brainbench.data.preprocess import preprocess_key, preprocess_volume, skull_strip
from brainbench.errors import DataError
from brainbench.owners import atomic_write

CACHE_VERSION = "1"  # bump when the entry format changes


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


class VolumeCache:
    """Preprocessed arrays under `root`; `hits`/`misses` count lookups in this process."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.hits = 0
        self.misses = 0
        self._hashes: dict[tuple[str, int, int], str] = {}
        # (entry, mtime, size) of a checked entry -> where its data starts, its dtype and shape
        self._verified: dict[tuple[str, int, int], tuple[int, np.dtype, tuple[int, ...]]] = {}

    def content_hash(self, path: Path) -> str:
        """sha256 of a file, memoised on (path, mtime, size) so an epoch does not re-hash."""
        try:
            stat = os.stat(path)
        except OSError:
            raise DataError(f"image {path} does not exist; check the path.") from None
        memo = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size)
        if memo not in self._hashes:
            self._hashes[memo] = file_sha256(Path(path))
        return self._hashes[memo]

    def key(
        self,
        path: Path,
        cfg: PreprocessConfig,
        *,
        is_label: bool = False,
        reference: Path | None = None,
        mask: Path | None = None,
    ) -> str:
        """The entry name: content hashes of the file (reference, mask) + config + versions."""
        parts = [CACHE_VERSION, preprocess_key(cfg), str(is_label), self.content_hash(path)]
        if reference is not None and cfg.crop_to_brain:
            parts.append(self.content_hash(reference))
        if mask is not None:
            parts.append("mask:" + self.content_hash(mask))
        return hashlib.sha256(":".join(parts).encode()).hexdigest()

    def get(
        self,
        path: Path,
        cfg: PreprocessConfig,
        *,
        is_label: bool = False,
        reference: Path | None = None,
        mask: Path | None = None,
    ) -> np.ndarray:
        """The preprocessed volume of `path`, from the cache or computed and stored.

        A label map (`is_label`) is cropped like its `reference` image when cropping is on.
        `mask` (a brain mask on the image's grid) skull-strips the image, or for a label map
        its reference, before cropping.
        """
        key = self.key(path, cfg, is_label=is_label, reference=reference, mask=mask)
        entry = self.root / key[:2] / f"{key}.npy"
        array = self._read(entry)
        if array is not None and array.shape == tuple(cfg.shape) and array.dtype == np.float32:
            self.hits += 1
            return array
        self.misses += 1
        array = self._compute(Path(path), cfg, is_label, reference, mask)
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        data = buffer.getvalue()
        try:
            atomic_write(entry, data)
            atomic_write(entry.with_suffix(".crc32"), str(zlib.crc32(data)).encode())
        except OSError as exc:
            raise DataError(
                f"cannot write the preprocessed-volume cache {self.root}: {exc.strerror or exc}. "
                "Set data.cache_dir=PATH (or BRAINBENCH_HOME) to a writable folder with space."
            ) from None
        return array

    @staticmethod
    def _compute(
        path: Path,
        cfg: PreprocessConfig,
        is_label: bool,
        reference: Path | None,
        mask: Path | None,
    ) -> np.ndarray:
        img = load_nifti(path)
        ref = load_nifti(reference) if reference is not None and cfg.crop_to_brain else None
        try:
            if mask is not None and is_label and ref is not None:
                ref = skull_strip(ref, load_nifti(mask))
            elif mask is not None and not is_label:
                img = skull_strip(img, load_nifti(mask))
            return preprocess_volume(img, cfg, is_label=is_label, reference=ref)
        except DataError as exc:
            masked = f" with brain mask {mask}" if mask is not None else ""
            raise DataError(f"image {path}{masked}: {exc}") from None

    def _read(self, entry: Path) -> np.ndarray | None:
        """The stored array, or None when absent or failing its checksum."""
        try:
            stat = os.stat(entry)
            memo = (os.path.abspath(entry), stat.st_mtime_ns, stat.st_size)
            if memo not in self._verified:
                data = entry.read_bytes()
                if str(zlib.crc32(data)) != entry.with_suffix(".crc32").read_text().strip():
                    return None
                self._verified[memo] = _layout(data)
            offset, dtype, shape = self._verified[memo]
            count = math.prod(shape)
            array = np.fromfile(entry, dtype=dtype, count=count, offset=offset)
            return array.reshape(shape) if array.size == count else None
        except (OSError, ValueError):
            return None


def _layout(data: bytes) -> tuple[int, np.dtype, tuple[int, ...]]:
    """Where the array of a .npy file's bytes starts, its dtype and shape (C order only)."""
    handle = io.BytesIO(data)
    read_header = {
        (1, 0): np.lib.format.read_array_header_1_0,
        (2, 0): np.lib.format.read_array_header_2_0,
    }.get(np.lib.format.read_magic(handle))
    if read_header is None:
        raise ValueError("an .npy version np.save does not write for numeric arrays")
    shape, fortran, dtype = read_header(handle)
    if fortran or dtype.hasobject:
        raise ValueError("not a C-ordered numeric array")
    return handle.tell(), dtype, shape
