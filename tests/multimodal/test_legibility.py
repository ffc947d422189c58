"""Legibility verdicts: chance tests, seed averaging and Holm vs scipy and statsmodels."""

from __future__ import annotations

import html
import os

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.multitest import multipletests

from brainbench.config import DataConfig
from brainbench.data.sources.synth import SynthSource
from brainbench.grid import (
    ALPHA,
    chance_test,
    expected_legibility,
    holm,
    legibility,
    seed_averaged,
)
from brainbench.results.grid_dashboard import grid_section


def test_holm_matches_statsmodels():
    rng = np.random.default_rng(0)
    p = np.concatenate([rng.uniform(0, 0.02, 8), rng.uniform(0, 1, 30), [0.01, 0.01, 1.0]])
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])
    with_nan = holm([0.001, np.nan, 0.04])  # NaN (undefined test) counts as 1
    assert with_nan == pytest.approx(multipletests([0.001, 1.0, 0.04], method="holm")[1])


def test_chance_tests_match_scipy_and_scikit_learn():
    rng = np.random.default_rng(1)
    y = rng.lognormal(0, 0.8, 60)
    pred = pd.DataFrame({"y_true": y, "y_pred": 0.2 * np.log(y) + rng.normal(0, 1, 60)})
    skill, p = chance_test("regression", pred)
    assert skill == pytest.approx(stats.pearsonr(pred["y_true"], pred["y_pred"]).statistic)
    rho = stats.spearmanr(pred["y_true"], pred["y_pred"], alternative="greater")
    assert p == pytest.approx(rho.pvalue)
    labels = (rng.random(60) < 0.3).astype(float)
    pred = pd.DataFrame({"y_true": labels, "y_pred": labels * 0.3 + rng.random(60)})
    skill, p = chance_test("classification", pred)
    assert skill == pytest.approx(2 * roc_auc_score(labels, pred["y_pred"]) - 1)
    pos, neg = pred["y_pred"][labels == 1], pred["y_pred"][labels == 0]
    assert p == pytest.approx(stats.mannwhitneyu(pos, neg, alternative="greater").pvalue)
    constant = pd.DataFrame({"y_true": y, "y_pred": np.ones(60)})
    assert np.isnan(chance_test("regression", constant)[1])


def test_seed_average_matches_subjects_by_id_and_drops_partial_ones():
    a = pd.DataFrame({"subject": ["s1", "s2", "s3"], "y_true": [1.0, 2, 3], "y_pred": [0, 2, 4.0]})
    b = pd.DataFrame({"subject": ["s2", "s1"], "y_true": [2.0, 1], "y_pred": [4.0, 2]})
    averaged = seed_averaged([a, b])
    assert list(averaged.index) == ["s1", "s2"]  # s3 lacks a seed
    assert list(averaged["y_pred"]) == [1.0, 3.0] and list(averaged["y_true"]) == [1.0, 2.0]


def _grid(rng: np.random.Generator, n_null: int, n_test: int = 60, seeds: int = 3):
    """Runs and predictions of a grid whose seeds share one test set: `n_null` cells whose
    predictions follow a feature unrelated to the target, and one cell with a real signal."""
    rows, predictions = [], {}
    subjects = [f"s{i}" for i in range(n_test)]
    for cell in range(n_null + 1):
        y, feature = rng.normal(size=n_test), rng.normal(size=n_test)
        signal = cell == n_null
        for seed in range(seeds):  # the seeds share the feature: their p-values are dependent
            y_pred = (y if signal else feature) + 0.3 * rng.normal(size=n_test)
            path = f"c{cell}/seed{seed}"
            predictions[path] = pd.DataFrame({"subject": subjects, "y_true": y, "y_pred": y_pred})
            rows.append({"target": "real" if signal else f"noise{cell}", "inputs": "T1w",
                         "kind": "regression", "skill": 0.0, "imaging_signal": not signal,
                         "dataset": "other", "path": path})  # fmt: skip
    return pd.DataFrame(rows), predictions


