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
