"""Phenotypes of the synthetic cohort: some carry an imaging signal, some by design do not.

`clinical` draws disease states before the anatomy (they change it); `derived` draws the rest
from the anatomy's latents or independently of them. COLUMNS documents every participants.tsv
column, with "ImagingSignal" saying whether the images hold information about it and "Domain"
the group of phenotypes it belongs to (DOMAINS in data/sources/base.py; the multimodal grid
withholds a target's own domain from its metadata input).
"""

from __future__ import annotations

import numpy as np
from scipy.special import expit

Value = float | str | None

COLUMNS: dict[str, dict] = {
    "participant_id": {"Description": "subject identifier"},
    "age": {
        "Description": "age at scan; negative before term birth (gestational weeks - 40) / 52",
        "Units": "years",
        "ImagingSignal": True,
        "Domain": "constitutional",
    },
    "sex": {
        "Description": "sex; males have ~9% larger brain volume",
        "Levels": {"F": "female", "M": "male"},
        "ImagingSignal": True,
        "Domain": "constitutional",
    },
    "site": {
        "Description": "acquisition site / cohort (scanner contrast, noise, bias, resolution)",
        "ImagingSignal": True,
    },
    "cognition": {
        "Description": "age-standardised cognitive score (mean 100, sd 15) tied to brain size "
        "and cortical thickness, lower with dementia; n/a below 3 years",
        "ImagingSignal": True,
        "Domain": "psychology",
    },
    "weight": {
        "Description": "body weight (estimated fetal weight before birth), follows age and sex "
        "and is tied to head size",
        "Units": "kg",
        "ImagingSignal": True,
        "Domain": "constitutional",
    },
    "dementia": {
        "Description": "neurodegenerative disease flag (55+ years): hippocampal and cortical "
        "atrophy, ventricle and CSF enlargement",
        "Levels": {"0": "no", "1": "yes"},
        "ImagingSignal": True,
        "Domain": "disease",
    },
    "hypertension": {
        "Description": "hypertension flag (adults): raises white-matter hyperintensity load, "
        "visible mostly on FLAIR",
        "Levels": {"0": "no", "1": "yes"},
        "ImagingSignal": True,
        "Domain": "disease",
    },
    "handedness": {
        "Description": "handedness, drawn independently of anatomy; n/a below 3 years",
        "Levels": {"R": "right", "L": "left"},
        "ImagingSignal": False,
        "Domain": "constitutional",
    },
    "migraine": {
        "Description": "migraine flag, drawn independently of anatomy (no imaging signal); "
        "n/a below 6 years",
        "Levels": {"0": "no", "1": "yes"},
        "ImagingSignal": False,
        "Domain": "disease",
    },
    "hba1c": {
        "Description": "serology-like glycated haemoglobin (adults): rises with age and "
        "hypertension and tracks the white-matter hyperintensity load; n/a below 18 years",
        "Units": "%",
        "ImagingSignal": True,
        "Domain": "serology",
    },
    "crp": {
        "Description": "serology-like inflammation marker, drawn independently of anatomy "
        "(no imaging signal)",
        "Units": "mg/L",
        "ImagingSignal": False,
        "Domain": "serology",
    },
    "neuroticism": {
        "Description": "psychology-like trait score (mean 50, sd 10), drawn independently of "
        "anatomy (no imaging signal); n/a below 12 years",
        "ImagingSignal": False,
        "Domain": "psychology",
    },
}


def clinical(age: float, site: str, rng: np.random.Generator) -> dict[str, int]:
    """Disease states that shape the anatomy (drawn before it)."""
    p_dementia = expit(-5.5 + 0.12 * (age - 55.0)) if age >= 55.0 else 0.0
    if site == "adni" and age >= 55.0:
        p_dementia = 0.45
    p_hypertension = expit(-4.0 + 0.07 * (age - 20.0)) if age >= 18.0 else 0.0
    return {
        "dementia": int(rng.random() < p_dementia),
        "hypertension": int(rng.random() < p_hypertension),
    }


def weight_curve(age: float, sex: str) -> float:
    """Median body weight (kg) by age; males heavier from adolescence."""
    knots = [-0.35, -0.19, 0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 14.0, 18.0, 30.0, 60.0, 90.0]
    female = [0.5, 1.5, 3.3, 7.3, 9.2, 11.5, 18.0, 32.0, 48.0, 57.0, 66.0, 70.0, 62.0]
    male = [0.5, 1.6, 3.5, 7.9, 9.9, 12.2, 18.5, 32.0, 50.0, 68.0, 82.0, 86.0, 76.0]
    return float(np.interp(age, knots, male if sex == "M" else female))


def derived(
    age: float,
    sex: str,
    disease: dict[str, int],
    latents: dict[str, float],
    rng: np.random.Generator,
) -> dict[str, Value]:
    """Phenotypes drawn after the anatomy: some from its latents, some independently."""
    brain = latents["brain_scale_z"]
    cortex = latents["gm_thickness_z"]
    noise = rng.standard_normal(2)
    cognition_z = 0.55 * brain + 0.35 * cortex + 0.76 * noise[0] - 1.5 * disease["dementia"]
    weight = weight_curve(age, sex) * np.exp(0.09 * brain + 0.11 * noise[1])
    handed = "L" if rng.random() < 0.1 else "R"
    migraine = int(rng.random() < 0.12)
    extra = rng.standard_normal(3)  # drawn last: earlier columns keep their values
    hba1c = 5.0 + 0.012 * (age - 18.0) + 0.4 * disease["hypertension"]
    hba1c += 2.5 * np.sqrt(latents["wmh_load"]) + 0.2 * extra[0]
    return {
        "cognition": round(100.0 + 15.0 * cognition_z, 1) if age >= 3.0 else None,
        "weight": round(float(weight), 2),
        "dementia": disease["dementia"],
        "hypertension": disease["hypertension"],
        "handedness": handed if age >= 3.0 else None,
        "migraine": migraine if age >= 6.0 else None,
        "hba1c": round(float(hba1c), 2) if age >= 18.0 else None,
        "crp": round(float(np.exp(0.3 + 0.8 * extra[1])), 2),
        "neuroticism": round(50.0 + 10.0 * extra[2], 1) if age >= 12.0 else None,
    }
