"""Subsets of a split for label-efficiency and lifespan-generalisation experiments.

`label_subset` keeps a share of the training subjects. The subsets are nested: every fraction
takes a prefix of one fixed order, so the 1% subset lies inside the 10% one. The order is
stratified by lifespan stage (systematic sampling within each stage), so each prefix holds the
stages in about their proportions.
"""

from __future__ import annotations

import math
from collections import defaultdict

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


def label_subset(records: list[SubjectRecord], fraction: float, seed: int) -> list[SubjectRecord]:
    """The nested, stage-stratified `fraction` of `records` (all of them for 1.0)."""
    if fraction >= 1.0:
        return list(records)
    return nested_order(records, seed)[: subset_size(len(records), fraction)]


def in_stages(records: list[SubjectRecord], stages: list[str] | None) -> list[SubjectRecord]:
    """The records whose lifespan stage is one of `stages` (all of them for None)."""
    return list(records) if stages is None else [r for r in records if r.stage in stages]
