"""The Python API: what the CLI calls and what users script against."""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Collection, Sequence
from functools import partial
from pathlib import Path
from types import ModuleType

import pandas as pd

from brainbench.cluster import SlurmOptions, cluster_overrides, submit_job
from brainbench.config import (
    Layer,
    StrictModel,
    load_yaml,
    parse_overrides,
)
from brainbench.errors import ConfigError, unknown
from brainbench.memory import check_experiments
from brainbench.registry import MODELS, SOURCES, get_model, get_source, load_plugins
from brainbench.resolve import CONFIG_DIR, resolve_config
from brainbench.results.leaderboard import format_table, write_reports
from brainbench.results.record import check_writable, is_complete
from brainbench.spec import METRICS
from brainbench.suites import ModelEntry, load_suite, suite_path
from brainbench.tasks import TaskSpec, all_tasks, get_task
from brainbench.tasks.runs import SUBSET_KEYS, Experiment, config_digest, is_global_zero

# the overrides of a run that its suite's pretraining also takes: the data and the hardware
PRETRAIN_PREFIXES = tuple(
    f"{key}."
    for key in ("data", "preprocess", "split", "output_dir", "trainer.accelerator",
                "trainer.devices", "trainer.strategy", "trainer.num_nodes", "trainer.precision",
                "trainer.progress_bar")
)  # fmt: skip

Log = Callable[[str], None]


def _own_overrides(overrides: Sequence[str], model: str, models: Sequence[str]) -> list[str]:
    """`overrides` less the model.KEY ones that `model` lacks but another of `models` has.

    So `-m atlas unet model.patch_size=[24,24,24]` sets unet's patches and leaves atlas alone;
    a key no model has stays, to be reported with the model that refused it.
    """

    def has(name: str, key: str) -> bool:
        return key in get_model(name).config_cls.model_fields

    kept = []
    for item in overrides:
        section, _, rest = item.partition("=")[0].partition(".")
        key = rest.partition(".")[0]
        if section == "model" and key and not has(model, key) and any(has(m, key) for m in models):
            continue
        kept.append(item)
    return kept


def plan(
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    *,
    label_fractions: Sequence[float] = (),
    overrides: Sequence[str] = (),
    **options,
) -> list[Experiment]:
    """Every (task, model[, label fraction]) experiment of a run.

    Models default to each task's own list; a model.KEY override goes to the models having KEY.
    Each of `label_fractions` adds one experiment per task and model (the `label_fraction`
    config key), none keeps the config's own.
    """
    experiments = []
    extra = [[f"label_fraction={f}"] for f in label_fractions] or [[]]
    for task in tasks:
        chosen = models or get_task(task).models
        for model in chosen:
            for more in extra:
                overs = [*_own_overrides(overrides, model, chosen), *more]
                experiments.append(resolve_config(task, model, overrides=overs, **options))
    return experiments


def suite_plan(
    name: str,
    models: Sequence[str] | None = None,
    *,
    label_fractions: Sequence[float] = (),
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    log: Log = print,
) -> list[Experiment]:
    """The experiments of suite `name`, after pretraining (or finding) the models it initialises.

    The suite's `settings` come before `overrides`. Pretraining sees their data, preprocess,
    split, output_dir and trainer hardware keys (and --dataset, --debug); `models` and
    `label_fractions`, when given, replace the suite's lists.
    """
    suite, path = load_suite(name), suite_path(name)
    configs = pretrain_configs()

    def layer(key: str, items: Sequence[str]) -> Layer:  # errors name the suite file and key
        return (f"suite file {path} ({key})", parse_overrides(list(items)))

    def shared(model: str, items: Sequence[str]) -> list[str]:
        """The pretraining keys of `items` that `model`'s config has (brainlm: no preprocess)."""
        config = configs.get(model)  # an unknown model: pretrain() names the valid ones
        return [
            o
            for o in items
            if f"{o.split('=')[0]}.".startswith(PRETRAIN_PREFIXES)
            and (config is None or o.split("=")[0].split(".")[0] in config.model_fields)
        ]

    folders = {
        model: pretrain(
            model,
            dataset=dataset,
            overrides=shared(model, overrides),
            extra_layers=[
                layer(f"pretrain.{model}", [] if debug else extra),
                layer("settings", shared(model, suite.settings)),
            ],
            debug=debug,
            log=log,
        )
        for model, extra in suite.pretrain.items()
    }
    experiments = []
    chosen = {
        task: [ModelEntry(model=m) for m in models or ()] or entry.entries()
        for task, entry in suite.tasks.items()
    }
    everyone = sorted({model.model for entries in chosen.values() for model in entries})
    for task, entry in suite.tasks.items():
        fractions = label_fractions or entry.label_fractions
        for model in chosen[task]:
            init = [f"model.init={folders[model.init]}"] if model.init else []
            own = partial(_own_overrides, model=model.model, models=everyone)
            from_suite = [
                layer("settings", own(suite.settings)),
                layer(f"tasks.{task}.overrides", own(entry.overrides)),
            ]
            experiments += plan(
                [task], [model.model], label_fractions=fractions, dataset=dataset,
                overrides=[*own(overrides), *init], debug=debug, config_file=config_file,
                extra_layers=from_suite,
            )  # fmt: skip
    return experiments


