"""Temporary names that carry their owner (host and process), so that a run removes only the
leftovers of runs that died, never the work of a run still going beside it; `atomic_write`,
which writes every file through such a name; and `locked`, for state that runs share."""

from __future__ import annotations

import fcntl
import glob
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    """Delete the files and folders in `folder` named `prefix` + an owner tag whose owner died."""
    for leftover in Path(folder).glob(f"{glob.escape(prefix)}*"):
        if is_dead(leftover.name[len(prefix) :]):
            if leftover.is_dir() and not leftover.is_symlink():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, data: bytes) -> None:
    """Write bytes to `path` through a temporary file in the same folder and os.replace.

    The temporary file is named after its owner ('.<name>.<host>-<pid>.<8 characters>'): the
    leftovers of writers that were killed are removed here, never a live writer's. The file
    gets the permissions of a plain `open` (0666 less the umask), not mkstemp's 0600, so a lab
    sharing a folder can read it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead(path.parent, f".{path.name}.")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{owner_tag()}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def locked(path: Path, log: Callable[[str], object] | None = None) -> Iterator[None]:
    """Hold an exclusive lock (fcntl.flock) on the file `path` while in the block, first waiting
    for a process holding it (said through `log`). The kernel releases a dead process's lock;
    the empty lock file stays, as deleting it would let two processes lock two files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if log is not None:
                log(f"waiting for another process holding {path}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def pretraining_lock(out: Path) -> Path:
    """The lock file held while pretraining into `<output_dir>/pretrained/<name>` (`out`)."""
    return out.parent.parent / f".pretrained-{out.name}.lock"
