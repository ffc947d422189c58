"""Does a masked model learn to copy across parcels at one time? brainlm vs transformers' ViTMAE.

Both train on the network toy (brainbench/data/synth/network_toy.py: 100 parcels in 5 networks
spread over the brain, windows of 80 points) with AdamW (lr 1e-3, weight decay 0.05, warm-up
25 steps, cosine), batch 16, mask ratio 0.75, the same widths. Printed every `--every` steps:
R^2 on the hidden values of 64 fixed validation windows, beside the same-time ceiling (the mean
of the visible parcels of the hidden value's network at the same time point).

- brainlm hides (parcel, 20-point patch) tokens.
- ViTMAE gets the image view of `brainlm_vitmae` (parcels ordered by Y, 3 channels, centred in a
  112 x 112 square, 16 x 16 patches) and hides its own image patches; the ceiling is computed
  for those hidden pixels. transformers' ViTMAE cannot take a (parcel, 20-point) token: its
  patches and its 2D position table must be square.

    OMP_NUM_THREADS=1 python benchmarks/brainlm_learning.py --steps 500
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch
from brainlm import vitmae_for

from brainbench.data.synth.network_toy import network_toy, same_time_ceiling
from brainbench.metrics import signal_metrics
from brainbench.models.brainlm import BrainLM, BrainLMConfig, random_mask
from brainbench.models.brainlm_vitmae import vitmae_image

WINDOW, BATCH, SIDE, VIT_PATCH = 80, 16, 112, 16


def r2(truth: torch.Tensor, pred: torch.Tensor) -> float:
    return signal_metrics(truth.numpy().ravel(), pred.numpy().ravel())["r2"]


def brainlm_case(toy, cfg: BrainLMConfig):
    net = BrainLM(cfg, torch.from_numpy(toy.coords))
    n_tokens = len(toy.coords) * WINDOW // cfg.patch

    def loss(x: torch.Tensor) -> torch.Tensor:
        return net.masked_loss(x, random_mask(len(x), n_tokens, 0.75))[0]

    def score(x: torch.Tensor) -> tuple[float, float]:
        hidden = random_mask(len(x), n_tokens, 0.75, torch.Generator().manual_seed(2))
        with torch.no_grad():
            pred = net.eval()(x, hidden)
        net.train()
        tokens = hidden.view(pred.shape[:3])
        truth = x.view(pred.shape)
        ceiling = same_time_ceiling(x, hidden, toy.member, cfg.patch)
        return r2(truth[tokens], pred[tokens]), r2(truth[tokens], ceiling[tokens])

    return net, loss, score


def vitmae_case(toy, cfg: BrainLMConfig):
    net = vitmae_for(cfg, SIDE, VIT_PATCH)
    p = len(toy.coords)
    rows, cols = slice((SIDE - p) // 2, (SIDE - p) // 2 + p), slice((SIDE - WINDOW) // 2, None)
    cols = slice(cols.start, cols.start + WINDOW)
    member = toy.member[np.argsort(toy.coords[:, 1], kind="stable")]
    grid = SIDE // VIT_PATCH

    def image(x: torch.Tensor) -> torch.Tensor:
        return vitmae_image(x, toy.coords, SIDE)

    def loss(x: torch.Tensor) -> torch.Tensor:
        return net(pixel_values=image(x)).loss

    def score(x: torch.Tensor) -> tuple[float, float]:
        noise = torch.rand(len(x), grid * grid, generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            out = net.eval()(pixel_values=image(x), noise=noise)
        net.train()
        pred = net.unpatchify(out.logits)[:, 0, rows, cols]
        blocks = out.mask.view(-1, grid, grid).repeat_interleave(VIT_PATCH, 1)
        hidden = blocks.repeat_interleave(VIT_PATCH, 2)[:, rows, cols].bool()
        truth = image(x)[:, 0, rows, cols]
        ceiling = same_time_ceiling(truth, hidden.flatten(1), member, 1)[..., 0]
        return r2(truth[hidden], pred[hidden]), r2(truth[hidden], ceiling[hidden])

    return net, loss, score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--models", nargs="+", default=["brainlm", "vitmae"])
    args = parser.parse_args()
    toy, cfg = network_toy(), BrainLMConfig()
    for name in args.models:
        torch.manual_seed(0)
        rng = np.random.default_rng(1)
        x_val = toy.windows(rng, 64, WINDOW)
        net, loss, score = (brainlm_case if name == "brainlm" else vitmae_case)(toy, cfg)
        optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)

        def schedule(step: int) -> float:
            return min(1.0, (step + 1) / 25) * 0.5 * (1 + math.cos(math.pi * step / args.steps))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        start = time.perf_counter()
        for step in range(args.steps + 1):
            if step % args.every == 0 or step == args.steps:
                got, ceiling = score(x_val)
                print(
                    f"{name:8s} step {step:5d}  R^2 {got:6.3f}  same-time ceiling {ceiling:.3f}  "
                    f"{time.perf_counter() - start:6.0f} s",
                    flush=True,
                )
            if step == args.steps:
                break
            value = loss(toy.windows(rng, BATCH, WINDOW))
            optimizer.zero_grad()
            value.backward()
            optimizer.step()
            scheduler.step()


if __name__ == "__main__":
    main()
