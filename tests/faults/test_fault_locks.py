"""State that concurrent runs in one results folder share is written under a lock: a second
pretraining into the same folder waits for the first (then resumes or keeps its model)."""

from __future__ import annotations

from pathlib import Path

import brainbench.training.pretrain as pretraining
from brainbench import api


def test_pretraining_waits_for_one_into_the_same_folder(monkeypatch, waits_for_lock):
    trained = []
    monkeypatch.setattr(pretraining, "_pretrain_into", lambda out, *_: trained.append(out))
    out = Path("results/debug/pretrained/mae3d_cnn-synth-debug-seed0")
    lock = Path(f"results/debug/.pretrained-{out.name}.lock")
    waits_for_lock(lock, lambda: api.pretrain("mae3d_cnn", debug=True))
    assert trained == [out]
