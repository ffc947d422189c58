"""Random draws for a batch from one generator, or from one generator per sample.

Pretraining keys each sample's crop, masks and augmentation to the sample's draw (its position in
the epoch's global order, training.fit.ShardedBatchSampler), not to the process that trains it:
a run then draws the same numbers whatever the number of processes or accumulation steps.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import Tensor

Generators = torch.Generator | Sequence[torch.Generator] | None


def batch_rand(
    batch: int,
    *shape: int,
    generator: Generators = None,
    dtype: torch.dtype | None = None,
    device: torch.device | None = None,
) -> Tensor:
    """Uniform [0, 1) numbers of shape (batch, *shape); row i from generator[i] given a list.

    The numbers are drawn on the CPU (the generators are CPU generators, so every device draws
    the same) and returned on `device`.
    """
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(batch, *shape, generator=generator, dtype=dtype).to(device)
    if len(generator) != batch:
        raise ValueError(f"{len(generator)} generators for a batch of {batch}")
    return torch.stack([torch.rand(shape, generator=g, dtype=dtype) for g in generator]).to(device)


def sample_generators(seed: int, keys: Iterable[int]) -> list[torch.Generator]:
    """One generator per draw key, seeded by (seed, key) through numpy's SeedSequence."""
    return [
        torch.Generator().manual_seed(
            int(np.random.SeedSequence([seed, int(key)]).generate_state(1, np.uint64)[0])
        )
        for key in keys
    ]
