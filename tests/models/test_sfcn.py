"""SFCN: shapes, the soft-label head, learning, saving and determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from brainbench.errors import ConfigError
from brainbench.models.sfcn import (
    SFCN,
    Bins,
    ExpectedValue,
    SFCNConfig,
    SoftLabelLoss,
    build_sfcn,
    make_bins,
    pooled_blocks,
    soft_labels,
)
from brainbench.registry import MODELS

SMALL = SFCNConfig(channels=[4, 8, 16, 8])


@pytest.mark.parametrize(
    ("shape", "pools"),
    [((40, 48, 40), 4), ((20, 24, 20), 3), ((4, 4, 4), 1), ((5, 9, 17), 1), ((64, 64, 64), 5)],
)
def test_output_shape_and_pooling_depth(shape, pools) -> None:
    assert pooled_blocks(shape, 6) == pools
    net = SFCN(2, shape, [8, 16, 32, 64, 64, 32], n_outputs=7).eval()
    assert net(torch.zeros(3, 2, *shape)).shape == (3, 7)
    assert sum(isinstance(m, torch.nn.MaxPool3d) for m in net.modules()) == pools


def test_too_small_input_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="preprocess.shape"):
        SFCN(1, (3, 16, 16), [8, 8], n_outputs=1)


def test_registered() -> None:
    entry = MODELS["sfcn"]
    assert entry.kind == "torch" and entry.task_kinds == ("regression", "classification")


def test_bins_cover_the_target_range_with_margin() -> None:
    bins = make_bins(np.array([10.0, 50.0]), bin_width=1.0, sigma=1.0)
    centres = bins.centres().numpy()
    assert centres[0] < 10 - 1.5 and centres[-1] > 50 + 1.5
    np.testing.assert_allclose(np.diff(centres), 1.0)
    with pytest.raises(ConfigError, match="bin_width"):
        make_bins(np.array([0.0, 1e6]), bin_width=1.0, sigma=1.0)


def test_log_bins_widen_with_the_target() -> None:
    """Bins in log(age + 40 weeks): weeks wide before birth, years wide in old age."""
    ages = np.array([-0.3, 0.5, 30.0, 85.0])
    bins = make_bins(ages, None, sigma=1.0, log_offset=0.769)
    np.testing.assert_allclose(np.diff(bins.centres().numpy()), bins.width)
    values = bins.values().numpy()
    np.testing.assert_allclose(values, np.exp(bins.centres().numpy()) - 0.769)
    assert values[0] < -0.3 and values[-1] > 85.0
    widths = np.diff(values)
    assert widths[0] < 0.05 and widths[-1] > 5 and np.all(np.diff(widths) > 0)
    # a head that outputs each age's soft label predicts that age (within a tenth of a bin)
    y = torch.tensor([-0.2, 1.0, 40.0, 80.0])
    predicted = ExpectedValue(bins)(torch.log(soft_labels(y, bins, 1.0))).numpy()
    nearest = np.abs(values[None] - y.numpy()[:, None]).argmin(1)
    np.testing.assert_array_less(np.abs(predicted - y.numpy()), 0.1 * widths[nearest])


def test_log_bins_need_positive_shifted_targets() -> None:
    with pytest.raises(ConfigError, match=r"model.log_offset=0.5 .* must exceed 1"):
        make_bins(np.array([-1.0, 5.0]), None, sigma=1.0, log_offset=0.5)


def test_soft_label_kl_and_expected_value_match_hand_computation() -> None:
    bins, sigma = Bins(start=0.0, width=2.0, count=10), 1.5
    y = torch.tensor([7.3, 12.0])
    edges = np.arange(11) * 2.0
    expected = []
    for target in y.numpy():
        mass = np.diff(norm.cdf(edges, loc=target, scale=sigma * 2.0))
        expected.append(mass / mass.sum())
    expected = np.array(expected)
    np.testing.assert_allclose(soft_labels(y, bins, sigma).numpy(), expected, atol=1e-6)

    logits = torch.randn(2, 10, generator=torch.Generator().manual_seed(0))
    log_p = torch.log_softmax(logits.double(), 1).numpy()
    kl = np.sum(expected * (np.log(expected) - log_p)) / 2
    assert SoftLabelLoss(bins, sigma)(logits, y).item() == pytest.approx(kl, rel=1e-4)

    centres = np.arange(10) * 2.0 + 1.0
    mean = np.exp(log_p) @ centres
    np.testing.assert_allclose(ExpectedValue(bins)(logits).numpy(), mean, rtol=1e-5)


def test_soft_labels_of_targets_outside_the_bins_stay_finite() -> None:
    labels = soft_labels(torch.tensor([-100.0, 1e4]), Bins(0.0, 1.0, 5), 1.0)
    assert torch.isfinite(labels).all() and torch.allclose(labels.sum(1), torch.ones(2))


@pytest.mark.parametrize("log_offset", [None, 0.769])
def test_learns_better_than_chance(log_offset, volumes, spec, quick_trainer, tmp_path) -> None:
    train, val, test = volumes(96, seed=1), volumes(24, seed=2), volumes(40, seed=3)
    trainer = quick_trainer.model_copy(update={"max_epochs": 8, "patience": 8})
    model = build_sfcn(SFCNConfig(log_offset=log_offset), task=spec(), trainer=trainer)
    info = model.fit(train, val, seed=33, run_dir=tmp_path)
    assert info["epochs_run"] == 8 and 1 <= info["best_epoch"] <= 8
    assert math.isfinite(info["best_val_loss"]) and info["n_params"] > 0
    pred = model.predict(test)
    assert pred.shape == (40,)
    chance = np.abs(train.targets.mean() - test.targets).mean()
    assert np.abs(pred - test.targets).mean() < 0.6 * chance


def test_classification_head(volumes, spec, quick_trainer, tmp_path) -> None:
    train, val = volumes(32, seed=1, target="sex"), volumes(16, seed=2, target="sex")
    model = build_sfcn(SMALL, task=spec("classification"), trainer=quick_trainer)
    model.fit(train, val, seed=33, run_dir=tmp_path)
    prob = model.predict(val)
    assert prob.shape == (16,) and ((prob >= 0) & (prob <= 1)).all()


@pytest.mark.parametrize("log_offset", [None, 0.769])
def test_save_reloads_identical_predictions(
    log_offset, volumes, spec, quick_trainer, tmp_path
) -> None:
    """The bins, log axis included, travel in the weights file's metadata."""
    train, val = volumes(24, seed=1), volumes(12, seed=2)
    params = SMALL.model_copy(update={"log_offset": log_offset})
    model = build_sfcn(params, task=spec(), trainer=quick_trainer)
    model.fit(train, val, seed=33, run_dir=tmp_path)
    model.save(tmp_path / "model.safetensors")
    fresh = build_sfcn(SMALL, task=spec(), trainer=quick_trainer)
    fresh.load(tmp_path / "model.safetensors")
    np.testing.assert_array_equal(fresh.predict(val), model.predict(val))


def test_same_seed_same_predictions(volumes, spec, quick_trainer, tmp_path) -> None:
    train, val = volumes(24, seed=1), volumes(12, seed=2)

    def run(seed: int) -> np.ndarray:
        model = build_sfcn(SMALL, task=spec(), trainer=quick_trainer)
        model.fit(train, val, seed=seed, run_dir=tmp_path / str(seed))
        return model.predict(val)

    first = run(33)
    np.testing.assert_array_equal(run(33), first)
    assert not np.array_equal(run(34), first)
