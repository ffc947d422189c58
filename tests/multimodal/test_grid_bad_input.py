"""Grid mistakes a user can make: clear errors, CLI exit 2; jobs run locally or via submitit."""

from __future__ import annotations

import math
from functools import partial

import pytest

from brainbench import api
from brainbench.cli import main
from brainbench.cluster import run_jobs
from brainbench.data.records import SubjectRecord
from brainbench.errors import ConfigError, DataError
from brainbench.grid import combinations, grid_targets
from brainbench.tasks import get_task
from brainbench.tasks.multimodal import MultimodalOptions, target_coder


def _records(values: list) -> list[SubjectRecord]:
    return [
        SubjectRecord(str(i), 30.0, "F", "x", phenotypes={"handedness": v})
        for i, v in enumerate(values)
    ]


def test_unknown_target_and_zero_combinations():
    with pytest.raises(ConfigError, match="valid targets: .*age"):
        grid_targets(["agee"])
    with pytest.raises(ConfigError, match="zero input combinations"):
        combinations([])
    with pytest.raises(ConfigError, match="valid inputs"):
        combinations(["PET"])


def test_mostly_missing_or_constant_target():
    spec = get_task("multimodal/handedness")
    options = MultimodalOptions(positive="L")
    with pytest.raises(DataError, match="missing for 8 of 10 subjects.*min_coverage"):
        target_coder(spec, options, _records(["L", "R"] + [None] * 8))
    with pytest.raises(DataError, match="constant"):
        target_coder(spec, options, _records(["R"] * 10))
    with pytest.raises(ConfigError, match="task_options.positive"):
        target_coder(spec, MultimodalOptions(positive="X"), _records(["L", "R"] * 5))
    code = target_coder(spec, options, _records(["L", "R"] * 5))
    assert [code(r) for r in _records(["L", "R", None])] == [1.0, 0.0, None]


def test_cli_reports_bad_grid_arguments(capsys):
    assert main(["grid", "multimodal", "--debug", "--targets", "nope"]) == 2
    assert "unknown grid targets" in capsys.readouterr().err
    assert main(["grid", "multimodal", "--debug", "--inputs", "PET"]) == 2
    assert main(["grid", "multimodal", "--cluster", "slurm", "--targets", "age"]) == 2
    assert "--partition" in capsys.readouterr().err
    assert main(["grid", "multimodal", "--debug", "--seeds", "33", "x"]) == 2
    assert "--seeds takes whole numbers, not ['x']" in capsys.readouterr().err


def test_cli_tells_overrides_from_names(monkeypatch):
    seen: dict = {}
    monkeypatch.setattr(api, "grid", lambda *args, **kw: seen.update(args=args, **kw))
    argv = ["grid", "multimodal", "--targets", "age", "--seeds", "33", "34", "seeds_x=1"]
    assert main([*argv, "--inputs", "T1w", "trainer.max_epochs=1"]) == 0
    assert seen["args"] == (["age"], ["T1w"]) and seen["seeds"] == [33, 34]
    assert sorted(seen["overrides"]) == ["seeds_x=1", "trainer.max_epochs=1"]


@pytest.mark.parametrize("how", [{"workers": 2}, {"cluster": "submitit-local"}])
def test_jobs_run_in_a_pool_or_through_submitit(how, tmp_path):
    jobs = [partial(math.pow, 2, 3), partial(math.sqrt, -1), partial(math.pow, 3, 2)]
    outcomes = run_jobs(jobs, folder=tmp_path, log=lambda _: None, **how)
    assert [o.result for o in outcomes] == [8.0, None, 9.0]
    assert not outcomes[1].ok and "math domain error" in outcomes[1].error
