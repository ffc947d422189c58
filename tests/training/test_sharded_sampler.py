"""ShardedBatchSampler: ranks and accumulation steps split exactly the single-process batches."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from brainbench.training.fit import ShardedBatchSampler
from brainbench.training.randomness import batch_rand, sample_generators


def _global_batches(n, batch, world, steps, **kw) -> list[list]:
    """Each optimizer step's batch, gathered over ranks and accumulation steps."""
    shards = [list(ShardedBatchSampler(n, batch, world, r, steps, 5, **kw)) for r in range(world)]
    per_step = world * steps
    assert all(len(s) == len(shards[0]) for s in shards)
    out = []
    for k in range(len(shards[0]) // steps):
        items = []
        for j in range(steps):
            for r in range(world):
                items += shards[r][k * steps + j]
        out.append(items)
    assert len(out) * per_step == len(shards[0]) * world
    return out


@pytest.mark.parametrize("weights", [None, [1.0] * 10 + [0.0] * 3 + [5.0] * 4])
@pytest.mark.parametrize("keyed", [False, True])
def test_any_split_draws_the_single_process_batches(weights, keyed) -> None:
    single = _global_batches(17, 8, 1, 1, weights=weights, keyed=keyed)
    assert len(single) == 2  # the incomplete third batch (1 of 17) is dropped
    for world, steps in ((2, 1), (1, 2), (2, 2), (4, 2)):
        split = _global_batches(17, 8, world, steps, weights=weights, keyed=keyed)
        assert [Counter(b) for b in split] == [Counter(b) for b in single]


def test_weighted_draws_follow_the_weights_and_keys_number_the_draws() -> None:
    weights = [0.0, 1.0, 3.0]
    sampler = ShardedBatchSampler(3000, 1000, 1, 0, 1, 0, weights, keyed=True)
    sampler.set_epoch(2)
    draws = [item for batch in sampler for item in batch]
    counts = Counter(index for index, _ in draws)
    assert counts[0] == 0 and 0.7 < counts[2] / 3000 < 0.8
    assert [key for _, key in draws] == list(range(2 * 3000, 3 * 3000))


def test_epochs_draw_different_orders() -> None:
    sampler = ShardedBatchSampler(20, 20, 1, 0, 1, 0)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first and sorted(first[0]) == list(range(20))


def test_per_sample_generators_do_not_depend_on_the_batch() -> None:
    keys = [3, 11, 12]
    together = batch_rand(3, 4, generator=sample_generators(0, keys))
    alone = torch.cat([batch_rand(1, 4, generator=sample_generators(0, [k])) for k in keys])
    assert torch.equal(together, alone)
    assert not torch.equal(together, batch_rand(3, 4, generator=sample_generators(1, keys)))
