"""Helpers of the fault tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from brainbench.owners import locked


@pytest.fixture
def waits_for_lock() -> Callable[[Path, Callable[[], object]], None]:
    """check(lock, call): `call`, in a thread, waits while the test holds `lock`, then runs."""

    def check(lock: Path, call: Callable[[], object]) -> None:
        with locked(lock):
            worker = threading.Thread(target=call)
            worker.start()
            worker.join(1.0)
            assert worker.is_alive(), f"it went ahead while {lock} was held"
        worker.join(120)
        assert not worker.is_alive()

    return check
