"""Errors a user can cause. The CLI prints them without a traceback and exits with code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BrainbenchError(Exception):
    """Base class: a mistake in a file, config or argument that the user can fix."""


class ConfigError(BrainbenchError):
    """A config key or value is wrong."""


class DataError(BrainbenchError):
    """An input file (image, table, folder) is missing, unreadable or inconsistent."""


class TooLargeError(ConfigError):
    """A run would not fit: its cache on the disk or a training batch in memory."""


class UnknownNameError(BrainbenchError):
    """An unknown task, model, dataset or stage name."""


class ResultsError(BrainbenchError):
    """The results directory cannot be written or holds unreadable records."""


def suggest(name: str, choices: Iterable[str]) -> str:
    """A ' Did you mean X?' hint for the closest valid choice, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    """An UnknownNameError listing the valid names and the closest one."""
    choices = sorted(choices)
    return UnknownNameError(
        f"unknown {kind} '{name}'.{suggest(name, choices)} Valid {kind}s: {', '.join(choices)}."
    )
