"""Runs too large for the disk or the memory: refused with exit 2 before anything is written,
naming the estimate, the limit and the fix; the defaults and the README's commands pass."""

from __future__ import annotations

from pathlib import Path

import pytest

import brainbench.memory
from brainbench import api
from brainbench.cli import main
from brainbench.memory import check_cache, check_experiments, check_pretraining
from brainbench.models.mae import BACKBONES
from brainbench.training.pretrain import build_pretrain_config, resolve_crop

RAM, DISK = 4 * 2**30, 10 * 2**30

# case -> (arguments, texts the error must hold)
CASES = {
    "cache-512": (
        ["mri", "age", "--debug", "-m", "chance", "preprocess.shape=[512,512,512]"],
        ["preprocessed-volume cache", "512 MiB each", "10.0 GiB free", "data.cache_dir"],
    ),
    "sfcn-192": (
        ["mri", "age", "--debug", "-m", "sfcn", "preprocess.shape=[192,192,192]",
         "trainer.batch_size=16"],
        ["training sfcn on mri/age", "4.0 GiB is available", "trainer.batch_size"],
    ),
    "unet-whole-volume": (
        ["mri", "seg", "--debug", "-m", "unet", "preprocess.shape=[160,192,160]",
         "model.patch_size=null"],
        ["training unet on mri/seg", "preprocess.spacing", "model.patch_size"],
    ),
    "pretrain-crop": (
        ["pretrain", "mae3d_cnn", "--debug", "preprocess.shape=[160,192,160]",
         "trainer.batch_size=16"],
        ["training mae3d_cnn (pretraining", "a smaller crop_size"],
    ),
}  # fmt: skip


@pytest.fixture
def limits(monkeypatch):
    """A machine with 4 GiB of free memory and 10 GiB of free disk."""
    monkeypatch.setattr(brainbench.memory, "available_ram", lambda: RAM)
    monkeypatch.setattr(brainbench.memory, "free_disk", lambda folder: DISK)


@pytest.mark.parametrize("case", list(CASES))
def test_too_large_refused_before_writing(limits, capsys, case):
    args, texts = CASES[case]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert all(text in err for text in texts), err
    assert "Traceback" not in err
    assert not [p for p in Path("results").rglob("*") if p.is_file()]


# the defaults on the debug cohort (the default one takes minutes to generate), --debug, and
# the README's commands
FITTING = {
    "age-defaults": (["mri/age"], None, ["data.preset=debug"]),
    "age-mae3d_cnn": (["mri/age"], ["mae3d_cnn"], ["data.preset=debug"]),
    "seg-defaults": (["mri/seg"], None, ["data.preset=debug"]),
    "synthesis-defaults": (["mri/synthesis"], None, ["data.preset=debug"]),
    "seg-2mm-patches": (
        ["mri/seg"],
        ["unet"],
        ["data.preset=debug", "preprocess.spacing=2", "preprocess.shape=[52,80,48]",
         "model.patch_size=[32,32,32]"],
    ),
    "multimodal-debug": (["multimodal/age"], None, ["--debug"]),
    "suite-mri-debug": (["mri/age", "mri/sex", "mri/seg"], None, ["--debug"]),
}  # fmt: skip


@pytest.mark.parametrize("case", list(FITTING))
def test_defaults_fit(limits, case):
    tasks, models, overrides = FITTING[case]
    debug = "--debug" in overrides
    overrides = [o for o in overrides if o != "--debug"]
    check_experiments(api.plan(tasks, models, overrides=overrides, debug=debug))


@pytest.mark.parametrize("layer", [{"data": {"preset": "debug"}}, {"max_steps": 30}])
def test_default_pretraining_fits(limits, layer):
    config = build_pretrain_config("mae3d_cnn", [("test", layer | {"data": {"preset": "debug"}})])
    check_pretraining(resolve_crop(config, BACKBONES["mae3d_cnn"].network(config.model)))


def test_rerun_with_a_full_cache_is_not_refused(monkeypatch, tmp_path):
    """The disk is full of this run's own entries: nothing more is needed."""
    (experiment,) = api.plan(["mri/age"], ["chance"], debug=True)
    config = experiment.config.model_copy(
        update={"data": experiment.config.data.model_copy(update={"cache_dir": tmp_path})}
    )
    needs = [(config.data, config.preprocess, {"T1w"})]
    monkeypatch.setattr(brainbench.memory, "free_disk", lambda folder: 0)
    with pytest.raises(brainbench.memory.TooLargeError):
        check_cache(needs)
    (tmp_path / "ab").mkdir()
    with open(tmp_path / "ab" / "entry.npy", "wb") as handle:
        handle.truncate(2**30)  # sparse: the size a cache entry reports
    check_cache(needs)
