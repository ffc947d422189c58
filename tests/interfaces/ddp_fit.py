"""Fit a small GroupNorm CNN with TorchEstimator on N CPU processes; rank 0 saves predictions.

Run as a script (Lightning's `ddp` strategy re-runs the command once per extra process):
    python ddp_fit.py DEVICES OUT.npy [precision] [accumulate]
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from brainbench.checks import toy_data
from brainbench.config import TrainerConfig
from brainbench.training.fit import TorchEstimator, TorchModel


def build(meta: dict) -> TorchModel:
    torch.manual_seed(0)  # the same initial weights in every process
    net = nn.Sequential(
        nn.Conv3d(1, 4, 3, stride=2), nn.GroupNorm(2, 4), nn.GELU(),
        nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4, 1),
    )  # fmt: skip
    return TorchModel(net, lambda out, y: F.mse_loss(out[:, 0], y), lambda out: out[:, 0])


def main() -> None:
    devices, out = int(sys.argv[1]), Path(sys.argv[2])
    precision = sys.argv[3] if len(sys.argv) > 3 else "32-true"
    accumulate = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    torch.set_num_threads(1)
    train, val, test = (
        toy_data("regression", (1, 8, 8, 8), n, s) for n, s in ((32, 0), (8, 1), (6, 2))
    )
    cfg = TrainerConfig(
        max_epochs=3, batch_size=8, lr=0.01, scheduler="constant", patience=10,
        accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
        precision=precision, accumulate_grad_batches=accumulate, progress_bar=False,
    )  # fmt: skip
    estimator = TorchEstimator(lambda data: {}, build, cfg)
    with tempfile.TemporaryDirectory() as work:
        info = estimator.fit(train, val, seed=0, run_dir=Path(work))
    if info["global_rank"] == 0:
        np.save(out, estimator.predict(test))
        print(f"world {info['world_size']} effective batch {info['effective_batch_size']} "
              f"per device {info['per_device_batch_size']}")  # fmt: skip


if __name__ == "__main__":
    main()
