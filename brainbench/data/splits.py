"""Subject-level train/val/test splits, stratified by lifespan stage and site, saved and reused."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

import numpy as np

from brainbench.config import DataConfig, SplitConfig
from brainbench.data.records import SubjectRecord, count_text
from brainbench.data.sources.base import open_source
from brainbench.errors import DataError
from brainbench.owners import atomic_write

SPLITS = ("train", "val", "test")
MIN_SUBJECTS = 10  # fewer cannot be split into train/val/test
_unsaved: dict[Path, bytes] = {}  # split files made in this process, not written yet


def _pick(order: list[str], count: int, rng: np.random.Generator) -> list[str]:
    """`count` items spread evenly along `order` (systematic sampling with a random start)."""
    if count <= 0:
        return []
    start = rng.random()
    return [order[int((k + start) * len(order) / count)] for k in range(count)]


def make_splits(records: list[SubjectRecord], cfg: SplitConfig) -> dict[str, list[str]]:
    """Record keys per split; every session of a subject lands in the same split.

    Subjects are ordered by (lifespan stage, site, random) and val/test are drawn evenly along
    that order, so each stage and site gets its share and strata too small for a share of their
    own are pooled with their neighbours in the same stage. A stage left without training
    subjects gets one back from val/test. Deterministic for `cfg.seed`.
    """
    sessions: dict[str, list[SubjectRecord]] = defaultdict(list)
    for record in records:
        sessions[record.subject].append(record)
    subjects = sorted(sessions)
    rng = np.random.default_rng(cfg.seed)
    tiebreak = dict(zip(subjects, rng.permutation(len(subjects)), strict=True))

    first = {s: min(sessions[s], key=lambda r: r.age) for s in subjects}
    stage = {s: first[s].stage for s in subjects}
    order = sorted(subjects, key=lambda s: (stage[s], first[s].site, tiebreak[s]))
    n = len(order)
    n_test = max(1, round(n * cfg.test_fraction)) if n >= 3 else 0
    n_val = max(1, round(n * cfg.val_fraction)) if n >= 3 else 0
    test = set(_pick(order, n_test, rng))
    rest = [s for s in order if s not in test]
    val = set(_pick(rest, n_val, rng))
    split = {s: "test" if s in test else "val" if s in val else "train" for s in order}
    for name in sorted(set(stage.values())):
        members = [s for s in order if stage[s] == name]
        if all(split[s] != "train" for s in members):
            split[members[0]] = "train"
    return {
        name: sorted(r.key for s in order if split[s] == name for r in sessions[s])
        for name in SPLITS
    }


def load_or_create_splits(
    records: list[SubjectRecord], cfg: SplitConfig, path: Path
) -> dict[str, list[str]]:
    """The splits saved at `path`, or new ones that `save_split(path)` writes there (atomically)
    once a run has results that depend on them, so a run that fails leaves no split file.

    A saved file made for other records or another split config is a DataError: the data or
    config changed, and reusing it would leak or drop subjects.
    """
    path = Path(path)
    fix = f"delete {path} to make new splits, or use another split.seed"
    if not path.exists():
        splits = make_splits(records, cfg)
        payload = {"config": cfg.model_dump(mode="json"), **splits}
        _unsaved[path] = json.dumps(payload, indent=1).encode()
        return splits
    try:
        saved = json.loads(path.read_text())
        splits = {name: list(saved[name]) for name in SPLITS}
        config = saved["config"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"split file {path} is unreadable or incomplete; {fix}.") from None
    if config != cfg.model_dump(mode="json"):
        raise DataError(f"split file {path} was made with split config {config}; {fix}.")
    saved_keys = {k for keys in splits.values() for k in keys}
    current = {r.key for r in records}
    if saved_keys != current:
        added, gone = len(current - saved_keys), len(saved_keys - current)
        raise DataError(
            f"split file {path} does not match the data ({added} records new, {gone} gone); {fix}."
        )
    return splits


def save_split(path: Path) -> None:
    """Write the split file this process made for `path`, unless another run wrote it first
    (the same splits: they are deterministic). Call once results depend on the splits."""
    payload = _unsaved.pop(Path(path), None)
    if payload is not None and not Path(path).exists():
        atomic_write(Path(path), payload)


def split_file(data: DataConfig, split: SplitConfig, output_dir: Path) -> Path:
    """Where a dataset's splits for `split` are saved under `output_dir`."""
    return Path(output_dir) / "splits" / f"{dataset_id(data)}_split{split.seed}.json"


def dataset_id(data: DataConfig) -> str:
    """A name telling datasets apart in paths: 'synth-default-seed0' or 'bids-<name>-<hash>'."""
    return open_source(data).dataset_id()


def dataset_splits(
    data: DataConfig, split: SplitConfig, output_dir: Path, *, training: bool = True
) -> tuple[list[SubjectRecord], dict[str, list[str]]]:
    """A dataset's records and its one subject-level split, shared by every task and pretraining.

    One split per dataset (not per task) means a subject held out for testing by any task is
    held out by all of them, and never seen by a pretrained model. A dataset of fewer than
    MIN_SUBJECTS subjects is a DataError where `training` is needed; without training every
    record is a test record (nothing is saved: no subject was ever trained on).
    """
    records = open_source(data).records()
    subjects = len({r.subject for r in records})
    if subjects < MIN_SUBJECTS:
        if not training:
            return records, {"train": [], "val": [], "test": sorted(r.key for r in records)}
        raise DataError(
            f"dataset '{data.dataset}' has {count_text(records)}; at least {MIN_SUBJECTS} "
            "subjects are needed to split them into train/val/test for training. Add subjects, "
            "or evaluate a model that needs no training (see the README, 'Your own data')."
        )
    return records, load_or_create_splits(records, split, split_file(data, split, output_dir))
