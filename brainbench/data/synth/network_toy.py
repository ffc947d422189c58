"""A toy parcel x time problem with a known answer, for checking that a masked model learns.

`parcels` parcels at random positions are split at random into `networks` networks (so a
network is spread over the brain, as real networks are). Each parcel is `loading` x its
network's smooth AR(1) time course + white noise, z-scored. Hiding a random share of
(parcel, time patch) tokens, the average of the visible parcels of the same network at the same
time recovers a hidden patch with a known R^2 (`same_time_ceiling`): the one thing masked fMRI
modelling rests on is to find those parcels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class NetworkToy:
    series: np.ndarray  # (subjects, parcels, time) float32, z-scored per parcel
    coords: np.ndarray  # (parcels, 3) float32, mm
    member: np.ndarray  # (parcels,) network index

    def windows(self, rng: np.random.Generator, n: int, length: int) -> Tensor:
        """(n, parcels, length) random windows of random subjects."""
        subjects = rng.integers(0, len(self.series), n)
        starts = rng.integers(0, self.series.shape[2] - length + 1, n)
        return torch.from_numpy(
            np.stack(
                [self.series[s, :, t : t + length] for s, t in zip(subjects, starts, strict=True)]
            )
        )


def network_toy(
    subjects: int = 64,
    parcels: int = 100,
    networks: int = 5,
    time: int = 400,
    *,
    loading: float = 0.9,
    noise: float = 0.44,
    phi: float = 0.9,
    seed: int = 0,
) -> NetworkToy:
    """Generate the toy (the parcel layout and membership depend on `seed` only)."""
    rng = np.random.default_rng(seed)
    member = rng.permutation(np.arange(parcels) % networks)
    coords = rng.uniform(-60.0, 60.0, (parcels, 3))
    burn = 100
    shocks = rng.normal(0.0, np.sqrt(1 - phi**2), (subjects, time + burn, networks))
    course = np.zeros_like(shocks)
    for t in range(1, time + burn):
        course[:, t] = phi * course[:, t - 1] + shocks[:, t]
    course = course[:, burn:]
    x = loading * course[:, :, member] + noise * rng.normal(size=(subjects, time, parcels))
    x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
    return NetworkToy(x.transpose(0, 2, 1).astype(np.float32), coords.astype(np.float32), member)


def same_time_ceiling(x: Tensor, hidden: Tensor, member: np.ndarray, patch: int) -> Tensor:
    """(B, parcels, patches, patch): each patch predicted by the mean of the visible patches of
    its network at the same time (0 where none is visible). `hidden` is (B, parcels * patches).
    """
    b, p, t = x.shape
    patches = x.view(b, p, t // patch, patch)
    visible = (~hidden).view(b, p, -1).to(x.dtype)
    group = torch.as_tensor(member, device=x.device)
    same = (group[:, None] == group[None]).to(x.dtype)
    total = torch.einsum("qp,bpnk->bqnk", same, patches * visible[..., None])
    count = torch.einsum("qp,bpn->bqn", same, visible)
    return total / count.clamp(min=1)[..., None]
