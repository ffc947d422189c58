"""`brainbench datasets check bids PATH`: which subjects of a BIDS folder each task can use.

A record is usable for a task when it has every input and the target. Each name a task YAML
uses as an input or target is looked up here: image modalities in the record, parcel series
under derivatives/fmri, network labels in its atlas.tsv, participants columns; stimulus-evoked
runs and the generator's truth never come from a BIDS folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord, count_text
from brainbench.data.sources.base import open_source
from brainbench.data.sources.bids_check import check_bids
from brainbench.data.splits import MIN_SUBJECTS
from brainbench.data.timeseries import atlas_networks
from brainbench.errors import BrainbenchError
from brainbench.tasks import all_tasks

IMAGES = ("T1w", "T2w", "FLAIR", "dwi", "seg")
SERIES = ("bold_parcels", "connectivity")
ALWAYS = ("age", "metadata")  # read_bids refuses a folder without ages; metadata may be empty
NOT_FROM_BIDS = {
    "bold": "stimulus-evoked runs (the image-decoding datasets only)",
    "image_embedding": "stimulus-evoked runs (the image-decoding datasets only)",
    "network_coupling": "the generator's truth (the synthetic cohort only)",
}


@dataclass(frozen=True)
class Coverage:
    task: str
    usable: int
    total: int
    missing: dict[str, int]  # what is missing -> how many records lack it


def _needs(root: Path, records: list[SubjectRecord]) -> Callable[[str], tuple[str, set[str]]]:
    """name -> (what it is, the record keys having it)."""
    source = open_source(DataConfig(dataset="bids", path=root))
    try:
        series = set(source.series(records)[0])
    except BrainbenchError:
        series = set()
    try:
        networks = bool(atlas_networks(source.series_folder()).size)
    except BrainbenchError:
        networks = False
    keys = {r.key for r in records}

    def having(name: str) -> tuple[str, set[str]]:
        if name in IMAGES:
            return f"{name} image", {r.key for r in records if name in r.images}
        if name in SERIES:
            return "parcel series (brainbench parcellate)", series
        if name in ALWAYS:
            return name, keys
        if name == "sex":
            return "sex M/F", {r.key for r in records if r.sex in ("M", "F")}
        if name == "network":
            return "network labels in derivatives/fmri/atlas.tsv", keys if networks else set()
        if name in NOT_FROM_BIDS:
            return NOT_FROM_BIDS[name], set()
        return f"participants column '{name}'", {
            r.key for r in records if isinstance(r.phenotypes.get(name), int | float)
        }

    return having


def bids_coverage(root: Path) -> tuple[list[SubjectRecord], list[str], list[Coverage]]:
    """(records, notes, per-task coverage) of a BIDS folder; a DataError if it is not valid."""
    records, notes = check_bids(root)
    having = _needs(Path(root), records)
    rows = []
    for name, spec in sorted(all_tasks().items()):
        usable = {r.key for r in records}
        missing = {}
        for need in dict.fromkeys([*spec.inputs, spec.target]):
            what, keys = having(need)
            if len(keys) < len(records):
                missing[what] = len(records) - len(keys)
            usable &= keys
        rows.append(Coverage(name, len(usable), len(records), missing))
    return records, notes, rows


def format_coverage(root: Path) -> str:
    """The report of `brainbench datasets check bids PATH`: validity, then a table per task."""
    records, notes, rows = bids_coverage(root)
    unit = "sessions" if any(r.session for r in records) else "subjects"
    lines = [f"{root}: valid BIDS, {count_text(records)}.", *notes, ""]
    lines.append(f"{'task':<24} {'usable ' + unit:>16}  missing (how many {unit} lack it)")
    for row in rows:
        gaps = "; ".join(f"{what}: {n}" for what, n in row.missing.items()) or "-"
        lines.append(f"{row.task:<24} {f'{row.usable}/{row.total}':>16}  {gaps}")
    lines.append(
        f"\nTasks that train need {MIN_SUBJECTS}+ usable subjects; with fewer, only models that "
        "need no training run (fmri recon, forecast, networks)."
    )
    return "\n".join(lines)
