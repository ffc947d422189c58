"""The generic Lightning estimator: early stopping, quiet output and a 2-process DDP fit."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import brainbench
from brainbench.config import TrainerConfig
from brainbench.errors import ConfigError
from brainbench.training.fit import TorchEstimator, TorchModel


class Constant(nn.Module):
    """Predicts a constant: its loss never improves, so early stopping must end training."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.detach().expand(len(x)) + 0 * self.bias


def _constant_model(meta: dict) -> TorchModel:
    return TorchModel(Constant(), nn.functional.mse_loss, lambda out: out)


def test_early_stopping_and_quiet_output(volumes, capfd, tmp_path) -> None:
    trainer = TrainerConfig(max_epochs=30, patience=2, accelerator="cpu", progress_bar=False)
    model = TorchEstimator(lambda train: {}, _constant_model, trainer)
    info = model.fit(volumes(16), volumes(8), seed=0, run_dir=tmp_path)
    assert info["epochs_run"] == 3 and info["best_epoch"] == 1 and info["n_params"] == 1
    np.testing.assert_array_equal(model.predict(volumes(5)), np.zeros(5))
    out, err = capfd.readouterr()
    assert out == "" and err == "", (out, err)


def test_bf16_mixed_precision_trains_on_cpu(volumes, tmp_path) -> None:
    """trainer.precision reaches Lightning: bf16 autocast runs the forward pass on CPU too."""
    seen: list[torch.dtype] = []

    def build(meta: dict) -> TorchModel:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Flatten(), nn.LazyLinear(1))
        net.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
        return TorchModel(net, lambda out, y: nn.functional.mse_loss(out[:, 0].float(), y),
                          lambda out: out[:, 0].float())  # fmt: skip

    cfg = TrainerConfig(max_epochs=1, accelerator="cpu", precision="bf16-mixed", progress_bar=False)
    estimator = TorchEstimator(lambda train: {}, build, cfg)
    estimator.fit(volumes(8), volumes(4), seed=0, run_dir=tmp_path)
    assert torch.bfloat16 in seen


@pytest.mark.parametrize("bad", [{"strategy": "nonsense"}, {"precision": "17"}, {"devices": 0}])
def test_bad_trainer_settings_are_config_errors(bad, volumes, tmp_path) -> None:
    model = TorchEstimator(
        lambda train: {}, _constant_model, TrainerConfig(accelerator="cpu", **bad)
    )
    with pytest.raises(ConfigError, match="trainer.strategy"):
        model.fit(volumes(4), volumes(4), seed=0, run_dir=tmp_path)


DDP_SCRIPT = """
import json, os, sys
from pathlib import Path

import numpy as np
import torch.distributed as dist

sys.path.insert(0, {tests!r})
from conftest import StandInVolumes, task_spec
from brainbench.config import TrainerConfig
from brainbench.errors import ConfigError
from brainbench.models.sfcn import SFCNConfig, build_sfcn

out = Path(sys.argv[1])
trainer = TrainerConfig(
    max_epochs=2, batch_size=4, accelerator="cpu", devices=2, strategy="ddp", progress_bar=False
)
model = build_sfcn(SFCNConfig(channels=[4, 8, 8]), task=task_spec(), trainer=trainer)
train, val = StandInVolumes(16), StandInVolumes(8, seed=1)
for seed in (33, 34):  # a second fit reuses the processes, as a runner looping over seeds does
    info = model.fit(train, val, seed=seed, run_dir=out / str(seed))
    rank = info["global_rank"]
    world = dist.get_world_size() if dist.is_initialized() else 1
    np.save(out / f"pred{{rank}}_{{seed}}.npy", model.predict(StandInVolumes(6, seed=2)))
    (out / f"info{{rank}}_{{seed}}.json").write_text(json.dumps(info | {{"world": world}}))
"""


def test_two_process_ddp_fit_on_cpu(tmp_path) -> None:
    """Lightning's `ddp` re-runs sys.argv for rank 1, so the fit runs in its own script."""
    script = tmp_path / "ddp_fit.py"
    script.write_text(textwrap.dedent(DDP_SCRIPT.format(tests=str(Path(__file__).parent))))
    repo = str(Path(brainbench.__file__).parents[1])
    env = os.environ | {"PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for seed in (33, 34):
        infos = [json.loads((tmp_path / f"info{r}_{seed}.json").read_text()) for r in (0, 1)]
        assert [i["global_rank"] for i in infos] == [0, 1]
        assert all(i["world"] == 2 and i["epochs_run"] == 2 for i in infos)
        preds = [np.load(tmp_path / f"pred{r}_{seed}.npy") for r in (0, 1)]
        assert preds[0].shape == (6,) and np.isfinite(preds[0]).all()
        np.testing.assert_array_equal(preds[0], preds[1])
    assert not np.array_equal(
        np.load(tmp_path / "pred0_33.npy"), np.load(tmp_path / "pred0_34.npy")
    )
