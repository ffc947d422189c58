"""`brainbench synth`: generate (or find cached) the synthetic cohort; characterise its fMRI."""

from __future__ import annotations

import argparse
from pathlib import Path

EPILOG = """examples:
  brainbench synth --preset debug
  brainbench synth --stats 0          # no fMRI statistics

After the cohort, the sex differences, development and adult atrophy of its measured volumes
are printed beside published values (brainbench/data/synth/structural_stats.py). Then its
resting-state fMRI is generated (once) and characterised on a random sample of young adults and
of all ages, beside approximate published values (brainbench/data/synth/fmri_stats.py;
docs/synthetic_fmri.md).
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "synth",
        help="generate the embedded synthetic lifespan cohort (BIDS)",
        description="Generate (or find cached) the synthetic lifespan cohort as a BIDS dataset.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", default="default", help="size preset: debug, default, large")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    parser.add_argument("--out", type=Path, help="folder to write (default: the cache)")
    parser.add_argument(
        "--stats",
        type=int,
        default=20,
        metavar="N",
        help="characterise the fMRI of N subjects per group (default 20; 0: skip)",
    )
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench.data.synth import ensure_cohort

    root = ensure_cohort(args.preset, args.seed, root=args.out)
    print(f"synthetic cohort '{args.preset}' (seed {args.seed}) at {root}")
    from brainbench.data.synth import structural_stats as stats

    table = stats.cohort_table(root)
    print("sex differences in the measured volumes (docs/synthetic_sex_differences.md):")
    print(stats.format_table(stats.sex_statistics(table)))
    print("grey and white matter development (docs/synthetic_development.md):")
    print(stats.format_table(stats.development_statistics(table)))
    print("adult atrophy (docs/synthetic_development.md):")
    print(stats.format_table(stats.ageing_statistics(table)))
    if args.stats > 0:
        from brainbench.data.synth.fmri_stats import cohort_statistics
        from brainbench.data.synth.fmri_stats import format_table as format_fmri
        from brainbench.data.synth.functional import ensure_functional

        folder = ensure_functional(root)
        print(f"resting-state fMRI at {folder}; statistics of a random sample:")
        print(format_fmri(cohort_statistics(root, folder, args.stats, args.seed)))
