"""Subsets of a split for label-efficiency and lifespan-generalisation experiments.

`label_subset` keeps a share of the training subjects. The subsets are nested: every fraction
takes a prefix of one fixed order, so the 1% subset lies inside the 10% one. The order is
stratified by lifespan stage (systematic sampling within each stage), so each prefix holds the
stages in about their proportions. For classification the prefix is lengthened, when needed, until
it holds MIN_SUBJECTS of every class (the subsets stay nested).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Hashable

import numpy as np

from brainbench.data.records import SubjectRecord

MIN_SUBJECTS = 2


def nested_order(records: list[SubjectRecord], seed: int) -> list[SubjectRecord]:
    """The records in the order label subsets take them: stage-stratified, fixed by `seed`.

    Within a stage the order is a random permutation; across stages, the k-th of n subjects of a
    stage sits at position (k + u) / n, u a random offset per stage, so every prefix samples each
    stage in proportion.
    """
    rng = np.random.default_rng(seed)
    by_stage: dict[str, list[SubjectRecord]] = defaultdict(list)
    for record in sorted(records, key=lambda r: r.key):
        by_stage[record.stage].append(record)
    keyed = []
    for stage in sorted(by_stage):
        members = by_stage[stage]
        offset = rng.random()
        for k, i in enumerate(rng.permutation(len(members))):
            keyed.append(((k + offset) / len(members), rng.random(), members[i]))
    return [record for *_, record in sorted(keyed, key=lambda item: item[:2])]


def subset_size(n: int, fraction: float) -> int:
    """Subjects kept for a fraction: ceil(fraction * n), at least MIN_SUBJECTS, at most n."""
    return min(n, max(MIN_SUBJECTS, math.ceil(fraction * n - 1e-9)))


def label_subset(
    records: list[SubjectRecord],
    fraction: float,
    seed: int,
    label: Callable[[SubjectRecord], Hashable] | None = None,
) -> list[SubjectRecord]:
    """The nested, stage-stratified `fraction` of `records` (all of them for 1.0).

    With `label` (a record's class), the subset holds at least MIN_SUBJECTS of every class.
    """
    if fraction >= 1.0:
        return list(records)
    order = nested_order(records, seed)
    size = subset_size(len(records), fraction)
    if label is not None:
        size = max(size, covering_prefix(order, label))
    return order[:size]


def covering_prefix(order: list[SubjectRecord], label: Callable[[SubjectRecord], Hashable]) -> int:
    """The length of the shortest prefix of `order` holding MIN_SUBJECTS of every class."""
    labels = [label(r) for r in order]
    need = {c: min(MIN_SUBJECTS, n) for c, n in Counter(labels).items()}
    seen: Counter = Counter()
    for length, c in enumerate(labels, 1):
        seen[c] += 1
        if all(seen[k] >= n for k, n in need.items()):
            return length
    return len(order)


def in_stages(records: list[SubjectRecord], stages: list[str] | None) -> list[SubjectRecord]:
    """The records whose lifespan stage is one of `stages` (all of them for None)."""
    return list(records) if stages is None else [r for r in records if r.stage in stages]
