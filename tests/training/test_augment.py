import pytest
import torch

from brainbench.training.augment import (
    VolumeAugmentConfig,
    affine_warp,
    augment_volumes,
    random_upper_percentile,
    rotation_matrices,
    shift_and_mirror,
)
from brainbench.training.module import TrainingModule


def test_shift_and_mirror_moves_voxels_without_changing_them():
    torch.manual_seed(0)
    x = torch.rand(16, 1, 8, 9, 10)
    out = shift_and_mirror(x, max_shift=2)
    assert out.shape == x.shape
    # a roll and a flip only permute voxels: every volume keeps its sorted values
    assert torch.equal(out.flatten(1).sort().values, x.flatten(1).sort().values)
    assert not torch.equal(out, x)
    unshifted = shift_and_mirror(x, max_shift=0)  # then only mirroring remains
    for a, b in zip(unshifted, x, strict=True):
        assert torch.equal(a, b) or torch.equal(a, torch.flip(b, dims=(1,)))


def test_augmentation_applies_to_training_batches_only():
    seen = []

    def record(x):
        seen.append(True)
        return x

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(1))
    module = TrainingModule(
        net, lambda out, y: ((out[:, 0] - y) ** 2).mean(), lr=1e-3, weight_decay=0, augment=record
    )
    module.log = lambda *a, **k: None
    batch = (torch.rand(2, 1, 4, 4, 4), torch.rand(2))
    module.validation_step(batch, 0)
    assert not seen
    module.training_step(batch, 0)
    assert seen == [True]


def test_cosine_schedule_anneals_over_max_epochs():
    net = torch.nn.Linear(2, 1)
    module = TrainingModule(net, None, lr=0.1, weight_decay=0, max_epochs=10, scheduler="cosine")
    config = module.configure_optimizers()
    scheduler = config["lr_scheduler"]["scheduler"]
    for _ in range(10):
        config["optimizer"].step()
        scheduler.step()
    assert scheduler.get_last_lr()[0] < 1e-6
    constant = TrainingModule(net, None, lr=0.1, weight_decay=0).configure_optimizers()
    assert isinstance(constant, torch.optim.AdamW)


def test_affine_identity_and_quarter_turn_match_exact_resampling():
    x = torch.rand(2, 1, 6, 6, 6)
    identity = torch.eye(3).expand(2, 3, 3)
    torch.testing.assert_close(affine_warp(x, identity), x)
    quarter = rotation_matrices(torch.tensor([[torch.pi / 2, 0.0, 0.0]] * 2, dtype=torch.float64))
    turned = affine_warp(x, quarter.round())
    # a quarter turn about the first axis only permutes voxels: it is a rot90 of the (y, z) plane
    assert any(torch.allclose(turned, torch.rot90(x, k, dims=(3, 4)), atol=1e-5) for k in (1, 3))


def test_non_cubic_rotation_is_rigid():
    x = torch.zeros(1, 1, 8, 12, 16)
    x[0, 0, 4, 6, 8] = 1.0  # the centre voxel (between the grid centre voxels) stays put
    angles = torch.tensor([[0.3, -0.2, 0.5]], dtype=torch.float64)
    out = affine_warp(x, rotation_matrices(angles))
    assert out.shape == x.shape and out[0, 0, 4, 6, 8] > 0.2
    r = rotation_matrices(angles)[0]
    torch.testing.assert_close(r @ r.T, torch.eye(3, dtype=torch.float64))


def test_pretraining_augmentation_keeps_shape_range_and_is_seeded():
    x = torch.rand(3, 1, 12, 12, 12)
    cfg = VolumeAugmentConfig()
    a = augment_volumes(x, cfg, torch.Generator().manual_seed(0))
    b = augment_volumes(x, cfg, torch.Generator().manual_seed(0))
    c = augment_volumes(x, cfg, torch.Generator().manual_seed(1))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    off = VolumeAugmentConfig(flip=0, rotation=0, scale=0, upper_percentile=(100, 100))
    torch.testing.assert_close(
        augment_volumes(x, off), x / x.flatten(1).amax(1).view(3, 1, 1, 1, 1)
    )


def test_upper_percentile_renormalises_to_that_percentile():
    x = torch.linspace(0.01, 1, 1000).view(1, 1, 10, 10, 10)
    out = random_upper_percentile(x, 90.0, 90.0)
    q = torch.quantile(x.flatten(), 0.9)
    torch.testing.assert_close(out, (x / q).clamp(0, 1))
    assert (out == 1).float().mean() == pytest.approx(0.1, abs=0.002)


def test_augment_config_errors():
    with pytest.raises(ValueError, match="upper_percentile"):
        VolumeAugmentConfig(upper_percentile=(99.0, 98.0))
