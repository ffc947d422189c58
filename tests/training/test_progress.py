"""Progress bars: cohort generation shows one, and step-driven training counts steps."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from brainbench.config import TrainerConfig
from brainbench.progress import track
from brainbench.training.fit import make_trainer


def test_track_yields_everything_and_reports_it(capsys):
    assert list(track(iter(range(3)), 3, "synthetic cohort 'debug'")) == [0, 1, 2]
    out = capsys.readouterr().out  # not a terminal: one line at the end
    assert "synthetic cohort 'debug'" in out and "3/3" in out


class Tiny(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(2, 1)
        self.seen: list[str] = []

    def training_step(self, batch, batch_idx):
        bar = self.trainer.progress_bar_callback
        self.seen.append(bar.progress.tasks[bar.train_progress_bar_id].description)
        return self.layer(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_step_driven_training_shows_steps_not_a_negative_epoch_total(tmp_path):
    cfg = TrainerConfig(accelerator="cpu", progress_bar=True)
    trainer = make_trainer(cfg, tmp_path / "steps", [], max_steps=5, limit_val_batches=0)
    module = Tiny()
    trainer.fit(module, DataLoader(TensorDataset(torch.rand(4, 2)), batch_size=2))
    assert module.seen[0].strip() == "Epoch 0, step 0/5"
    assert module.seen[-1].strip() == "Epoch 2, step 4/5"
    assert not any("/-" in text for text in module.seen)
    by_epochs = make_trainer(cfg.model_copy(update={"max_epochs": 2}), tmp_path / "epochs", [])
    module = Tiny()
    by_epochs.fit(module, DataLoader(TensorDataset(torch.rand(4, 2)), batch_size=2))
    assert module.seen[-1].strip() == "Epoch 1/1"
