"""Pretraining step rate on a device: mae3d_cnn and brainlm training steps per second, peak memory.

A step is a whole training step at the issue's shapes, everything on the device: for mae3d_cnn
(batch 8, 40x48x40 volumes) the per-sample generators, augmentation, two views and masks,
forward, masked MSE, backward and the AdamW update; for brainlm (batch 8, 300 parcels x 160
time points) the token mask, forward, masked MSE, backward and the update. Wall time over
`--steps` steps after `--warmup` steps, the device synchronised before each clock read; peak
memory is torch.cuda.max_memory_allocated on a GPU, the growth of peak RSS on a CPU. The
reference rates on one H100 before issue 15 were ~20 it/s (mae3d_cnn) and ~25 it/s (brainlm);
the goal is 10x those.

    python benchmarks/step_rate.py --device cuda
    python benchmarks/step_rate.py --device cpu --steps 3 --warmup 1   # a check that it runs
"""

from __future__ import annotations

import argparse
import time

import torch
from data_pipeline import peak_mib
from pretrain_step import brainlm_step, mae3d_cnn_step

BATCH = 8


def rate(name: str, device: torch.device, steps: int, warmup: int) -> None:
    torch.manual_seed(0)
    if name == "mae3d_cnn":  # the CPU default network
        built = mae3d_cnn_step(32, 3, (40, 48, 40), BATCH, device)
    else:  # the default config, whose batch is BATCH
        built = brainlm_step(300, device)
    net, loss = built.net, built.loss
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    cuda = device.type == "cuda"
    before = peak_mib()

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    for i in range(warmup + steps):
        if i == warmup:
            sync()
            start = time.perf_counter()
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
        optimizer.zero_grad(set_to_none=True)
        loss().backward()
        optimizer.step()
    sync()
    seconds = time.perf_counter() - start
    memory = (
        f"peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**20:.0f} MiB"
        if cuda
        else f"peak RSS growth {peak_mib() - before:.0f} MiB"
    )
    print(f"{name:<10} batch {BATCH}: {steps / seconds:8.2f} steps/s   {memory}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--model", choices=["mae3d_cnn", "brainlm"], nargs="+",
                        default=["mae3d_cnn", "brainlm"])  # fmt: skip
    args = parser.parse_args()
    device = torch.device(args.device)
    print(
        f"device {device}"
        + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else "")
    )
    for name in args.model:
        rate(name, device, args.steps, args.warmup)


if __name__ == "__main__":
    main()
