"""Cell parsing shared by the tabular parts of the sources (participants.tsv, manifest CSV)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from brainbench.errors import DataError

MISSING = {"", "n/a", "na", "nan", "none", "null"}
SEXES = {"m": "M", "male": "M", "f": "F", "female": "F"}
MODALITIES = ("T1w", "T2w", "FLAIR", "dwi", "seg")


def parse_value(text: str) -> float | str | None:
    """A table cell as a number, a string, or None for 'n/a' and blanks."""
    text = text.strip()
    if text.lower() in MISSING:
        return None
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else None


def parse_age(text: str, table: Path, subject: str) -> float:
    """An age in years; a blank or non-numeric age is a DataError naming the table and subject."""
    value = parse_value(text)
    if not isinstance(value, float):
        raise DataError(
            f"{table}: subject '{subject}' has age '{text}', not a number of years; "
            "fill in a numeric age (negative = fetal) or remove the subject."
        )
    return value


def parse_sex(text: str) -> str:
    """'M', 'F' or 'unknown' from the usual spellings (M/F, male/female)."""
    return SEXES.get(text.strip().lower(), "unknown")


def parse_site(text: str) -> str:
    return "unknown" if text.strip().lower() in MISSING else text.strip()


def strip_prefix(label: str, prefix: str) -> str:
    label = label.strip()
    return label[len(prefix) :] if label.startswith(prefix) else label


def read_table(path: Path, delimiter: str) -> tuple[list[str], list[dict[str, str]]]:
    """Column names and rows of a delimited text table; an unreadable file is a DataError."""
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle, delimiter=delimiter, restval="")
            rows = list(reader)
            return list(reader.fieldnames or []), rows
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"cannot read {path}: {exc}; save it as UTF-8 delimited text.") from None
