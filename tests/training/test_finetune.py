"""Fine-tuning: the head trains alone on the frozen pretrained part, which then joins slower."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from brainbench.models.mae import EncoderHead, FeatureNorm, HeadConfig, probe_head
from brainbench.models.probe import ProbeConfig, ProbeEstimator
from brainbench.models.sfcn import ExpectedValue, make_bins
from brainbench.training.module import Finetune, TrainingModule


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(6, 4)
        self.head = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.encoder(x)))


class Snapshots(L.Callback):
    """The encoder's weight after every training epoch."""

    def __init__(self) -> None:
        self.weights: list[torch.Tensor] = []

    def on_train_epoch_end(self, trainer: L.Trainer, module: TrainingModule) -> None:
        self.weights.append(module.net.encoder.weight.detach().clone())


def test_encoder_frozen_then_slower() -> None:
    torch.manual_seed(0)
    x = torch.randn(64, 6)
    y = x[:, :1] * 2.0 - x[:, 1:2]
    loader = DataLoader(TensorDataset(x, y), batch_size=16)
    net = Net()
    start = net.encoder.weight.detach().clone()
    module = TrainingModule(
        net, nn.functional.mse_loss, lr=0.01, weight_decay=0.0,
        finetune=Finetune("encoder.", lr_scale=0.1, freeze_epochs=2),
    )  # fmt: skip
    snapshots = Snapshots()
    trainer = L.Trainer(
        max_epochs=4, callbacks=[snapshots], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )  # fmt: skip
    trainer.fit(module, loader, loader)
    groups = trainer.optimizers[0].param_groups
    assert [g["lr"] for g in groups] == [0.01, 0.01 * 0.1]
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in net.encoder.parameters()}
    assert torch.equal(snapshots.weights[0], start) and torch.equal(snapshots.weights[1], start)
    assert not torch.equal(snapshots.weights[2], start)  # joined at epoch 3
    assert all(p.requires_grad for p in net.parameters())


def test_no_finetune_trains_everything_at_one_rate() -> None:
    module = TrainingModule(Net(), nn.functional.mse_loss, lr=0.01, weight_decay=0.0)
    optimizer = module.configure_optimizers()
    assert len(optimizer.param_groups) == 1
    assert len(optimizer.param_groups[0]["params"]) == 4


def _head_r2(norm: nn.Module) -> float:
    """R^2 of a linear head after 300 Adam steps on embeddings that vary little between samples."""
    torch.manual_seed(0)
    z = torch.randn(256, 8)
    features = 1.2 + 0.05 * z  # a pooled embedding: a large mean, a small spread (mae3d_cnn)
    y = z[:, :1] - 0.5 * z[:, 1:2]
    head = nn.Sequential(norm, nn.Linear(8, 1))
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-2)
    for step in range(300):
        rows = slice(16 * (step % 16), 16 * (step % 16) + 16)
        loss = nn.functional.mse_loss(head(features[rows]), y[rows])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    head.eval()
    with torch.no_grad():
        residual = ((head(features) - y) ** 2).mean() / y.var()
    return float(1 - residual)


def test_feature_norm_lets_a_head_learn_small_differences() -> None:
    assert _head_r2(FeatureNorm(8)) > 0.9
    assert _head_r2(nn.Identity()) < 0.3  # the same head without it: near the mean


def test_feature_norm_takes_one_sample_batches() -> None:
    norm = FeatureNorm(4).train()
    norm(torch.randn(8, 4))
    single = torch.randn(1, 4)
    expected = (single - norm.running_mean) / torch.sqrt(norm.running_var + norm.eps)
    assert torch.allclose(norm(single), expected)


class LinearEncoder(nn.Module):
    out_dim = 5

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 5)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return 1.2 + 0.05 * self.proj(x)


@pytest.mark.parametrize("kind", ["regression", "classification"])
def test_probe_head_starts_where_the_linear_probe_is(kind: str) -> None:
    """LP-FT's first step: before any gradient step, the head predicts what a cross-validated
    ridge / logistic regression on the standardised frozen embeddings predicts."""
    torch.manual_seed(0)
    x = torch.randn(120, 3)
    signal = x[:, 0] - 0.5 * x[:, 1] + 0.1 * torch.randn(120)
    y = 40 + 10 * signal if kind == "regression" else (signal > 0).double()
    data = TensorDataset(x, y)
    data.targets = y.numpy()
    net = EncoderHead(LinearEncoder(), 1, dropout=0.0)
    bins = None
    if kind == "regression":
        bins = make_bins(y.numpy(), None, 1.0)
        net = EncoderHead(net.encoder, bins.count, dropout=0.0)
    params = HeadConfig()
    alpha, penalty = probe_head(net, data, data, bins, params, seed=0)
    assert penalty == "cv"
    net.eval()
    with torch.no_grad():
        out = net(x)
    spec = SimpleNamespace(kind=kind)
    probe = ProbeEstimator(LinearEncoder(), ProbeConfig(init="."), spec)
    probe.encoder.load_state_dict(net.encoder.state_dict())
    probe.fit(data, data, seed=0, run_dir=Path("."))
    reference = probe.predict(data)  # mae3d_probe on the same embeddings
    if kind == "regression":
        predicted = ExpectedValue(bins)(out).numpy()
        assert alpha is not None and np.corrcoef(predicted, y)[0, 1] > 0.95
        assert np.abs(predicted - reference).max() < 0.1  # years, on a 10-year spread
    else:
        predicted = torch.sigmoid(out[:, 0]).numpy()
        assert np.abs(predicted - reference).max() < 0.01


def test_probe_head_falls_back_to_the_mean_when_the_probe_fails_validation() -> None:
    """The guard mae3d_probe has: a probe worse on the validation split than the training mean
    starts the head at the mean (with a warning), not at the probe."""
    torch.manual_seed(0)
    x = torch.randn(120, 3)
    y = 40 + 10 * (x[:, 0] - 0.5 * x[:, 1])
    train, val = TensorDataset(x, y), TensorDataset(x, 80 - y)  # val: the opposite relation
    train.targets, val.targets = y.numpy(), (80 - y).numpy()
    bins = make_bins(y.numpy(), None, 1.0)
    net = EncoderHead(LinearEncoder(), bins.count, dropout=0.0)
    with pytest.warns(UserWarning, match="falls back to predicting the training mean"):
        alpha, penalty = probe_head(net, train, val, bins, HeadConfig(), seed=0)
    assert alpha is None and penalty.startswith("fallback: the penalty cross-validation chose")
    net.eval()
    with torch.no_grad():
        predicted = ExpectedValue(bins)(net(x)).numpy()
    assert np.abs(predicted - float(y.mean())).max() < 0.5  # years, on a 10-year spread
