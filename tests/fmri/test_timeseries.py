from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.preprocessing import RobustScaler as SkRobust

from brainbench.data.timeseries import (
    RobustScaler,
    WindowDataset,
    check_series,
    read_series,
    write_series,
)
from brainbench.errors import DataError


def test_robust_scaler_matches_sklearn() -> None:
    rng = np.random.default_rng(0)
    runs = [rng.gamma(2.0, 3.0, size=(40, 5)).astype(np.float32) for _ in range(3)]
    ours = RobustScaler.fit(runs, demean=False)
    ref = SkRobust().fit(np.concatenate(runs))
    np.testing.assert_allclose(ours.median, ref.center_, rtol=1e-5)
    np.testing.assert_allclose(ours.iqr, ref.scale_, rtol=1e-5)
    test = rng.gamma(2.0, 3.0, size=(10, 5)).astype(np.float32)
    np.testing.assert_allclose(ours(test), ref.transform(test), rtol=1e-4, atol=1e-5)


def test_demeaning_uses_the_run_mean() -> None:
    run = np.arange(20, dtype=np.float32)[:, None] * np.ones((1, 2), np.float32)
    scaler = RobustScaler.fit([run], demean=True)
    window = run[:5]
    assert not np.allclose(scaler(window, run.mean(0)), scaler(window))


def test_storage_and_windows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    paths = [write_series(tmp_path / f"r{i}.npy", rng.normal(size=(30 + i, 4))) for i in range(2)]
    assert read_series(paths[0]).dtype == np.float32
    assert read_series(paths[0], mmap=True).shape == (30, 4)
    scaler = RobustScaler.fit([read_series(p) for p in paths])
    data = WindowDataset(paths, scaler, 10, random=True)
    for _ in range(5):
        x, y = data[1]
        assert x.shape == (4, 10) and np.isnan(float(y))
    with pytest.raises(DataError, match="fewer than the window"):
        WindowDataset(paths, scaler, 31)
    with pytest.raises(DataError, match="parcels"):
        RobustScaler.fit([read_series(p)[:, :3] for p in paths])(read_series(paths[0]))


def test_bad_series(tmp_path: Path) -> None:
    np.save(tmp_path / "three_d.npy", np.zeros((2, 3, 4), np.float32))
    with pytest.raises(DataError, match="expected float"):
        read_series(tmp_path / "three_d.npy")
    with pytest.raises(DataError, match="does not exist"):
        read_series(tmp_path / "missing.npy")
    x = np.random.default_rng(0).normal(size=(20, 3))
    x[:, 2] = 1.0
    with pytest.raises(DataError, match="parcels 2 have a constant"):
        check_series(x, "run")
    x[:, 2] = np.nan
    with pytest.raises(DataError, match="NaN"):
        check_series(x, "run")
