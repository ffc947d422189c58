"""The chance and ridge baselines."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainbench.errors import DataError
from brainbench.models.classical import (
    ChanceConfig,
    RidgeConfig,
    binary_targets,
    build_chance,
    build_ridge,
    fit_linear,
    penalty_fallback,
)
from brainbench.registry import MODELS


def _mae(pred: np.ndarray, data) -> float:
    return float(np.mean(np.abs(pred - data.targets)))


def test_registered() -> None:
    assert MODELS["chance"].kind == "baseline" and MODELS["ridge"].kind == "sklearn"
    assert "classification" in MODELS["ridge"].task_kinds


def test_chance_predicts_training_mean(volumes, spec, quick_trainer, tmp_path) -> None:
    train, test = volumes(30, seed=1), volumes(7, seed=2)
    model = build_chance(ChanceConfig(), task=spec(), trainer=quick_trainer)
    model.fit(train, test, seed=0, run_dir=tmp_path)
    np.testing.assert_allclose(model.predict(test), np.full(7, train.targets.mean()), rtol=1e-6)
    model.save(tmp_path / "model.safetensors")
    loaded = build_chance(ChanceConfig(), task=spec(), trainer=quick_trainer)
    loaded.load(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))


def test_chance_predicts_prior_for_classification(volumes, spec, quick_trainer, tmp_path) -> None:
    train = volumes(40, seed=1, target="sex")
    model = build_chance(ChanceConfig(), task=spec("classification"), trainer=quick_trainer)
    model.fit(train, train, seed=0, run_dir=tmp_path)
    assert model.predict(train)[0] == pytest.approx(train.targets.mean())


def test_ridge_chooses_alpha_by_cv_and_beats_chance(volumes, spec, quick_trainer, tmp_path) -> None:
    train, test = volumes(80, seed=1), volumes(30, seed=2)
    params = RidgeConfig()
    model = build_ridge(params, task=spec(), trainer=quick_trainer)
    info = model.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["alpha"] in params.alphas() and info["n_features"] == 10 * 12 * 10
    assert _mae(model.predict(test), test) < 0.5 * _mae(np.full(30, train.targets.mean()), test)

    noise = volumes(80, seed=1)
    noise.targets = np.random.default_rng(0).permutation(noise.targets)
    noisy = build_ridge(params, task=spec(), trainer=quick_trainer)
    with pytest.warns(UserWarning, match="falls back to predicting the training mean"):
        fitted = noisy.fit(noise, test, seed=0, run_dir=tmp_path)  # noise: no better than none
    assert fitted["alpha"] is None and fitted["penalty"].startswith("fallback: the penalty")


def test_ridge_save_reloads_identical_predictions(volumes, spec, quick_trainer, tmp_path) -> None:
    train, test = volumes(40, seed=1), volumes(10, seed=2)
    params = RidgeConfig(pool=3)
    model = build_ridge(params, task=spec(), trainer=quick_trainer)
    model.fit(train, test, seed=0, run_dir=tmp_path)
    model.save(tmp_path / "ridge.safetensors")
    loaded = build_ridge(params, task=spec(), trainer=quick_trainer)
    loaded.load(tmp_path / "ridge.safetensors")
    np.testing.assert_array_equal(loaded.predict(test), model.predict(test))


def test_logistic_for_classification(volumes, spec, quick_trainer, tmp_path) -> None:
    train, test = volumes(60, seed=1, target="sex"), volumes(30, seed=2, target="sex")
    model = build_ridge(RidgeConfig(n_alphas=5), task=spec("classification"), trainer=quick_trainer)
    model.fit(train, test, seed=0, run_dir=tmp_path)
    prob = model.predict(test)
    assert ((prob >= 0) & (prob <= 1)).all()
    assert np.mean((prob >= 0.5) == test.targets) > 0.8


def test_classification_targets_must_be_binary() -> None:
    with pytest.raises(DataError, match="0/1"):
        binary_targets(np.array([0.0, 1.0, 2.0]))


def test_loading_a_missing_or_foreign_file_is_a_data_error(
    volumes, spec, quick_trainer, tmp_path
) -> None:
    model = build_ridge(RidgeConfig(), task=spec(), trainer=quick_trainer)
    with pytest.raises(DataError, match="does not exist"):
        model.load(tmp_path / "absent.safetensors")
    chance = build_chance(ChanceConfig(), task=spec(), trainer=quick_trainer)
    chance.fit(volumes(5), volumes(5), seed=0, run_dir=tmp_path)
    chance.save(tmp_path / "chance.safetensors")
    with pytest.raises(DataError, match="holds a 'chance' model"):
        model.load(tmp_path / "chance.safetensors")


def test_cv_folds_shrink_to_the_smallest_class_and_refuse_below_two() -> None:
    from brainbench.models.classical import cv_folds

    assert cv_folds(np.array([0, 0, 0, 1, 1, 1, 1]), "classification", 5) == 3
    assert cv_folds(np.arange(4.0), "regression", 5) == 4
    with pytest.raises(DataError, match="fewer than 2 per class.*--label-fraction"):
        cv_folds(np.array([0, 0, 0, 1]), "classification", 5)


def test_logistic_on_a_tiny_training_set_uses_fewer_folds(
    volumes, spec, quick_trainer, tmp_path
) -> None:
    train = volumes(6, seed=1, target="sex")
    params = RidgeConfig(cv_min_subjects=4)  # the default (10) falls back to the prior
    model = build_ridge(params, task=spec("classification"), trainer=quick_trainer)
    info = model.fit(train, train, seed=0, run_dir=tmp_path)  # 5 folds requested, 2-3 per class
    assert info["penalty"] == "cv" and model.predict(train).shape == (6,)


@pytest.mark.parametrize("n", [2, 3])
def test_ridge_on_two_or_three_subjects_predicts_the_training_mean_and_says_so(
    n, volumes, spec, quick_trainer, tmp_path
) -> None:
    """1% labels of the embedded cohort is 2 subjects: CV there chose alpha=0.1 and predicted
    236-year-olds (README); now the fit falls back to the training mean, with a warning."""
    train, test = volumes(n, seed=3), volumes(40, seed=4)
    model = build_ridge(RidgeConfig(), task=spec(), trainer=quick_trainer)
    with pytest.warns(UserWarning, match=f"{n} training subjects.*cannot choose the penalty"):
        info = model.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["alpha"] is None and info["penalty"].startswith(f"fallback: {n} training")
    pred = model.predict(test)
    assert train.targets.min() <= pred.min() and pred.max() <= train.targets.max()
    reference = DummyRegressor(strategy="mean").fit(np.zeros((n, 1)), train.targets)
    np.testing.assert_allclose(pred, reference.predict(np.zeros((40, 1))), rtol=1e-6)
    model.save(tmp_path / "ridge.safetensors")  # the fallback saves and reloads like a fit
    loaded = build_ridge(RidgeConfig(), task=spec(), trainer=quick_trainer)
    loaded.load(tmp_path / "ridge.safetensors")
    np.testing.assert_array_equal(loaded.predict(test), pred)


def test_ridge_from_enough_subjects_still_matches_scikit_learn(
    volumes, spec, quick_trainer, tmp_path
) -> None:
    """At cv_min_subjects the penalty is chosen by CV, as StandardScaler + RidgeCV does."""
    train, test = volumes(10, seed=3), volumes(12, seed=4)
    params = RidgeConfig()
    model = build_ridge(params, task=spec(), trainer=quick_trainer)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback warning
        info = model.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["penalty"] == "cv" and info["alpha"] in params.alphas()
    x, x_test = model.features(train), model.features(test)
    reference = make_pipeline(StandardScaler(), RidgeCV(alphas=params.alphas()))
    reference.fit(x, train.targets.astype(float))
    np.testing.assert_allclose(model.predict(test), reference.predict(x_test), rtol=1e-6)


@pytest.mark.parametrize("labels", [[0, 1, 1], [0, 0, 1, 1], [1, 0, 0, 1, 1, 0, 1]])
def test_logistic_on_too_few_subjects_predicts_the_prior_and_says_so(
    labels, volumes, spec, quick_trainer, tmp_path
) -> None:
    train, test = volumes(len(labels), seed=3, target="sex"), volumes(20, seed=4, target="sex")
    train.targets = np.asarray(labels, dtype=np.float32)
    model = build_ridge(RidgeConfig(), task=spec("classification"), trainer=quick_trainer)
    with pytest.warns(UserWarning, match="cannot choose the penalty.*training prior"):
        info = model.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["alpha"] is None and info["penalty"].startswith("fallback: ")
    reference = DummyClassifier(strategy="prior").fit(np.zeros((len(labels), 1)), labels)
    expected = reference.predict_proba(np.zeros((20, 1)))[:, 1]
    np.testing.assert_allclose(model.predict(test), expected, rtol=1e-9)


def test_a_training_set_of_one_class_is_a_data_error(volumes, spec, quick_trainer, tmp_path):
    train = volumes(4, seed=3, target="sex")
    train.targets = np.ones(4, dtype=np.float32)
    model = build_ridge(RidgeConfig(), task=spec("classification"), trainer=quick_trainer)
    with pytest.raises(DataError, match="all of one class"):
        model.fit(train, train, seed=0, run_dir=tmp_path)


def test_penalty_fallback_rule() -> None:
    assert penalty_fallback(np.arange(10.0), "regression") is None
    assert "9 training subjects" in penalty_fallback(np.arange(9.0), "regression")
    assert penalty_fallback(np.arange(3.0), "regression", min_subjects=3) is None
    six = np.array([0, 0, 0, 0, 1, 1] * 2)
    assert penalty_fallback(six, "classification") is None
    assert "1 training subject of a class" in penalty_fallback(
        np.array([0] * 11 + [1]), "classification"
    )


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_a_fit_worse_than_no_features_on_validation_falls_back(kind: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    signal = 3 * x[:, 0] + rng.normal(size=40)
    y = signal if kind == "regression" else (signal > 0).astype(float)
    x_val = rng.normal(size=(20, 5))
    y_val = 3 * x_val[:, 0] if kind == "regression" else (x_val[:, 0] > 0).astype(float)
    alphas = np.logspace(-2, 3, 6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a sane fit says nothing
        alpha, _, _, penalty = fit_linear(x, y, kind, alphas, 3, 0, val=(x_val, y_val))
    assert alpha is not None and penalty == "cv"
    flipped = 1 - y_val if kind == "classification" else -y_val  # validation against the fit
    with pytest.warns(UserWarning, match="falls back to predicting the training"):
        alpha, coef, intercept, penalty = fit_linear(x, y, kind, alphas, 3, 0, val=(x_val, flipped))
    assert alpha is None and not np.any(coef) and penalty.startswith("fallback: the penalty")
    assert "validation" in penalty


class _Runs:
    """A stand-in for SubjectWindows: `run(i)` is a (time, parcels) series, `targets` ages."""

    def __init__(self, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.targets = rng.uniform(10, 80, n).astype(np.float32)
        self.runs = [rng.normal(size=(60, 12)) for _ in range(n)]

    def __len__(self) -> int:
        return len(self.targets)

    def run(self, i: int) -> np.ndarray:
        return self.runs[i]


def test_connectome_on_two_subjects_predicts_the_training_mean(
    spec, quick_trainer, tmp_path
) -> None:
    from brainbench.models.fmri_baselines import ConnectomeConfig, build_connectome

    train, test = _Runs(2, seed=0), _Runs(9, seed=1)
    model = build_connectome(ConnectomeConfig(), task=spec(), trainer=quick_trainer)
    with pytest.warns(UserWarning, match="2 training subjects.*cannot choose the penalty"):
        info = model.fit(train, test, seed=0, run_dir=tmp_path)
    assert info["penalty"].startswith("fallback: 2 training subjects")
    np.testing.assert_allclose(model.predict(test), np.full(9, train.targets.mean()), rtol=1e-6)
