"""Callers ask a model's registry entry what it needs, never its name."""

from brainbench.api import pretrain_configs
from brainbench.models.mae import BACKBONES
from brainbench.registry import MODELS, get_model, load_plugins


def test_pretrainable_models_declare_their_input():
    for name in pretrain_configs():
        assert get_model(name).needs_volume == (name in BACKBONES), name


def test_volume_models_are_declared():
    load_plugins()
    volume = {name for name, entry in MODELS.items() if entry.needs_volume}
    assert {"sfcn", "unet", "mae3d_unet", "atlas", "intensity_map", "mae3d_probe"} <= volume
    assert not volume & {"brainlm", "brainlm_probe", "fmri_mlp", "connectome", "fusion"}
