"""A stand-in for VolumeDataset: synthetic volumes whose target can be learnt."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from brainbench.config import TrainerConfig
from brainbench.spec import TaskSpec


class StandInVolumes(Dataset):
    """Noisy bright balls whose radius grows with age and whose intensity differs by sex.

    Item i is (x: float32 (1, D, H, W), y: float32 scalar) like VolumeDataset; the target is age
    (regression) or sex coded 0/1 (classification).
    """

    def __init__(
        self, n: int, shape: tuple[int, int, int] = (20, 24, 20), seed: int = 0, target: str = "age"
    ) -> None:
        rng = np.random.default_rng(seed)
        self.ages = rng.uniform(0.0, 90.0, n)
        sex = rng.integers(0, 2, n).astype(float)
        grid = np.stack(np.meshgrid(*[np.arange(s) - s / 2 for s in shape], indexing="ij"))
        radius = min(shape) * (0.15 + 0.3 * self.ages / 90.0)
        shift = rng.normal(0, 1.0, (n, 3, 1, 1, 1))
        dist = np.sqrt(((grid[None] - shift) ** 2).sum(1))
        ball = 1 / (1 + np.exp((dist - radius[:, None, None, None]) * 2))
        brightness = 1.0 + 0.4 * sex[:, None, None, None]
        noise = rng.normal(0, 0.3, (n, *shape))
        self.volumes = (ball * brightness + noise)[:, None].astype(np.float32)
        self.targets = (self.ages if target == "age" else sex).astype(np.float32)
        self.keys = [f"sub-{i:04d}" for i in range(n)]

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.volumes[i]), torch.tensor(self.targets[i])

    def to_array(self) -> np.ndarray:
        return self.volumes.copy()


def task_spec(kind: str = "regression") -> TaskSpec:
    """A minimal TaskSpec of the given kind."""
    return TaskSpec(
        name=f"test/{kind}",
        description="test task",
        kind=kind,
        inputs=("T1w",),
        target="age" if kind == "regression" else "sex",
        headline="mae" if kind == "regression" else "auroc",
        higher_is_better=kind != "regression",
        metrics=("mae",) if kind == "regression" else ("auroc",),
        models=("chance",),
    )


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """One torch thread: tiny 3D convs gain nothing from more, and suffer on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def volumes() -> type[StandInVolumes]:
    return StandInVolumes


@pytest.fixture
def spec() -> type[TaskSpec]:
    return task_spec


@pytest.fixture
def quick_trainer() -> TrainerConfig:
    """A CPU trainer small enough for tests."""
    return TrainerConfig(
        max_epochs=4, batch_size=8, lr=3e-3, patience=4, accelerator="cpu", progress_bar=False
    )
