"""Is a folder valid BIDS for brainbench? dataset_description.json, participants.tsv (age,
sex) listing every sub-* folder, and a readable NIfTI header for every image read_bids picks."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib

from brainbench.data.records import SubjectRecord
from brainbench.data.sources.bids import FIELDS, read_bids, read_participants
from brainbench.errors import DataError

SHOWN = 5  # files named per problem


def _description(root: Path) -> list[str]:
    path = root / "dataset_description.json"
    if not path.is_file():
        return [f"{path} is missing; add one with at least Name and BIDSVersion."]
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return [f"{path} is not readable JSON ({exc}); fix or rewrite it."]
    missing = [k for k in ("Name", "BIDSVersion") if not isinstance(info, dict) or k not in info]
    return [f"{path} lacks {', '.join(missing)}; add them."] if missing else []


def _unreadable(records: list[SubjectRecord]) -> list[str]:
    bad = []
    for path in sorted({p for r in records for p in r.images.values()}):
        try:
            nib.load(path)  # the header only: the data stay on disk
        except (OSError, ValueError, EOFError, nib.filebasedimages.ImageFileError) as exc:
            bad.append(f"{path.name} ({type(exc).__name__})")
    return bad


def check_bids(root: Path) -> tuple[list[SubjectRecord], list[str]]:
    """(records, notes) of a valid BIDS folder; a DataError listing what makes it invalid.

    Notes are what does not make it invalid: participants listed without a sub-* folder.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; give the root of a BIDS dataset.")
    problems = _description(root)
    try:
        records = read_bids(root)
    except DataError as exc:
        raise DataError(
            "\n  - ".join([f"{root} is not valid BIDS:", *problems, str(exc)])
        ) from None
    bad = _unreadable(records)
    if bad:
        shown = ", ".join(bad[:SHOWN]) + (
            f" and {len(bad) - SHOWN} more" if len(bad) > SHOWN else ""
        )
        problems.append(f"{len(bad)} NIfTI files have no readable header: {shown}; re-export them.")
    if problems:
        raise DataError("\n  - ".join([f"{root} is not valid BIDS:", *problems]))
    listed = read_participants(root, {f: f for f in FIELDS})
    absent = sorted(set(listed) - {r.subject for r in records})
    notes = [f"participants.tsv lists {len(absent)} subjects without a folder: "
             + ", ".join(f"sub-{s}" for s in absent[:SHOWN])] if absent else []  # fmt: skip
    return records, notes
