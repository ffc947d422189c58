"""The embedded synthetic lifespan cohort: MNI152 anatomy from fetus to 90 years, 14 sites.

`ensure_cohort()` returns the cached BIDS folder of a preset and seed, generating it on first
use; `generate_cohort()` writes one anywhere. See generate.py for the layout.
"""

from brainbench.data.synth.generate import PRESETS, Preset, ensure_cohort, generate_cohort
from brainbench.data.synth.sites import SITES, Site
from brainbench.labels import SUBCORTICAL_LABELS as LABELS

__all__ = ["LABELS", "PRESETS", "SITES", "Preset", "Site", "ensure_cohort", "generate_cohort"]
