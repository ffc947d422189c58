"""The `brainbench` command: parses arguments, then calls brainbench.api.

Errors a user can cause are printed without a traceback and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

from brainbench import __version__
from brainbench.errors import BrainbenchError

EPILOG = """examples:
  brainbench run                                  the quick suite on the embedded cohort
  brainbench run --debug                          the same in seconds (tiny cohort, 1 seed)
  brainbench mri age -m sfcn ridge --dataset synth --debug trainer.max_epochs=3
  brainbench mri age --dataset bids data.path=/data/my_bids
  brainbench report results

config keys: data.{dataset,path,preset,cohort_seed,cache_dir}
  preprocess.{spacing,shape,crop_to_brain,percentiles}  split.{seed,val_fraction,test_fraction}
  trainer.{max_epochs,batch_size,lr,weight_decay,scheduler,patience,accelerator,devices,
  strategy,precision,num_workers,progress_bar}  model.<parameter>  seeds  output_dir
models: `brainbench models`; tasks: `brainbench tasks`; datasets: `brainbench datasets`
"""


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--models", nargs="+", metavar="MODEL", help="models to run (default: the task's)"
    )
    parser.add_argument("--dataset", metavar="NAME", help="data source (default: synth)")
    parser.add_argument("--debug", action="store_true", help="tiny cohort, 3 epochs, 1 seed")
    parser.add_argument("--force", action="store_true", help="rerun finished runs")
    parser.add_argument(
        "--config", type=Path, metavar="FILE", help="YAML layered before key=value overrides"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides, e.g. trainer.max_epochs=3 seeds=[33]",
    )


def build_parser() -> argparse.ArgumentParser:
    from brainbench.tasks import all_tasks

    parser = argparse.ArgumentParser(
        prog="brainbench",
        description="Pretrain, fine-tune and benchmark brain foundation models across the lifespan",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"brainbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = sub.add_parser(
        "run",
        help="run tasks (no task = the quick suite) and write the leaderboard",
        description="Run tasks x models x seeds on a dataset, then aggregate the leaderboard. "
        "Positional arguments are task names (mri/age) or key=value config overrides.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run)

    by_modality: dict[str, list[str]] = {}
    for name in all_tasks():
        modality, _, task = name.partition("/")
        by_modality.setdefault(modality, []).append(task)
    for modality, names in sorted(by_modality.items()):
        p = sub.add_parser(
            modality,
            help=f"run one {modality} task ({', '.join(sorted(names))})",
            description=f"Run one {modality} task with one or more models over seeds.",
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        p.add_argument("task", choices=sorted(names), help="task name")
        p.set_defaults(modality=modality)
        _add_run_options(p)

    pretrain = sub.add_parser(
        "pretrain",
        help="pretrain a foundation model (mae3d_cnn) on a dataset's training subjects",
        description="Masked-autoencoder pretraining on the training subjects of a dataset's "
        "shared split (never any task's test subjects); writes model.safetensors, config.json, "
        "metrics.json and reconstructions.png under OUTPUT_DIR/pretrained/. Fine-tune with "
        "`brainbench mri age -m mae3d_cnn model.init=PATH` or probe with -m mae3d_probe.",
        epilog="examples:\n  brainbench pretrain mae3d_cnn --debug\n"
        "  brainbench pretrain mae3d_cnn max_steps=2000 model.width=64 trainer.batch_size=8\n\n"
        "config keys: model.{width,depth,groups,activation,in_channels} max_steps mask_ratio\n"
        "  patch_size brain_only intensity_jitter checkpoint_every seed output_dir modalities\n"
        "  data.* preprocess.* split.* trainer.*",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    pretrain.add_argument("model", help="model to pretrain: mae3d_cnn")
    pretrain.add_argument("--dataset", metavar="NAME", help="data source (default: synth)")
    pretrain.add_argument("--debug", action="store_true", help="debug cohort, 30 steps")
    pretrain.add_argument("--config", type=Path, metavar="FILE", help="YAML config layer")
    pretrain.add_argument("overrides", nargs="*", metavar="key.sub=value")

    synth = sub.add_parser(
        "synth",
        help="generate the embedded synthetic lifespan cohort (BIDS)",
        description="Generate (or find cached) the synthetic lifespan cohort as a BIDS dataset.",
    )
    synth.add_argument("--preset", default="default", help="size preset: debug, default, large")
    synth.add_argument("--seed", type=int, default=0, help="generator seed")
    synth.add_argument("--out", type=Path, help="folder to write (default: the cache)")

    report = sub.add_parser(
        "report",
        help="aggregate run records into leaderboard.md/.csv and dashboard.html",
        description="Aggregate every run record under RESULTS_DIR (mean ± std over seeds, ranks, "
        "oracle ceiling) into leaderboard.md, leaderboard.csv and dashboard.html.",
    )
    report.add_argument("results_dir", nargs="?", type=Path, default=Path("results"))

    sub.add_parser("tasks", help="list tasks", description="List the registered tasks.")
    sub.add_parser("models", help="list models", description="List the registered models.")
    datasets = sub.add_parser(
        "datasets",
        help="list data sources and public lifespan datasets; check a local copy",
        description="List data sources and the catalogue of public datasets. "
        "`brainbench datasets check NAME PATH` validates a local copy.",
    )
    datasets.add_argument("action", nargs="?", choices=["check"], help="check a local copy")
    datasets.add_argument("name", nargs="?", help="catalogue name, e.g. ABIDE")
    datasets.add_argument("path", nargs="?", type=Path, help="folder holding your copy")

    for module in _command_modules():
        module.add_parser(sub).set_defaults(handler=module.main)
    return parser


def _command_modules() -> list[ModuleType]:
    """The verb modules of brainbench.commands (parcellate, predict, export, ...)."""
    from brainbench import commands

    return [
        importlib.import_module(f"brainbench.commands.{info.name}")
        for info in pkgutil.iter_modules(commands.__path__)
    ]


def _run(args: argparse.Namespace) -> None:
    from brainbench import api

    tasks: list[str] = [args.task_name] if getattr(args, "task_name", None) else []
    overrides: list[str] = []
    for item in args.overrides + [m for m in args.models or [] if "=" in m]:
        (overrides if "=" in item else tasks).append(item)
    models = [m for m in args.models or [] if "=" not in m] or None
    api.run(
        tasks or None,
        models,
        dataset=args.dataset,
        overrides=overrides,
        debug=args.debug,
        config_file=args.config,
        force=args.force,
    )


def _datasets(args: argparse.Namespace) -> None:
    from brainbench import api
    from brainbench.data.sources import catalogue

    if args.action == "check":
        if not args.name or not args.path:
            raise BrainbenchError("usage: brainbench datasets check NAME PATH")
        problems = catalogue.check_dataset(args.name, args.path)
        if problems:
            raise BrainbenchError(
                f"{args.path} is not a usable copy of {args.name}:\n  - " + "\n  - ".join(problems)
            )
        print(f"{args.path}: looks like a complete copy of {args.name}.")
        return
    print("data sources (--dataset NAME):")
    for source in api.list_sources():
        print(f"  {source.name:<10} {source.description}")
    print()
    print(catalogue.format_catalogue())


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
        # key=value overrides may come anywhere after the options; argparse stops collecting
        # positionals at the first option, so gather the leftovers here.
        args, extra = parser.parse_known_args(argv)
        unknown_args = [item for item in extra if "=" not in item or item.startswith("-")]
        if unknown_args or (extra and not hasattr(args, "overrides")):
            parser.error(f"unrecognized arguments: {' '.join(unknown_args or extra)}")
        if extra:
            args.overrides = args.overrides + extra
        if getattr(args, "modality", None):
            args.task_name = f"{args.modality}/{args.task}"
        _dispatch(args)
    except BrainbenchError as exc:
        print(f"brainbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("brainbench: interrupted", file=sys.stderr)
        return 130
    return 0


def _dispatch(args: argparse.Namespace) -> None:
    from brainbench import api

    if getattr(args, "handler", None):
        args.handler(args)
    elif args.command == "synth":
        from brainbench.data.synth import ensure_cohort

        root = ensure_cohort(args.preset, args.seed, root=args.out)
        print(f"synthetic cohort '{args.preset}' (seed {args.seed}) at {root}")
    elif args.command == "pretrain":
        folder = api.pretrain(
            args.model,
            dataset=args.dataset,
            overrides=args.overrides,
            debug=args.debug,
            config_file=args.config,
        )
        print(f"pretrained {args.model}: {folder}")
    elif args.command == "report":
        api.report(args.results_dir)
    elif args.command == "tasks":
        for spec in api.list_tasks():
            print(f"{spec.name:<14} {spec.kind:<15} {spec.description}")
    elif args.command == "models":
        for entry in api.list_models():
            kinds = ",".join(entry.task_kinds)
            print(f"{entry.name:<14} {entry.kind:<9} {kinds:<26} {entry.description}")
    elif args.command == "datasets":
        _datasets(args)
    else:
        _run(args)


if __name__ == "__main__":
    sys.exit(main())
