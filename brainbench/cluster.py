"""Run a list of independent jobs: in this process, in a local process pool, or on Slurm.

A job is any picklable zero-argument callable (a dataclass with `__call__`, a
`functools.partial` of a module-level function). `run_jobs` returns one Outcome per job, in
order; a failing job does not stop the others. Slurm goes through submitit (`cluster="slurm"`,
a partition, a job array of at most `workers` jobs at once); `cluster="submitit-local"` runs the
same submitit path as local subprocesses, to try it without a cluster.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from brainbench.errors import BrainbenchError, ConfigError

CLUSTERS = ("local", "slurm", "submitit-local")
Log = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """What a job returned, or the error it raised (its message; `result` is then None)."""

    result: Any = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, BrainbenchError):
        return str(exc)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def _call(job: Callable[[], Any], threads: int) -> Outcome:
    """Run one job in a worker process, catching its error (the pool then keeps going)."""
    import torch

    torch.set_num_threads(threads)
    try:
        return Outcome(result=job())
    except Exception as exc:  # a job's failure is reported with the others, not raised
        return Outcome(error=_describe(exc))


def check_options(workers: int, cluster: str, partition: str | None) -> None:
    """Raise a ConfigError for --workers, --cluster or --partition values run_jobs rejects."""
    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, not {workers}.")
    if cluster not in CLUSTERS:
        raise ConfigError(f"unknown cluster '{cluster}'; choose one of {', '.join(CLUSTERS)}.")
    if cluster == "slurm" and not partition:
        raise ConfigError("--cluster slurm needs --partition NAME (the Slurm partition).")


def run_jobs(
    jobs: Sequence[Callable[[], Any]],
    *,
    workers: int = 1,
    cluster: str = "local",
    partition: str | None = None,
    folder: Path = Path("results/cluster"),
    timeout_min: int = 120,
    cpus_per_job: int = 2,
    log: Log = print,
) -> list[Outcome]:
    """Run every job; `workers` bounds how many run at once. One Outcome per job, in order."""
    check_options(workers, cluster, partition)
    if not jobs:
        return []
    if cluster != "local":
        return _submitit(
            jobs, workers, cluster, partition, Path(folder), timeout_min, cpus_per_job, log
        )
    cores = len(os.sched_getaffinity(0))
    threads = max(1, cores // workers)
    if workers == 1:
        return [_call(job, threads) for job in jobs]
    context = multiprocessing.get_context("spawn")  # torch and fork do not mix
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
        futures = [pool.submit(_call, job, threads) for job in jobs]
        return [f.result() for f in futures]


def _submitit(
    jobs: Sequence[Callable[[], Any]],
    workers: int,
    cluster: str,
    partition: str | None,
    folder: Path,
    timeout_min: int,
    cpus_per_job: int,
    log: Log,
) -> list[Outcome]:
    import submitit

    executor = submitit.AutoExecutor(
        folder=folder / "%j", cluster="slurm" if cluster == "slurm" else "local"
    )
    executor.update_parameters(timeout_min=timeout_min, cpus_per_task=cpus_per_job)
    if cluster == "slurm":
        executor.update_parameters(slurm_partition=partition, slurm_array_parallelism=workers)
    with executor.batch():
        submitted = [executor.submit(_call, job, cpus_per_job) for job in jobs]
    log(f"submitted {len(submitted)} jobs to {cluster} (logs under {folder})")
    outcomes = []
    for job in submitted:
        try:
            outcomes.append(job.result())
        except Exception as exc:  # the job died (killed, timed out, node failure)
            outcomes.append(Outcome(error=f"job {job.job_id} failed: {_describe(exc)}"))
    return outcomes


class Requeueable:
    """A job submitit requeues when Slurm preempts it or it reaches its time limit.

    submitit's checkpointing protocol: on the signal, `checkpoint` returns the call to run
    again; the rerun resumes because brainbench's work is resumable (pretraining continues from
    its last Lightning checkpoint, `run` skips finished seeds and `grid` finished runs).
    """

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.fn = fn

    def __call__(self) -> Any:
        return self.fn()

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        from submitit.helpers import DelayedSubmission

        return DelayedSubmission(self)


@dataclass(frozen=True)
class SlurmOptions:
    """Where and how one job runs: `--cluster`, `--partition`, `--gpus-per-node`, ..."""

    cluster: str = "slurm"  # or "submitit-local"
    partition: str | None = None
    gpus_per_node: int = 0
    nodes: int = 1
    timeout_min: int = 240
    cpus_per_task: int = 4
    folder: Path = Path("results/cluster")
    extra: tuple[tuple[str, str], ...] = ()  # further sbatch options, e.g. (("account", "x"),)


def submit_job(fn: Callable[[], Any], options: SlurmOptions, *, name: str, log: Log = print):
    """Submit one requeueable job (one task per GPU, for Lightning's DDP); return it.

    An option the cluster rejects is a BrainbenchError carrying sbatch's own message.
    """
    import submitit

    if options.cluster not in ("slurm", "submitit-local"):
        raise ConfigError(f"unknown cluster '{options.cluster}'; choose slurm or submitit-local.")
    if options.cluster == "slurm" and not options.partition:
        raise ConfigError("--cluster slurm needs --partition NAME (the Slurm partition).")
    local = options.cluster == "submitit-local"
    try:
        executor = submitit.AutoExecutor(
            folder=options.folder / "%j", cluster="local" if local else "slurm"
        )
    except RuntimeError as exc:  # no srun: not on a Slurm cluster
        raise BrainbenchError(
            f"Slurm is not available here ({exc}); submit from a cluster login node, or try "
            "the same path locally with --cluster submitit-local."
        ) from None
    tasks = max(1, options.gpus_per_node)
    executor.update_parameters(
        name=name,
        timeout_min=options.timeout_min,
        nodes=options.nodes,
        tasks_per_node=tasks,
        gpus_per_node=options.gpus_per_node,
        cpus_per_task=options.cpus_per_task,
    )
    if not local:
        extra = {"partition": options.partition, **dict(options.extra)}
        executor.update_parameters(slurm_additional_parameters=extra)
    try:
        job = executor.submit(Requeueable(fn))
    except submitit.core.utils.FailedJobError as exc:
        raise BrainbenchError(
            f"the cluster rejected the job: {str(exc).strip()} Check --partition, "
            "--gpus-per-node, --nodes, --time and --slurm options."
        ) from None
    log(f"submitted {name} as job {job.job_id} on {options.cluster}; logs in {options.folder}")
    return job


def cluster_overrides(options: SlurmOptions) -> list[str]:
    """Trainer overrides for the job's GPUs: Lightning's DDP over nodes x GPUs per node."""
    if options.gpus_per_node < 1:
        return []
    devices = [f"trainer.devices={options.gpus_per_node}", f"trainer.num_nodes={options.nodes}"]
    parallel = options.gpus_per_node * options.nodes > 1
    return ["trainer.accelerator=gpu", *devices] + (["trainer.strategy=ddp"] if parallel else [])
