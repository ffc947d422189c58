"""Events -> windows, the surface projection against nilearn, image embeddings."""

from __future__ import annotations

import shutil

import nibabel as nib
import numpy as np
import pytest

from brainbench.data.events import Window, check_model_trs, n_trs, read_events, window_volumes
from brainbench.data.image_features import builtin_features, embed_images
from brainbench.data.sources.image_fmri import LAYOUTS, read_evoked, surface_matrix
from brainbench.data.synth.stimuli import make_image
from brainbench.errors import ConfigError, DataError


def test_windows_cover_the_volumes_after_onset():
    window = Window(start=2.0, duration=7.0)
    assert n_trs(window, 2.0) == 4
    volumes = window_volumes(np.array([0.0, 3.0, 30.0]), window, 2.0, n_vols=18)
    assert volumes[0].tolist() == [1, 2, 3, 4]  # acquired at 2, 4, 6, 8 s
    assert volumes[1].tolist() == [3, 4, 5, 6]  # first volume at or after 5 s
    assert volumes[2].tolist() == [-1] * 4  # the window leaves the run


def test_bad_windows_and_model_mismatch_are_config_errors():
    with pytest.raises(ConfigError, match="shorter than one TR"):
        n_trs(Window(start=2.0, duration=1.0), 2.0)
    with pytest.raises(ConfigError, match="model.n_trs=4"):
        check_model_trs(3, 4, Window(), 2.0)


def test_bad_events_files_name_the_problem(tmp_path):
    path = tmp_path / "run_events.tsv"
    path.write_text("onset\tduration\n0\t1\n")
    with pytest.raises(DataError, match="stim_id"):
        read_events(path, "stim_id", n_vols=10, tr=2.0)
    path.write_text("onset\tstim_id\n0\ta\n25\tb\n")
    with pytest.raises(DataError, match="past the end of its run"):
        read_events(path, "stim_id", n_vols=10, tr=2.0)


def test_surface_matrix_equals_vol_to_surf():
    from nilearn import datasets, surface

    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    affine[:3, 3] = (-90.0, -126.0, -72.0)
    shape = (23, 28, 23)
    data = np.random.default_rng(0).normal(size=(*shape, 2)).astype(np.float32)
    image = nib.Nifti1Image(data, affine)
    mesh = datasets.load_fsaverage("fsaverage5")
    reference = np.concatenate([
        surface.vol_to_surf(image, mesh["pial"].parts[h], inner_mesh=mesh["white_matter"].parts[h])
        for h in ("left", "right")
    ])  # fmt: skip
    ours = surface_matrix(affine, shape) @ data.reshape(-1, 2)
    assert ours.shape == (20484, 2)
    np.testing.assert_allclose(ours, reference, rtol=1e-4, atol=1e-4)


def test_builtin_embeddings_are_deterministic_and_cached(tmp_path):
    from PIL import Image

    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(make_image(0, i)).save(paths[-1])
    first = embed_images(paths, tmp_path / "cache")
    assert first.shape == (3, 96) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, embed_images(paths, tmp_path / "cache"))
    np.testing.assert_allclose(first[1], builtin_features([make_image(0, 1)])[0], rtol=1e-6)
    assert not np.allclose(first[0], first[1])


def test_transformers_model_from_a_local_folder(tmp_path, monkeypatch):
    from PIL import Image
    from transformers import ViTConfig, ViTModel

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = ViTConfig(
        image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=4,
        num_attention_heads=2, intermediate_size=32,
    )  # fmt: skip
    ViTModel(config).save_pretrained(tmp_path / "vit")
    path = tmp_path / "a.png"
    Image.fromarray(make_image(0, 0)).save(path)
    cls = embed_images([path], tmp_path / "c", model=str(tmp_path / "vit"), aggregation="cls")
    mean = embed_images([path], tmp_path / "c", model=str(tmp_path / "vit"), layer=0.5)
    assert cls.shape == mean.shape == (1, 16)
    assert not np.allclose(cls, mean)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="not a loadable model|no config.json"):
        embed_images([path], tmp_path / "c", model=str(tmp_path / "empty"))


def test_a_stimulus_name_two_images_share_is_an_error(tmp_path, bold5000):
    root = shutil.copytree(bold5000, tmp_path / "copy")
    name = "COCO_train2014_000000000000.jpg"
    (root / "stimuli" / "other").mkdir()
    shutil.copy(root / "stimuli" / "COCO" / name, root / "stimuli" / "other" / name)
    with pytest.raises(DataError, match=rf"'{name}' .* names several images .*COCO/{name}, other"):
        read_evoked(root, LAYOUTS["bold5000"])
