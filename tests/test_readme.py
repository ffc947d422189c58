"""The README points only at files the repository has."""

import re
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_readme_names_only_files_that_exist():
    text = (ROOT / "README.md").read_text()
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)  # relative Markdown links
    # files of the repository it names: `docs/x.md`, `brainbench/...`, `DESIGN.md`
    named = re.findall(r"`((?:docs|brainbench|benchmarks)/[\w./-]+|[A-Z]+\.md)`", text)
    assert links and named
    missing = [path for path in {*links, *named} if not (ROOT / path).exists()]
    assert not missing, missing


def test_readme_says_how_to_get_the_command_on_the_path():
    quick_start = (ROOT / "README.md").read_text().split("## Quick start")[1].split("\n## ")[0]
    assert "source .venv/bin/activate" in quick_start and ".venv/bin/brainbench" in quick_start
