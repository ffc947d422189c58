"""The test suite never touches the user's BRAINBENCH_HOME or the folder it was started from."""

import os
import subprocess
import sys
from pathlib import Path

from brainbench.config import home

CONFTEST_HOME_PREFIX = "brainbench-test-home-"


def test_home_and_results_are_temporary(tmp_path):
    assert home().name.startswith(CONFTEST_HOME_PREFIX)
    assert Path.cwd() == tmp_path  # the default results/ folder lands here


def test_a_user_home_is_ignored(tmp_path):
    user_home, start = tmp_path / "user-home", tmp_path / "start"
    user_home.mkdir()
    start.mkdir()
    test = f"{Path(__file__)}::test_home_and_results_are_temporary"
    env = os.environ | {"BRAINBENCH_HOME": str(user_home)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test],
        capture_output=True, text=True, env=env, cwd=start, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert not any(user_home.iterdir()) and not any(start.iterdir())
