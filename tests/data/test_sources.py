"""Every registered source answers the Source protocol (data/sources/base.py)."""

from __future__ import annotations

import pytest

from brainbench.config import DataConfig
from brainbench.data.sources.base import Source, card_note, open_source
from brainbench.errors import BrainbenchError
from brainbench.registry import SOURCES, load_plugins

load_plugins()


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_opens_and_names_its_data(name):
    source = open_source(DataConfig(dataset=name))
    assert isinstance(source, Source)
    assert source.dataset_id().startswith(f"{name}-")
    assert isinstance(source.column_domains(), dict)


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_only_generated_data_has_latents(name):
    source = open_source(DataConfig(dataset=name))
    if name != "synth":
        assert source.latents("mri") is None and source.latents("fmri") is None
        assert source.series_truth() is None


def test_a_source_without_evoked_runs_says_which_have_them():
    with pytest.raises(BrainbenchError, match="has no stimulus-evoked fMRI.*synth"):
        open_source(DataConfig(dataset="bids")).evoked()


def test_model_cards_caveat_models_of_the_synthetic_cohort():
    assert "synthetic cohort" in card_note("synth-default-seed0")
    assert card_note("bids-study-0123abcd") == Source.card_note == card_note("unknown")