def _check_conflicts(experiments: list[Experiment]) -> None:
    """Refuse to silently keep a finished run whose config differs from the one asked for."""
    stale = []
    for exp in experiments:
        digest = config_digest(exp.config)
        for rdir in exp.run_dirs():
            if is_complete(rdir):
                saved = json.loads((rdir / METRICS).read_text()).get("config_digest")
                if saved != digest:
                    stale.append(str(rdir))
    if stale:
        raise ConfigError(
            "finished runs exist with a different config: "
            + ", ".join(stale)
            + ". Pass --force to replace them, or set output_dir=OTHER_DIR to keep both."
        )


def run(
    tasks: Sequence[str] | None = None,
    models: Sequence[str] | None = None,
    *,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    force: bool = False,
    label_fractions: Sequence[float] = (),
    suite: str | None = None,
    slurm: SlurmOptions | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """Run tasks x models x label fractions x seeds, write run records, then the leaderboard.

    No `tasks` runs `suite` (default: quick, brain age), pretraining what it fine-tunes first.
    With `slurm`, the same call is submitted as one requeueable job; the submitit job is
    returned instead of the leaderboard.
    """
    if tasks and suite:
        raise ConfigError(f"give tasks or --suite {suite}, not both.")
    options = {"dataset": dataset, "debug": debug, "config_file": config_file}
    if slurm is not None:
        overrides = [*overrides, *cluster_overrides(slurm)]
        options |= {"force": force, "label_fractions": label_fractions, "suite": suite}
        call = partial(run, tasks, models, overrides=overrides, **options)
        return submit_job(call, slurm, name="brainbench-run", log=log)
    if tasks:
        experiments = plan(
            tasks, models, label_fractions=label_fractions, overrides=overrides, **options
        )
    else:
        experiments = suite_plan(
            suite or "quick", models, label_fractions=label_fractions, overrides=overrides,
            log=log, **options,
        )  # fmt: skip
    check_experiments(experiments)
    for out in {exp.config.output_dir for exp in experiments}:
        check_writable(out)
    if not force:
        _check_conflicts(experiments)
    prepared: dict[tuple[str, ...], dict] = {}
    for exp in experiments:
        cfg = exp.config
        shared = {"data", "preprocess", "split", "output_dir", "task_options"}
        key = (cfg.task, cfg.model_dump_json(include=shared))
        key += tuple(str(getattr(cfg, k)) for k in SUBSET_KEYS)
        runner = _runner(exp.spec)
        if key not in prepared:
            prepared[key] = runner.prepare(cfg, log)
        runner.run_experiment(exp, prepared[key], force=force, log=log)
    if not is_global_zero():
        return pd.DataFrame()
    outputs = {exp.config.output_dir for exp in experiments}
    ran = {exp.config.task for exp in experiments}
    tables = [report(out, log=log, tasks=ran) for out in sorted(outputs)]
    return pd.concat(tables, ignore_index=True)


def pretrain(
    model: str,
    *,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    extra_layers: Sequence[Layer] = (),
    slurm: SlurmOptions | None = None,
    log: Log = print,
) -> Path:
    """Pretrain a foundation model on a dataset's training subjects; return its folder.

    With `slurm`, the same call is submitted as one requeueable job (a preempted job resumes
    from its last checkpoint) and the submitit job is returned.

    Layers: --debug (the debug cohort, grid and results folder, few steps) -> --config FILE ->
    `extra_layers` (a suite file's) -> key=value -> --dataset. Only subjects outside every
    task's test split are used.
    """
    if slurm is not None:
        overrides = [*overrides, *cluster_overrides(slurm)]
        call = partial(pretrain, model, dataset=dataset, overrides=overrides, debug=debug,
                       config_file=config_file, extra_layers=extra_layers)  # fmt: skip
        return submit_job(call, slurm, name=f"brainbench-pretrain-{model}", log=log)
    if model not in (configs := pretrain_configs()):
        raise unknown("pretrainable model", model, configs)
    volumes = get_model(model).needs_volume  # else parcel series: brainlm's config and loop
    layers: list[Layer] = []
    if debug:
        quick = load_yaml(CONFIG_DIR / "debug.yaml")
        keep = {k: quick[k] for k in ("data", "output_dir", *(("preprocess",) if volumes else ()))}
        layers.append(("--debug", keep | {"max_steps": 30}))
    if config_file is not None:
        layers.append((f"config file {config_file}", load_yaml(config_file)))
    layers += extra_layers
    layers.append(("command line", parse_overrides(list(overrides))))
    if dataset is not None:
        layers.append(("--dataset", {"data": {"dataset": dataset}}))
    if volumes:
        from brainbench.training.pretrain import build_pretrain_config
        from brainbench.training.pretrain import pretrain as run_pretraining

        config = build_pretrain_config(model, layers)
    else:
        from brainbench.training.pretrain_brainlm import build_brainlm_pretrain_config
        from brainbench.training.pretrain_brainlm import pretrain_brainlm as run_pretraining

        config = build_brainlm_pretrain_config(layers)
    get_source(config.data.dataset)  # an unknown dataset fails before any work
    check_writable(config.output_dir)
    return run_pretraining(config, log=log)


def pretrain_configs() -> dict[str, type[StrictModel]]:
    """The config of each model `pretrain` trains: every registered masked-autoencoder
    backbone (training/pretrain.py) and brainlm (training/pretrain_brainlm.py)."""
    from brainbench.models.brainlm_mae import BrainLMPretrainConfig
    from brainbench.models.mae import BACKBONES
    from brainbench.training.pretrain import pretrain_config_class

    load_plugins()
    backbones = {name: pretrain_config_class(name) for name in sorted(BACKBONES)}
    return backbones | {"brainlm": BrainLMPretrainConfig}


def predict(
    run_dir: Path,
    files: Sequence[Path],
    *,
    out: Path = Path("predictions"),
    task: str | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """A run's model on NIfTI files; writes predictions.tsv (and volumes in each input's space)."""
    from brainbench.predict import predict_files

    return predict_files(run_dir, files, out, task=task, log=log)


def _runner(spec: TaskSpec) -> ModuleType:
    """The module running a task (tasks/supervised.py, tasks/voxelwise.py, ...)."""
    return importlib.import_module(spec.runner)


def grid(
    targets: Sequence[str] | None = None,
    inputs: Sequence[str] = ("T1w", "FLAIR", "dwi", "connectivity", "metadata"),
    *,
    seeds: Sequence[int] | None = None,
    dataset: str | None = None,
    overrides: Sequence[str] = (),
    debug: bool = False,
    config_file: Path | None = None,
    force: bool = False,
    workers: int = 1,
    cluster: str = "local",
    partition: str | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """The multimodal grid: targets x non-empty input subsets x seeds with model `fusion`.

    Finished runs are skipped (rerun the same call to resume); writes grid/multimodal.csv,
    grid/legibility.csv, grid/targets.json and the reports under the output folder; returns the
    legibility table (one row per target x input combination, with its verdict).
    """
    from brainbench.grid import plan_grid, run_grid

    options = {"dataset": dataset, "overrides": list(overrides), "debug": debug}
    options["config_file"] = config_file
    jobs = plan_grid(targets, inputs, seeds, options=options, force=force)
    output_dir = jobs[0].experiment().config.output_dir
    check_writable(output_dir)
    table = run_grid(jobs, workers=workers, cluster=cluster, partition=partition, log=log)
    report(output_dir, log=log)
    return table


def report(
    results_dir: Path = Path("results"),
    *,
    utility: bool = False,
    tasks: Collection[str] | None = None,
    log: Log = print,
) -> pd.DataFrame:
    """Aggregate the run records under `results_dir` into leaderboard.md/.csv, dashboard.html.

    Prints the tables of `tasks` (default: every task), each with its headline per lifespan
    stage; `utility` first fits the input-utility mixed models on the multimodal grid
    (grid/utility.csv, shown in the dashboard) and prints their table.
    """
    results_dir = Path(results_dir)
    if utility:
        from brainbench.results.utility import format_utility, write_utility

        log(format_utility(write_utility(results_dir)))
    table, paths = write_reports(results_dir)
    log(format_table(table, tasks))
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return table


def list_tasks() -> list[TaskSpec]:
    return sorted(all_tasks().values(), key=lambda t: t.name)


def list_models() -> list:
    load_plugins()
    return sorted(MODELS.values(), key=lambda m: m.name)


def list_sources() -> list:
    load_plugins()
    return sorted(SOURCES.values(), key=lambda s: s.name)


def load_model(path_or_name: str | Path):
    """A model for inference from an exported folder, pretrained folder, run record or name."""
    from brainbench.loading import load_model as load

    return load(path_or_name)


def export(
    model_dir: Path | str, fmt: str = "safetensors", *, out: Path | None = None, force: bool = False
) -> Path:
    """Export a model folder (config.json, model.safetensors, model card; ONNX or hubconf)."""
    from brainbench.export import export_model

    return export_model(model_dir, fmt, out=out, force=force)


def submit(
    results_dir: Path | str = Path("results"), *, out: Path | None = None, group: str | None = None
) -> Path:
    """Pack the run records under `results_dir` into one validated submission JSON file."""
    from brainbench.submission import read_submission, write_submission

    path = write_submission(results_dir, out or Path(results_dir) / "submission.json", group=group)
    read_submission(path)  # what a leaderboard will check
    return path


def compare(files: Sequence[Path], *, out: Path = Path("results/compare"), log: Log = print):
    """Compare several groups' submission files in one leaderboard written to `out`."""
    from brainbench.submission import compare as write_comparison

    table, paths = write_comparison(files, out)
    log(format_table(table))
    log("wrote " + ", ".join(str(p) for p in paths.values()))
    return table
