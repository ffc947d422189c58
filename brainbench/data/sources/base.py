"""The Source protocol: what a dataset offers, for one DataConfig.

Every source implements it, one file each under data/sources/: `records()` (subject records),
`series(records)` (parcel time series), `evoked(column)` (stimulus-evoked runs),
`column_domains()` (what is known of the phenotype columns) and, for generated data only,
`latents(kind)`, `series_truth()` and `evoked_oracle(...)` (the generator's truth, for the
oracle ceilings and fmri/perturb).
Modules outside data/ ask the source (`open_source(config)`), never which source it is.

The defaults below suit a dataset on disk at `data.path`: parcel series under
`<path>/derivatives/fmri` (what `brainbench parcellate --out` writes), domains from
`<path>/participants.json`, no evoked runs, no latents. A source registered as a plain loader
function (`@register_source(...) def load(config)`) gets exactly these.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from brainbench.bids_names import parse_filter
from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord
from brainbench.data.timeseries import (
    ATLAS_TABLE,
    SERIES,
    SUFFIX,
    read_atlas_table,
    series_files,
)
from brainbench.errors import ConfigError, DataError
from brainbench.registry import SOURCES, get_source, load_plugins

Latents = Literal["mri", "fmri"]  # the generator's latents of the images / of the parcel series
# the groups of phenotype columns (their 'Domain'): multimodal metadata omits the target's group
DOMAINS = ("constitutional", "serology", "psychology", "disease")


class Source:
    """A dataset read for `config`; subclasses override what their data does differently."""

    # what a model card says about models trained on this source's data
    card_note = "Performance outside the training data's ages, sites and scanners is unknown."

    def __init__(self, config: DataConfig) -> None:
        self.config = config

    def records(self) -> list[SubjectRecord]:
        """Every subject record of the dataset."""
        raise NotImplementedError

    def dataset_id(self) -> str:
        """A name telling datasets apart in paths: '<dataset>-<folder name>-<hash of path>'."""
        path = self.config.path
        digest = hashlib.sha1((str(path.resolve()) if path else "").encode()).hexdigest()[:8]
        return f"{self.config.dataset}-{path.name if path else 'none'}-{digest}"

    def series_folder(self) -> Path:
        """The folder of parcel series (sub-*/[ses-*/]func/*_timeseries.npy) and atlas.tsv."""
        if self.config.path is None:
            raise DataError(f"dataset '{self.config.dataset}' needs data.path for fMRI tasks.")
        folder = Path(self.config.path) / "derivatives" / "fmri"
        if not (folder / ATLAS_TABLE).is_file():
            raise DataError(
                f"{folder / ATLAS_TABLE} does not exist; parcellate the runs first with "
                f"`brainbench parcellate FILE... --atlas ATLAS --out {folder}`."
            )
        return folder

    def series(self, records: Iterable[SubjectRecord]) -> tuple[dict[str, Path], np.ndarray]:
        """(record key -> its parcel series file, (parcels, 3) atlas coordinates in mm)."""
        folder = self.series_folder()
        text = self.config.filters.get(SERIES)
        files = series_files(folder, records, parse_filter(text) if text else None)
        if not files:
            raise DataError(f"no parcel series (*{SUFFIX}) found under {folder} for any subject.")
        coords = read_atlas_table(folder)[["x", "y", "z"]].to_numpy(dtype=np.float32)
        return files, coords

    def evoked(self, stimulus_column: str | None = None):
        """The stimulus-evoked runs (an image_fmri.EvokedData)."""
        offering = ", ".join(name for name, e in sorted(SOURCES.items()) if _offers_evoked(e))
        raise ConfigError(
            f"dataset '{self.config.dataset}' has no stimulus-evoked fMRI. Use --dataset with "
            f"one of {offering}."
        )

    def evoked_oracle(self, data, meta: pd.DataFrame, candidates: list[str]) -> np.ndarray | None:
        """An ideal observer's (windows, candidates) scores, where the truth is known."""
        return None

    def column_domains(self) -> dict[str, dict[str, Any]]:
        """Phenotype column -> what is known of it: its 'Domain' (one of DOMAINS) and, for
        generated data, 'ImagingSignal' / 'FmriSignal' (whether
        the images / the parcel series carry it)."""
        path = Path(self.config.path or "") / "participants.json"
        if self.config.path is None or not path.is_file():
            return {}
        try:
            sidecar = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DataError(f"{path} is not readable JSON: {exc}") from None
        return {
            column: {"Domain": info["Domain"]}
            for column, info in sidecar.items()
            if isinstance(info, dict) and "Domain" in info
        }

    def latents(self, kind: Latents) -> pd.DataFrame | None:
        """The generator's true latent variables per record key (None: real data has none)."""
        return None

    def series_truth(self) -> dict[str, np.ndarray] | None:
        """The fMRI generator's truth per parcel: `parcel_weight` (its network loading factor)
        and `private` (the correlation of the parcels' non-network parts); None for real data."""
        return None


class LoaderSource(Source):
    """A source registered as a loader function: the defaults around `load(config)`."""

    def __init__(self, config: DataConfig, load: Callable[[DataConfig], list]) -> None:
        super().__init__(config)
        self._load = load

    def records(self) -> list[SubjectRecord]:
        return self._load(self.config)


def _offers_evoked(entry) -> bool:
    return entry.source is not None and entry.source.evoked is not Source.evoked


def open_source(config: DataConfig) -> Source:
    """The Source of `config.dataset`, reading `config`."""
    entry = get_source(config.dataset)
    if entry.source is None:
        return LoaderSource(config, entry.load)
    return entry.source(config)


def card_note(dataset_id: str) -> str:
    """The model card's caveat for models trained on `dataset_id` (see Source.dataset_id)."""
    load_plugins()
    owners = [e for name, e in SOURCES.items() if str(dataset_id).startswith(f"{name}-")]
    owner = max(owners, key=lambda e: len(e.name), default=None)
    return (owner.source or Source).card_note if owner else Source.card_note
