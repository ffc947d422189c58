"""Procedural natural-looking images: landscapes with sky, horizon, textured ground and objects.

Each image is drawn from its own random stream (seed, "stimulus", index), so a stimulus set is
deterministic and any image can be redrawn alone. Scenes vary along a few interpretable factors
(time of day, horizon height, ground texture orientation and scale, number, shape, size and
colour of objects), which the image embeddings and, through them, the synthetic brain responses
pick up.
"""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

SIZE = 64  # pixels per side


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(b"stimulus"), index])


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """An oriented grating plus 1/f noise in [-1, 1]: grass, water, sand or rock."""
    angle, freq = rng.uniform(0, np.pi), rng.uniform(2, 12)
    grating = np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy) / SIZE)
    spectrum = rng.normal(size=(SIZE, SIZE)) + 1j * rng.normal(size=(SIZE, SIZE))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(SIZE), np.fft.fftfreq(SIZE))) + 1.0 / SIZE
    noise = np.real(np.fft.ifft2(spectrum / f ** rng.uniform(0.8, 1.6)))
    noise /= np.abs(noise).max() + 1e-9
    mix = rng.uniform(0.2, 0.8)
    return mix * grating + (1 - mix) * noise


def make_image(seed: int, index: int) -> np.ndarray:
    """Scene `index` of stimulus set `seed` as a (SIZE, SIZE, 3) uint8 RGB array."""
    rng = _rng(seed, index)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(float)
    day = rng.uniform()  # 0 night .. 1 noon
    top = np.array([0.05, 0.08, 0.25]) * (1 - day) + np.array([0.35, 0.6, 0.95]) * day
    bottom = top + rng.uniform(0.0, 0.35, 3) * np.array([1.0, 0.6, 0.3])  # warm haze
    t = (yy / SIZE)[..., None]
    image = top * (1 - t) + bottom * t
    horizon = rng.uniform(0.3, 0.75) * SIZE + rng.uniform(-4, 4) * np.sin(xx / rng.uniform(5, 15))
    ground = (yy > horizon)[..., None]
    ground_colour = rng.dirichlet([2, 3, 1.5]) * rng.uniform(0.6, 1.4)
    texture = _texture(rng, yy, xx)[..., None]
    image = np.where(ground, ground_colour * (0.7 + 0.3 * texture), image)
    if rng.uniform() < 0.6:  # sun or moon
        cy, cx, r = rng.uniform(4, 0.35 * SIZE), rng.uniform(4, SIZE - 4), rng.uniform(2, 6)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r**2)[..., None] & ~ground
        image = np.where(disc, np.array([1.0, 0.95, 0.7]), image)
    for _ in range(rng.integers(0, 5)):  # trees, rocks, houses
        cy, cx = rng.uniform(0.4, 1.0) * SIZE, rng.uniform(0, SIZE)
        h, w = rng.uniform(3, 18), rng.uniform(3, 14)
        colour = rng.uniform(0, 1, 3)
        shape = rng.integers(3)
        if shape == 0:  # ellipse
            inside = ((yy - cy) / h) ** 2 + ((xx - cx) / w) ** 2 < 1
        elif shape == 1:  # box
            inside = (np.abs(yy - cy) < h / 2) & (np.abs(xx - cx) < w / 2)
        else:  # triangle
            inside = (yy < cy) & (yy > cy - h) & (np.abs(xx - cx) < w * (yy - cy + h) / (2 * h))
        shade = 0.8 + 0.2 * np.sin(xx / rng.uniform(1, 4))[..., None]
        image = np.where(inside[..., None], colour * shade, image)
    image = image + rng.normal(0, 0.02, image.shape)  # film grain
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8)


def write_stimuli(folder: Path, ids: list[str], seed: int) -> None:
    """Write image i of `ids` as `<folder>/<id>.png` (lossless, deterministic bytes)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, stim_id in enumerate(ids):
        Image.fromarray(make_image(seed, index)).save(folder / f"{stim_id}.png", optimize=False)
