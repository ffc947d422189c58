"""Pretraining on CPU: the share of a training step spent outside forward/backward.

mae3d_cnn: a step is what MAEModule.training_step and its backward pass do: per-sample
generators from the draw keys, augmentation (flips, rotation/zoom of a share of the volumes,
random upper percentile), the two views (a local crop and the whole volume resized), their patch
masks, then the network's forward, masked MSE and backward on both views. brainlm: its random
token mask, then forward, masked MSE and backward on a batch of parcels x time windows. The
forward/backward part is also timed alone on the same inputs and masks; the rest of the step is
the data work the goal keeps under 10%. The share outside is the parts' sum over parts plus
forward/backward: the difference of the step's and forward/backward's medians, also printed,
moves by several points between runs on a shared machine, where a part's median moves by a
fraction of a millisecond. Times are CPU time of the process (steadier than wall time on a
shared machine), medians over `--steps` rounds that call every part in turn, after a warm-up
round. The script calls only functions older versions have too, so pointing PYTHONPATH
at another checkout measures that version.

    PYTHONPATH=. .venv/bin/python benchmarks/pretrain_step.py --threads 1
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F

from brainbench.models.brainlm import BrainLM, hidden_count, random_mask
from brainbench.models.brainlm_mae import BrainLMPretrainConfig
from brainbench.models.mae3d_cnn import MAE3D
from brainbench.training.augment import affine_warp, augment_volumes, rotation_matrices
from brainbench.training.masking import masked_mse, patch_mask, two_views
from brainbench.training.pretrain import PretrainConfig, resolve_crop, view_losses
from brainbench.training.randomness import sample_generators


def brains(batch: int, shape: tuple[int, int, int]) -> torch.Tensor:
    """Noisy ellipsoids on a zero background: the foreground of preprocessed volumes."""
    axes = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    inside = sum(a**2 for a in axes) < 0.7
    x = torch.rand(batch, 1, *shape, generator=torch.Generator().manual_seed(0))
    return x * inside


def median_seconds(fns: dict[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median CPU seconds (all threads of this process) of each function, called in turn."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(rounds + 1):  # round 0 warms up
        for name, fn in fns.items():
            start = time.process_time()
            fn()
            if i:
                times[name].append(time.process_time() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def report(title: str, seconds: dict[str, float], parts: set[str]) -> None:
    """Print the CPU milliseconds of each part and the share outside forward/backward."""
    print(title)
    for name, value in seconds.items():
        print(f"{'  ' * (name in parts) + name:<22}{value * 1000:>9.1f}")
    network, data = seconds["forward + backward"], sum(seconds[name] for name in parts)
    print(f"{'outside fwd/bwd':<22}{data / (data + network):>9.1%}  (the parts; goal: under 10%)")
    print(f"{'  1 - fwd/bwd / step':<22}{1 - network / seconds['step']:>9.1%}  (noisier)")


class Mae3dStep(NamedTuple):
    config: PretrainConfig
    net: MAE3D
    x: torch.Tensor
    loss: Callable[[], torch.Tensor]  # one step's data work and masked loss, new draw keys


def mae3d_cnn_step(
    width: int, depth: int, shape: tuple[int, int, int], batch: int, device: str = "cpu"
) -> Mae3dStep:
    """A mae3d_cnn pretraining step as MAEModule.training_step takes it, on `device`."""
    config = PretrainConfig(model={"width": width, "depth": depth}, preprocess={"shape": shape})
    net = MAE3D(config.model)
    config = resolve_crop(config, net)
    x = brains(batch, shape).to(device)
    draws = itertools.count()

    def loss() -> torch.Tensor:  # new draw keys each step, as in training
        generators = sample_generators(config.seed, [next(draws) for _ in range(batch)])
        views = view_losses(net, augment_volumes(x, config.augment, generators), config, generators)
        return (views[0].loss + views[1].loss) / 2

    return Mae3dStep(config, net.to(device), x, loss)


class BrainLMStep(NamedTuple):
    net: BrainLM
    draw_mask: Callable[[], torch.Tensor]  # a new random token mask, as MAEModule draws one
    masked_loss: Callable[[torch.Tensor], torch.Tensor]  # the masked loss under a mask

    def loss(self) -> torch.Tensor:
        """A training step's masked loss, under a new mask."""
        return self.masked_loss(self.draw_mask())


