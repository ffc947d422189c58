"""The embedded synthetic lifespan cohort as a data source, read back through the BIDS reader."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.bids import read_bids
from brainbench.data.synth import ensure_cohort
from brainbench.registry import register_source


def cohort_root(config: DataConfig) -> Path:
    """Generate the cohort on first use (cached under home()/synth, or data.path if given)."""
    return ensure_cohort(config.preset, config.cohort_seed, root=config.path)


def latents(config: DataConfig) -> pd.DataFrame:
    """The generator's true latent variables, indexed by record key (for the oracle ceiling)."""
    table = pd.read_csv(cohort_root(config) / "derivatives" / "latents.tsv", sep="\t")
    return table.set_index("participant_id")


@register_source(
    "synth",
    description="embedded synthetic lifespan cohort on the MNI152 anatomy (generated, no download)",
    latents=latents,
)
def load(config: DataConfig) -> list[SubjectRecord]:
    return read_bids(cohort_root(config))
