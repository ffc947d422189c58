"""fmri/networks and fmri/perturb on the debug cohort: baselines, reference metrics, the truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from brainbench import api
from brainbench.errors import ConfigError
from brainbench.tasks.fmri_perturb import true_effects

COMMON = ["task_options.window=40", "trainer.progress_bar=false"]


def _records(root: Path, task: str) -> dict[str, tuple[dict, pd.DataFrame]]:
    out = {}
    for path in (root / "runs" / task.replace("/", "-")).rglob("metrics.json"):
        record = json.loads(path.read_text())
        out[record["model"]] = (record, pd.read_csv(path.with_name("predictions.csv")))
    return out


def test_networks(fmri: Path, tiny: list[str], tmp_path: Path) -> None:
    quiet = {"debug": True, "log": lambda s: None}
    out = [*COMMON, f"output_dir={tmp_path}"]
    api.run(["fmri/networks"], ["chance", "coordinates", "connectome"], overrides=out, **quiet)
    api.run(
        ["fmri/networks"], ["brainlm"], overrides=[*out, *tiny, "trainer.max_epochs=1"], **quiet
    )
    records = _records(tmp_path, "fmri/networks")
    connectome, chance = records["connectome"][0], records["chance"][0]
    assert connectome["metrics"]["ari"] > 0.5 and abs(chance["metrics"]["ari"]) < 0.05
    assert 0.03 < records["coordinates"][0]["metrics"]["ari"] < connectome["metrics"]["ari"]
    stages = connectome["per_stage"]  # networks segregate with age in the generator
    assert all(s["ari"] > 0.05 for s in stages.values())
    assert stages["adolescent"]["ari"] > stages["neonatal"]["ari"]
    for record, predictions in records.values():  # the scores are scikit-learn's
        assert "unassigned" not in set(predictions["network"])
        for method, suffix in (("kmeans", ""), ("ward", "_ward")):
            labels = predictions[f"cluster_{method}"]
            ari = adjusted_rand_score(predictions["network"], labels)
            nmi = normalized_mutual_info_score(predictions["network"], labels)
            assert record["metrics"][f"ari{suffix}"] == pytest.approx(ari)
            assert record["metrics"][f"nmi{suffix}"] == pytest.approx(nmi)
    brainlm = records["brainlm"][0]
    assert np.isfinite(brainlm["metrics"]["ari_attention"]) and brainlm["protocol"] == "scratch"


def test_true_effect_is_the_partial_regression_coefficient() -> None:
    """One noise-free parcel per network: the effect of a on b is b's regression weight on a."""
    rng = np.random.default_rng(0)
    mix = np.eye(4) + 0.5 * rng.normal(size=(4, 4))
    cov = mix @ mix.T
    corr = cov / np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    effects = true_effects(corr, np.full(4, 1 - 1e-9), 0.0, np.arange(4))
    samples = rng.multivariate_normal(np.zeros(4), corr, size=200_000)
    for b in range(4):
        others = [a for a in range(4) if a != b]
        fit = LinearRegression().fit(samples[:, others], samples[:, b])
        np.testing.assert_allclose(effects[b, others], fit.coef_, atol=0.02)
    assert np.isnan(np.diag(effects)).all()


def test_perturb(fmri: Path, tmp_path: Path) -> None:
    out = [*COMMON, f"output_dir={tmp_path}"]
    api.run(
        ["fmri/perturb"],
        ["chance", "conditional_gaussian"],
        debug=True,
        overrides=out,
        log=lambda s: None,
    )
    records = _records(tmp_path, "fmri/perturb")
    gaussian, chance = records["conditional_gaussian"], records["chance"]
    assert gaussian[0]["metrics"]["pearson_r"] > 0.8
    assert abs(chance[0]["metrics"]["pearson_r"]) < 0.4
    predictions = gaussian[1]
    assert len(predictions) == 14 * 13
    r = np.corrcoef(predictions["predicted_effect"], predictions["true_effect"])[0, 1]
    assert gaussian[0]["metrics"]["pearson_r"] == pytest.approx(r)
    assert set(gaussian[0]["per_stage"]) and gaussian[0]["per_stage"]["older_adult"]["n"] >= 1
    scale = ["task_options.perturbation=scale", "task_options.factor=1"]
    with pytest.raises(ConfigError, match="factor=1"):
        api.run(["fmri/perturb"], ["chance"], debug=True, overrides=[*COMMON, *scale], log=print)
