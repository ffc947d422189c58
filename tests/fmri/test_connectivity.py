from __future__ import annotations

import numpy as np
import pytest

from brainbench.data.connectivity import connectivity_vector
from brainbench.errors import DataError
from brainbench.metrics import signal_metrics


def test_connectivity_vector_matches_numpy() -> None:
    x = np.random.default_rng(0).normal(size=(50, 6)).astype(np.float32)
    expected = np.arctanh(np.corrcoef(x.T)[np.triu_indices(6, k=1)])
    got = connectivity_vector(x)
    assert got.shape == (15,) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_constant_parcel_gives_zeros_and_bad_input_raises() -> None:
    x = np.random.default_rng(1).normal(size=(30, 3))
    x[:, 1] = 4.0
    v = connectivity_vector(x)
    assert v[0] == 0 and v[2] == 0 and v[1] != 0  # pairs (0,1), (0,2), (1,2)
    x[3, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        connectivity_vector(x)
    with pytest.raises(DataError, match="time points"):
        connectivity_vector(np.ones((2, 4)))


def test_signal_metrics_match_sklearn() -> None:
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    rng = np.random.default_rng(2)
    t = rng.normal(size=200)
    p = t + rng.normal(0, 0.5, 200)
    m = signal_metrics(t, p)
    assert m["mse"] == pytest.approx(mean_squared_error(t, p))
    assert m["mae"] == pytest.approx(mean_absolute_error(t, p))
    assert m["r2"] == pytest.approx(r2_score(t, p))
    assert m["pearson_r"] == pytest.approx(np.corrcoef(t, p)[0, 1])
