"""Runner of the multimodal legibility tasks (tasks/multimodal/*.yaml): any phenotype as target,
any subset of images, connectivity and tabular metadata as inputs (model `fusion`).

`task_options.inputs` is the set of inputs a grid offers; every subject must have all of them
(those that do not are listed and left out of every combination, so all combinations share one
test set). An experiment's own subset is `model.inputs`. Metadata are the phenotype columns
whose domain differs from the target's (no leakage from, e.g., dementia into cognition).
Subjects are matched across inputs by id, never by position.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import torch
from pydantic import Field, field_validator

from brainbench.config import ExperimentConfig, StrictModel, home, validate_section
from brainbench.data.cache import VolumeCache
from brainbench.data.connectivity import connectivity_vector
from brainbench.data.dataset import SubjectDataset, VolumeDataset, column_value
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.base import DOMAINS, open_source
from brainbench.data.splits import dataset_splits
from brainbench.data.timeseries import read_series
from brainbench.errors import ConfigError, DataError
from brainbench.models.fusion import IMAGE_INPUTS, INPUTS, canonical_inputs, combination_name
from brainbench.tasks import TaskSpec, get_task
from brainbench.tasks.runs import Experiment, run_seeds, select_subjects, warm
from brainbench.tasks.supervised import evaluate


class MultimodalOptions(StrictModel):
    inputs: list[str] = Field(
        ["T1w", "FLAIR", "dwi", "connectivity", "metadata"],
        min_length=1,
        description="the inputs the grid offers; every subject must have them all",
    )
    domains: dict[str, str] = Field(
        {}, description="column -> domain, added to the dataset's own (participants.json)"
    )
    positive: str | None = Field(
        None, description="the positive level of a text-valued binary target (e.g. L)"
    )
    min_coverage: float = Field(
        0.25, gt=0, le=1, description="least share of subjects that must have the target"
    )

    @field_validator("inputs")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        return canonical_inputs(value)

    @field_validator("domains")
    @classmethod
    def _domains(cls, value: dict[str, str]) -> dict[str, str]:
        bad = sorted(d for d in value.values() if d not in DOMAINS)
        if bad:
            raise ValueError(f"unknown domains {bad}; valid: {', '.join(DOMAINS)}")
        return value


def options_of(config: ExperimentConfig) -> MultimodalOptions:
    layers = [("task_options", {"task_options": config.task_options})]
    return validate_section(MultimodalOptions, config.task_options, layers, "task_options.")


# --- targets and metadata ---------------------------------------------------------------------


def target_coder(spec: TaskSpec, options: MultimodalOptions, records: list[SubjectRecord]):
    """record -> float target (None if missing), after checking coverage and variation."""
    values = [column_value(r, spec.target) for r in records]
    present = [v for v in values if v is not None]
    where = f"target column '{spec.target}' (task {spec.name})"
    if len(present) < options.min_coverage * len(records):
        raise DataError(
            f"{where} is missing for {len(records) - len(present)} of {len(records)} subjects; "
            f"fill it in, or lower task_options.min_coverage (now {options.min_coverage})."
        )
    levels = sorted({level(v) for v in present})
    if len(levels) < 2:
        raise DataError(f"{where} is constant ({levels[0] if levels else 'empty'}); drop it.")
    if spec.kind == "regression":
        if any(isinstance(v, str) for v in present):
            raise DataError(f"{where} holds text values {levels[:5]}; a regression needs numbers.")
        return lambda r: None if (v := column_value(r, spec.target)) is None else float(v)
    if len(levels) != 2:
        raise DataError(f"{where} has {len(levels)} levels {levels[:5]}; a binary one needs 2.")
    positive = options.positive or {"sex": "M"}.get(spec.target)
    positive = level(positive) if positive else ("1" if levels == ["0", "1"] else None)
    if positive not in levels:
        raise ConfigError(
            f"{where} has the levels {levels}; set task_options.positive to the positive one."
        )

    def code(record: SubjectRecord) -> float | None:
        value = column_value(record, spec.target)
        return None if value is None else float(level(value) == positive)

    return code


def level(value: object) -> str:
    """A value's level name; whole numbers read alike however stored (1, 1.0, '1.0' -> '1')."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return str(int(number)) if number.is_integer() else str(value)


