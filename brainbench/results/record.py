"""Run records: one directory per (task, model, seed[, tag]) run, written atomically.

A record directory holds `config.yaml` (the resolved config), `metrics.json`, `predictions.csv`
and any extra files (checkpoint, plots). It is assembled in a hidden temporary sibling and renamed
into place only when complete, so a crashed run never leaves a directory that looks complete and
never destroys the previous record of the same run. One writer per run directory at a time.

metrics.json (strict JSON; an undefined value such as NaN is stored as null)::

    task            str    task name, e.g. "mri/age"
    task_version    int    version of the task definition
    model           str    registered model name
    protocol        str    "scratch" | "baseline" | "finetune" | "linear_probe" | ...
    seed            int
    dataset         str    which data, e.g. "synth-default-seed0"
    headline        {name: str, value: float, higher_is_better: bool}
    metrics         {metric: float}
    per_stage       {stage: {metric: float, n: int}}   stages without subjects are absent
    n_train, n_val, n_test   int
    timings         {fit_s, predict_s, total_s}        seconds
    peak_memory_mb  float  peak resident memory of the process
    versions        {python, brainbench, torch, lightning, monai, numpy, scikit-learn,
                     nibabel, nilearn}                 null when not installed
    code_version    str | null   git commit of the brainbench checkout, null outside git
    created         str    ISO 8601 time the record was written

Further keys (e.g. a config digest, training details) are kept as they are.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

import brainbench
from brainbench.errors import ResultsError
from brainbench.owners import atomic_write, owner_tag, remove_dead
from brainbench.spec import METRICS, PREDICTIONS, RECORD_CONFIG

ORACLE_KEYS = ("task", "headline", "metrics", "per_stage", "description")
REQUIRED_KEYS = (
    "task",
    "task_version",
    "model",
    "protocol",
    "seed",
    "dataset",
    "headline",
    "metrics",
    "per_stage",
    "n_train",
    "n_val",
    "n_test",
    "timings",
    "peak_memory_mb",
    "versions",
    "code_version",
    "created",
)
HEADLINE_KEYS = ("name", "value", "higher_is_better")
VERSIONED = (
    "brainbench",
    "torch",
    "lightning",
    "monai",
    "numpy",
    "scikit-learn",
    "nibabel",
    "nilearn",
)
_TMP, _OLD = ".tmp-", ".old-"  # markers in the names of hidden sibling directories


def slug(name: str) -> str:
    """A safe single path component: 'mri/age' -> 'mri-age'."""
    text = re.sub(r"[^A-Za-z0-9._+=-]+", "-", str(name)).strip("-.")
    if not text:
        raise ValueError(f"{name!r} gives an empty path component")
    return text


def run_dir(output_dir: Path | str, task: str, model: str, seed: int, tag: str = "") -> Path:
    """`<output_dir>/runs/<task-slug>/<model>[/<tag>]/seed<seed>`."""
    base = Path(output_dir) / "runs" / slug(task) / slug(model)
    return (base / slug(tag) if tag else base) / f"seed{int(seed)}"


# --- environment ------------------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def code_version() -> str | None:
    """The git commit of the checkout brainbench is imported from, or None outside git."""
    here = Path(__file__).resolve().parent
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def environment_info() -> dict[str, Any]:
    """{'versions': {...}, 'code_version': ...} for a metrics.json."""
    versions = {"python": platform.python_version()} | {d: _version(d) for d in VERSIONED}
    versions["brainbench"] = versions["brainbench"] or brainbench.__version__  # not installed
    return {"versions": versions, "code_version": code_version()}


def peak_memory_mb() -> float:
    """Peak resident memory of this process in MiB (ru_maxrss: KiB on Linux, bytes on macOS)."""
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024**2 if sys.platform == "darwin" else 1024)


# --- writing ----------------------------------------------------------------------------------


def check_writable(output_dir: Path | str, option: str = "output_dir=PATH") -> Path:
    """Create output_dir if needed and check a file can be written in it; ResultsError if not.

    `option` is how the user chooses another folder, for the message.
    """
    path = Path(output_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise ResultsError(
            f"cannot write to the folder {path}: {exc.strerror or exc}. Choose another with "
            f"{option} or fix its permissions."
        ) from exc
    return path


def _clean(value: Any) -> Any:
    """Plain JSON values: numpy scalars/arrays unwrapped, NaN/inf -> None."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def to_json(payload: Any) -> str:
    """Strict JSON text (NaN -> null) of a payload of plain and numpy values."""
    return json.dumps(_clean(payload), indent=2, allow_nan=False) + "\n"


def atomic_write_text(path: Path, text: str) -> Path:
    """Write text to path through a temporary file and a rename: readers never see half of it."""
    atomic_write(Path(path), text.encode("utf-8"))
    return path


def _unique() -> str:
    """'<host>-<pid>.<8 hex>': whose temporary folder it is, and which one."""
    return f"{owner_tag()}.{uuid.uuid4().hex[:8]}"


def _siblings(final: Path, marker: str) -> list[Path]:
    return sorted(final.parent.glob(f".{final.name}{marker}*"))


def _restore_stranded(final: Path) -> None:
    """Put back a previous record left aside by a crash between the two renames of a swap."""
    old = _siblings(final, _OLD)
    if old and not final.exists() and is_complete(old[-1]):
        os.replace(old[-1], final)


