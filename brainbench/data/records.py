"""The subject record: every data source yields these; nothing downstream knows the source."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from brainbench.stages import stage_of


@dataclass(frozen=True)
class SpaceImages:
    """A subject's scans resampled into a standard space (e.g. MNI152NLin2009cAsym)."""

    space: str
    images: dict[str, Path]
    brain_mask: Path | None = None


@dataclass(frozen=True)
class SubjectRecord:
    """One subject (and session): identity, demographics, phenotypes and image paths.

    `images` maps a modality name ("T1w", "T2w", "FLAIR", "dwi", "seg") to a NIfTI path.
    `phenotypes` holds every other participants column (numbers or strings, None if missing).
    `brain_mask` is the native-space brain mask (skull-stripping); `spaces` the same scans in
    standard spaces, when the dataset's derivatives hold them.
    """

    subject: str
    age: float
    sex: str
    site: str
    session: str | None = None
    phenotypes: dict[str, float | str | None] = field(default_factory=dict)
    images: dict[str, Path] = field(default_factory=dict)
    brain_mask: Path | None = None
    spaces: tuple[SpaceImages, ...] = ()

    @property
    def key(self) -> str:
        """Unique id of the subject/session, e.g. 'sub-0001' or 'sub-0001_ses-01'."""
        base = f"sub-{self.subject}"
        return f"{base}_ses-{self.session}" if self.session else base

    @property
    def stage(self) -> str:
        return stage_of(self.age)


def count_text(records: Iterable[SubjectRecord]) -> str:
    """'12 subjects', or '12 subjects, 20 sessions' when the records hold sessions."""
    records = list(records)
    subjects = len({r.subject for r in records})
    text = f"{subjects} subject{'s' * (subjects != 1)}"
    if any(r.session for r in records):
        text += f", {len(records)} session{'s' * (len(records) != 1)}"
    return text
