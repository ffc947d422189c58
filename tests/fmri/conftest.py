"""Shared fixtures: the debug cohort with its synthetic resting-state fMRI (generated once)."""

from __future__ import annotations

from pathlib import Path

import pytest

from brainbench.data.synth import ensure_cohort
from brainbench.data.synth.functional import ensure_functional

TINY = [
    "model.width=16",
    "model.depth=1",
    "model.heads=2",
    "model.decoder_width=8",
    "model.decoder_depth=1",
    "model.decoder_heads=2",
]


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """Overrides making brainlm tiny (CPU tests)."""
    return TINY


@pytest.fixture(scope="session")
def cohort() -> Path:
    return ensure_cohort("debug", 0)


@pytest.fixture(scope="session")
def fmri(cohort: Path) -> Path:
    return ensure_functional(cohort)
