import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from brainbench.metrics import (
    FUNCTIONS,
    METRICS,
    classification_metrics,
    per_stage,
    regression_metrics,
)
from brainbench.stages import STAGE_NAMES, stage_of


def _sk_regression(t, p):
    return {
        "mae": skm.mean_absolute_error(t, p),
        "rmse": math.sqrt(skm.mean_squared_error(t, p)),
        "pearson_r": stats.pearsonr(t, p)[0],
        "spearman_r": stats.spearmanr(t, p)[0],
        "r2": skm.r2_score(t, p),
    }


def _sk_classification(t, s):
    pred = (s >= 0.5).astype(int)
    return {
        "balanced_accuracy": skm.balanced_accuracy_score(t, pred),
        "auroc": skm.roc_auc_score(t, s),
        "f1": skm.f1_score(t, pred),
        "accuracy": skm.accuracy_score(t, pred),
    }


@pytest.mark.parametrize("seed", range(5))
def test_regression_matches_reference(seed):
    rng = np.random.default_rng(seed)
    t = rng.normal(40, 20, 60)
    p = t + rng.normal(0, 8, 60)
    p[:10] = np.round(p[:10])  # some ties for the rank correlation
    p[10:15] = p[10]
    ours, ref = regression_metrics(t, p), _sk_regression(t, p)
    assert ours.keys() == ref.keys()
    for name in ref:
        assert ours[name] == pytest.approx(ref[name], rel=1e-9), name


@pytest.mark.parametrize("seed", range(5))
def test_classification_matches_reference(seed):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, 80)
    s = np.clip(0.3 * t + rng.uniform(0, 0.7, 80), 0, 1)
    s[:20] = np.round(s[:20], 1)  # ties in the scores
    ours, ref = classification_metrics(t, s), _sk_classification(t, s)
    assert ours.keys() == ref.keys()
    for name in ref:
        assert ours[name] == pytest.approx(ref[name], rel=1e-9), name


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
def test_undefined_cases_are_nan():
    t = np.array([1.0, 2.0, 3.0, 4.0])
    constant = regression_metrics(t, np.full(4, 0.1))
    assert math.isnan(constant["pearson_r"]) and math.isnan(constant["spearman_r"])
    assert math.isnan(regression_metrics(np.full(4, 2.0), t)["r2"])
    assert all(math.isnan(v) for v in regression_metrics([], []).values())
    one_class = classification_metrics(np.ones(5), np.linspace(0, 1, 5))
    assert math.isnan(one_class["auroc"])
    ref = skm.balanced_accuracy_score(np.ones(5), np.linspace(0, 1, 5) >= 0.5)
    assert one_class["balanced_accuracy"] == pytest.approx(ref)
    assert math.isnan(classification_metrics(np.zeros(3), np.zeros(3))["f1"])


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="0 or 1"):
        classification_metrics([0, 2], [0.1, 0.9])
    with pytest.raises(ValueError, match="3 values"):
        regression_metrics([1, 2, 3], [1, 2])


def test_metric_table_is_consistent():
    for name, spec in METRICS.items():
        values = FUNCTIONS[spec.kind](np.array([0, 1, 0, 1]), np.array([0.2, 0.8, 0.6, 0.4]))
        assert name in values
    assert METRICS["mae"].higher_is_better is False
    assert METRICS["auroc"].higher_is_better is True


def test_per_stage_groups_by_lifespan_stage():
    rng = np.random.default_rng(1)
    ages = np.concatenate([rng.uniform(-0.4, -0.1, 8), rng.uniform(20, 90, 60)])
    p = ages + rng.normal(0, 3, ages.size)
    result = per_stage(ages, ages, p, regression_metrics)
    stages = np.array([stage_of(a) for a in ages])
    expected = [s for s in STAGE_NAMES if (stages == s).any()]
    assert list(result) == expected  # lifespan order; empty stages skipped
    for stage, values in result.items():
        mask = stages == stage
        assert values["n"] == mask.sum()
        ref = _sk_regression(ages[mask], p[mask])
        assert values["mae"] == pytest.approx(ref["mae"])
        assert values["r2"] == pytest.approx(ref["r2"])
    with pytest.raises(ValueError):
        per_stage(ages[:-1], ages, p, regression_metrics)
