"""The oracle ceiling sees what an image could show, not the generator's individual draws."""

from __future__ import annotations

import numpy as np
import pandas as pd

from brainbench.tasks import TaskSpec
from brainbench.tasks.oracle import oracle_payload


def test_individual_deviations_are_not_features() -> None:
    rng = np.random.default_rng(0)
    n = 200
    keys = [f"sub-{i}" for i in range(n)]
    scale_z = rng.standard_normal(n)
    male = rng.integers(0, 2, n)
    # Size = sex effect x individual draw: with the draw known, sex is exact; without, it is not.
    latents = pd.DataFrame(
        {"brain_scale": 0.1 * male + 0.1 * scale_z, "brain_scale_z": scale_z}, index=keys
    )
    spec = TaskSpec(
        name="toy/sex", description="", kind="classification", inputs=("T1w",), target="sex",
        headline="balanced_accuracy", higher_is_better=True,
        metrics=("balanced_accuracy", "auroc"), models=(),
    )  # fmt: skip
    train, test = keys[:150], keys[150:]
    payload = oracle_payload(
        spec, latents, (train, male[:150]), (test, male[150:], np.full(50, 30.0))
    )
    assert "brain_scale_z" not in payload["description"]
    assert 0.55 < payload["metrics"]["balanced_accuracy"] < 0.85  # ~0.69 from size alone
