"""`brainbench grid multimodal`: targets x input combinations x seeds with model `fusion`."""

from __future__ import annotations

import argparse
from pathlib import Path

from brainbench.cluster import CLUSTERS
from brainbench.errors import ConfigError
from brainbench.models.fusion import INPUTS

EPILOG = """examples:
  brainbench grid multimodal --debug --targets age sex --inputs T1w metadata
  brainbench grid multimodal --workers 2 seeds=[33] trainer.max_epochs=10
  brainbench grid multimodal --cluster slurm --partition gpu trainer.accelerator=gpu
  brainbench report results --utility

Rerun the same command to resume an interrupted grid: finished runs are skipped.
Writes OUTPUT_DIR/grid/multimodal.csv, grid/targets.json and dashboard.html.
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "grid",
        help="multimodal legibility grid: every target x every input combination",
        description="Train model `fusion` for every target x non-empty subset of the inputs x "
        "seed, one run record each, then aggregate the grid CSV and the dashboard.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", choices=["multimodal"], help="the grid to run")
    parser.add_argument(
        "--targets", nargs="+", metavar="TARGET", help="targets (default: every multimodal task)"
    )
    parser.add_argument(
        "--inputs",
        nargs="+",
        metavar="INPUT",
        default=["T1w", "FLAIR", "dwi", "connectivity", "metadata"],
        help=f"inputs to combine, from {', '.join(INPUTS)} (default: all but T2w)",
    )
    parser.add_argument("--seeds", nargs="+", metavar="SEED", help="seeds (default: the config's)")
    parser.add_argument("--dataset", metavar="NAME", help="data source (default: synth)")
    parser.add_argument("--debug", action="store_true", help="tiny cohort, 3 epochs, 1 seed")
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument("--workers", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument(
        "--cluster",
        choices=CLUSTERS,
        default="local",
        help="where runs execute: local (a pool of --workers processes), slurm (a job array, "
        "--workers at once) or submitit-local (submitit's local executor, to try the Slurm path "
        "without a cluster: every run starts at once, --workers does not apply)",
    )
    parser.add_argument("--partition", help="Slurm partition (with --cluster slurm)")
    parser.add_argument("--config", type=Path, metavar="FILE", help="YAML config layer")
    parser.add_argument("overrides", nargs="*", metavar="key.sub=value")
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench import api

    # key=value items after --targets/--inputs/--seeds are overrides, not names
    lists = {name: getattr(args, name) or [] for name in ("targets", "inputs", "seeds")}
    overrides = args.overrides + [i for items in lists.values() for i in items if "=" in i]
    targets, inputs, seeds = ([i for i in lists[n] if "=" not in i] for n in lists)
    bad = [s for s in seeds if not s.lstrip("-").isdigit()]
    if bad:
        raise ConfigError(f"--seeds takes whole numbers, not {bad}; e.g. --seeds 33 34 35.")
    api.grid(
        targets or None,
        inputs,
        seeds=[int(s) for s in seeds] or None,
        dataset=args.dataset,
        overrides=overrides,
        debug=args.debug,
        config_file=args.config,
        force=args.force,
        workers=args.workers,
        cluster=args.cluster,
        partition=args.partition,
    )
