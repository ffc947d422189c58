"""The synthetic evoked dataset's ideal observer: exact without variability, bounded with it."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainbench.data.events import Window, window_volumes
from brainbench.data.sources.image_fmri import LAYOUTS, read_evoked
from brainbench.data.synth import evoked


def oracle_top1(tmp_path, monkeypatch, variability: float) -> float:
    tiny = evoked.EvokedPreset(("young_adult",), 4, 8, 2, 1, 0.9, variability)
    monkeypatch.setitem(evoked.EVOKED_PRESETS, "debug", tiny)
    root = evoked.generate_evoked(tmp_path / f"v{variability}", "debug", seed=0)
    data = read_evoked(root, LAYOUTS["synth"])
    (run,) = data.runs
    test = run.events.index[run.events["stim_id"].map(data.split).eq("test")]
    volumes = window_volumes(run.events["onset"].to_numpy(), Window(), evoked.TR, run.n_vols)
    queries = pd.DataFrame(
        {"run": 0, "event": test, "trs": [volumes[i].tolist() for i in test]}
    ).set_index(pd.RangeIndex(len(test)))
    candidates = sorted(run.events.loc[test, "stim_id"].unique())
    scores = evoked.oracle_scores(
        root, run.subject, [(run.bold[0], run.events)], queries, candidates
    )
    truth = run.events.loc[test, "stim_id"].map(candidates.index).to_numpy()
    return float(np.mean(scores.argmax(axis=1) == truth))


def test_oracle_is_exact_without_trial_variability_and_bounded_with_it(tmp_path, monkeypatch):
    assert oracle_top1(tmp_path, monkeypatch, 0.0) == 1.0
    assert oracle_top1(tmp_path, monkeypatch, 20.0) < 0.75
