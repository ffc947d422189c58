"""The `brainbench` command: parses arguments, then calls brainbench.api.

Errors a user can cause are printed without a traceback and exit with code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, NoReturn

from brainbench import __version__
from brainbench.errors import BrainbenchError, unknown

if TYPE_CHECKING:
    from brainbench.tasks import TaskSpec

EXAMPLES = """examples:
  brainbench run                                  the quick suite on the embedded cohort
  brainbench run --debug                          the same in seconds (tiny cohort, 1 seed)
  brainbench mri age -m sfcn ridge --dataset synth --debug trainer.max_epochs=3
  brainbench mri age --dataset bids data.path=/data/my_bids
  brainbench report results
"""
RAW = argparse.RawDescriptionHelpFormatter
LISTINGS = "models: `brainbench models`; tasks: `brainbench tasks`; datasets: `brainbench datasets`"


class Parser(argparse.ArgumentParser):
    """argparse whose mistakes are one-line BrainbenchErrors (exit 2, no usage dump)."""

    def error(self, message: str) -> NoReturn:
        raise BrainbenchError(f"{message} (see `{self.prog} --help`)")

    def _check_value(self, action: argparse.Action, value: object) -> None:
        """An unknown choice (command, task, --cluster ...) names the closest valid one."""
        if action.choices is not None and value not in action.choices:
            flag = action.option_strings[-1].lstrip("-") if action.option_strings else None
            kind = (action.metavar or flag or action.dest).lower()
            raise unknown(kind, str(value), action.choices)


def _epilog() -> str:
    """Examples, then the config keys, generated from the config so the two cannot drift."""
    from brainbench.config import ExperimentConfig, key_summary

    title = "config keys (key.sub=value; model.* per model, task_options.* per task):"
    return f"{EXAMPLES}\n{title}\n{key_summary(ExperimentConfig)}\n{LISTINGS}\n"


def _task_help(spec: TaskSpec) -> str:
    """What a task measures, its metrics and its models, for `brainbench MODALITY TASK --help`."""
    better = "higher" if spec.higher_is_better else "lower"
    others = [m for m in spec.metrics if m != spec.headline]
    lines = [
        spec.description,
        "",
        f"measures: {spec.kind} of '{spec.target}' from {', '.join(spec.inputs)}",
        f"metrics:  {spec.headline} (the headline; {better} is better), {', '.join(others)}",
        f"models:   {', '.join(spec.models)} (the default; -m picks any of `brainbench models`)",
    ]
    return "\n".join(textwrap.fill(line, 92, subsequent_indent=" " * 10) for line in lines)


def _pretrain_help() -> tuple[str, str]:
    """The pretrainable models and, per group of them sharing a config, its keys."""
    from brainbench import api
    from brainbench.config import key_summary

    groups: dict[str, list[str]] = {}
    for name, config in api.pretrain_configs().items():
        groups.setdefault(key_summary(config, open_sections=("model",)), []).append(name)
    keys = "\n".join(
        f"config keys of {', '.join(names)} (model.* per model):\n{summary}"
        for summary, names in groups.items()
    )
    return ", ".join(name for names in groups.values() for name in names), keys


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("cluster (submitit; see docs/cluster.md)")
    group.add_argument(
        "--cluster",
        choices=["slurm", "submitit-local"],
        help="submit as one requeueable job instead of running here",
    )
    group.add_argument("--partition", help="Slurm partition")
    group.add_argument("--gpus-per-node", type=int, default=0, help="GPUs (DDP tasks) per node")
    group.add_argument("--nodes", type=int, default=1, help="nodes (DDP across nodes)")
    group.add_argument("--time", type=int, default=240, metavar="MIN", help="time limit")
    group.add_argument("--cpus-per-task", type=int, default=4)
    group.add_argument(
        "--slurm", action="append", default=[], metavar="KEY=VALUE", help="extra sbatch option"
    )


def _slurm(args: argparse.Namespace):
    """The SlurmOptions of --cluster ..., or None to run here."""
    if not args.cluster:
        return None
    from brainbench.cluster import SlurmOptions

    extra = [item.partition("=")[::2] for item in args.slurm]
    if any(not key or not value for key, value in extra):
        raise BrainbenchError("--slurm takes KEY=VALUE, e.g. --slurm account=my_lab.")
    return SlurmOptions(
        args.cluster, args.partition, args.gpus_per_node, args.nodes, args.time,
        args.cpus_per_task, Path("results/cluster"), tuple(extra),
    )  # fmt: skip


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    _add_cluster_options(parser)
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
        "--label-fraction",
        nargs="+",
        metavar="F",
        help="run once per share of the training labels (nested subsets), e.g. 0.01 0.1 1.0",
    )
    parser.add_argument(
        "--train-stages",
        nargs="+",
        metavar="STAGE",
        help="train/validate on these lifespan stages only, e.g. young_adult middle_age",
    )
    parser.add_argument(
        "--test-stages", nargs="+", metavar="STAGE", help="test on these lifespan stages only"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="key.sub=value",
        help="config overrides, e.g. trainer.max_epochs=3 seeds=[33]",
    )


def build_parser() -> argparse.ArgumentParser:
    epilog = _epilog()
    parser = Parser(
        prog="brainbench",
        description="Pretrain, fine-tune and benchmark brain foundation models across the lifespan",
        epilog=epilog,
        formatter_class=RAW,
    )
    parser.add_argument("--version", action="version", version=f"brainbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_run_parser(sub, epilog)
    _add_task_parsers(sub, epilog)
    _add_pretrain_parser(sub)
    _add_report_parser(sub)
    _add_listing_parsers(sub)
    for module in _command_modules():
        module.add_parser(sub).set_defaults(handler=module.main)
    return parser


def _add_run_parser(sub, epilog: str) -> None:
    from brainbench.suites import suite_names

    run = sub.add_parser(
        "run",
        help="run tasks (no task = the quick suite) and write the leaderboard",
        description="Run tasks x models x seeds on a dataset, then aggregate the leaderboard. "
        "Positional arguments are task names (mri/age) or key=value config overrides.",
        epilog=epilog,
        formatter_class=RAW,
    )
    _add_run_options(run)
    run.add_argument(
        "--suite",
        metavar="NAME",
        help=f"run a suite when no task is given: {', '.join(suite_names())} (default: quick), "
        "or a suite YAML file",
    )


def _add_task_parsers(sub, epilog: str) -> None:
    """`brainbench <modality> <task>`: one parser per task, grouped by modality."""
    from brainbench.tasks import all_tasks

    by_modality: dict[str, list[TaskSpec]] = {}
    for name, spec in sorted(all_tasks().items()):
        by_modality.setdefault(name.partition("/")[0], []).append(spec)
    for modality, specs in sorted(by_modality.items()):
        names = [spec.name.partition("/")[2] for spec in specs]
        p = sub.add_parser(
            modality,
            help=f"run one {modality} task ({', '.join(names)})",
            description=f"Run one {modality} task with one or more models over seeds. "
            f"`brainbench {modality} TASK --help` says what the task measures.",
            formatter_class=RAW,
        )
        tasks = p.add_subparsers(dest="task", metavar="TASK", required=True)
        for spec in specs:
            t = tasks.add_parser(
                spec.name.partition("/")[2],
                help=spec.description.replace("%", "%%"),  # argparse %-formats help
                description=_task_help(spec),
                epilog=epilog,
                formatter_class=RAW,
            )
            t.set_defaults(modality=modality)
            _add_run_options(t)


def _add_pretrain_parser(sub) -> None:
    pretrainable, pretrain_keys = _pretrain_help()
    pretrain = sub.add_parser(
        "pretrain",
        help=f"pretrain a foundation model ({pretrainable}) on a dataset's training subjects",
        description="Masked-autoencoder pretraining on the training subjects of a dataset's "
        "shared split (never any task's test subjects); writes model.safetensors, config.json "
        "and metrics.json under OUTPUT_DIR/pretrained/. Fine-tune with "
        "`brainbench mri age -m mae3d_cnn model.init=PATH` (brainlm: `brainbench fmri age -m "
        "brainlm model.init=PATH`) or probe with -m mae3d_probe (brainlm_probe).",
        epilog="examples:\n  brainbench pretrain mae3d_cnn --debug\n"
        "  brainbench pretrain mae3d_cnn max_steps=2000 model.width=64 trainer.batch_size=8\n"
        f"  brainbench pretrain brainlm --debug window=80\n\n{pretrain_keys}",
        formatter_class=RAW,
    )
    pretrain.add_argument("model", help=f"one of {pretrainable}")
    pretrain.add_argument("--dataset", metavar="NAME", help="data source (default: synth)")
    pretrain.add_argument("--debug", action="store_true", help="debug cohort, 30 steps")
    pretrain.add_argument("--config", type=Path, metavar="FILE", help="YAML config layer")
    pretrain.add_argument("overrides", nargs="*", metavar="key.sub=value")
    _add_cluster_options(pretrain)


def _add_report_parser(sub) -> None:
    report = sub.add_parser(
        "report",
        help="aggregate run records into leaderboard.md/.csv and dashboard.html",
        description="Aggregate every run record under RESULTS_DIR (mean ± std over seeds, ranks, "
        "oracle ceiling) into leaderboard.md, leaderboard.csv and dashboard.html.",
    )
    report.add_argument(
        "results_dir",
        nargs="*",
        type=Path,
        metavar="RESULTS_DIR | SUBMISSION.json",
        help="a results folder (default: results), or several `brainbench submit` files to compare",
    )
    report.add_argument(
        "--out", type=Path, default=Path("results/compare"), help="where a comparison is written"
    )
    report.add_argument(
        "--utility",
        action="store_true",
        help="fit the input-utility mixed models on the multimodal grid (table + dashboard plot)",
    )


def _add_listing_parsers(sub) -> None:
    sub.add_parser("tasks", help="list tasks", description="List the registered tasks.")
    sub.add_parser("models", help="list models", description="List the registered models.")
    datasets = sub.add_parser(
        "datasets",
        help="list data sources and public lifespan datasets; check a local copy",
        description="List data sources and the catalogue of public datasets. "
        "`brainbench datasets check NAME PATH` validates a local copy; "
        "`brainbench datasets check bids PATH` validates any BIDS folder and lists, per task, "
        "the usable subjects and what the others lack.",
    )
    datasets.add_argument("action", nargs="?", choices=["check"], help="check a local copy")
    datasets.add_argument("name", nargs="?", help="catalogue name, e.g. ABIDE, or bids")
    datasets.add_argument("path", nargs="?", type=Path, help="folder holding your copy")


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
    # options taking several values also swallow the key=value overrides that follow them
    names = ("models", "label_fraction", "train_stages", "test_stages")
    lists = {k: getattr(args, k) or [] for k in names}
    for item in args.overrides + [v for values in lists.values() for v in values if "=" in v]:
        (overrides if "=" in item else tasks).append(item)
    kept = {k: [v for v in values if "=" not in v] for k, values in lists.items()}
    for key in ("train_stages", "test_stages"):
        if kept[key]:
            overrides.append(f"{key}=[{','.join(kept[key])}]")
    fractions = []
    for value in kept["label_fraction"]:
        try:
            fractions.append(float(value))
        except ValueError:
            raise BrainbenchError(
                f"--label-fraction {value!r} is not a number; give shares such as 0.01 0.1 1.0."
            ) from None
    models = kept["models"] or None
    api.run(
        tasks or None,
        models,
        dataset=args.dataset,
        overrides=overrides,
        debug=args.debug,
        config_file=args.config,
        force=args.force,
        label_fractions=fractions,
        suite=getattr(args, "suite", None),
        slurm=_slurm(args),
    )


def _datasets(args: argparse.Namespace) -> None:
    from brainbench import api
    from brainbench.data.sources import catalogue

    if args.action == "check":
        if not args.name or not args.path:
            raise BrainbenchError("usage: brainbench datasets check NAME PATH")
        if args.name.lower() == "bids":
            from brainbench.tasks.coverage import format_coverage

            print(format_coverage(args.path))
            return
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


INTERRUPTED = (
    "brainbench: interrupted. Finished run records are kept and the interrupted run left none; "
    "the same command continues (finished runs are skipped, pretraining resumes from its last "
    "checkpoint)."
)


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
        print(INTERRUPTED, file=sys.stderr)
        return 130
    except SystemExit as exc:  # Lightning answers Ctrl-C during training with sys.exit(1)
        if not isinstance(exc.__context__, KeyboardInterrupt):
            raise
        print(INTERRUPTED, file=sys.stderr)
        return 130
    return 0


def _dispatch(args: argparse.Namespace) -> None:
    from brainbench import api

    if getattr(args, "handler", None):
        args.handler(args)
    elif args.command == "pretrain":
        folder = api.pretrain(
            args.model,
            dataset=args.dataset,
            overrides=args.overrides,
            debug=args.debug,
            config_file=args.config,
            slurm=_slurm(args),
        )
        if not args.cluster:
            print(f"pretrained {args.model}: {folder}")
    elif args.command == "report":
        paths = args.results_dir or [Path("results")]
        if any(p.suffix == ".json" for p in paths):
            api.compare(paths, out=args.out)
        elif len(paths) > 1:
            raise BrainbenchError("report takes one RESULTS_DIR, or several submission files.")
        else:
            api.report(paths[0], utility=args.utility)
    elif args.command == "tasks":
        specs = api.list_tasks()
        width = max(len(spec.name) for spec in specs)
        for spec in specs:
            print(f"{spec.name:<{width}}  {spec.kind:<15} {spec.description}")
    elif args.command == "models":
        entries = api.list_models()
        width = max(len(entry.name) for entry in entries)
        for entry in entries:
            print(f"{entry.name:<{width}}  {entry.kind:<9} {entry.description}")
            print(f"{'':<{width}}  {'':<9} tasks: {', '.join(entry.task_kinds)}")
    elif args.command == "datasets":
        _datasets(args)
    else:
        _run(args)
