"""State that concurrent runs in one results folder share is written under a lock: a second
pretraining into the same folder waits for the first (then resumes or keeps its model)."""

from __future__ import annotations

from pathlib import Path

import pytest

import brainbench.training.pretrain as pretraining
import brainbench.training.pretrain_brainlm as pretraining_brainlm
from brainbench import api


@pytest.mark.parametrize(
    ("model", "module"), [("mae3d_cnn", pretraining), ("brainlm", pretraining_brainlm)]
)
def test_pretraining_waits_for_one_into_the_same_folder(monkeypatch, waits_for_lock, model, module):
    trained = []
    monkeypatch.setattr(module, "_pretrain_into", lambda out, *_: trained.append(out))
    out = Path(f"results/debug/pretrained/{model}-synth-debug-seed0")
    lock = Path(f"results/debug/.pretrained-{out.name}.lock")
    waits_for_lock(lock, lambda: api.pretrain(model, debug=True))
    assert trained == [out]
