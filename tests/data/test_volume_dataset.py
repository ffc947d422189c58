import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from brainbench.config import PreprocessConfig
from brainbench.data.cache import VolumeCache
from brainbench.data.dataset import VolumeDataset, target_value
from brainbench.data.sources.bids import read_bids
from brainbench.errors import DataError

CFG = PreprocessConfig(spacing=4.0, shape=(12, 14, 12))


def test_items_and_epochs(bids_root: Path, tmp_path: Path) -> None:
    records = read_bids(bids_root)
    data = VolumeDataset(records, ["T1w"], "age", CFG, VolumeCache(tmp_path / "c"))
    x, y = data[0]
    assert x.shape == (1, *CFG.shape) and x.dtype == torch.float32
    assert y.dtype == torch.float32 and y.ndim == 0 and float(y) == 25.5
    np.testing.assert_array_equal(data.targets, [25.5, 7, 70, 70])
    assert data.keys == ["sub-01", "sub-02", "sub-03_ses-1", "sub-03_ses-2"]
    assert list(data.stages) == ["young_adult", "child", "older_adult", "older_adult"]
    assert data.ages.dtype == np.float64
    data.warm()
    hits = data.cache.hits
    batches = list(DataLoader(data, batch_size=2))  # a second epoch reads the cache
    assert data.cache.hits == hits + 4 and batches[0][0].shape == (2, 1, *CFG.shape)
    assert data.to_array().shape == (4, 1, *CFG.shape)
    clone = pickle.loads(pickle.dumps(data))
    torch.testing.assert_close(clone[1][0], data[1][0])


def test_label_channel(bids_root: Path, tmp_path: Path) -> None:
    (record,) = [r for r in read_bids(bids_root) if r.subject == "01"]
    data = VolumeDataset([record], ["T1w", "seg"], None, CFG, VolumeCache(tmp_path / "c"))
    x, y = data[0]
    assert x.shape == (2, *CFG.shape) and torch.isnan(y)
    assert set(torch.unique(x[1]).tolist()) == {0.0, 1.0}


def test_missing_modality(bids_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="subject 'sub-02' has no T2w image"):
        VolumeDataset(read_bids(bids_root), ["T2w"], "age", CFG, VolumeCache(tmp_path))


def test_targets(bids_root: Path) -> None:
    one, two, *_ = read_bids(bids_root)
    assert (target_value(one, "sex"), target_value(two, "sex")) == (1.0, 0.0)
    assert target_value(one, "iq") == 1.5
    with pytest.raises(DataError, match="'sub-02' has no value in column 'iq'"):
        target_value(two, "iq")
    with pytest.raises(DataError, match="'sub-01' has no value in column 'height'"):
        target_value(one, "height")
