"""`brainbench submit RESULTS_DIR`: one validated, digest-sealed JSON of a results folder."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "submit",
        help="pack run records (configs, metrics, versions; no data) into one submission JSON",
        description="Pack every run record under RESULTS_DIR into one JSON file: configs, "
        "metrics, library versions, oracle ceilings and split digests, with no images, "
        "predictions or subject ids, sealed with a SHA-256 content digest. `brainbench report "
        "A.json B.json` compares several groups' submissions on the same tasks.",
        epilog="example:\n  brainbench submit results --group my-lab --out my-lab.json\n"
        "  brainbench report my-lab.json other-lab.json --out results/compare",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("results_dir", type=Path, nargs="?", default=Path("results"))
    parser.add_argument("--group", help="who submits (default: the results folder's name)")
    parser.add_argument("--out", type=Path, help="file to write (default: submission.json)")
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench.api import submit

    out = submit(args.results_dir, out=args.out, group=args.group)
    print(f"wrote {out}")
