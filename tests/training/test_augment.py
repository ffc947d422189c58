import torch

from brainbench.training.augment import shift_and_mirror
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
