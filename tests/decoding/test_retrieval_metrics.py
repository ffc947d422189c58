"""Retrieval metrics against a brute-force reference; the CLIP loss against cross-entropy."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.metrics.pairwise import cosine_similarity as sk_cosine

from brainbench.metrics import (
    batch_retrieval_metrics,
    cosine_similarity,
    retrieval_metrics,
    retrieval_ranks,
)
from brainbench.training.clip_loss import ClipLoss


def brute_force(scores: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    ranks = []
    for row, t in zip(scores, truth, strict=True):
        order = sorted(range(len(row)), key=lambda j: -row[j])
        ranks.append(order.index(t) + 1)
    ranks = np.array(ranks)
    out = {f"top{k}": float(np.mean(ranks <= k)) for k in (1, 5, 10)}
    return out | {"median_rank": float(np.median(ranks)), "mean_rank": float(ranks.mean())}


def test_retrieval_metrics_match_brute_force():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(37, 23))
    truth = rng.integers(0, 23, size=37)
    scores[np.arange(37), truth] += rng.normal(1.0, 1.0, size=37)
    assert retrieval_metrics(scores, truth) == pytest.approx(brute_force(scores, truth))


def test_ties_share_their_average_rank_and_cosine_matches_sklearn():
    assert retrieval_ranks(np.zeros((1, 5)), np.array([2])) == pytest.approx([3.0])
    a, b = np.random.default_rng(2).normal(size=(2, 6, 4))
    assert cosine_similarity(a, b) == pytest.approx(sk_cosine(a, b))


def test_batch_metrics_are_the_mean_over_batches():
    rng = np.random.default_rng(3)
    target = rng.normal(size=(10, 8))
    pred = target + rng.normal(0, 2.0, size=(10, 8))
    out = batch_retrieval_metrics(pred, target, batch_size=5)
    parts = [
        brute_force(sk_cosine(pred[i : i + 5], target[i : i + 5]), np.arange(5)) for i in (0, 5)
    ]
    assert out["top1"] == pytest.approx(np.mean([p["top1"] for p in parts]))


def test_clip_loss_is_cross_entropy_and_handles_repeated_images():
    torch.manual_seed(0)
    x, y = torch.randn(6, 4), torch.randn(6, 4)
    loss = ClipLoss(temperature=0.5, learn_temperature=False, symmetric=False)
    logits = F.normalize(x, dim=1) @ F.normalize(y, dim=1).T / 0.5
    assert loss(x, y).item() == pytest.approx(F.cross_entropy(logits, torch.arange(6)).item())
    sym = ClipLoss(temperature=0.5, learn_temperature=False)
    expected = (
        F.cross_entropy(logits, torch.arange(6)) + F.cross_entropy(logits.T, torch.arange(6))
    ) / 2
    assert sym(x, y).item() == pytest.approx(expected.item(), rel=1e-5)
    assert "log_temperature" not in dict(sym.named_parameters())
    assert "log_temperature" in dict(ClipLoss().named_parameters())
    y[1] = y[0]  # the same image twice: both count as positives
    logits = F.normalize(x, dim=1) @ F.normalize(y, dim=1).T / 0.5
    target = torch.eye(6)
    target[0, 1] = target[1, 0] = 1
    target = target / target.sum(1, keepdim=True)
    manual = -(target * F.log_softmax(logits, 1)).sum(1).mean()
    assert loss(x, y).item() == pytest.approx(manual.item(), rel=1e-5)
