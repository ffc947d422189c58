"""brainlm must learn what masked fMRI modelling rests on: copying across parcels at one time.

On the network toy (brainbench/data/synth/network_toy.py) the mean of the visible parcels of a
hidden patch's network at the same time recovers it with R^2 ~0.76; predicting the mean gives
0. The default network, trained with the pretraining objective and schedule, must reach 80% of
that ceiling within two CPU minutes.
"""

from __future__ import annotations

import numpy as np
import torch

from brainbench.data.synth.network_toy import network_toy, same_time_ceiling
from brainbench.metrics import signal_metrics
from brainbench.models.brainlm import BrainLM, BrainLMConfig, random_mask
from brainbench.models.brainlm_mae import MAEModule

WINDOW, STEPS, BATCH = 80, 500, 16


def _r2(pred: torch.Tensor, x: torch.Tensor, hidden: torch.Tensor, patch: int) -> float:
    tokens = hidden.view(*pred.shape[:3])
    truth = x.view(pred.shape)[tokens].numpy().ravel()
    return signal_metrics(truth, pred[tokens].numpy().ravel())["r2"]


def test_default_brainlm_reaches_the_same_time_ceiling() -> None:
    torch.manual_seed(0)
    toy = network_toy()
    rng = np.random.default_rng(1)
    cfg = BrainLMConfig()
    n_tokens = toy.series.shape[1] * WINDOW // cfg.patch
    x_val = toy.windows(rng, 64, WINDOW)
    hidden_val = random_mask(64, n_tokens, 0.75, torch.Generator().manual_seed(2))
    ceiling = _r2(
        same_time_ceiling(x_val, hidden_val, toy.member, cfg.patch), x_val, hidden_val, cfg.patch
    )
    assert 0.7 < ceiling < 0.8

    module = MAEModule(
        BrainLM(cfg, torch.from_numpy(toy.coords)), 0.75, lr=1e-3, weight_decay=0.05, n_steps=STEPS
    )
    optim = module.configure_optimizers()
    optimizer, scheduler = optim["optimizer"], optim["lr_scheduler"]["scheduler"]
    for _ in range(STEPS):
        loss = module._loss(toy.windows(rng, BATCH, WINDOW))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()

    with torch.no_grad():
        pred = module.net.eval()(x_val, hidden_val)
    r2 = _r2(pred, x_val, hidden_val, cfg.patch)
    assert r2 > 0.8 * ceiling, f"masked-patch R^2 {r2:.3f}, same-time ceiling {ceiling:.3f}"
