"""BIDS reader: sub-*/[ses-*/]{anat,dwi}/*.nii[.gz], derivatives/labels dseg, participants.tsv.

Where a session holds several files of one modality (runs, acquisitions, derived images), the
rule of brainbench/bids_names.py picks one (`data.filters` narrows the candidates first), and
one warning per dataset says how many records had a choice and what was chosen.
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

from brainbench.bids_names import (
    choices_message,
    choose,
    parse_filter,
    parse_name,
    unmatched_filter,
)
from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.derivatives import read_preprocessed
from brainbench.data.sources.table import (
    parse_age,
    parse_sex,
    parse_site,
    parse_value,
    read_table,
    strip_prefix,
)
from brainbench.data.timeseries import SERIES
from brainbench.errors import ConfigError, DataError
from brainbench.registry import register_source

# (datatype folder, filename suffix) -> modality key
SUFFIXES = {("anat", "T1w"): "T1w", ("anat", "T2w"): "T2w", ("anat", "FLAIR"): "FLAIR"}
SUFFIXES |= {("dwi", "dwi"): "dwi"}
LABELS = {("anat", "dseg"): "seg"}
FIELDS = ("participant_id", "age", "sex", "site")
NIFTI = (".nii", ".nii.gz")


def find_images(
    folder: Path,
    suffixes: Mapping[tuple[str, str], str],
    filters: Mapping[str, Mapping[str, str]] | None = None,
) -> dict[str, list[Path]]:
    """Modality -> its candidate NIfTI files under folder/<datatype>/, sorted.

    A candidate has the modality's suffix and every entity of `filters[modality]`.
    """
    found: dict[str, list[Path]] = {}
    for (datatype, suffix), modality in suffixes.items():
        wanted = (filters or {}).get(modality, {})
        for path in sorted((folder / datatype).glob("*.nii*")):
            name = parse_name(path.name)
            if name and name.extension in NIFTI and name.suffix == suffix and name.matches(wanted):
                found.setdefault(modality, []).append(path)
    return found


def entity_filters(filters: Mapping[str, str] | None) -> dict[str, dict[str, str]]:
    """data.filters parsed: modality -> entities; unknown modalities are a ConfigError."""
    known = sorted({*SUFFIXES.values(), *LABELS.values(), SERIES})
    parsed = {}
    for modality, text in (filters or {}).items():
        if modality not in known:
            raise ConfigError(
                f"data.filters.{modality}: no such modality; filter one of {', '.join(known)}."
            )
        try:
            parsed[modality] = parse_filter(text)
        except ValueError as exc:
            raise ConfigError(f"data.filters.{modality}: {exc}.") from None
    return parsed


def _check_filters_used(
    root: Path, filters: Mapping[str, Mapping[str, str]], records: list[SubjectRecord]
) -> None:
    """A filter that matches no file anywhere is a typo, not a dataset without the modality."""
    for modality in filters:
        if modality != SERIES and not any(modality in r.images for r in records):
            raise unmatched_filter(modality, filters[modality], modality, root)


def _sessions(subject_dir: Path) -> list[tuple[str | None, Path]]:
    sessions = sorted(p for p in subject_dir.glob("ses-*") if p.is_dir())
    if not sessions:
        return [(None, subject_dir)]
    return [(strip_prefix(p.name, "ses-"), p) for p in sessions]


def _session_ages(subject_dir: Path) -> dict[str, str]:
    """Per-session ages from sub-X/sub-X_sessions.tsv, when it has an 'age' column."""
    path = subject_dir / f"{subject_dir.name}_sessions.tsv"
    if not path.is_file():
        return {}
    _, rows = read_table(path, "\t")
    return {
        strip_prefix(r.get("session_id", ""), "ses-"): r["age"]
        for r in rows
        if parse_value(r.get("age", "")) is not None
    }


def read_participants(root: Path, columns: Mapping[str, str]) -> dict[str, dict[str, str]]:
    """participants.tsv rows by subject label (without 'sub-'), checked for required columns."""
    path = root / "participants.tsv"
    if not path.is_file():
        raise DataError(
            f"{root} has no participants.tsv; add one with the columns participant_id, age, sex "
            "(and optionally site)."
        )
    header, rows = read_table(path, "\t")
    missing = [columns[f] for f in FIELDS[:3] if columns[f] not in header]
    if missing:
        raise DataError(f"{path} lacks the columns {missing}; add them (ages in years).")
    table: dict[str, dict[str, str]] = {}
    for row in rows:
        label = strip_prefix(row[columns["participant_id"]], "sub-")
        if label in table:
            raise DataError(f"{path}: subject '{label}' is listed twice; keep one row per subject.")
        table[label] = row
    return table


def read_bids(
    root: Path,
    columns: Mapping[str, str] | None = None,
    filters: Mapping[str, str] | None = None,
) -> list[SubjectRecord]:
    """One SubjectRecord per subject (and session) of a BIDS dataset.

    `columns` maps participant_id/age/sex/site to differently named participants.tsv columns.
    `filters` maps a modality to an entity filter ('run-1'), as data.filters does.
    Label maps come from derivatives/labels/sub-*/[ses-*/]anat/*_dseg.nii[.gz] (key "seg");
    brain masks and standard-space scans from any derivatives folder (sources/derivatives.py).
    """
    root = Path(root)
    wanted = entity_filters(filters)
    if not root.is_dir():
        raise DataError(f"BIDS root {root} is not a folder; point data.path at the dataset folder.")
    columns = {f: f for f in FIELDS} | dict(columns or {})
    table = read_participants(root, columns)
    subject_dirs = sorted(p for p in root.glob("sub-*") if p.is_dir())
    if not subject_dirs:
        raise DataError(f"{root} holds no sub-* folders; is it the root of a BIDS dataset?")
    tsv = root / "participants.tsv"
    known = set(columns.values())
    records = []
    several: dict[str, list[tuple[str, list[Path]]]] = defaultdict(list)
    for subject_dir in subject_dirs:
        label = strip_prefix(subject_dir.name, "sub-")
        if label not in table:
            raise DataError(
                f"subject folder {subject_dir} is missing from {tsv}; add a row for "
                f"'sub-{label}' (age, sex) or remove the folder."
            )
        row = table[label]
        ages = _session_ages(subject_dir)
        for session, folder in _sessions(subject_dir):
            rel = folder.relative_to(root)
            found = find_images(folder, SUFFIXES, wanted)
            found |= find_images(root / "derivatives" / "labels" / rel, LABELS, wanted)
            images = {modality: choose(files) for modality, files in found.items()}
            brain_mask, spaces = read_preprocessed(root, rel)
            age_text = ages.get(session or "", row[columns["age"]])
            record = SubjectRecord(
                subject=label,
                age=parse_age(age_text, tsv, label),
                sex=parse_sex(row[columns["sex"]]),
                site=parse_site(row.get(columns["site"], "")),
                session=session,
                phenotypes={k: parse_value(v) for k, v in row.items() if k and k not in known},
                images=images,
                brain_mask=brain_mask,
                spaces=spaces,
            )
            records.append(record)
            for modality, files in found.items():
                if len(files) > 1:
                    several[modality].append((record.key, files))
    _check_filters_used(root, wanted, records)
    for modality, cases in several.items():
        warnings.warn(
            choices_message(root, f"{modality} files", modality, cases, len(records)),
            stacklevel=2,
        )
    return records


@register_source("bids", description="a BIDS folder given as data.path=/path/to/bids")
def load(config: DataConfig) -> list[SubjectRecord]:
    """The registered loader: read_bids(config.path, filters=config.filters)."""
    if config.path is None:
        raise ConfigError("the bids dataset needs its folder: set data.path=/path/to/bids.")
    return read_bids(config.path, filters=config.filters)
