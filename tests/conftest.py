"""Test-session setup: nothing touches the user's home, cache, results or the network."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import pytest

# Always a fresh folder, even when the user has BRAINBENCH_HOME set: tests must never write into
# (or read from) a user's cohorts, caches or exported models.
TEST_HOME = tempfile.mkdtemp(prefix="brainbench-test-home-")
atexit.register(shutil.rmtree, TEST_HOME, ignore_errors=True)
os.environ["BRAINBENCH_HOME"] = TEST_HOME
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"


@pytest.fixture(autouse=True)
def _run_in_tmp(tmp_path, monkeypatch):
    """Relative default paths (results/...) land in a temporary folder, not the checkout."""
    monkeypatch.chdir(tmp_path)
