"""The probe's validation guard: a linear head that does worse than the mean falls back."""

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from brainbench.models.probe import ProbeConfig, ProbeEstimator

WEIGHTS = np.array([3.0, -2.0, 1.0])


class Identity(nn.Module):
    """An 'encoder' whose embedding is its input row."""

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


class Rows(Dataset):
    def __init__(self, x: np.ndarray, y: np.ndarray) -> None:
        self.x, self.targets = torch.as_tensor(x, dtype=torch.float32), y.astype(np.float32)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], torch.tensor(self.targets[i])


def test_a_probe_worse_than_the_mean_on_validation_falls_back(spec, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x, x_val = rng.normal(size=(40, 3)), rng.normal(size=(20, 3))
    y = x @ WEIGHTS + rng.normal(0, 0.1, 40)
    probe = ProbeEstimator(Identity(), ProbeConfig(init=Path(".")), spec())
    agreeing = probe.fit(Rows(x, y), Rows(x_val, x_val @ WEIGHTS), seed=0, run_dir=tmp_path)
    assert agreeing["penalty"] == "cv" and agreeing["val_mse"] < 0.1
    flipped = Rows(x_val, -(x_val @ WEIGHTS))  # a validation split that contradicts the fit
    with pytest.warns(UserWarning, match="validation mean squared error.*training mean"):
        info = probe.fit(Rows(x, y), flipped, seed=0, run_dir=tmp_path)
    assert info["alpha"] is None and info["penalty"].startswith("fallback: ")
    np.testing.assert_allclose(probe.predict(flipped), np.full(20, y.mean()), rtol=1e-5)
