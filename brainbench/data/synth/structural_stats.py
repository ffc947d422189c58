"""Sex differences, development and ageing of the synthetic cohort's measured volumes, beside
the published values.

Cohen's d of each subcortical volume is computed as the ENIGMA mega-analysis did (Wierenga et al.
2022, Hum Brain Mapp 43:470, Table 2; 16,683 subjects aged 1-90): raw volumes, age regressed
out, subjects aged 1 to 90. The brain-volume ratio is male / female after the same adjustment,
in children (2-12) and adults (18-90), against ~9-10% (Lenroot 2007) and ~11% (Ruigrok 2014;
Eliot 2021).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from brainbench.data.synth.anatomy import STRUCTURES

# Wierenga 2022 Table 2, mean of left and right.
PUBLISHED_D = {
    "thalamus": 0.88,
    "putamen": 0.77,
    "pallidum": 0.78,
    "amygdala": 0.78,
    "hippocampus": 0.67,
    "caudate": 0.62,
    "accumbens": 0.43,
}
PUBLISHED_RATIO = {
    "children (2-12 y)": (2.0, 12.0, "~1.09-1.10"),
    "adults (18-90 y)": (18.0, 90.0, "~1.11"),
}


def cohort_table(root: Path) -> pd.DataFrame:
    """participants.tsv joined with the measured volumes of derivatives/latents.tsv."""
    participants = pd.read_csv(root / "participants.tsv", sep="\t")
    latents = pd.read_csv(root / "derivatives" / "latents.tsv", sep="\t")
    return participants.merge(latents, on="participant_id")


def _sex_effect(table: pd.DataFrame, column: str) -> tuple[float, float]:
    """(male - female difference of log volume, its Cohen's d) with a smooth age curve removed."""
    log_age = np.log(table.age.to_numpy() + 40 / 52)
    male = (table.sex == "M").to_numpy(dtype=float)
    design = np.column_stack([male, np.vander(log_age, 4)])
    y = np.log(table[column].to_numpy(dtype=float))
    coefficients, *_ = np.linalg.lstsq(design, y, rcond=None)
    residual = y - design @ coefficients
    spread = residual.std(ddof=design.shape[1])
    return float(coefficients[0]), float(coefficients[0] / spread)


def sex_statistics(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(statistic, cohort value, published value) rows; `table` has age, sex and the *_ml."""
    rows = []
    for label, (low, high, published) in PUBLISHED_RATIO.items():
        band = table[(table.age >= low) & (table.age <= high)]
        difference, _ = _sex_effect(band, "brain_ml")
        rows.append((f"brain volume male/female, {label}", f"{np.exp(difference):.3f}", published))
    lifespan = table[(table.age >= 1.0) & (table.age <= 90.0)]
    rows.append(("brain volume sex d, 1-90 y", f"{_sex_effect(lifespan, 'brain_ml')[1]:.2f}", "–"))
    for structure in STRUCTURES:
        name = structure.name
        _, d = _sex_effect(lifespan, f"{name}_ml")
        rows.append((f"{name} sex d, 1-90 y", f"{d:.2f}", f"{PUBLISHED_D[name]:.2f}"))
    return rows


def _median(table: pd.DataFrame, column: str, low: float, high: float) -> float:
    return float(table.loc[(table.age >= low) & (table.age < high), column].median())


def development_statistics(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(statistic, cohort value, published value) rows on grey and white matter growth: grey
    matter peaks at ~6 years and white matter at ~29 (Bethlehem et al. 2022, Nature 604:525),
    cortical volume falls by ~1% a year from 8 to 22 (Tamnes et al. 2013, NeuroImage 68:63)."""

    def ratio(column: str, later: tuple[float, float], earlier: tuple[float, float]) -> float:
        return _median(table, column, *later) / _median(table, column, *earlier)

    child, adult = (6.0, 12.0), (22.0, 35.0)
    early, late = (8.0, 12.0), (18.0, 24.0)
    years = (sum(late) - sum(early)) / 2.0  # between the bands' mid-ages
    gm_yearly = ratio("gm_ml", late, early) ** (1 / years) - 1
    return [
        ("grey matter change per year, 8-12 -> 18-24 y", f"{100 * gm_yearly:+.1f}%",
         "about -1% (cortex, 8-22 y)"),
        ("white matter, 22-35 y / 6-12 y", f"{ratio('wm_ml', adult, child):.2f}",
         "> 1 (peak at 29 y)"),
        ("grey matter, 22-35 y / 6-12 y", f"{ratio('gm_ml', adult, child):.2f}",
         "< 1 (peak at 6 y)"),
    ]  # fmt: skip


# Schippling et al. 2017 (J Neurol 264:520, 248 healthy adults, one scanner; OASIS agreed):
# volume lost per year at 35 and at 70 years, in %.
PUBLISHED_LOSS = {
    "brain": (0.20, 0.52),
    "gm": (0.32, 0.55),
    "wm": (0.02, 0.47),
    "thalamus": (0.25, 0.54),
}


def yearly_loss(table: pd.DataFrame, column: str, low: float = 35.0, high: float = 70.0) -> float:
    """Mean volume lost per year between `low` and `high` years, in %: the slope of log volume
    on age (sex as a covariate) over the subjects of that age; NaN for fewer than 4 of them."""
    band = table[(table.age >= low) & (table.age <= high)]
    if len(band) < 4:
        return float("nan")
    design = np.column_stack(
        [np.ones(len(band)), band.age.to_numpy(dtype=float), (band.sex == "M").to_numpy(float)]
    )
    coefficients, *_ = np.linalg.lstsq(design, np.log(band[column].to_numpy(float)), rcond=None)
    return float(-100 * np.expm1(coefficients[1]))


def ageing_statistics(table: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(statistic, cohort value, published value) rows on adult atrophy: the mean yearly volume
    loss from 35 to 70 years beside Schippling et al. 2017's loss at 35 and at 70."""
    names = {"brain": "brain", "gm": "grey matter", "wm": "white matter", "thalamus": "thalamus"}
    rows = []
    for column, (at_35, at_70) in PUBLISHED_LOSS.items():
        loss = yearly_loss(table, f"{column}_ml")
        value = f"{loss:.2f}%" if np.isfinite(loss) else "–"
        published = f"{at_35:.2f}% at 35 -> {at_70:.2f}% at 70"
        rows.append((f"{names[column]} volume lost per year, 35-70 y", value, published))
    return rows


def format_table(rows: list[tuple[str, str, str]]) -> str:
    """A plain-text table of `sex_statistics`, `development_statistics` or
    `ageing_statistics`."""
    width = max(len(name) for name, _, _ in rows)
    lines = [f"{'statistic':<{width}}  cohort  published"]
    lines += [f"{name:<{width}}  {value:>6}  {published}" for name, value, published in rows]
    return "\n".join(lines)