def write_record(
    run_dir: Path,
    *,
    config: dict[str, Any],
    metrics: dict[str, Any],
    predictions: pd.DataFrame,
    files: dict[str, Callable[[Path], None]] | None = None,
) -> Path:
    """Write a complete run record to run_dir atomically; return run_dir.

    `metrics` is the metrics.json payload; `versions`, `code_version`, `created` and
    `peak_memory_mb` are filled in when absent. `files` maps a file name to a callable that writes
    that file at the path it is given. An existing record is replaced only once the new one is
    complete; if anything fails, the previous record is left as it was.
    """
    run_dir = Path(run_dir)
    payload = {
        **environment_info(),
        "peak_memory_mb": peak_memory_mb(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **metrics,
    }
    missing = [k for k in REQUIRED_KEYS if k not in payload]
    if missing or not all(k in payload["headline"] for k in HEADLINE_KEYS):
        raise ValueError(f"metrics for {run_dir} lack {missing or list(HEADLINE_KEYS)}")
    check_writable(run_dir.parent)
    _restore_stranded(run_dir)
    for marker in (_TMP, _OLD):  # leftovers of writers that died, not of one still writing
        remove_dead(run_dir.parent, f".{run_dir.name}{marker}")
    tmp = run_dir.with_name(f".{run_dir.name}{_TMP}{_unique()}")
    tmp.mkdir()
    try:
        (tmp / RECORD_CONFIG).write_text(yaml.safe_dump(_clean(config), sort_keys=False), "utf-8")
        predictions.to_csv(tmp / PREDICTIONS, index=False)
        for name, write in (files or {}).items():
            write(tmp / name)
        (tmp / METRICS).write_text(to_json(payload), "utf-8")  # last: marks completeness
        if run_dir.exists():
            old = run_dir.with_name(f".{run_dir.name}{_OLD}{_unique()}")
            os.replace(run_dir, old)
            os.replace(tmp, run_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, run_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return run_dir


# --- reading ----------------------------------------------------------------------------------


def _load(path: Path) -> dict[str, Any]:
    """The metrics.json at path, checked against the schema; ValueError if it does not fit."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise ValueError(f"missing keys {missing}")
    headline = data["headline"]
    if not isinstance(headline, dict) or any(k not in headline for k in HEADLINE_KEYS):
        raise ValueError(f"headline must have the keys {list(HEADLINE_KEYS)}")
    return data


def is_complete(run_dir: Path | str) -> bool:
    """Whether run_dir holds its config.yaml and a metrics.json that fits the schema."""
    try:
        _load(Path(run_dir) / METRICS)
    except (OSError, ValueError):
        return False
    return (Path(run_dir) / RECORD_CONFIG).is_file()


def read_records(results_dir: Path | str) -> list[dict[str, Any]]:
    """Every run record under results_dir/runs: its metrics.json plus `path` (the run directory).

    Other folders (pretrained models, splits, oracles) hold no run records. Hidden directories
    (records being written or set aside) are skipped. A metrics.json that is unreadable or does
    not fit the schema, or a record without its config.yaml, raises ResultsError naming it: a
    leaderboard that silently dropped runs would mislead. A missing results_dir has no records.
    """
    root = Path(results_dir) / "runs"
    records = []
    for path in sorted(root.rglob(METRICS)):
        if any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        try:
            data = _load(path)
        except (OSError, ValueError) as exc:
            raise ResultsError(
                f"run record {path} is unreadable ({exc}). Delete {path.parent} or rerun that "
                "run with --force."
            ) from exc
        if not (path.parent / RECORD_CONFIG).is_file():
            raise ResultsError(
                f"run record {path.parent} has no {RECORD_CONFIG}, so its result cannot be told "
                "apart from another config's; delete it or rerun that run with --force."
            )
        records.append(data | {"path": str(path.parent)})
    return records


# --- oracle ceilings (written by the task runners, read by the leaderboard) ------------------


def write_oracle(output_dir: Path | str, task: str, payload: dict[str, Any]) -> Path:
    """Write a task's oracle ceiling to `<output_dir>/oracle/<task-slug>[_<dataset>].json`.

    payload: {task, headline {name, value, higher_is_better}, metrics, per_stage, description}
    and optionally `dataset` (without it the row joins every dataset of the task).
    """
    missing = [k for k in ORACLE_KEYS if k not in payload]
    if missing or payload["task"] != task:
        raise ValueError(f"oracle payload for {task} lacks {missing} or names another task")
    folder = check_writable(Path(output_dir) / "oracle")
    name = slug(task) + (f"_{slug(payload['dataset'])}" if payload.get("dataset") else "")
    return atomic_write_text(folder / f"{name}.json", to_json(payload))


def read_oracles(results_dir: Path | str) -> list[dict[str, Any]]:
    """Every oracle payload under `<results_dir>/oracle`; ResultsError for an unreadable one."""
    oracles = []
    for path in sorted((Path(results_dir) / "oracle").glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or any(k not in data for k in ORACLE_KEYS):
                raise ValueError(f"it needs the keys {list(ORACLE_KEYS)}")
        except (OSError, ValueError) as exc:
            raise ResultsError(
                f"oracle file {path} is unreadable ({exc}). Delete it or rerun the task."
            ) from exc
        oracles.append(data)
    return oracles
