"""Catalogue of public lifespan datasets (catalogue.yaml) and a checker for a local copy."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from brainbench.data.records import SubjectRecord
from brainbench.data.sources.bids import read_bids
from brainbench.data.sources.manifest import read_manifest
from brainbench.errors import DataError, unknown

CATALOGUE = Path(__file__).with_name("catalogue.yaml")
SHOWN = 5  # subjects named per problem


@dataclass(frozen=True)
class DatasetInfo:
    """One public dataset: who is in it, what was imaged, how to get it, how to lay it out."""

    name: str
    full_name: str
    ages: str
    age_years: tuple[float, float]
    modalities: tuple[str, ...]
    licence: str
    access: str
    home: str
    layout: str  # "bids" or "manifest"
    images: tuple[str, ...]  # image modalities each subject of a local copy should have
    notes: str = ""
    columns: dict[str, str] = field(default_factory=dict)  # participants.tsv column mapping


@functools.cache
def catalogue() -> dict[str, DatasetInfo]:
    """Every catalogued dataset by name."""
    raw = yaml.safe_load(CATALOGUE.read_text())
    return {
        name: DatasetInfo(
            name=name,
            full_name=entry["full_name"],
            ages=entry["ages"],
            age_years=tuple(entry["age_years"]),
            modalities=tuple(entry["modalities"]),
            licence=entry["licence"],
            access=entry["access"],
            home=entry["home"],
            layout=entry["layout"]["kind"],
            images=tuple(entry["layout"]["images"]),
            notes=entry["layout"].get("notes", ""),
            columns=entry["layout"].get("columns", {}),
        )
        for name, entry in raw.items()
    }


def get_dataset(name: str) -> DatasetInfo:
    """A catalogue entry by name (case-insensitive); unknown names list the valid ones."""
    by_lower = {key.lower(): info for key, info in catalogue().items()}
    if name.lower() not in by_lower:
        raise unknown("dataset", name, catalogue())
    return by_lower[name.lower()]


def coverage(records: list[SubjectRecord], images: tuple[str, ...]) -> list[str]:
    """Problems with which subjects lack which expected image modalities."""
    if not records:
        return ["no subjects found."]
    problems = []
    if not any(all(m in r.images for m in images) for r in records):
        problems.append(f"no subject has all of {', '.join(images)}.")
    for modality in images:
        lacking = [r.key for r in records if modality not in r.images]
        if lacking:
            names = ", ".join(lacking[:SHOWN]) + (" ..." if len(lacking) > SHOWN else "")
            problems.append(f"{modality} missing for {len(lacking)} of {len(records)}: {names}")
    return problems


def check_dataset(name: str, path: Path) -> list[str]:
    """Problems found in a local copy of a catalogued dataset; an empty list means usable.

    A copy of an image-decoding dataset (BOLD5000, NSD, THINGS-fMRI) holding BOLD runs
    (sub-*/[ses-*/]func) is checked against its decoding layout (data/sources/image_fmri.py).
    """
    from brainbench.data.sources.image_fmri import DECODING_DATASETS, check_evoked

    info = get_dataset(name)
    path = Path(path)
    if not path.exists():
        return [f"{path} does not exist; download {info.name} ({info.access}) and point at it."]
    decoding = info.name.lower().replace("-", "_")
    if decoding in DECODING_DATASETS and any(path.glob("sub-*/**/func")):
        return check_evoked(decoding, path)
    if info.layout == "manifest" and path.is_dir():
        return [
            f"{path} is a folder; {info.name} is read through a CSV manifest (columns subject, "
            f"age, sex, site, {', '.join(info.images)}): write one and pass its path. {info.notes}"
        ]
    try:
        if info.layout == "bids":
            records = read_bids(path, info.columns)
        else:
            records = read_manifest(path)
    except DataError as exc:
        return [str(exc)]
    return coverage(records, info.images)


def format_catalogue() -> str:
    """The catalogue as text for `brainbench datasets`."""
    lines = ["public lifespan datasets (brainbench datasets check NAME PATH validates a copy):"]
    for info in catalogue().values():
        lines.append(f"  {info.name:<16} {info.full_name}")
        lines.append(f"  {'':<16} ages {info.ages}; {', '.join(info.modalities)}")
        lines.append(f"  {'':<16} {info.licence}; {info.access}; {info.home}")
        lines.append(f"  {'':<16} layout: {info.layout} with {', '.join(info.images)}")
    return "\n".join(lines)
