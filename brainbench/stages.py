"""Lifespan stages: every subject-level metric is also reported per stage."""

from __future__ import annotations

import math

import numpy as np

# (name, lower bound inclusive, upper bound exclusive), ages in years; negative = fetal.
STAGES: tuple[tuple[str, float, float], ...] = (
    ("fetal", -math.inf, 0.0),
    ("neonatal", 0.0, 1.0 / 12.0),
    ("infant", 1.0 / 12.0, 2.0),
    ("child", 2.0, 12.0),
    ("adolescent", 12.0, 18.0),
    ("young_adult", 18.0, 40.0),
    ("middle_age", 40.0, 65.0),
    ("older_adult", 65.0, math.inf),
)
STAGE_NAMES: tuple[str, ...] = tuple(name for name, _, _ in STAGES)


def stage_of(age: float) -> str:
    """The lifespan stage of an age in years."""
    for name, low, high in STAGES:
        if low <= age < high:
            return name
    raise ValueError(f"age {age!r} is not a number")


def stages_of(ages: np.ndarray) -> np.ndarray:
    """Vectorised stage_of for an array of ages."""
    return np.array([stage_of(float(a)) for a in np.asarray(ages).ravel()], dtype=object)


def check_stages(names: list[str]) -> list[str]:
    """Stage names in lifespan order without repeats; ValueError naming the valid stages."""
    from brainbench.errors import suggest

    if not names:
        raise ValueError(f"give at least one stage; valid stages: {', '.join(STAGE_NAMES)}")
    for name in names:
        if name not in STAGE_NAMES:
            raise ValueError(
                f"unknown lifespan stage '{name}'.{suggest(name, STAGE_NAMES)} "
                f"Valid stages: {', '.join(STAGE_NAMES)}"
            )
    return [s for s in STAGE_NAMES if s in names]
