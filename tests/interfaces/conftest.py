"""Shared, session-scoped artefacts: a tiny pretrained mae3d_cnn and a tiny SFCN run record."""

from __future__ import annotations

import pytest
import torch

from brainbench import api
from brainbench.training.pretrain import build_pretrain_config, pretrain

TINY_PRETRAIN = {
    "data": {"preset": "debug"},
    "preprocess": {"spacing": 8.0, "shape": [20, 24, 20]},
    "model": {"width": 8, "depth": 1, "groups": 4},
    "trainer": {"batch_size": 4, "accelerator": "cpu", "progress_bar": False},
    "max_steps": 2,
    "checkpoint_every": 2,
}
TINY_RUN = [
    "trainer.max_epochs=1",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "model.channels=[4,8,8]",
]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def pretrained(tmp_path_factory):
    """A pretrained mae3d_cnn folder (2 steps on the debug cohort)."""
    out = tmp_path_factory.mktemp("pretrain")
    config = build_pretrain_config(
        "mae3d_cnn", [("test", TINY_PRETRAIN | {"output_dir": str(out)})]
    )
    return pretrain(config, log=lambda _: None)


@pytest.fixture(scope="session")
def results(tmp_path_factory):
    """A results folder holding one SFCN run record (mri/age, 1 epoch, debug cohort)."""
    out = tmp_path_factory.mktemp("results")
    overrides = [*TINY_RUN, f"output_dir={out}"]
    api.run(["mri/age"], ["sfcn"], debug=True, overrides=overrides, log=lambda _: None)
    return out


@pytest.fixture(scope="session")
def run_dir(results):
    (path,) = results.glob("runs/mri-age/sfcn/*/seed33")
    return path
