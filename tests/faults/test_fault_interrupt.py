"""Ctrl-C: Lightning answers it with sys.exit(1); the CLI says what was kept and exits 130."""

from __future__ import annotations

import signal

from brainbench.cli import main
from brainbench.results.record import read_records
from brainbench.training.module import TrainingModule


def test_ctrl_c_during_training_exits_130(tmp_path, capsys, monkeypatch) -> None:
    def interrupt(self, batch, batch_idx):
        raise KeyboardInterrupt

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(TrainingModule, "training_step", interrupt)
    try:
        code = main(["mri", "age", "--debug", "-m", "sfcn", f"output_dir={tmp_path}"])
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning leaves Ctrl-C ignored
    assert code == 130
    err = capsys.readouterr().err
    assert "interrupted" in err and "the same command continues" in err
    assert "Traceback" not in err and read_records(tmp_path) == []
