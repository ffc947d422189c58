"""fmri_stats on data with a known answer, and the synthetic cohort against its calibration."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainbench.cli import main
from brainbench.data.synth.fmri_stats import (
    REFERENCES,
    characterise,
    conditional_r2,
    correlation_summary,
    framewise_displacement,
    lag1_autocorrelation,
    spectral_exponent,
)
from brainbench.data.synth.functional import series_path
from brainbench.data.timeseries import read_series


def powerlaw(rng: np.random.Generator, n: int, tr: float, columns: int, beta: float):
    freq = np.fft.rfftfreq(n, tr)
    gain = np.zeros(len(freq))
    gain[1:] = freq[1:] ** (-beta / 2)
    coef = rng.normal(size=(len(freq), columns)) + 1j * rng.normal(size=(len(freq), columns))
    return np.fft.irfft(coef * gain[:, None], n, axis=0)


def test_lag1_of_an_ar1() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((4000, 10))
    for t in range(1, len(x)):
        x[t] = 0.6 * x[t - 1] + rng.normal(size=10)
    assert lag1_autocorrelation(x) == pytest.approx(0.6, abs=0.03)
    assert abs(lag1_autocorrelation(rng.normal(size=(4000, 10)))) < 0.03


@pytest.mark.parametrize("beta", [0.0, 0.8, 1.5])
def test_spectral_exponent_of_power_law_noise(beta: float) -> None:
    series = powerlaw(np.random.default_rng(1), 2000, 0.8, 50, beta)
    assert spectral_exponent(series, 0.8) == pytest.approx(beta, abs=0.12)


def test_conditional_r2_of_a_one_factor_model() -> None:
    """x_i = sqrt(r) f + sqrt(1 - r) e_i: a hidden parcel's R^2 from m visible ones is
    r * q, q = m r / (m r + 1 - r) the R^2 of f from them; independent parcels give 0."""
    rng = np.random.default_rng(2)
    r, p = 0.5, 80
    runs = [
        np.sqrt(r) * rng.normal(size=(400, 1)) + np.sqrt(1 - r) * rng.normal(size=(400, p))
        for _ in range(6)
    ]
    m = p - round(0.25 * p)
    assert np.mean(conditional_r2(runs)) == pytest.approx(r * m * r / (m * r + 1 - r), abs=0.03)
    assert abs(np.mean(conditional_r2([rng.normal(size=(400, p)) for _ in range(6)]))) < 0.03


def test_correlations_by_network_and_distance() -> None:
    """Parcels correlated exp(-d / 20 mm) in space: each distance bin's mean correlation is that
    of the kernel; an added network factor separates within from between."""
    rng = np.random.default_rng(3)
    coords = rng.uniform(-60, 60, (120, 3))
    atlas = pd.DataFrame(coords, columns=["x", "y", "z"])
    atlas["network"] = np.where(np.arange(120) < 60, "A", "B")
    distance = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    kernel = np.exp(-distance / 20.0)
    x = rng.normal(size=(20000, 120)) @ np.linalg.cholesky(kernel).T
    stats = correlation_summary(x, atlas)
    rows, cols = np.triu_indices(120, 1)
    d, k = distance[rows, cols], kernel[rows, cols]
    for name, chosen in (("fc_<20mm", d < 20), ("fc_40-80mm", (d >= 40) & (d < 80))):
        assert stats[name] == pytest.approx(k[chosen].mean(), abs=0.02)
    factor = rng.normal(size=(20000, 2))[:, (atlas["network"] == "B").to_numpy().astype(int)]
    stats = correlation_summary(factor + 0.5 * rng.normal(size=(20000, 120)), atlas)
    assert stats["within_fc"] == pytest.approx(0.8, abs=0.02) and abs(stats["between_fc"]) < 0.02


def test_framewise_displacement() -> None:
    motion = np.zeros((5, 6))
    motion[:, 0] = np.arange(5) * 0.2  # 0.2 mm a frame along x
    motion[:, 5] = np.arange(5) * 0.002  # 0.002 rad a frame: 0.1 mm on a 50 mm sphere
    np.testing.assert_allclose(framewise_displacement(motion), [0, 0.3, 0.3, 0.3, 0.3])


def _sample(cohort: Path, fmri: Path, low: float, high: float):
    participants = pd.read_csv(cohort / "participants.tsv", sep="\t")
    latents = pd.read_csv(fmri / "latents.tsv", sep="\t").set_index("participant_id")
    ids = participants.loc[participants["age"].between(low, high), "participant_id"]
    paths = [series_path(fmri, pid) for pid in ids]
    motion = [
        pd.read_csv(str(p).replace("_timeseries.npy", "_desc-confounds_timeseries.tsv"), sep="\t")
        for p in paths
    ]
    return [read_series(p) for p in paths], list(latents.loc[ids, "tr"]), motion


def test_cohort_lands_in_the_calibrated_ranges(cohort: Path, fmri: Path) -> None:
    atlas = pd.read_csv(fmri / "atlas.tsv", sep="\t")
    runs, trs, motion = _sample(cohort, fmri, 18, 65)  # adults
    adults = characterise(runs, trs, atlas, [m.to_numpy() for m in motion])
    bins = [adults[name] for name in REFERENCES if name.startswith("fc_")]
    assert all(a > b + 0.02 for a, b in zip(bins[:-1], bins[1:], strict=False)), bins
    assert bins[0] > 0.3  # neighbouring parcels share signal beyond their network
    assert adults["within_fc"] > adults["between_fc"] + 0.2
    assert 0.6 < adults["spectral_exponent"] < 1.1
    assert adults["conditional_r2"] > 0.3
    assert 0.08 < adults["mean_fd"] < 0.3
    children = _sample(cohort, fmri, 0.1, 12)[2]
    fd = [framewise_displacement(m.to_numpy())[1:].mean() for m in children]
    assert np.mean(fd) > adults["mean_fd"]


def test_synth_prints_the_statistics(fmri: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["synth", "--preset", "debug", "--stats", "6"]) == 0
    out = capsys.readouterr().out
    assert "young adults (n=6)" in out and "all ages (n=6)" in out
    assert all(name in out for name in REFERENCES) and "He 2011" in out
