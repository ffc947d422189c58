"""A 2-process CPU DDP fit (gloo) matches a 1-process fit on the same seed and effective batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).with_name("ddp_fit.py")


def _fit(tmp_path: Path, devices: int, accumulate: int = 1) -> np.ndarray:
    out = tmp_path / f"pred-{devices}-{accumulate}.npy"
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(key, None)
    cmd = [sys.executable, str(SCRIPT), str(devices), str(out), "32-true", str(accumulate)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (
        f"world {devices} effective batch 8 per device {8 // devices // accumulate}" in done.stdout
    )
    return np.load(out)


@pytest.mark.slow
def test_two_processes_match_one(tmp_path) -> None:
    one = _fit(tmp_path, 1)
    np.testing.assert_allclose(_fit(tmp_path, 2), one, atol=1e-5)
    np.testing.assert_allclose(_fit(tmp_path, 1, accumulate=2), one, atol=1e-5)
