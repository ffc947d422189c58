"""Training memory per input byte of sfcn, unet and mae3d_cnn: the factors of brainbench/memory.py.

Each case runs one forward and backward pass on CPU, at the model's default parameters, on a
batch of 2 and of 4 volumes of 64^3 voxels, each in a fresh process, and reads the process's
peak resident memory (ru_maxrss). The difference between the two peaks is what two more
samples cost; divided by their float32 input bytes it is the factor (what the weights, the
interpreter and the allocator hold cancels out). mae3d_cnn-pretrain is the masked autoencoder
on one view of the pretraining step (its input is the view, crop_size^3).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/activation_memory.py
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys

import torch

EDGE = 64
BATCHES = (2, 4)


def step(case: str, batch: int) -> None:
    """One forward + backward pass of `case` on a (batch, 1, EDGE^3) input."""
    from brainbench.models.mae import EncoderHead
    from brainbench.models.mae3d_cnn import MAE3D, MAE3DConfig
    from brainbench.models.sfcn import SFCN, SFCNConfig
    from brainbench.models.unet import PaddedUNet, SegmentationLoss, UNetConfig

    x = torch.rand(batch, 1, EDGE, EDGE, EDGE)
    if case == "sfcn":
        loss = SFCN(1, x.shape[2:], SFCNConfig().channels, 48)(x).sum()
    elif case == "unet":
        labels = torch.randint(0, 10, (batch, 1, EDGE, EDGE, EDGE))
        loss = SegmentationLoss()(PaddedUNet(1, 10, UNetConfig())(x), labels)
    elif case == "mae3d_cnn":
        loss = EncoderHead(MAE3D(MAE3DConfig()).encoder, 1, 0.0)(x).sum()
    else:
        loss = MAE3D(MAE3DConfig()).masked_loss(x, 8, 0.7).loss
    loss.backward()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)  # kB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        step(args.case, args.batch)
        return
    for case in ("sfcn", "unet", "mae3d_cnn", "mae3d_cnn-pretrain"):
        peaks = [
            int(
                subprocess.check_output(
                    [sys.executable, __file__, "--case", case, "--batch", str(b)]
                )
            )
            for b in BATCHES
        ]
        extra_input = (BATCHES[1] - BATCHES[0]) * EDGE**3 * 4
        print(f"{case}: {(peaks[1] - peaks[0]) / extra_input:.1f} bytes per input byte")


if __name__ == "__main__":
    main()
