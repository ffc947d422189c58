"""`brainbench predict RUN_DIR FILE... --out DIR`: a trained run's model on new NIfTI files."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  brainbench predict results/runs/mri-age/sfcn/scratch_synth-default-seed0/seed33 sub-01_T1w.nii.gz
  brainbench predict results/runs/mri-seg/unet/scratch_synth-default-seed0/seed33 *.nii.gz --out seg

Scalar tasks write predictions.tsv (one row per file); segmentation and synthesis also write
one NIfTI per file on the input's own voxel grid and affine (label maps by nearest neighbour).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "predict",
        help="apply a trained run's model to NIfTI files (in their own space)",
        description="Load a run record's model (safetensors + config.yaml), preprocess each "
        "input as in training and write its predictions into --out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run_dir", type=Path, help="a run record folder (.../seed<N>)")
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="input NIfTI files")
    parser.add_argument(
        "--out", type=Path, default=Path("predictions"), help="output folder (default: predictions)"
    )
    parser.add_argument("--task", help="refuse a run of any other task (e.g. mri/seg)")
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench import api

    api.predict(args.run_dir, args.files, out=args.out, task=args.task)
