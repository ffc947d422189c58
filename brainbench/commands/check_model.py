"""`brainbench check-model NAME`: shape, determinism and save/load checks for a model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check-model",
        help="check a registered model: output shape, determinism, safetensors save/load",
        description="Fit a registered model twice on small random volumes with a learnable "
        "target and check it predicts one finite value per subject, gives the same result for "
        "the same seed, and saves safetensors that load back to the same predictions. Run it on "
        "a new model (or a plugin's) before opening a pull request.",
        epilog="examples:\n  brainbench check-model sfcn\n"
        "  brainbench check-model mae3d_cnn --kind classification width=8 depth=1",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", help="registered model name (see `brainbench models`)")
    parser.add_argument("--kind", help="task kind to check (default: the model's first)")
    parser.add_argument(
        "--shape", type=int, nargs=4, default=(1, 16, 16, 16), metavar=("C", "X", "Y", "Z")
    )
    parser.add_argument("overrides", nargs="*", metavar="param=value", help="model parameters")
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench.checks import check_model, require_passing
    from brainbench.config import parse_overrides

    params = parse_overrides(args.overrides)
    print(f"check-model {args.name}:")
    checks = check_model(args.name, kind=args.kind, shape=tuple(args.shape), params=params)
    require_passing(checks, args.name)
    print(f"model '{args.name}' passed {len(checks)} checks.")
