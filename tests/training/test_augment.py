import itertools

import pytest
import torch
import torch.nn.functional as F

from brainbench.training.augment import (
    VolumeAugmentConfig,
    affine_warp,
    augment_volumes,
    flip_axes,
    random_affine,
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
    quarter = rotation_matrices(torch.tensor([[0.0, 0.0, torch.pi / 2]] * 2, dtype=torch.float64))
    turned = affine_warp(x, quarter.round())
    # a quarter turn about the third axis only permutes voxels: a rot90 of the (x, y) plane
    assert any(torch.allclose(turned, torch.rot90(x, k, dims=(2, 3)), atol=1e-5) for k in (1, 3))
    with pytest.raises(ValueError, match="45 degrees"):  # about the first axis: M[2, 2] = 0
        affine_warp(x, quarter.flip(1, 2))


def test_two_pass_warp_matches_trilinear_resampling():
    # the reference: one trilinear 3-D grid_sample through the same map (affine_grid orders
    # coordinates z, y, x)
    smooth = F.avg_pool3d(F.pad(torch.rand(2, 1, 20, 24, 20), (3,) * 6, mode="replicate"), 7, 1)
    angles = torch.deg2rad(torch.tensor([[10.0, -7.0, 5.0], [-4.0, 9.0, -10.0]]))
    maps = (
        torch.diag(torch.tensor([-1.0, 1.0, -1.0]))  # flips x and z
        @ rotation_matrices(angles.double()).float()
        @ torch.diag_embed(1 / torch.tensor([[1.1, 0.95, 1.0], [0.9, 1.0, 1.08]]))
    )
    size = torch.tensor(smooth.shape[2:], dtype=torch.float)
    theta = (maps * size / size[:, None]).flip(1, 2)
    grid = F.affine_grid(F.pad(theta, (0, 1)), list(smooth.shape), align_corners=False)
    reference = F.grid_sample(smooth, grid, align_corners=False)
    inner = (..., slice(3, -3), slice(3, -3), slice(3, -3))  # off the grid's cut edge
    error = affine_warp(smooth, maps)[inner] - reference[inner]
    assert error.pow(2).mean().sqrt() < 1e-3 * reference[inner].pow(2).mean().sqrt()
    assert not torch.allclose(reference, smooth, atol=1e-2)  # the map moved something


def test_half_precision_volumes_are_warped_on_a_float32_grid():
    x = torch.rand(2, 1, 40, 48, 40)
    maps = rotation_matrices(torch.tensor([[0.2, -0.3, 0.4]] * 2, dtype=torch.float64)).float()
    for dtype in (torch.bfloat16, torch.float16):
        out = affine_warp(x.to(dtype), maps)
        assert out.dtype == dtype
        # off only by the input's and the output's rounding, not by where the points fall
        expected = affine_warp(x.to(dtype).float(), maps)
        assert (out.float() - expected).abs().max() <= 2 * torch.finfo(dtype).eps


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
    # the percentile is read from every 2nd voxel along each axis
    largest = x[..., ::2, ::2, ::2].flatten(1).amax(1).view(3, 1, 1, 1, 1)
    torch.testing.assert_close(augment_volumes(x, off), (x / largest).clamp(0, 1))


def test_flip_axes_flips_each_volume_along_its_own_axes():
    x = torch.rand(12, 2, 3, 4, 5)
    flips = torch.rand(12, 3, generator=torch.Generator().manual_seed(0)) < 0.5
    expected = [
        v.flip([1 + d for d in range(3) if f[d]]) if f.any() else v
        for v, f in zip(x, flips, strict=True)
    ]
    assert torch.equal(flip_axes(x, flips), torch.stack(expected))


def test_a_share_of_the_samples_is_warped_and_the_rest_only_flipped():
    torch.manual_seed(0)
    x = torch.rand(400, 1, 6, 7, 8)

    def augment(p: float) -> torch.Tensor:
        generators = [torch.Generator().manual_seed(i) for i in range(len(x))]
        return random_affine(x, 0.5, 10.0, 0.1, generators, warp_probability=p)

    def only_flipped(a: torch.Tensor, b: torch.Tensor) -> bool:
        axes = itertools.product([False, True], repeat=3)
        return any(
            torch.equal(a, b.flip([1 + d for d in range(3) if f[d]]) if any(f) else b) for f in axes
        )

    share = [not only_flipped(a, b) for a, b in zip(augment(0.2), x, strict=True)]
    assert 0.15 < sum(share) / len(x) < 0.25
    assert not any(not only_flipped(a, b) for a, b in zip(augment(0.0), x, strict=True))
    assert all(not only_flipped(a, b) for a, b in zip(augment(1.0), x, strict=True))


def test_upper_percentile_renormalises_to_that_percentile():
    x = torch.linspace(0.01, 1, 1000).view(1, 1, 10, 10, 10)
    out = random_upper_percentile(x, 90.0, 90.0)
    q = torch.quantile(x.flatten(), 0.9)
    torch.testing.assert_close(out, (x / q).clamp(0, 1))
    assert (out == 1).float().mean() == pytest.approx(0.1, abs=0.002)


def test_augment_config_errors():
    with pytest.raises(ValueError, match="upper_percentile"):
        VolumeAugmentConfig(upper_percentile=(99.0, 98.0))
    with pytest.raises(ValueError, match="rotation"):  # the two-pass warp's range
        VolumeAugmentConfig(rotation=46)
