"""The embedded synthetic lifespan cohort as a data source, read back through the BIDS reader.

Everything the generated cohort does differently from a dataset on disk lives here: it is
generated on first use, its parcel series and evoked runs are generated too, its id names the
preset and seed, and it knows its truth (latents, the columns' imaging signal, an ideal
observer of the evoked responses) for the oracle ceilings and the grid's expected verdicts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.base import Latents, Source
from brainbench.data.sources.bids import read_bids
from brainbench.data.synth import ensure_cohort
from brainbench.data.synth.phenotypes import COLUMNS
from brainbench.data.timeseries import read_atlas_table
from brainbench.errors import ConfigError
from brainbench.registry import register_source

FMRI_SIGNAL = ("age", "sex")  # data/synth/functional.py: coupling follows age, S depends on sex
NOT_ORACLE = ("sex_sign",)  # the fMRI generator's copy of a target


def cohort_root(config: DataConfig) -> Path:
    """Generate the cohort on first use (cached under home()/synth, or data.path if given)."""
    return ensure_cohort(config.preset, config.cohort_seed, root=config.path)


@register_source(
    "synth",
    description="embedded synthetic lifespan cohort on the MNI152 anatomy (generated, no download)",
)
class SynthSource(Source):
    card_note = (
        "Models trained on brainbench's synthetic cohort (`synth-*`) learn synthetic "
        "anatomy: check performance on real data before relying on them."
    )

    def records(self) -> list[SubjectRecord]:
        return read_bids(cohort_root(self.config))

    def dataset_id(self) -> str:
        return f"synth-{self.config.preset}-seed{self.config.cohort_seed}"

    def series_folder(self) -> Path:
        from brainbench.data.synth.functional import ensure_functional

        return ensure_functional(cohort_root(self.config))

    def evoked(self, stimulus_column: str | None = None):
        from brainbench.data.sources.image_fmri import LAYOUTS, read_evoked
        from brainbench.data.synth.evoked import EVOKED_PRESETS, ensure_evoked

        if self.config.preset not in EVOKED_PRESETS:
            raise ConfigError(
                f"data.preset={self.config.preset} has no evoked-fMRI version; use one of "
                f"{', '.join(EVOKED_PRESETS)}."
            )
        root = ensure_evoked(self.config.preset, self.config.cohort_seed)
        return read_evoked(root, LAYOUTS["synth"], stimulus_column)

    def evoked_oracle(self, data, meta: pd.DataFrame, candidates: list[str]) -> np.ndarray:
        """The ideal observer with the generator's true encoding model."""
        from brainbench.data.synth.evoked import oracle_scores

        scores = np.zeros((len(meta), len(candidates)))
        for subject, rows in meta.groupby("subject"):
            runs = [(r.bold[0], r.events) for r in data.runs if r.subject == subject]
            scores[rows.index] = oracle_scores(data.root, subject, runs, rows, candidates)
        return scores

    def column_domains(self) -> dict[str, dict[str, Any]]:
        keep = ("Domain", "ImagingSignal")
        return {
            column: {k: v for k, v in info.items() if k in keep}
            | ({"FmriSignal": True} if column in FMRI_SIGNAL else {})
            for column, info in COLUMNS.items()
            if any(k in info for k in keep)
        }

    def latents(self, kind: Latents) -> pd.DataFrame:
        if kind == "mri":
            path = cohort_root(self.config) / "derivatives" / "latents.tsv"
            return pd.read_csv(path, sep="\t").set_index("participant_id")
        table = pd.read_csv(self.series_folder() / "latents.tsv", sep="\t")
        table = table.set_index("participant_id")
        return table.drop(columns=[c for c in NOT_ORACLE if c in table.columns])

    def series_truth(self) -> dict[str, np.ndarray]:
        from brainbench.data.synth.functional import TRUTH, private_correlation

        folder = self.series_folder()
        truth = json.loads((folder / TRUTH).read_text())
        coords = read_atlas_table(folder)[["x", "y", "z"]].to_numpy(float)
        share, length = truth.get("spatial_share", 0.0), truth.get("spatial_length_mm", 1.0)
        return {
            "parcel_weight": np.asarray(truth["parcel_weight"]),
            "private": private_correlation(coords, share, length),
        }
