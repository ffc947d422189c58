"""fmri_mlp's subject-specific input layer: each subject routes through its own parameters."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from brainbench.errors import DataError
from brainbench.models.fmri_mlp import FmriMlp, FmriMlpConfig
from brainbench.tasks.decoding import DecodingSamples

SUBJECTS = ["sub-a", "sub-b", "sub-c"]


def net(**params) -> FmriMlp:
    torch.manual_seed(0)
    model = FmriMlp(
        FmriMlpConfig(hidden=16, **params), n_trs=3, n_features=10, dim=5, subjects=SUBJECTS
    )
    return model.eval()


def batch(subjects: list[int]) -> dict[str, torch.Tensor]:
    bold = torch.randn(1, 3, 10, generator=torch.Generator().manual_seed(1))
    return {"bold": bold.expand(len(subjects), 3, 10), "subject": torch.tensor(subjects)}


@pytest.mark.parametrize("aggregation", ["before", "after"])
def test_each_subject_has_its_own_input_layer(aggregation):
    model = net(time_aggregation=aggregation)
    x = batch([0, 1, 2, 0])
    shared = model(x)
    assert torch.allclose(shared[0], shared[1])  # zero-initialised: the shared decoder
    with torch.no_grad():
        model.subject.weight.normal_()
    out = model(x)
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[1], out[2])
    assert torch.allclose(out[0], out[3])  # same subject, same window, same embedding


def test_a_subject_only_trains_its_own_layer():
    model = net().train()
    model(batch([1, 1])).sum().backward()
    grad = model.subject.weight.grad.abs().sum(dim=(1, 2))
    assert grad[1] > 0 and grad[0] == 0 and grad[2] == 0
    assert model.stem.weight.grad.abs().sum() > 0  # the shared layer learns from everyone


def test_without_subject_layer_subjects_are_pooled():
    model = net(subject_layer=False)
    assert model.subject is None
    out = model(batch([0, 2]))
    assert torch.allclose(out[0], out[1])


def test_unknown_subject_index_is_a_data_error():
    with pytest.raises(DataError, match="3 subjects"):
        net()(batch([0, 3]))


def test_samples_index_subjects_in_one_dataset_wide_list():
    meta = pd.DataFrame({"subject": ["sub-c", "sub-a", "sub-c"], "stim_id": ["x", "y", "z"]})
    data = DecodingSamples(np.zeros((3, 2, 4), np.float16), np.zeros((3, 5)), meta, SUBJECTS)
    x, y = data[0]
    assert x["bold"].shape == (2, 4) and x["bold"].dtype == torch.float32
    assert [int(data[i][0]["subject"]) for i in range(3)] == [2, 0, 2]
