"""Pretrain a tiny mae3d_cnn on N CPU processes; rank 0 copies the weights to OUT.

Run as a script (Lightning's `ddp` strategy re-runs the command once per extra process):
    python ddp_pretrain.py DEVICES OUT.safetensors WORK_DIR [accumulate]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import torch
from conftest import TINY_PRETRAIN  # this folder's (the script's own folder is on sys.path)

from brainbench.training.pretrain import build_pretrain_config, pretrain

TINY = TINY_PRETRAIN | {"max_steps": 3, "checkpoint_every": 3, "seed": 7}


def main() -> None:
    devices, out, work = int(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    accumulate = int(sys.argv[4]) if len(sys.argv) > 4 else 1
    torch.set_num_threads(1)
    # float64: in float32 the summation order of 1 vs 2 processes leaves rounding noise on
    # gradients near zero, which Adam's first steps scale up (g / (|g| + eps)): 1e-4 apart in
    # 3 of 2889 weights at lr 0.01; in float64 the runs agree exactly
    trainer = {
        "batch_size": 4, "lr": 0.01, "accelerator": "cpu", "devices": devices,
        "strategy": "ddp" if devices > 1 else "auto", "accumulate_grad_batches": accumulate,
        "progress_bar": False, "precision": "64-true",
    }  # fmt: skip
    layer = TINY | {"trainer": trainer, "output_dir": str(work)}
    folder = pretrain(build_pretrain_config("mae3d_cnn", [("test", layer)]), log=lambda _: None)
    if (folder / "model.safetensors").is_file():  # written by rank 0 only
        shutil.copyfile(folder / "model.safetensors", out)


if __name__ == "__main__":
    main()