def test_verdicts_keep_the_family_wise_error_rate_with_dependent_seeds():
    rng = np.random.default_rng(2)
    any_false, found = 0, 0
    repeats = 100
    for _ in range(repeats):
        cells = legibility(*_grid(rng, n_null=8)).set_index("target")
        any_false += (cells.drop(index="real")["verdict"] == "legible").any()
        found += cells.loc["real", "verdict"] == "legible"
    # FWER <= 0.05: more than 12 of 100 grids with a false 'legible' has probability < 0.2%
    # (Fisher's combination of the dependent seeds' p-values gets about a fifth wrong)
    assert any_false <= 12 and found == repeats


def test_cells_combine_seeds_and_correct_over_the_grid():
    runs, predictions = _grid(np.random.default_rng(3), n_null=4)
    cells = legibility(runs, predictions).set_index("target")
    assert (cells["n_seeds"] == 3).all() and (cells["n_test"] == 60).all()
    real = runs[runs["target"] == "real"]["path"]
    averaged = sum(predictions[p]["y_pred"] for p in real) / 3
    rho = stats.spearmanr(predictions[real.iloc[0]]["y_true"], averaged, alternative="greater")
    assert cells.loc["real", "p_cell"] == pytest.approx(rho.pvalue)
    assert cells["p_holm"].to_numpy() == pytest.approx(holm(cells["p_cell"]))
    assert ((cells["p_holm"] < ALPHA) == (cells["verdict"] == "legible")).all()
    assert (cells["expected"] == "").all() and (cells["agrees"] == "").all()  # not synth


def test_ground_truth_follows_the_generator():
    synth = SynthSource(DataConfig()).column_domains()
    for target in ("crp", "handedness", "migraine", "neuroticism"):
        for inputs in (["T1w"], ["connectivity"], ["metadata"], ["FLAIR", "metadata"]):
            assert expected_legibility(inputs, synth[target]) == "not legible"
    assert expected_legibility(["T1w"], synth["cognition"]) == "legible"
    assert expected_legibility(["connectivity"], synth["sex"]) == "legible"
    assert expected_legibility(["connectivity"], synth["cognition"]) == ""  # fMRI ignores it
    assert expected_legibility(["metadata"], synth["age"]) == ""
    assert expected_legibility(["T1w"], {}) == ""  # real data: the truth is unknown


def test_grid_csvs_hold_the_verdicts(grid_dir):
    runs = pd.read_csv(grid_dir / "grid" / "multimodal.csv")
    cells = pd.read_csv(grid_dir / "grid" / "legibility.csv", keep_default_na=False)
    assert len(cells) == 6 and set(cells["verdict"]) <= {"legible", "not legible"}
    assert pd.to_numeric(cells["p_holm"]).to_numpy() == pytest.approx(
        multipletests(pd.to_numeric(cells["p_cell"]), method="holm")[1]
    )
    for _, run in runs.iterrows():  # one seed: the cell's test is the run's own
        pred = pd.read_csv(os.path.join(run["path"], "predictions.csv"))
        assert run["p_cell"] == pytest.approx(chance_test(run["kind"], pred)[1], nan_ok=True)
    handedness = cells[cells["target"] == "handedness"]
    assert set(handedness["expected"]) == {"not legible"}


def test_verdict_strings_are_escaped_in_the_heatmap(grid_dir, tmp_path):
    evil = "<script>alert(1)</script>"
    runs = pd.read_csv(grid_dir / "grid" / "multimodal.csv")
    runs["verdict"] = evil
    runs["target"] = runs["target"] + evil
    (tmp_path / "grid").mkdir()
    runs.to_csv(tmp_path / "grid" / "multimodal.csv", index=False)
    page = grid_section(tmp_path)
    assert evil not in page and html.escape(evil) in page
    assert 'data-verdict="&lt;script&gt;' in page
