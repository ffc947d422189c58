"""`brainbench check-model NAME`: what a new model must pass before a pull request.

On small random volumes with a learnable target (the mean intensity of one half of the volume,
or whether it exceeds the median), the model's registered builder must give an estimator that

- shape: predicts one finite value per subject, in order;
- determinism: gives the same predictions when fitted twice with the same seed;
- save/load: writes safetensors (never a pickle) that a fresh estimator loads back to the same
  predictions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from torch.utils.data import Dataset

from brainbench.config import TrainerConfig, validate_section
from brainbench.errors import BrainbenchError, ConfigError
from brainbench.registry import get_model
from brainbench.spec import WEIGHTS, TaskSpec

KIND_TASKS = {"regression": "mri/age", "classification": "mri/sex"}


class ArrayVolumes(Dataset):
    """(volume, target) pairs held in memory, with the VolumeDataset attributes models read."""

    def __init__(self, volumes: np.ndarray, targets: np.ndarray) -> None:
        self.volumes = volumes.astype(np.float32)
        self._targets = targets.astype(np.float32)

    def __len__(self) -> int:
        return len(self.volumes)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.volumes[i]), torch.tensor(self._targets[i])

    @property
    def targets(self) -> np.ndarray:
        return self._targets.copy()

    @property
    def keys(self) -> list[str]:
        return [f"sub-{i:03d}" for i in range(len(self))]

    def to_array(self) -> np.ndarray:
        return self.volumes.copy()


def toy_data(kind: str, shape: tuple[int, ...], n: int, seed: int) -> ArrayVolumes:
    """Random volumes whose target is a function of the image, so a model can learn it."""
    rng = np.random.default_rng(seed)
    volumes = rng.random((n, *shape), dtype=np.float32)
    signal = volumes[:, :, : shape[1] // 2].mean(axis=(1, 2, 3, 4))
    if kind == "classification":
        return ArrayVolumes(volumes, (signal > np.median(signal)).astype(np.float32))
    return ArrayVolumes(volumes, 100 * signal)


@dataclass
class Check:
    name: str
    passed: bool
    detail: str


def check_model(
    name: str,
    *,
    kind: str | None = None,
    shape: tuple[int, ...] = (1, 16, 16, 16),
    n: int = 12,
    params: dict | None = None,
    log: Callable[[str], object] = print,
) -> list[Check]:
    """Run the shape, determinism and save/load checks on registered model `name`."""
    entry = get_model(name)
    kind = kind or entry.task_kinds[0]
    if kind not in entry.task_kinds or kind not in KIND_TASKS:
        raise ConfigError(
            f"model '{name}' supports {', '.join(entry.task_kinds)}; check-model covers "
            f"{', '.join(k for k in entry.task_kinds if k in KIND_TASKS) or 'none of them'}."
        )
    params = validate_section(entry.config_cls, params or {}, [("command line", params or {})], "")
    task = TaskSpec(name=KIND_TASKS[kind], description="check", kind=kind, inputs=("T1w",),
                    target="age", headline="mae", higher_is_better=False, metrics=("mae",),
                    models=(name,))  # fmt: skip
    trainer = TrainerConfig(
        max_epochs=2, batch_size=4, accelerator="cpu", progress_bar=False, patience=2
    )
    train, val, test = (
        toy_data(kind, shape, size, seed) for size, seed in ((n, 0), (4, 1), (5, 2))
    )

    def fitted(seed: int, work: Path):
        estimator = entry.build(params, task=task, trainer=trainer)
        estimator.fit(train, val, seed=seed, run_dir=work)
        return estimator

    checks: list[Check] = []
    with tempfile.TemporaryDirectory(prefix="brainbench-check-") as tmp:
        work = Path(tmp)
        first = fitted(0, work / "a")
        pred = np.asarray(first.predict(test))
        ok = pred.shape[:1] == (len(test),) and bool(np.isfinite(pred).all())
        checks.append(Check("shape", ok, f"predict gave shape {pred.shape} for {len(test)}"))
        again = np.asarray(fitted(0, work / "b").predict(test))
        gap = float(np.abs(again - pred).max()) if again.shape == pred.shape else np.inf
        checks.append(Check("determinism", gap <= 1e-5, f"max difference {gap:.3g} (seed 0)"))
        checks.append(_save_load(first, entry, params, task, trainer, test, pred, work))
    for check in checks:
        log(f"  {'PASS' if check.passed else 'FAIL'} {check.name}: {check.detail}")
    return checks


def _save_load(first, entry, params, task, trainer, test, pred, work: Path) -> Check:
    path = work / WEIGHTS
    first.save(path)
    try:
        with safe_open(str(path), framework="np"):
            pass
    except (SafetensorError, OSError) as exc:
        return Check("save/load", False, f"save() did not write safetensors ({exc})")
    fresh = entry.build(params, task=task, trainer=trainer)
    fresh.load(path)
    back = np.asarray(fresh.predict(test))
    gap = float(np.abs(back - pred).max()) if back.shape == pred.shape else np.inf
    return Check("save/load", gap <= 1e-6, f"reloaded predictions differ by {gap:.3g}")


def require_passing(checks: list[Check], name: str) -> None:
    failed = [c.name for c in checks if not c.passed]
    if failed:
        raise BrainbenchError(f"model '{name}' failed the {', '.join(failed)} check(s).")
