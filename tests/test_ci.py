"""CI (.ci/run) lints before it runs the tests."""

from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_ci_runs_lint_then_the_tests():
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    assert [line for line in script if line.startswith("make")] == ["make lint", "make test"]
