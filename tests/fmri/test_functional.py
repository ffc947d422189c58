from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from brainbench.data.connectivity import connectivity_vector
from brainbench.data.synth.functional import (
    ensure_functional,
    generate_functional,
    seitzman_atlas,
    series_path,
    site_acquisition,
)
from brainbench.data.timeseries import read_series
from brainbench.errors import DataError


def test_every_participant_has_a_series_with_its_site_tr(cohort: Path, fmri: Path) -> None:
    participants = pd.read_csv(cohort / "participants.tsv", sep="\t")
    for row in participants.itertuples():
        path = series_path(fmri, row.participant_id)
        tr, n = site_acquisition(row.site)
        x = read_series(path)
        assert x.shape == (n, 300) and x.dtype == np.float32 and np.isfinite(x).all()
        sidecar = json.loads(Path(str(path).replace("_timeseries.npy", "_bold.json")).read_text())
        assert sidecar["RepetitionTime"] == tr
    assert len(pd.read_csv(fmri / "atlas.tsv", sep="\t")) == 300
    assert all(0.7 <= site_acquisition(s)[0] <= 2.5 for s in ("adni", "hcp-ya", "other-site"))


def test_idempotent_and_deterministic(cohort: Path, fmri: Path, tmp_path: Path) -> None:
    marker = fmri / "brainbench_fmri.json"
    before = marker.stat().st_mtime_ns
    assert ensure_functional(cohort) == fmri and marker.stat().st_mtime_ns == before
    again = generate_functional(cohort, tmp_path / "again", seed=0)
    first = series_path(fmri, "sub-0001")
    assert first.read_bytes() == series_path(again, "sub-0001").read_bytes()
    assert first.read_bytes() != series_path(again, "sub-0002").read_bytes()


def test_connectivity_follows_the_generator(fmri: Path) -> None:
    """Measured network-pair FC follows the true network correlations of each subject, and
    within-network FC follows the (age-dependent) loading."""
    latents = pd.read_csv(fmri / "latents.tsv", sep="\t")
    networks = seitzman_atlas()["network"].to_numpy()
    names = sorted(set(networks))
    rows, cols = np.triu_indices(300, k=1)
    within = networks[rows] == networks[cols]
    agreement, within_fc = [], []
    member = [networks == name for name in names]
    upper = [(a, b) for a in range(len(names)) for b in range(a + 1, len(names))]
    for row in latents.itertuples():
        fc = connectivity_vector(read_series(series_path(fmri, row.participant_id)))
        matrix = np.zeros((300, 300))
        matrix[rows, cols] = fc
        matrix += matrix.T
        pairs = [matrix[np.ix_(member[a], member[b])].mean() for a, b in upper]
        truth = [latents.loc[row.Index, f"fc_{names[a]}_{names[b]}"] for a, b in upper]
        agreement.append(np.corrcoef(pairs, truth)[0, 1])
        within_fc.append(fc[within].mean())
    assert np.median(agreement) > 0.5
    assert np.corrcoef(within_fc, latents["loading"])[0, 1] > 0.5


def test_not_a_cohort(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a generated synthetic cohort"):
        ensure_functional(tmp_path)
