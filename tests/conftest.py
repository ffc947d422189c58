"""Test-session setup: nothing touches the user's home or the network."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("BRAINBENCH_HOME", tempfile.mkdtemp(prefix="brainbench-test-home-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """Relative default paths (results/...) land in a temporary folder, not the checkout."""
    monkeypatch.chdir(tmp_path)
