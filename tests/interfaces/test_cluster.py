"""`--cluster`: requeue on preemption resumes from the last checkpoint; sbatch's refusals shown."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest
import torch

from brainbench import api
from brainbench.cli import main
from brainbench.cluster import SlurmOptions, cluster_overrides
from brainbench.errors import BrainbenchError

TINY = [
    "data.preset=debug",
    "preprocess.spacing=8.0",
    "preprocess.shape=[20,24,20]",
    "model.width=8",
    "model.depth=1",
    "model.groups=4",
    "trainer.batch_size=4",
    "trainer.accelerator=cpu",
    "trainer.progress_bar=false",
    "checkpoint_every=1",
]


@pytest.mark.slow
def test_preempted_pretraining_job_resumes_from_its_checkpoint(tmp_path) -> None:
    options = SlurmOptions("submitit-local", folder=tmp_path / "cluster", timeout_min=10)
    overrides = [*TINY, "max_steps=40", f"output_dir={tmp_path / 'out'}"]
    job = api.pretrain("mae3d_cnn", overrides=overrides, slurm=options, log=lambda _: None)
    last = tmp_path / "out" / "pretrained" / "mae3d_cnn-synth-debug-seed0" / "checkpoints"
    deadline = time.monotonic() + 240
    while not (last / "last.ckpt").is_file() and time.monotonic() < deadline and not job.done():
        time.sleep(0.2)
    assert not job.done(), "the job finished before it could be interrupted"
    # what Slurm does on preemption or near the time limit: USR2 to the job's task process
    interrupted_at = torch.load(last / "last.ckpt", weights_only=True)["global_step"]
    controller = job._process.pid
    (task,) = Path(f"/proc/{controller}/task/{controller}/children").read_text().split()
    os.kill(int(task), signal.SIGUSR2)
    folder = job.result()
    log = job.stdout() or ""
    assert "resuming from" in log, log[-2000:]
    steps = json.loads((folder / "metrics.json").read_text())["steps"]
    assert 0 < interrupted_at < steps


def test_rejected_slurm_option_shows_the_clusters_message(tmp_path, monkeypatch, capsys) -> None:
    if shutil.which("srun") is None:
        with pytest.raises(BrainbenchError, match="Slurm is not available here"):
            api.pretrain("mae3d_cnn", slurm=SlurmOptions("slurm", partition="gpu"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 0\n")
    (bin_dir / "srun").chmod(0o755)
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n"
    )
    sbatch.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    with pytest.raises(BrainbenchError, match="invalid partition specified: nope"):
        api.pretrain(
            "mae3d_cnn",
            slurm=SlurmOptions("slurm", partition="nope", folder=tmp_path / "c"),
            log=lambda _: None,
        )
    assert main(["pretrain", "mae3d_cnn", "--cluster", "slurm", "--partition", "nope"]) == 2
    assert "invalid partition specified: nope" in capsys.readouterr().err
    assert main(["pretrain", "mae3d_cnn", "--cluster", "slurm"]) == 2
    assert "needs --partition" in capsys.readouterr().err


def test_gpus_become_ddp_trainer_settings() -> None:
    assert cluster_overrides(SlurmOptions(gpus_per_node=4, nodes=2)) == [
        "trainer.accelerator=gpu",
        "trainer.devices=4",
        "trainer.num_nodes=2",
        "trainer.strategy=ddp",
    ]
    assert cluster_overrides(SlurmOptions()) == []
