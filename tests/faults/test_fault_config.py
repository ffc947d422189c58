"""Config and argument faults: refused with exit 2 and a message naming the key or file."""

from __future__ import annotations

import pytest

from brainbench.cli import main

RUN = ["mri", "age", "--debug", "-m", "ridge"]

# case -> (arguments after the tmp_path substitution, text the error must hold)
CASES = {
    "negative-seed": ([*RUN, "seeds=[33,-1]"], "'seeds.1' (from command line)"),
    "negative-split-seed": ([*RUN, "split.seed=-1"], "'split.seed' (from command line)"),
    "negative-cohort-seed": ([*RUN, "data.cohort_seed=-2"], "'data.cohort_seed'"),
    "seed-beyond-uint32": ([*RUN, "seeds=[4294967296]"], "'seeds.0'"),
    "negative-pretrain-seed": (["pretrain", "mae3d_cnn", "--debug", "seed=-1"], "'seed'"),
    "warp-share-above-one": (
        ["pretrain", "mae3d_cnn", "--debug", "augment.warp_probability=1.5"],
        "'augment.warp_probability' (from command line)",
    ),
    "rotation-beyond-two-pass-warp": (
        ["pretrain", "mae3d_cnn", "--debug", "augment.rotation=60"],
        "'augment.rotation' (from command line)",
    ),
    "infinite-lr": ([*RUN, "trainer.lr=inf"], "'trainer.lr' (from command line)"),
    "zero-epoch-budget": ([*RUN, "trainer.max_epochs=[12,0]"], "'trainer.max_epochs'"),
    "empty-epoch-budgets": ([*RUN, "trainer.max_epochs=[]"], "a non-empty list of them"),
    "fractional-epochs": ([*RUN, "trainer.max_epochs=2.5"], "'trainer.max_epochs'"),
    "nan-lr": ([*RUN, "trainer.lr=.nan"], "finite number"),
    "infinite-spacing": ([*RUN, "preprocess.spacing=inf"], "'preprocess.spacing'"),
    "config-is-a-folder": ([*RUN, "--config", "{tmp}"], "is a folder; pass a YAML file"),
    "config-is-binary": ([*RUN, "--config", "{tmp}/binary.yaml"], "is not a text file"),
    "bids-filter-malformed": ([*RUN, "data.filters.T1w=run_1"], "'data.filters.T1w'"),
    "bids-filter-no-label": ([*RUN, "data.filters.T2w=acq-"], "'data.filters.T2w'"),
    "own-bids-without-dataset": ([*RUN, "data.path={tmp}/bids"], "add --dataset bids"),
    "own-csv-without-dataset": ([*RUN, "data.path={tmp}/binary.yaml"], "--dataset manifest"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_with_exit_2(tmp_path, capsys, case):
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "bids").mkdir()
    (tmp_path / "bids" / "participants.tsv").write_text("participant_id\tage\tsex\n")
    args, message = CASES[case]
    assert main([a.format(tmp=tmp_path) for a in args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_log_bins_below_the_youngest_age_are_refused_without_a_record(tmp_path, capsys):
    """The debug cohort holds fetuses (age -0.3): log(age + 0.1) has no value for them."""
    out = tmp_path / "results"
    args = ["mri", "age", "--debug", "-m", "sfcn", "model.log_offset=0.1", "seeds=[33]"]
    assert main([*args, f"output_dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "model.log_offset=0.1 is too small" in err and "Traceback" not in err
    assert not (out / "runs").exists()
