"""The BIDS file-name grammar: `<key>-<label>[_<key>-<label>...]_<suffix><extension>`.

`parse_name` splits a name into entities, suffix and extension; `parse_filter` reads an entity
filter such as 'run-1' or 'acq-mprage_run-2'; `choose` picks one file among the candidates of a
modality: the one with the fewest of the variant entities VARIANTS (a derived or alternative
image), then the lowest run, then the first name in sorted order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from brainbench.errors import ConfigError

PAIR = re.compile(r"([a-z]+)-([A-Za-z0-9]+)\Z")
SUFFIX = re.compile(r"[A-Za-z0-9]+\Z")
VARIANTS = ("desc", "space", "acq", "rec", "ce")  # absent on the default image
RULE = f"fewest of the entities {'/'.join(VARIANTS)}, then the lowest run, then the name"
SHOWN = 3  # candidate files named in the warning about choices


@dataclass(frozen=True)
class BidsName:
    """One parsed file name: entities in order of appearance, suffix, extension ('.nii.gz')."""

    entities: dict[str, str]
    suffix: str
    extension: str

    def matches(self, wanted: Mapping[str, str]) -> bool:
        """Whether every entity of `wanted` has the same label here (indices: 1 == 01)."""
        return all(_same(self.entities.get(key), label) for key, label in wanted.items())


def _same(have: str | None, want: str) -> bool:
    if have is None:
        return False
    return int(have) == int(want) if have.isdigit() and want.isdigit() else have == want


def _pairs(text: str) -> dict[str, str] | None:
    """'a-1_b-2' -> {'a': '1', 'b': '2'}; None unless every part is a key-label pair, once."""
    matches = [PAIR.match(part) for part in text.split("_")]
    if not all(matches):
        return None
    pairs = dict(m.groups() for m in matches if m)
    return pairs if len(pairs) == len(matches) else None


def parse_name(name: str) -> BidsName | None:
    """The entities, suffix and extension of a BIDS file name; None for a name outside it."""
    stem, dot, rest = Path(name).name.partition(".")
    head, _, suffix = stem.rpartition("_")
    if not dot or not head or not SUFFIX.match(suffix):
        return None
    entities = _pairs(head)
    return None if entities is None else BidsName(entities, suffix, dot + rest)


def parse_filter(text: str) -> dict[str, str]:
    """The entities of a filter such as 'run-1' or 'acq-mprage_run-2'; ValueError if malformed."""
    pairs = _pairs(str(text))
    if not pairs:
        raise ValueError(
            f"'{text}' is not a BIDS entity filter; write key-label pairs joined by '_', e.g. "
            "run-1 or acq-mprage_run-2 (keys lower-case, labels letters and digits)"
        )
    return pairs


def _rank(path: Path) -> tuple[int, float, str]:
    name = parse_name(path.name)
    entities = name.entities if name else {}
    run = entities.get("run", "0")
    return (
        sum(k in entities for k in VARIANTS),
        int(run) if run.isdigit() else float("inf"),
        path.name,
    )


def choose(candidates: Iterable[Path]) -> Path | None:
    """The file the documented rule (RULE) picks among one modality's candidates."""
    return min(candidates, key=_rank, default=None)


def choices_message(
    root: Path, what: str, modality: str, cases: list[tuple[str, list[Path]]], n: int
) -> str:
    """The one warning of a dataset where `cases` (record key, its candidate files) of its `n`
    records had several `what` (e.g. 'T1w files') to choose from."""
    key, files = cases[0]
    shown = ", ".join(p.name for p in files[:SHOWN]) + (" ..." if len(files) > SHOWN else "")
    return (
        f"{root}: {len(cases)} of {n} records have several {what}, e.g. {key}: {shown}; chose "
        f"{choose(files).name} ({RULE}). Set data.filters.{modality} (e.g. run-2, acq-<label> "
        "or task-<label>) to choose otherwise."
    )


def unmatched_filter(
    modality: str, wanted: Mapping[str, str], what: str, root: Path
) -> ConfigError:
    """The error for a data.filters entry that matches no `what` file anywhere under `root`
    (a typo, not a dataset without the modality)."""
    text = "_".join(f"{k}-{v}" for k, v in wanted.items())
    return ConfigError(
        f"data.filters.{modality}={text} matches no {what} file under {root}; check the "
        "entities in the file names or remove the filter."
    )
