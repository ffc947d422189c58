"""trainer.max_epochs as a list: one fit per budget, the lowest validation loss kept."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from brainbench.cli import main
from brainbench.config import TrainerConfig
from brainbench.errors import ConfigError
from brainbench.tasks.runs import budget_loss


def _record(out: Path) -> dict:
    (path,) = (out / "runs").rglob("seed33/metrics.json")
    return json.loads(path.read_text())


def test_the_budget_with_the_lowest_validation_loss_is_kept(tmp_path) -> None:
    args = ["mri", "age", "--debug", "-m", "sfcn", "seeds=[33]"]
    assert main([*args, "trainer.max_epochs=[2,1]", f"output_dir={tmp_path / 'grid'}"]) == 0
    grid = _record(tmp_path / "grid")
    losses = grid["training"]["epoch_budgets"]
    chosen = grid["training"]["max_epochs"]
    assert set(losses) == {"1", "2"} and losses["1"] != losses["2"]
    assert losses[str(chosen)] == min(losses.values()) == grid["training"]["best_val_loss"]
    # the kept model is the chosen budget's: a run with that budget alone scores the same
    assert main([*args, f"trainer.max_epochs={chosen}", f"output_dir={tmp_path / 'one'}"]) == 0
    one = _record(tmp_path / "one")
    assert one["metrics"]["mae"] == pytest.approx(grid["metrics"]["mae"], rel=1e-6)
    assert "epoch_budgets" not in one["training"]


def test_budgets_are_distinct_trainers_in_order() -> None:
    trainers = TrainerConfig(max_epochs=[20, 12, 20]).budgets()
    assert [t.max_epochs for t in trainers] == [20, 12]
    assert [t.max_epochs for t in TrainerConfig(max_epochs=5).budgets()] == [5]


def test_a_fit_without_a_validation_loss_cannot_compete() -> None:
    assert math.isnan(budget_loss({}, 1))  # a single budget needs none
    with pytest.raises(ConfigError, match="give a single number of epochs"):
        budget_loss({"best_val_loss": math.nan}, 3)
