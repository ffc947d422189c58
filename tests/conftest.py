"""Test-session setup: nothing touches the user's home or the network."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("BRAINBENCH_HOME", tempfile.mkdtemp(prefix="brainbench-test-home-"))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["MPLBACKEND"] = "Agg"
