"""`brainbench export MODEL_DIR --format safetensors|onnx|hub`: a shareable model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainbench.export import FORMATS


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a pretrained model or a run's model as config.json + safetensors + card",
        description="Export the model of a pretrained folder, a run record or an exported folder "
        "into a folder with config.json, model.safetensors and a model card (README.md) made "
        "from its run records. onnx adds model.onnx (checked against PyTorch with onnxruntime); "
        "hub adds hubconf.py for torch.hub.load(FOLDER, 'model', source='local').",
        epilog="examples:\n"
        "  brainbench export results/debug/pretrained/mae3d_cnn-synth-debug-seed0\n"
        "  brainbench export results/runs/mri-age/sfcn/scratch_synth-default-seed0/seed33 "
        "--format onnx --out sfcn-age\n"
        "Load it with brainbench.load_model(FOLDER or NAME).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model_dir", type=Path, help="pretrained folder, run record or export")
    parser.add_argument("--format", choices=FORMATS, default="safetensors", dest="fmt")
    parser.add_argument(
        "--out", type=Path, help="folder to write (default: $BRAINBENCH_HOME/models/NAME)"
    )
    parser.add_argument("--force", action="store_true", help="replace an existing folder")
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench.api import export

    out = export(args.model_dir, args.fmt, out=args.out, force=args.force)
    print(f"exported {args.model_dir} -> {out}")