def brainlm_step(parcels: int, device: str = "cpu") -> BrainLMStep:
    """A brainlm pretraining step at its default config (batch, window) on `device`."""
    config = BrainLMPretrainConfig()
    batch, window = config.trainer.batch_size, config.window
    coords = torch.rand(parcels, 3, generator=torch.Generator().manual_seed(0)) * 140 - 70
    net = BrainLM(config.model, coords).to(device)
    x = torch.randn(batch, parcels, window, generator=torch.Generator().manual_seed(1)).to(device)
    tokens = parcels * (window // config.model.patch)
    n_hidden = hidden_count(tokens, config.mask_ratio)

    def draw_mask() -> torch.Tensor:
        return random_mask(batch, tokens, config.mask_ratio, device=device)

    def loss(mask: torch.Tensor) -> torch.Tensor:
        return net.masked_loss(x, mask, n_hidden)[0]

    return BrainLMStep(net, draw_mask, loss)


def mae3d_cnn(args: argparse.Namespace) -> None:
    config, net, x, loss = mae3d_cnn_step(args.width, args.depth, tuple(args.shape), args.batch)
    keys = list(range(args.batch))
    patches = (config.local_patch, config.global_patch)

    def step() -> None:
        net.zero_grad()
        loss().backward()

    def view_masks() -> list[torch.Tensor]:
        pairs = zip(views, patches, strict=True)
        return [patch_mask(v.shape, p, config.mask_ratio, generators) for v, p in pairs]

    def network() -> None:
        net.zero_grad()
        pairs = zip(views, masks, strict=True)
        losses = [masked_mse(net(v.masked_fill(m, 0)), v, m) for v, m in pairs]
        (sum(losses) / 2).backward()

    generators = sample_generators(config.seed, keys)
    augmented = augment_volumes(x, config.augment, generators)
    views = two_views(augmented, config.crop_size, generators)
    masks = view_masks()
    parts = {
        "generators": lambda: sample_generators(config.seed, keys),
        "augmentation": lambda: augment_volumes(x, config.augment, generators),
        "views": lambda: two_views(augmented, config.crop_size, generators),
        "masks": view_masks,
    }
    seconds = median_seconds({"step": step, "forward + backward": network} | parts, args.steps)
    title = (
        f"mae3d_cnn (width {args.width}, depth {args.depth}) pretraining step: batch "
        f"{args.batch}, {tuple(args.shape)} volumes, crop {config.crop_size}^3, {args.threads} "
        f"threads, CPU ms (median of {args.steps})"
    )
    report(title, seconds, set(parts))
    warp_against_trilinear(tuple(args.shape), args.steps)


def warp_against_trilinear(shape: tuple[int, int, int], rounds: int) -> None:
    """One volume's rotation/zoom: affine_warp against one trilinear 3-D torch grid_sample
    through the same map (the reference; with its grid from F.affine_grid, and prebuilt)."""
    x = brains(1, shape)
    maps = rotation_matrices(torch.deg2rad(torch.tensor([[7.0, -4.0, 9.0]], dtype=torch.float64)))
    maps = maps @ torch.diag(torch.tensor([1 / 1.05, 1 / 0.95, 1.0], dtype=torch.float64))
    size = torch.tensor(shape, dtype=torch.float64)
    theta = F.pad((maps * size / size[:, None]).flip(1, 2), (0, 1)).float()  # z, y, x order
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    seconds = median_seconds(
        {
            "affine_warp": lambda: affine_warp(x, maps),
            "affine_grid + 3-D grid_sample": lambda: F.grid_sample(
                x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False
            ),
            "3-D grid_sample alone": lambda: F.grid_sample(x, grid, align_corners=False),
        },
        rounds,
    )
    print(f"warp of one {shape} volume, CPU ms (median of {rounds})")
    for name, value in seconds.items():
        ratio = (
            ""
            if name == "affine_warp"
            else f"  (affine_warp: x{seconds['affine_warp'] / value:.2f})"
        )
        print(f"  {name:<30}{value * 1000:>7.2f}{ratio}")


def brainlm(args: argparse.Namespace) -> None:
    built = brainlm_step(args.parcels)
    mask = built.draw_mask()

    def step() -> None:
        built.net.zero_grad()
        built.loss().backward()

    def network() -> None:
        built.net.zero_grad()
        built.masked_loss(mask).backward()

    parts = {"mask": built.draw_mask}
    seconds = median_seconds({"step": step, "forward + backward": network} | parts, args.steps)
    config = BrainLMPretrainConfig()
    title = (
        f"brainlm (default config) pretraining step: batch {config.trainer.batch_size}, "
        f"{args.parcels} parcels x {config.window} time points, {args.threads} threads, CPU ms "
        f"(median of {args.steps})"
    )
    report(title, seconds, set(parts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", choices=["mae3d_cnn", "brainlm"], nargs="+", default=["mae3d_cnn", "brainlm"]
    )
    parser.add_argument("--shape", type=int, nargs=3, default=(40, 48, 40), help="volume grid")
    parser.add_argument("--batch", type=int, default=4, help="volumes per step")
    parser.add_argument("--width", type=int, default=32, help="model.width (reference: 512)")
    parser.add_argument("--depth", type=int, default=3, help="model.depth (reference: 8)")
    parser.add_argument("--parcels", type=int, default=300, help="brainlm: the cohort's atlas")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="CPU time counts idle spin too")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for name in args.model:
        {"mae3d_cnn": mae3d_cnn, "brainlm": brainlm}[name](args)


if __name__ == "__main__":
    main()
