"""Training steps on the meta device: what a GPU run does to tensors, checked on a CPU.

An op mixing a meta tensor with a (non-scalar) CPU tensor raises, as mixing CPU and cuda tensors
does, and reading a meta tensor's values (item, tolist, boolean indexing) raises too: on a GPU
that is a host sync. A step that runs here makes every tensor on its input's device.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from lightning.pytorch.utilities import move_data_to_device
from torch.utils.data import Dataset

from brainbench.checks import toy_data
from brainbench.config import TrainerConfig
from brainbench.models.mae import BACKBONES
from brainbench.registry import MODELS, load_plugins
from brainbench.spec import TaskSpec
from brainbench.training.augment import VolumeAugmentConfig, augment_volumes, shift_and_mirror
from brainbench.training.fit import ShardedData
from brainbench.training.masking import patch_mask, two_views
from brainbench.training.module import TrainingModule
from brainbench.training.pretrain import MAEModule, pretrain_config_class, resolve_crop
from brainbench.training.randomness import sample_generators

META = torch.device("meta")
load_plugins()


def test_augmentation_follows_the_device() -> None:
    x = torch.rand(2, 1, 12, 12, 12, device=META)
    assert augment_volumes(x, VolumeAugmentConfig(), sample_generators(0, [3, 4])).is_meta
    assert augment_volumes(x, VolumeAugmentConfig(), torch.Generator().manual_seed(0)).is_meta
    assert augment_volumes(x.half(), VolumeAugmentConfig()).dtype == torch.half  # 16-true
    assert shift_and_mirror(x).is_meta


def test_views_and_masks_follow_the_device() -> None:
    x = torch.rand(2, 1, 12, 12, 12, device=META)
    generators = sample_generators(0, [3, 4])
    assert all(view.is_meta for view in two_views(x, 8, generators))
    assert all(view.is_meta for view in two_views(x, 8, centre=True))
    assert patch_mask((2, 1, 8, 8, 8), 4, 0.7, generators, device=META).is_meta


# Tiny networks: backbone configs for pretraining, (model params, task kind) for every
# registered torch model. A new torch model needs an entry here.
BACKBONE_PARAMS = {
    "mae3d_cnn": {"width": 8, "depth": 1, "groups": 4},
    "mae2d": {"width": 8, "depth": 1, "groups": 4, "slices": 3},
    "mae3d_vit": {"width": 12, "depth": 1, "heads": 2, "decoder_width": 12, "decoder_heads": 2},
    "mae3d_unet": {"width": 8, "depth": 1, "groups": 4, "skip_channels": 4},
}
MODEL_CASES = {
    "sfcn": ({"channels": [4, 4], "augment": True}, "regression"),
    "mae3d_cnn": (BACKBONE_PARAMS["mae3d_cnn"], "classification"),
    "mae2d": (BACKBONE_PARAMS["mae2d"], "regression"),
    "mae3d_vit": (BACKBONE_PARAMS["mae3d_vit"], "regression"),
    "fusion": ({"inputs": ["T1w"], "channels": [4], "hidden": 8}, "regression"),
    # whole-volume inference: MONAI's sliding-window weights cannot be built on meta tensors
    "unet": ({"channels": [4, 8], "strides": [2]}, "segmentation"),
    "mae3d_unet": (BACKBONE_PARAMS["mae3d_unet"], "synthesis"),
    # the per-subject layer groups a batch by subject on the host (a sync, not a device error)
    "fmri_mlp": ({"hidden": 16, "subject_layer": False}, "retrieval"),
    "brainlm": ({"patch": 4, "width": 8, "depth": 1, "heads": 2, "decoder_width": 8}, "regression"),
}


class Pairs(Dataset):
    """(volume, label map or image) pairs, as the voxel-wise tasks give."""

    n_labels = 3

    def __init__(self, kind: str) -> None:
        self.kind = kind

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.rand(1, 12, 12, 12)
        return x, torch.randint(0, 3, x.shape) if self.kind == "segmentation" else x


class Windows(Dataset):
    """Image-response windows {bold, subject} and image embeddings, as fmri/image gives."""

    subjects = ["sub-a", "sub-b"]

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        return {"bold": torch.rand(3, 10), "subject": torch.tensor(i % 2)}, torch.rand(6)


class Series(Dataset):
    """Parcel x time windows with an atlas, as the fMRI parcel-series tasks give."""

    coords = np.random.default_rng(0).normal(0, 50, (5, 3))
    targets = np.arange(4.0)

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.rand(5, 8), torch.tensor(self.targets[i])


def dataset(kind: str) -> Dataset:
    if kind in ("segmentation", "synthesis"):
        return Pairs(kind)
    if kind == "retrieval":
        return Windows()
    return toy_data(kind, (1, 16, 16, 16), 4, 0)


def task(kind: str) -> TaskSpec:
    return TaskSpec(name=f"test/{kind}", description="test", kind=kind, inputs=("T1w",),
                    target="age", headline="mae", higher_is_better=False, metrics=("mae",),
                    models=("chance",))  # fmt: skip


def meta_batch(data: Dataset) -> Any:
    batch = torch.utils.data.default_collate([data[i] for i in range(2)])
    return move_data_to_device(batch, META)


def step_on_meta(module: Any, train: Any, val: Any) -> None:
    """A training step, its backward pass and a validation step on meta batches."""
    module.log = lambda *args, **kwargs: None
    loss = module.training_step(train, 0)
    assert loss.is_meta
    loss.backward()
    assert all(p.grad is None or p.grad.is_meta for p in module.parameters())
    module.validation_step(val, 0)


def test_every_torch_model_has_a_device_case() -> None:
    assert sorted(n for n, e in MODELS.items() if e.kind == "torch") == sorted(MODEL_CASES)
    assert sorted(BACKBONES) == sorted(BACKBONE_PARAMS)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_model_trains_and_predicts_on_the_input_device(name: str) -> None:
    params, kind = MODEL_CASES[name]
    entry = MODELS[name]
    trainer = TrainerConfig(accelerator="cpu", batch_size=2)
    estimator = entry.build(entry.config_cls(**params), task=task(kind), trainer=trainer)
    data = Series() if name == "brainlm" else dataset(kind)
    model = estimator.build(estimator.setup(data))
    module = TrainingModule(model.net, model.loss, lr=1e-3, weight_decay=0, augment=model.augment)
    module.to(META)
    step_on_meta(module, meta_batch(data), meta_batch(data))
    x = meta_batch(data)[0]
    with torch.inference_mode():
        out = model.infer(model.net.eval(), x) if model.infer else model.net.eval()(x)
        assert model.predict(out).is_meta


@pytest.mark.parametrize("name", sorted(BACKBONE_PARAMS))
def test_pretraining_step_runs_on_the_input_device(name: str) -> None:
    config = pretrain_config_class(name)(name=name, model=BACKBONE_PARAMS[name], crop_size=8)
    net = BACKBONES[name].network(config.model)
    module = MAEModule(resolve_crop(config, net), net, n_steps=1).to(META)
    volumes = torch.rand(2, 1, 12, 12, 12)
    data = ShardedData(None, None, TrainerConfig(), config.seed, keyed=True)
    data.trainer = SimpleNamespace(training=True)
    batch = data.on_before_batch_transfer((volumes, torch.zeros(2), torch.tensor([5, 9])), 0)
    step_on_meta(module, move_data_to_device(batch, META), (volumes.to(META), torch.zeros(2)))


@pytest.mark.parametrize("forecast_share", [0.0, 0.5])
def test_brainlm_pretraining_step_runs_on_the_input_device(forecast_share: float) -> None:
    from brainbench.models.brainlm import BrainLM, BrainLMConfig
    from brainbench.models.brainlm_mae import MAEModule as BrainLMModule

    cfg = BrainLMConfig(**MODEL_CASES["brainlm"][0])
    net = BrainLM(cfg, torch.randn(6, 3) * 50)
    module = BrainLMModule(
        net, 0.75, lr=1e-3, weight_decay=0.0, n_steps=1, forecast_share=forecast_share
    ).to(META)
    x = torch.randn(2, 6, 16)
    step_on_meta(module, (x.to(META), torch.zeros(2)), (x.to(META), torch.zeros(2)))
