"""A rich progress bar for long loops outside training (training has Lightning's rich bar).

In a terminal the bar updates live; elsewhere (a log file, a captured stream) it prints one
line when the loop ends, so generation never passes in silence.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def track(items: Iterable[T], total: int, description: str) -> Iterator[T]:
    """`items`, advancing a bar (done/total, elapsed, remaining) as each one is consumed."""
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        yield from progress.track(items, total=total, description=description)
