"""2-process CPU DDP runs (gloo) match 1-process runs on the same seed and effective batch:
task training (TorchEstimator) and masked-autoencoder pretraining."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

HERE = Path(__file__).parent


def _launch(script: str, *args: str) -> subprocess.CompletedProcess:
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    for key in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        env.pop(key, None)
    cmd = [sys.executable, str(HERE / script), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _fit(tmp_path: Path, devices: int, accumulate: int = 1) -> np.ndarray:
    out = tmp_path / f"pred-{devices}-{accumulate}.npy"
    done = _launch("ddp_fit.py", str(devices), str(out), "32-true", str(accumulate))
    assert (
        f"world {devices} effective batch 8 per device {8 // devices // accumulate}" in done.stdout
    )
    return np.load(out)


def _pretrain(tmp_path: Path, devices: int, accumulate: int = 1) -> dict[str, np.ndarray]:
    out = tmp_path / f"weights-{devices}-{accumulate}.safetensors"
    work = tmp_path / f"work-{devices}-{accumulate}"
    _launch("ddp_pretrain.py", str(devices), str(out), str(work), str(accumulate))
    return load_file(out)


@pytest.mark.slow
def test_two_processes_fit_like_one(tmp_path) -> None:
    one = _fit(tmp_path, 1)
    np.testing.assert_allclose(_fit(tmp_path, 2), one, atol=1e-5)
    np.testing.assert_allclose(_fit(tmp_path, 1, accumulate=2), one, atol=1e-5)


@pytest.mark.slow
def test_two_processes_pretrain_like_one(tmp_path, pretrained) -> None:
    """Site-balanced draws, augmentation and masks do not depend on the process count."""
    one = _pretrain(tmp_path, 1)
    for other in (_pretrain(tmp_path, 2), _pretrain(tmp_path, 1, accumulate=2)):
        assert other.keys() == one.keys()
        for name, weight in one.items():
            np.testing.assert_allclose(other[name], weight, atol=1e-5, err_msg=name)
