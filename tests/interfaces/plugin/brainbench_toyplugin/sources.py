"""`toy_synth`: the embedded debug cohort under another name (a plugin's data source)."""

from __future__ import annotations

from brainbench.registry import get_source, register_source


@register_source("toy_synth", description="plugin: the synthetic cohort, read by a plugin")
def load(config):
    return get_source("synth").load(config.model_copy(update={"dataset": "synth"}))
