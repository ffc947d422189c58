"""Label-efficiency subsets and lifespan-generalisation runs: nesting, records, the curve."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from operator import attrgetter
from pathlib import Path

import pandas as pd
import pytest

from brainbench.api import resolve_config
from brainbench.cli import main
from brainbench.data.records import SubjectRecord
from brainbench.data.subsets import label_subset, nested_order
from brainbench.tasks.runs import config_digest, label_budget
from brainbench.training.fit import ShardedBatchSampler

AGES = [-0.2, 0.02, 1.0, 8.0, 15.0, 30.0, 50.0, 80.0]  # one age per lifespan stage


def _records(per_stage: int = 10) -> list[SubjectRecord]:
    return [
        SubjectRecord(subject=f"{i:02d}{k:02d}", age=age, sex="MF"[k % 2], site="s")
        for i, age in enumerate(AGES)
        for k in range(per_stage)
    ]


def test_label_subsets_are_nested_stratified_and_at_least_two() -> None:
    records = _records()
    keys = {f: [r.key for r in label_subset(records, f, seed=0)] for f in (0.01, 0.1, 0.5, 1.0)}
    assert len(keys[0.01]) == 2 and len(keys[0.1]) == 8 and len(keys[1.0]) == 80
    assert set(keys[0.01]) <= set(keys[0.1]) <= set(keys[0.5]) <= set(keys[1.0])
    stages = Counter(r.stage for r in label_subset(records, 0.1, seed=0))
    assert set(stages.values()) == {1}  # 10% of 8 stages x 10: one subject per stage
    assert keys[0.1] == [r.key for r in label_subset(list(reversed(records)), 0.1, seed=0)]
    assert nested_order(records, 1) != nested_order(records, 0)


def test_classification_subsets_hold_two_of_every_class_and_stay_nested() -> None:
    records = _records()
    records[-1] = dataclasses.replace(records[-1], sex="X")  # a rare third class
    label = attrgetter("sex")
    small, large = (label_subset(records, f, seed=0, label=label) for f in (0.01, 0.3))
    for subset in (small, large):
        counts = Counter(map(label, subset))
        assert counts["M"] >= 2 and counts["F"] >= 2 and counts["X"] == 1
    assert small == large[: len(small)]  # still a prefix of the one nested order
    assert len(large) == len(label_subset(records, 0.3, seed=0))  # long enough already
    assert len(label_subset(records, 0.01, seed=0)) == 2  # regression: no class rule


def test_default_subset_keeps_the_config_digest() -> None:
    plain = resolve_config("mri/age", "chance", debug=True).config
    assert config_digest(plain) == config_digest(plain.model_copy(update={"label_fraction": 1.0}))
    assert config_digest(plain) != config_digest(plain.model_copy(update={"label_fraction": 0.5}))


def test_label_fraction_runs_keep_the_full_sets_number_of_steps() -> None:
    plain = resolve_config("mri/age", "sfcn", debug=True).config
    tenth = plain.model_copy(update={"label_fraction": 0.1})
    assert label_budget(plain).epoch_passes == 1.0
    assert label_budget(tenth).epoch_passes == pytest.approx(10.0)
    own = tenth.model_copy(update={"trainer": plain.trainer.model_copy(update={"epoch_passes": 2})})
    assert label_budget(own).epoch_passes == 2  # an explicit budget is kept
    assert config_digest(own) != config_digest(tenth)
    sampler = ShardedBatchSampler(20, 8, 1, 0, 1, 0, draws=200)  # 10% of 200 subjects
    batches = list(sampler)
    assert len(batches) == 25 and Counter(i for b in batches for i in b) == Counter(
        {i: 10 for i in range(20)}
    )


@pytest.fixture(scope="module")
def fraction_results(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fractions")
    args = ["mri", "age", "-m", "chance", "--debug", f"output_dir={out}"]
    assert main([*args, "--label-fraction", "0.1", "1.0"]) == 0
    return out


def test_fraction_is_in_run_dir_record_and_leaderboard(fraction_results: Path) -> None:
    (record,) = (fraction_results / "runs").rglob("baseline_*_labels0.1/seed33/metrics.json")
    metrics = json.loads(record.read_text())
    full = json.loads(
        next((fraction_results / "runs").rglob("baseline_*-seed0/seed33/metrics.json")).read_text()
    )
    assert metrics["label_fraction"] == 0.1 and full["label_fraction"] == 1.0
    assert metrics["n_train"] < full["n_train"] and metrics["n_test"] == full["n_test"]
    board = pd.read_csv(fraction_results / "leaderboard.csv")
    assert set(board["label_fraction"]) == {0.1, 1.0}
    assert board.loc[board["model"] == "chance", "rank"].tolist() == [1, 1]  # ranked apart


def test_report_draws_the_label_efficiency_curve(fraction_results: Path) -> None:
    (curve,) = fraction_results.glob("label_efficiency_mri-age_*.png")
    assert curve.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curve.stat().st_size > 5000
    assert f"]({curve.name})" in (fraction_results / "leaderboard.md").read_text()


def test_stage_restriction_trains_and_tests_on_the_named_stages(tmp_path: Path) -> None:
    args = ["mri", "age", "-m", "chance", "--debug", f"output_dir={tmp_path}"]
    assert (
        main(
            [
                *args,
                "--train-stages",
                "young_adult",
                "middle_age",
                "--test-stages",
                "fetal",
                "neonatal",
                "infant",
            ]
        )
        == 0
    )
    (record,) = (tmp_path / "runs").rglob("metrics.json")
    metrics = json.loads(record.read_text())
    assert "_train-young_adult.middle_age_test-fetal.neonatal.infant" in str(record)
    assert metrics["train_stages"] == ["young_adult", "middle_age"]
    assert metrics["test_stages"] == ["fetal", "neonatal", "infant"]
    assert set(metrics["per_stage"]) <= {"fetal", "neonatal", "infant"}
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert board.loc[board["model"] == "chance", "test_stages"].tolist() == [
        "fetal+neonatal+infant"
    ]
    assert (
        "train young_adult+middle_age → test fetal+neonatal+infant"
        in (tmp_path / "leaderboard.md").read_text()
    )


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (["--train-stages", "adults"], "Valid stages: fetal, neonatal"),
        (["--test-stages", "infnat"], "Did you mean 'infant'?"),
        (["--label-fraction", "1.5"], "label_fraction"),
        (["--label-fraction", "half"], "--label-fraction 'half' is not a number"),
    ],
)
def test_bad_subset_flags_exit_2(flags: list[str], needle: str, capsys, tmp_path: Path) -> None:
    assert main(["mri", "age", "-m", "chance", "--debug", f"output_dir={tmp_path}", *flags]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err


def test_a_training_subset_holding_one_class_is_a_clear_error() -> None:
    import numpy as np

    from brainbench.errors import DataError
    from brainbench.tasks.supervised import check_classes

    class OneClass:
        targets = np.ones(3, dtype=np.float32)

        def __len__(self) -> int:
            return 3

    config = resolve_config("mri/sex", "chance", debug=True, overrides=["label_fraction=0.05"])
    with pytest.raises(DataError, match="3 training subjects.*one class.*raise label_fraction"):
        check_classes(OneClass(), config.config)
