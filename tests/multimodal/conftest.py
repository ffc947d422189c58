"""One small grid on the debug cohort, shared by the multimodal tests: 2 targets x 3 inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainbench import api

TARGETS, INPUTS = ("age", "handedness"), ("T1w", "metadata")
QUICK = ["trainer.max_epochs=2", "trainer.progress_bar=false", "trainer.batch_size=16"]


@pytest.fixture(scope="session")
def grid_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("grid") / "results"
    api.grid(TARGETS, INPUTS, debug=True, overrides=[*QUICK, f"output_dir={out}"], log=print)
    return out


@pytest.fixture(scope="session")
def quick() -> list[str]:
    """The trainer overrides of the shared grid."""
    return QUICK
