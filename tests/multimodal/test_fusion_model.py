"""The fusion network: absent inputs frozen, balanced epochs, clamped standardised targets."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from brainbench.config import TrainerConfig
from brainbench.errors import ConfigError
from brainbench.models.fusion import FusionConfig, Standardised, UndersampleMajority, setup
from brainbench.registry import get_model
from brainbench.tasks import get_task

LAYOUT = {"T1w": (8, 8, 8), "FLAIR": (8, 8, 8), "metadata": (5,)}


class Toy(Dataset):
    """Flat samples of the present inputs; the target depends on the metadata."""

    def __init__(self, present: list[str], n: int = 24, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.layout, self.present = LAYOUT, present
        self.x = {
            k: rng.normal(size=(n, int(np.prod(s)))).astype(np.float32) for k, s in LAYOUT.items()
        }
        self.targets = (self.x["metadata"][:, 0] * 10 + 40).astype(np.float32)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i):
        x = np.concatenate([self.x[k][i] for k in self.layout if k in self.present])
        return torch.from_numpy(x), torch.tensor(self.targets[i])


def _fit(inputs: list[str], tmp_path):
    entry = get_model("fusion")
    params = FusionConfig(inputs=inputs, channels=[4], hidden=8)
    trainer = TrainerConfig(max_epochs=2, batch_size=8, progress_bar=False, accelerator="cpu")
    est = entry.build(params, task=get_task("multimodal/age"), trainer=trainer)
    train, val = Toy(inputs), Toy(inputs, 8, 1)
    L.seed_everything(3, workers=True, verbose=False)  # the same initial weights as in fit()
    before = {k: v.clone() for k, v in est.build(est.setup(train)).net.state_dict().items()}
    est.fit(train, val, seed=3, run_dir=tmp_path)
    after = est.model.net.state_dict()
    return est, before, after


def test_absent_blocks_keep_their_weights(tmp_path):
    est, before, after = _fit(["FLAIR", "metadata"], tmp_path)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert not any(k.startswith("stems.T1w") for k in changed)
    assert any(k.startswith("stems.FLAIR") for k in changed)
    assert any(k.startswith("vectors.metadata") for k in changed)
    assert any(k.startswith("cnn.") for k in changed)
    frozen = {id(p) for b in est.model.net.absent_blocks() for p in b.parameters()}
    assert frozen and all(not p.requires_grad for p in est.model.net.stems["T1w"].parameters())


def test_metadata_only_freezes_the_whole_cnn(tmp_path):
    est, before, after = _fit(["metadata"], tmp_path)
    for key in before:
        if key.startswith(("stems.", "cnn.")):  # weights and BatchNorm statistics alike
            assert torch.equal(before[key], after[key]), key
    assert len(est.predict(Toy(["metadata"], 5, 2))) == 5


def test_undersampling_balances_each_epoch():
    labels = np.array([1] * 4 + [0] * 16, dtype=float)
    sampler = UndersampleMajority(labels)
    torch.manual_seed(0)
    epochs = [list(sampler) for _ in range(3)]
    for chosen in epochs:
        assert len(chosen) == len(sampler) == 8 and len(set(chosen)) == 8
        assert sum(labels[chosen]) == 4
    assert len({tuple(sorted(e)) for e in epochs}) > 1  # a fresh majority subset per epoch


def test_regression_targets_clamped_and_standardised():
    class Data:
        layout = {"metadata": (3,)}
        targets = np.r_[np.linspace(0, 10, 199), 1000.0]

    meta = setup(get_task("multimodal/age"), Data())
    low, high = np.percentile(Data.targets, [0.5, 99.5])
    clamped = np.clip(Data.targets, low, high)
    assert meta["target"]["high"] == pytest.approx(high)
    assert meta["target"]["mean"] == pytest.approx(clamped.mean())
    target = Standardised(**meta["target"])
    out = torch.tensor([[0.0], [1.0]])
    assert target.predict(out).tolist() == pytest.approx(
        [clamped.mean(), clamped.mean() + clamped.std()], rel=1e-5
    )


def test_bad_inputs_are_config_errors():
    with pytest.raises(ValueError, match="unknown inputs"):
        FusionConfig(inputs=["T1w", "PET"])
    with pytest.raises(ConfigError, match="model.inputs"):
        from brainbench.api import resolve_config

        resolve_config("multimodal/age", "fusion", overrides=["model.inputs=[PET]"])


def test_fusion_passes_check_model_on_plain_volumes():
    from brainbench.checks import check_model

    checks = check_model("fusion", shape=(1, 8, 8, 8), log=lambda _: None)
    assert [c.name for c in checks if not c.passed] == []
