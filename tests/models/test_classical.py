"""The chance and ridge baselines."""

from __future__ import annotations

import numpy as np
import pytest

from brainbench.errors import DataError
from brainbench.models.classical import (
    ChanceConfig,
    RidgeConfig,
    binary_targets,
    build_chance,
    build_ridge,
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
    assert noisy.fit(noise, test, seed=0, run_dir=tmp_path)["alpha"] > info["alpha"]


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
    model = build_ridge(RidgeConfig(), task=spec("classification"), trainer=quick_trainer)
    model.fit(train, train, seed=0, run_dir=tmp_path)  # 5 folds requested, 2-3 per class
    assert model.predict(train).shape == (6,)
