"""Grid faults: the default `brainbench grid multimodal` starts; binary targets need no setting."""

from __future__ import annotations

import pytest

import brainbench.grid
from brainbench.cli import main
from brainbench.data.records import SubjectRecord
from brainbench.tasks import get_task
from brainbench.tasks.multimodal import MultimodalOptions, target_coder


class Started(Exception):
    """Raised in place of running the grid's jobs: every check before them passed."""


@pytest.mark.parametrize(
    "values",
    [[0, 1], [0.0, 1.0], ["0", "1"], ["0.0", "1.0"], [False, True], [0, 1.0]],
    ids=["int", "float", "text", "text-float", "bool", "mixed"],
)
def test_binary_zero_one_target_needs_no_positive(values):
    records = [
        SubjectRecord(str(i), 30.0, "F", "x", phenotypes={"dementia": values[i % 2]})
        for i in range(10)
    ]
    code = target_coder(get_task("multimodal/dementia"), MultimodalOptions(), records)
    assert [code(r) for r in records[:2]] == [0.0, 1.0]


def test_default_grid_starts(monkeypatch, capsys):
    def run_jobs(todo, **_):
        raise Started(len(todo))

    monkeypatch.setattr(brainbench.grid, "run_jobs", run_jobs)
    with pytest.raises(Started):
        main(["grid", "multimodal", "--debug"])
    assert "error" not in capsys.readouterr().err