def metadata_columns(
    target: str, options: MultimodalOptions, records: list[SubjectRecord], known: dict[str, dict]
) -> list[str]:
    """Columns with a domain other than the target's (the target's domain is withheld).

    `known` is the dataset's Source.column_domains(); task_options.domains adds or overrides.
    """
    domains = {c: info["Domain"] for c, info in known.items() if "Domain" in info}
    domains |= options.domains
    withheld = domains.get(target)
    present = {"age", "sex"} | {k for r in records for k in r.phenotypes}
    return [c for c in domains if c in present and c != target and domains[c] != withheld]


class MetadataEncoder:
    """Numbers standardised (missing -> 0 plus a missing flag), text one-hot; training stats."""

    def __init__(self, columns: list[str], train: list[SubjectRecord]) -> None:
        self.parts: list[tuple[str, str, object]] = []  # (column, kind, stats or level)
        for column in columns:
            values = [column_value(r, column) for r in train]
            known = [v for v in values if v is not None]
            if any(isinstance(v, str) for v in known):
                self.parts += [(column, "level", level) for level in sorted(set(map(str, known)))]
                continue
            if known:
                x = np.asarray(known, dtype=float)
                self.parts.append((column, "number", (x.mean(), x.std() or 1.0)))
            if len(known) < len(values):
                self.parts.append((column, "missing", None))
        self.names = [f"{c}={v}" if k == "level" else f"{c}:{k}" for c, k, v in self.parts]

    def encode(self, record: SubjectRecord) -> np.ndarray:
        out = np.zeros(len(self.parts), dtype=np.float32)
        for i, (column, kind, extra) in enumerate(self.parts):
            value = column_value(record, column)
            if kind == "level":
                out[i] = float(value is not None and str(value) == extra)
            elif kind == "missing":
                out[i] = float(value is None)
            elif value is not None and not isinstance(value, str):
                mean, std = extra
                out[i] = (float(value) - mean) / std
        return out


# --- connectivity -----------------------------------------------------------------------------


def connectivity_vectors(config: ExperimentConfig, records: list[SubjectRecord]) -> dict:
    """record key -> connectivity vector from the dataset's parcel series."""
    source = open_source(config.data)
    files, _ = source.series(records)
    vectors = {key: connectivity_vector(read_series(path)) for key, path in files.items()}
    sizes = {v.size for v in vectors.values()}
    if len(sizes) > 1:
        raise DataError(
            f"the parcel series under {source.series_folder()} differ in parcel count; "
            "parcellate (or regenerate) them with one atlas."
        )
    return vectors


# --- the dataset ------------------------------------------------------------------------------


class FusionDataset(SubjectDataset):
    """Item i is (x, y): x the present inputs flattened and concatenated in `layout` order.

    `layout` holds the shape of every offered input (the network builds a block for each);
    `vectors` maps 'connectivity' / 'metadata' to {record key: vector}.
    """

    def __init__(
        self,
        records: list[SubjectRecord],
        targets: list[float],
        layout: dict[str, tuple[int, ...]],
        present: list[str],
        volumes: VolumeDataset | None,
        vectors: dict[str, dict[str, np.ndarray]],
    ) -> None:
        self.records, self.layout, self.present = records, layout, present
        self.volumes, self.vectors = volumes, vectors
        self._targets = np.asarray(targets, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.records)

    def sample(self, i: int) -> np.ndarray:
        parts = [] if self.volumes is None else [self.volumes.volume(i).ravel()]
        key = self.records[i].key
        parts += [self.vectors[n][key] for n in self.present if n in self.vectors]
        return np.concatenate(parts).astype(np.float32, copy=False)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.sample(i)), torch.tensor(self._targets[i])

    def warm(self) -> None:
        if self.volumes is not None:
            self.volumes.warm()


# --- runner interface -------------------------------------------------------------------------


def _available(records: list[SubjectRecord], vectors: dict[str, dict], meta_cols: list[str]):
    have = {m for r in records for m in r.images if m in IMAGE_INPUTS}
    have |= {name for name, table in vectors.items() if table}
    return have | ({"metadata"} if meta_cols else set())


