"""The U-Net learns a segmentation with a known answer, on patches, and beats the empty map."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
from torch.utils.data import Dataset

from brainbench.config import TrainerConfig
from brainbench.metrics import segmentation_metrics
from brainbench.models.unet import UNetConfig, build_unet
from brainbench.tasks import get_task


class Blobs(Dataset):
    """Noisy volumes holding a bright ball (label 1) and a darker box (label 2) at random places
    and sizes; the label map is the known answer."""

    n_labels = 3

    def __init__(self, n: int, seed: int, shape: tuple[int, int, int] = (24, 24, 24)) -> None:
        rng = np.random.default_rng(seed)
        self.cfg = SimpleNamespace(shape=shape)  # the grid, as PatchDataset reads it
        grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"))
        self.x, self.y = [], []
        for _ in range(n):
            labels = np.zeros(shape, np.int64)
            centre, radius = rng.uniform(7, 17, 3), rng.uniform(3, 6)
            labels[((grid - centre[:, None, None, None]) ** 2).sum(0) < radius**2] = 1
            lo = rng.integers(2, 14, 3)
            box = tuple(slice(a, a + int(rng.integers(4, 8))) for a in lo)
            labels[box] = np.where(labels[box] == 0, 2, labels[box])
            image = np.choose(labels, [0.2, 1.0, 0.6]) + rng.normal(0, 0.15, shape)
            self.x.append(torch.tensor(image[None], dtype=torch.float32))
            self.y.append(torch.tensor(labels[None], dtype=torch.float32))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[i], self.y[i]

    def mask(self, i: int) -> np.ndarray:  # PatchDataset centres patches on labelled voxels
        return self.y[i][0].numpy() > 0


def test_unet_learns_the_known_segmentation(tmp_path) -> None:
    train, val, test = Blobs(24, 0), Blobs(6, 1), Blobs(8, 2)
    params = UNetConfig(channels=[8, 16], strides=[2], patch_size=(16, 16, 16))
    trainer = TrainerConfig(max_epochs=12, batch_size=4, lr=0.01, patience=12, progress_bar=False)
    model = build_unet(params, task=get_task("mri/seg"), trainer=trainer)
    model.fit(train, val, seed=0, run_dir=tmp_path)
    predicted = model.predict(test)
    truth = np.stack([y[0].numpy() for _, y in test])
    dice = segmentation_metrics(predicted, truth, n_classes=3)["dice_mean"]
    empty = segmentation_metrics(np.zeros_like(truth), truth, n_classes=3)["dice_mean"]
    assert empty == 0.0 and dice > 0.8
