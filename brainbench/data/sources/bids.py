"""BIDS reader: sub-*/[ses-*/]{anat,dwi}/*.nii[.gz], derivatives/labels dseg, participants.tsv."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

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
from brainbench.errors import ConfigError, DataError
from brainbench.registry import register_source

# (datatype folder, filename suffix) -> modality key
SUFFIXES = {("anat", "T1w"): "T1w", ("anat", "T2w"): "T2w", ("anat", "FLAIR"): "FLAIR"}
SUFFIXES |= {("dwi", "dwi"): "dwi"}
LABELS = {("anat", "dseg"): "seg"}
FIELDS = ("participant_id", "age", "sex", "site")


def _stem(path: Path) -> str | None:
    for ext in (".nii.gz", ".nii"):
        if path.name.endswith(ext):
            return path.name[: -len(ext)]
    return None


def find_images(folder: Path, suffixes: Mapping[tuple[str, str], str]) -> dict[str, Path]:
    """Modality -> NIfTI path under folder/<datatype>/; the first run in sorted order wins."""
    found: dict[str, Path] = {}
    for (datatype, suffix), modality in suffixes.items():
        for path in sorted((folder / datatype).glob("*.nii*")):
            stem = _stem(path)
            if stem and stem.rsplit("_", 1)[-1] == suffix and modality not in found:
                found[modality] = path
    return found


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


def read_bids(root: Path, columns: Mapping[str, str] | None = None) -> list[SubjectRecord]:
    """One SubjectRecord per subject (and session) of a BIDS dataset.

    `columns` maps participant_id/age/sex/site to differently named participants.tsv columns.
    Label maps come from derivatives/labels/sub-*/[ses-*/]anat/*_dseg.nii[.gz] (key "seg");
    brain masks and standard-space scans from any derivatives folder (sources/derivatives.py).
    """
    root = Path(root)
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
            images = find_images(folder, SUFFIXES)
            rel = folder.relative_to(root)
            images |= find_images(root / "derivatives" / "labels" / rel, LABELS)
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
    return records


@register_source("bids", description="a BIDS folder given as data.path=/path/to/bids")
def load(config: DataConfig) -> list[SubjectRecord]:
    """The registered loader: read_bids(config.path)."""
    if config.path is None:
        raise ConfigError("the bids dataset needs its folder: set data.path=/path/to/bids.")
    return read_bids(config.path)
