"""CSV-manifest reader: a subject column, one path column per modality, phenotype columns."""

from __future__ import annotations

from pathlib import Path

from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.table import (
    MODALITIES,
    parse_age,
    parse_sex,
    parse_site,
    parse_value,
    read_table,
    strip_prefix,
)
from brainbench.errors import ConfigError, DataError
from brainbench.registry import register_source

FIELDS = ("subject", "session", "age", "sex", "site")


def _rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        raise DataError(f"manifest {path} does not exist; check data.path.")
    header, rows = read_table(path, ",")
    for column in ("subject", "age"):
        if column not in header:
            raise DataError(
                f"manifest {path} has no '{column}' column (found {sorted(header)}); "
                f"add one (columns: subject, age, sex, site, {', '.join(MODALITIES)})."
            )
    return rows


def read_manifest(csv_path: Path) -> list[SubjectRecord]:
    """One SubjectRecord per manifest row; relative image paths resolve against the CSV's folder."""
    csv_path = Path(csv_path)
    records, seen = [], set()
    for line, row in enumerate(_rows(csv_path), start=2):
        subject = strip_prefix(row["subject"], "sub-")
        session = strip_prefix(row.get("session", ""), "ses-") or None
        where = f"manifest {csv_path} line {line} (subject '{subject}')"
        if not subject:
            raise DataError(f"manifest {csv_path} line {line} has an empty subject; fill it in.")
        if (subject, session) in seen:
            raise DataError(f"{where} repeats an earlier subject/session; keep one row for each.")
        seen.add((subject, session))
        images = {}
        for modality in MODALITIES:
            cell = (row.get(modality) or "").strip()
            if not cell:
                continue
            path = (csv_path.parent / cell).resolve()
            if not path.is_file():
                raise DataError(f"{where}: {modality} file {path} does not exist; fix the path.")
            images[modality] = path
        records.append(
            SubjectRecord(
                subject=subject,
                age=parse_age(row["age"], csv_path, subject),
                sex=parse_sex(row.get("sex", "")),
                site=parse_site(row.get("site", "")),
                session=session,
                phenotypes={
                    k: parse_value(v)
                    for k, v in row.items()
                    if k and k not in FIELDS and k not in MODALITIES
                },
                images=images,
            )
        )
    return records


@register_source("manifest", description="a CSV manifest given as data.path=/path/to/manifest.csv")
def load(config: DataConfig) -> list[SubjectRecord]:
    """The registered loader: read_manifest(config.path)."""
    if config.path is None:
        raise ConfigError("the manifest dataset needs a CSV: set data.path=/path/to/manifest.csv.")
    return read_manifest(config.path)
