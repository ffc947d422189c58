"""Masked-autoencoder speed and memory on CPU, and inference time per 128^3 volume.

mae3d_cnn, mae3d_vit and MONAI's MaskedAutoEncoderViT (the last two at the same volume, token
size, width, depth and heads): parameters, seconds per training step (forward + masked-patch
MSE + backward, batch 2) and the peak resident memory a fresh process adds while stepping. Then
seconds per 128^3 volume at inference: `encode` of mae3d_cnn and mae3d_vit (the downstream
embedding), brain age with the default SFCN, and segmentation with the default U-Net on the whole
volume and by MONAI sliding windows. Each measurement runs in its own spawned process.

    .venv/bin/python benchmarks/mae_models.py --size 32 --steps 3 --threads 2
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import queue as queue_module
import resource
import sys
import time

import torch

from brainbench.models.mae3d_cnn import MAE3D, MAE3DConfig
from brainbench.models.mae3d_vit import MAE3DViT, MAE3DViTConfig
from brainbench.models.sfcn import SFCN, SFCNConfig
from brainbench.models.unet import PaddedUNet, UNetConfig, sliding_window

RATIO = 0.7


def _vit_config(patch: int) -> MAE3DViTConfig:
    return MAE3DViTConfig(patch=patch)


def _monai(size: int, patch: int) -> torch.nn.Module:
    from monai.networks.nets import MaskedAutoEncoderViT

    c = _vit_config(patch)
    return MaskedAutoEncoderViT(
        in_channels=1,
        img_size=size,
        patch_size=patch,
        hidden_size=c.width,
        mlp_dim=int(c.width * c.mlp_ratio),
        num_layers=c.depth,
        num_heads=c.heads,
        masking_ratio=RATIO,
        decoder_hidden_size=c.decoder_width,
        decoder_mlp_dim=int(c.decoder_width * c.mlp_ratio),
        decoder_num_layers=c.decoder_depth,
        decoder_num_heads=c.decoder_heads,
        qkv_bias=True,
    )


def _train_step(name: str, size: int, patch: int, threads: int, steps: int, queue) -> None:
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    x = torch.rand(2, 1, size, size, size)
    ours = MAE3DViT(_vit_config(patch))
    if name == "mae3d_cnn":
        net = MAE3D(MAE3DConfig())

        def loss_fn() -> torch.Tensor:
            return net.masked_loss(x, patch, RATIO).loss

    elif name == "monai":
        net = _monai(size, patch)

        def loss_fn() -> torch.Tensor:
            pred, mask = net(x)
            err = ((pred - ours.patchify(x)) ** 2).mean(-1)
            return (err * mask).sum() / mask.sum()
    else:
        net = ours

        def loss_fn() -> torch.Tensor:
            return net.masked_loss(x, patch, RATIO).loss

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss_fn().backward()  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        net.zero_grad()
        loss_fn().backward()
    seconds = (time.perf_counter() - start) / steps
    peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    queue.put((sum(p.numel() for p in net.parameters()), seconds, peak))


def _inference(name: str, size: int, patch: int, threads: int, steps: int, queue) -> None:
    """Seconds per volume of one inference `name` on a size^3 volume (after a warm-up)."""
    torch.set_num_threads(threads)
    shape = (size,) * 3
    if name == "mae3d_cnn":
        run = MAE3D(MAE3DConfig()).encode
    elif name == "mae3d_vit":
        run = MAE3DViT(_vit_config(patch)).encode
    elif name == "sfcn":  # brain age: soft-label bins of 1 year over 0-100
        run = SFCN(1, shape, SFCNConfig().channels, n_outputs=100).eval()
    else:  # 8-class segmentation, whole volume (patch 0) or sliding windows of patch^3
        unet = PaddedUNet(1, 8, UNetConfig()).eval()
        roi = (patch,) * 3

        def run(x: torch.Tensor) -> torch.Tensor:
            return sliding_window(unet, x, roi_size=roi, overlap=0.25) if patch else unet(x)

    x = torch.rand(1, 1, *shape)
    with torch.inference_mode():
        run(x)
        start = time.perf_counter()
        for _ in range(steps):
            run(x)
    queue.put(((time.perf_counter() - start) / steps,))


def _spawned(target, *args) -> tuple:
    """target(*args, queue) in a fresh process; its result, or exit 1 when the process died
    without one (its traceback is above), instead of waiting for it forever."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    while True:
        try:
            result = queue.get(timeout=1.0)
            break
        except queue_module.Empty:
            if not proc.is_alive() and queue.empty():
                name = f"{target.__name__}{args[:2]}"
                sys.exit(f"{name} failed in its process (exit {proc.exitcode}); see above")
    proc.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=32, help="training volume edge (voxels)")
    parser.add_argument("--patch", type=int, default=4, help="token edge of both ViTs")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--encode-size", type=int, default=128)
    parser.add_argument("--encode-vit-patch", type=int, default=8, help="ViT token edge at 128^3")
    parser.add_argument("--window", type=int, default=64, help="sliding-window edge (segmentation)")
    args = parser.parse_args()
    if importlib.util.find_spec("einops") is None:  # MONAI's ViT needs it
        sys.exit("benchmarks/mae_models.py needs einops: pip install -e '.[bench]' (make bench)")
    common = (args.threads, args.steps)
    tokens = (args.size // args.patch) ** 3
    print(
        f"training step, batch 2, {args.size}^3 volume, {args.patch}^3 tokens ({tokens}), "
        f"mask ratio {RATIO}, {args.threads} threads"
    )
    names = ("mae3d_cnn", "ours", "monai")
    rows = {n: _spawned(_train_step, n, args.size, args.patch, *common) for n in names}
    print(f"{'model':<28}{'params':>10}{'s/step':>10}{'vol/s':>8}{'peak MB':>10}")
    labels = {"ours": "mae3d_vit", "monai": "monai MaskedAutoEncoderViT"}
    for name, (params, seconds, peak) in rows.items():
        label = labels.get(name, f"{name} (default config)")
        print(f"{label:<28}{params:>10,}{seconds:>10.3f}{2 / seconds:>8.1f}{peak:>10.0f}")
    (p1, s1, m1), (p2, s2, m2) = rows["ours"], rows["monai"]
    print(
        f"{'ratio ours / monai':<28}{p1 / p2:>10.2f}{s1 / s2:>10.2f}{s2 / s1:>8.2f}{m1 / m2:>10.2f}"
    )
    print(f"\ninference on one {args.encode_size}^3 volume ({args.threads} threads)")
    runs = [
        ("mae3d_cnn", 0, "encode, default width 32, depth 3"),
        ("mae3d_vit", args.encode_vit_patch, f"encode, {args.encode_vit_patch}^3 tokens"),
        ("sfcn", 0, "brain age, default channels (target: < 1 s)"),
        ("unet", 0, "segmentation, whole volume (target: < 15 s)"),
        ("unet", args.window, f"segmentation, sliding {args.window}^3 windows, overlap 0.25"),
    ]
    for name, patch, detail in runs:
        (seconds,) = _spawned(_inference, name, args.encode_size, patch, *common)
        print(f"{name:<12}{seconds:>8.3f} s   ({detail})")


if __name__ == "__main__":
    main()