def check(config: ExperimentConfig) -> tuple:
    """Check the dataset: a usable target column and every offered input, else a DataError.

    Returns what `prepare` builds on (spec, options, records, target coder, metadata columns,
    connectivity vectors). A grid calls it once per target before starting any run.
    """
    spec = get_task(config.task)
    options = options_of(config)
    records, _ = dataset_splits(config.data, config.split, config.output_dir)
    code = target_coder(spec, options, records)
    domains = open_source(config.data).column_domains()
    meta_cols = metadata_columns(spec.target, options, records, domains)
    vectors = {}
    if "connectivity" in options.inputs:
        vectors["connectivity"] = connectivity_vectors(config, records)
    have = _available(records, vectors, meta_cols)
    missing = [name for name in options.inputs if name not in have]
    if missing:
        raise DataError(
            f"dataset '{config.data.dataset}' has no {', '.join(missing)} input; it has "
            f"{', '.join(n for n in INPUTS if n in have) or 'none'}. Set the grid's --inputs "
            "(task_options.inputs) to those."
        )
    return spec, options, records, code, meta_cols, vectors


def prepare(config: ExperimentConfig, log) -> dict:
    """Subjects with the target and every offered input, split; metadata and connectivity."""
    spec, options, records, code, meta_cols, vectors = check(config)
    lacking: dict[str, list[str]] = {}
    for record in records:
        gaps = [m for m in options.inputs if m in IMAGE_INPUTS and m not in record.images]
        gaps += [n for n, table in vectors.items() if record.key not in table]
        for gap in gaps:
            lacking.setdefault(gap, []).append(record.key)
    for gap, keys in lacking.items():
        shown = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        log(f"{config.task}: {len(keys)} subjects lack {gap} ({shown}); left out of every run")
    dropped = {k for keys in lacking.values() for k in keys}
    chosen = select_subjects(
        config,
        lambda r: r.key not in dropped and code(r) is not None,
        f"target '{spec.target}' and the inputs {', '.join(options.inputs)}",
    )
    if "metadata" in options.inputs:
        encoder = MetadataEncoder(meta_cols, chosen["train"])
        vectors["metadata"] = {
            r.key: encoder.encode(r) for subset in chosen.values() for r in subset
        }
        log(f"{config.task}: metadata columns {', '.join(encoder.names)}")
    cache = VolumeCache(config.data.cache_dir or home() / "cache")
    images = [m for m in options.inputs if m in IMAGE_INPUTS]
    layout = {m: tuple(config.preprocess.shape) for m in images}
    layout |= {n: (len(next(iter(vectors[n].values()))),) for n in vectors}
    prepared = {
        "chosen": chosen,
        "targets": {n: [code(r) for r in subset] for n, subset in chosen.items()},
        "layout": {n: layout[n] for n in options.inputs},
        "vectors": vectors,
        "cache": cache,
    }
    warm(datasets(config, prepared, images), config, log)
    return prepared


def datasets(config: ExperimentConfig, prepared: dict, inputs: list[str]) -> dict:
    """The train/val/test FusionDatasets of one input combination."""
    images = [m for m in prepared["layout"] if m in IMAGE_INPUTS and m in inputs]
    out = {}
    for name, subset in prepared["chosen"].items():
        volumes = (
            VolumeDataset(subset, images, None, config.preprocess, prepared["cache"])
            if images
            else None
        )
        present = [n for n in prepared["layout"] if n in inputs]
        out[name] = FusionDataset(
            subset,
            prepared["targets"][name],
            prepared["layout"],
            present,
            volumes,
            prepared["vectors"],
        )
    return out


def run_experiment(experiment: Experiment, prepared: dict, *, force: bool, log) -> list[Path]:
    """Train and score `fusion` on its input combination once per seed."""
    cfg = experiment.config
    inputs = list(getattr(experiment.params, "inputs", prepared["layout"]))
    extra = [n for n in inputs if n not in prepared["layout"]]
    if extra:
        raise ConfigError(
            f"model.inputs {extra} are not among the offered task_options.inputs "
            f"{list(prepared['layout'])}; add them there or drop them from model.inputs."
        )
    title = f"{cfg.task} {cfg.model_name} ({combination_name(inputs)})"
    data = datasets(cfg, prepared, inputs)
    return run_seeds(
        experiment, data, partial(evaluate, experiment.spec, title), force=force, log=log
    )
