"""Voxel-wise metrics cross-checked against MONAI's reference implementations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, PSNRMetric, SSIMMetric, compute_hausdorff_distance
from monai.networks.utils import one_hot

from brainbench.metrics import STRUCTURES, hd95, segmentation_metrics, ssim, synthesis_metrics


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], n_classes: int) -> np.ndarray:
    """A random label map of smooth blobs (so structures have surfaces worth measuring)."""
    noise = rng.normal(size=(n_classes, *shape))
    kernel = np.ones(3) / 3
    for axis in range(1, 4):
        noise = np.apply_along_axis(np.convolve, axis, noise, kernel, mode="same")
    return noise.argmax(axis=0)


def _onehot(labels: np.ndarray, n: int) -> torch.Tensor:
    return one_hot(torch.as_tensor(labels)[None, None], n)


@pytest.mark.parametrize("seed", [0, 1])
def test_segmentation_metrics_match_monai(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, shape, spacing = len(STRUCTURES), (14, 16, 12), 2.0
    true, pred = _blobs(rng, shape, n), _blobs(rng, shape, n)
    pred[pred == n - 1] = 0  # a structure missing from the prediction: Dice 0, HD95 NaN
    ours = segmentation_metrics(pred, true, spacing=spacing)
    dice = DiceMetric(include_background=False, reduction="none")
    dice(_onehot(pred, n), _onehot(true, n))
    ref_dice = dice.aggregate()[0].numpy()
    for c in range(1, n):
        assert ours[f"dice_{STRUCTURES[c]}"] == pytest.approx(ref_dice[c - 1], abs=1e-6)
    assert ours["dice_mean"] == pytest.approx(ref_dice.mean(), abs=1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_hd = compute_hausdorff_distance(
            _onehot(pred, n), _onehot(true, n), percentile=95, spacing=spacing
        )[0].numpy()
    ours_hd = [hd95(pred == c, true == c, spacing) for c in range(1, n)]
    np.testing.assert_allclose(ours_hd[:-1], ref_hd[:-1], rtol=1e-5)
    assert np.isnan(ours_hd[-1])
    assert ours["hd95_mean"] == pytest.approx(np.mean(ref_hd[:-1]), rel=1e-5)


def test_segmentation_metrics_perfect_and_absent() -> None:
    labels = np.zeros((8, 8, 8), dtype=np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    m = segmentation_metrics(labels, labels, spacing=2.0)
    assert m["dice_hippocampus"] == 1.0 and m["dice_mean"] == 1.0
    assert m["hd95_mean"] == 0.0 and m["volume_error"] == 0.0
    assert np.isnan(m["dice_thalamus"])  # absent from the truth
    assert m["volume_true_ml"] == pytest.approx(27 * 8 / 1000)
    empty = segmentation_metrics(np.zeros_like(labels), np.zeros_like(labels))
    assert np.isnan(empty["dice_mean"]) and np.isnan(empty["hd95_mean"])
    with pytest.raises(ValueError, match="shape"):
        segmentation_metrics(labels, labels[:-1])


def test_synthesis_metrics_match_monai() -> None:
    rng = np.random.default_rng(0)
    true = rng.uniform(size=(16, 18, 14))
    pred = np.clip(true + rng.normal(scale=0.1, size=true.shape), 0, 1)
    mask = np.zeros(true.shape, dtype=bool)
    mask[3:13, 3:15, 2:12] = True
    ours = synthesis_metrics(pred, true, mask)
    psnr = PSNRMetric(max_val=1.0)(
        torch.as_tensor(pred[mask])[None, None], torch.as_tensor(true[mask])[None, None]
    )
    assert ours["psnr"] == pytest.approx(float(psnr), rel=1e-6)
    assert ours["mae"] == pytest.approx(np.abs(pred - true)[mask].mean())
    masked = [torch.as_tensor(np.where(mask, v, 0.0))[None, None].float() for v in (pred, true)]
    ref_ssim = SSIMMetric(spatial_dims=3, data_range=1.0)(*masked)
    assert ours["ssim"] == pytest.approx(float(ref_ssim), abs=1e-5)
    assert ssim(true, true) == pytest.approx(1.0)


def test_ssim_small_grid_shrinks_window() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(6, 9, 7))
    ref = SSIMMetric(spatial_dims=3, data_range=1.0, win_size=5)(
        torch.as_tensor(x)[None, None].float(), torch.as_tensor(x**2)[None, None].float()
    )
    assert ssim(x, x**2) == pytest.approx(float(ref), abs=1e-5)
