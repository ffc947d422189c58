"""NIfTI headers that lie: refused with a DataError naming the file, before any allocation."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainbench.data.nifti import load_nifti, open_image
from brainbench.errors import DataError

DIM, DATATYPE = 40, 70  # byte offsets of dim[8] and datatype in a NIfTI-1 header


def _tampered(tmp_path: Path, name: str, offset: int, fmt: str, *values: int) -> Path:
    """A 4^3 float32 image whose header field at `offset` is overwritten with `values`."""
    raw = tmp_path / "ok.nii"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), raw)
    data = bytearray(raw.read_bytes())
    struct.pack_into(fmt, data, offset, *values)
    path = tmp_path / name
    path.write_bytes(gzip.compress(bytes(data)) if name.endswith(".gz") else bytes(data))
    return path


CASES = {
    "huge-dims": (DIM, "<8h", 3, 10000, 10000, 10000, 1, 1, 1, 1),
    "more-than-file": (DIM, "<8h", 3, 64, 64, 64, 1, 1, 1, 1),
    "negative-dim": (DIM, "<8h", 3, -4, 4, 4, 1, 1, 1, 1),
    "zero-dims": (DIM, "<8h", 0, 4, 4, 4, 1, 1, 1, 1),
    "unknown-datatype": (DATATYPE, "<h", 9999),
}
MESSAGES = {
    "huge-dims": "impossible dims|more than the",
    "more-than-file": "more than the",
    "negative-dim": "impossible dims",
    "zero-dims": "impossible dims",
    "unknown-datatype": "not a readable NIfTI",
}


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("case", list(CASES))
def test_lying_header_refused(tmp_path, case, suffix):
    path = _tampered(tmp_path, "bad" + suffix, *CASES[case])
    if case == "more-than-file" and suffix == ".nii.gz":  # 1 MB of data gzips to under 1032x
        path = _tampered(tmp_path, "bad" + suffix, DIM, "<8h", 3, 2000, 2000, 200, 1, 1, 1, 1)
    for load in (load_nifti, open_image):
        with pytest.raises(DataError, match=MESSAGES[case]) as err:
            load(path)
        assert str(path) in str(err.value)
