"""Patch training and the MAE-encoder U-Net: patches, scratch and finetune from a checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file

from brainbench.api import resolve_config
from brainbench.data.pairs import PatchDataset
from brainbench.errors import DataError
from brainbench.models.mae3d_cnn import MAE3D, MAE3DConfig
from brainbench.tasks import voxelwise

SMALL = ["model.width=8", "model.depth=1", "model.groups=4", "model.skip_channels=4"]


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("seg")
    experiment = resolve_config("mri/seg", "unet", debug=True, overrides=[f"output_dir={out}"])
    return out, voxelwise.prepare(experiment.config, lambda msg: None)


def test_patches_are_cropped_and_oversample_the_foreground(seg_data) -> None:
    _, datasets = seg_data
    pairs = datasets["train"]
    np.random.seed(0)
    patches = PatchDataset(pairs, (8, 8, 8), per_volume=3, foreground=1.0)
    assert len(patches) == 3 * len(pairs)
    x, y = patches[4]
    assert x.shape == (1, 8, 8, 8) and y.shape == (1, 8, 8, 8)
    assert all((patches[i][1] > 0).any() for i in range(6))  # centred on a labelled voxel
    wide = PatchDataset(pairs, (64, 8, 8), per_volume=1, foreground=0.5)  # longer than the grid
    assert wide[0][0].shape == (1, pairs.cfg.shape[0], 8, 8)


def test_mae_unet_finetunes_from_a_checkpoint(seg_data, tmp_path: Path) -> None:
    out, datasets = seg_data
    mae = MAE3D(MAE3DConfig(width=8, depth=1, groups=4))
    save_file(mae.state_dict(), str(tmp_path / "model.safetensors"))
    common = [f"output_dir={out}", "trainer.max_epochs=1", "trainer.progress_bar=false", *SMALL]
    common += ["model.patch_size=[8,8,8]", "model.patches_per_volume=1"]
    for init in ([], [f"model.init={tmp_path}"]):
        experiment = resolve_config("mri/seg", "mae3d_unet", debug=True, overrides=common + init)
        (record,) = voxelwise.run_experiment(experiment, datasets, force=True, log=print)
        metrics = json.loads((record / "metrics.json").read_text())
        assert 0 <= metrics["metrics"]["dice_mean"] <= 1
    assert metrics["protocol"] == "finetune" and metrics["training"]["patch_size"] == [8, 8, 8]
    encoder = [k for k in mae.state_dict() if k.startswith("encoder.")]
    assert metrics["training"]["matched"] == len(encoder)
    assert all(not k.startswith("encoder.") for k in metrics["training"]["unmatched"])
    (nifti,) = list((record / "predictions").glob("*_dseg.nii.gz"))[:1]
    assert nifti.is_file()


def test_mae_unet_refuses_a_checkpoint_of_another_width(seg_data, tmp_path: Path) -> None:
    out, datasets = seg_data
    save_file(
        MAE3D(MAE3DConfig(width=16, depth=1)).state_dict(), str(tmp_path / "model.safetensors")
    )
    overrides = [f"output_dir={out}", "trainer.max_epochs=1", *SMALL, f"model.init={tmp_path}"]
    experiment = resolve_config("mri/seg", "mae3d_unet", debug=True, overrides=overrides)
    with pytest.raises(DataError, match="does not fit.*encoder.stem"):
        voxelwise.run_experiment(experiment, datasets, force=True, log=lambda m: None)
