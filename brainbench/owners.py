"""Temporary names that carry their owner (host and process), so that a run removes only the
leftovers of runs that died, never the work of a run still going beside it."""

from __future__ import annotations

import os
import re
import shutil
import socket
from pathlib import Path

TAG = re.compile(r"^(?P<host>.+)-(?P<pid>\d+)(\.\w{8})?$")


def owner_tag() -> str:
    """'<host>-<pid>' of this process."""
    return f"{socket.gethostname()}-{os.getpid()}"


def is_dead(tag: str) -> bool:
    """Whether `tag` ('<host>-<pid>', maybe then '.' and 8 characters) names a process of this
    host that has exited (False when unsure)."""
    match = TAG.match(tag)
    if match is None or match["host"] != socket.gethostname():
        return False
    try:
        os.kill(int(match["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def remove_dead(folder: Path, prefix: str) -> None:
    """Delete the entries of `folder` named `prefix` + an owner tag whose owner died."""
    for leftover in Path(folder).glob(f"{prefix}*"):
        if is_dead(leftover.name[len(prefix) :]):
            shutil.rmtree(leftover, ignore_errors=True)
