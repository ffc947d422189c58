"""Image embeddings, the targets of image decoding: one vector per stimulus image, cached.

Two extractors:
- `builtin` (the offline default): a fixed V1-like model, deterministic and dependency-free:
  colour-opponent means on a 4x4 grid plus oriented Gabor energies (4 orientations, 3 scales)
  on a 2x2 grid, log-compressed and contrasted across orientations.
- a Hugging Face vision model loaded from a local folder through transformers (nothing is
  downloaded): the hidden state of the layer at `layer` (a fraction of the depth, 1.0 = last),
  aggregated over tokens by `mean` or `cls`.

Embeddings are cached per image under `<cache>/embeddings/<extractor key>/<image sha1>.npy`, so
changing images, models or settings never returns a stale vector.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from brainbench.errors import DataError
from brainbench.owners import atomic_write

Extractor = Callable[[list[np.ndarray]], np.ndarray]  # RGB uint8 images -> (N, D) float32
GRID_COLOUR, GRID_GABOR, SIZE = 4, 2, 64
ORIENTATIONS, WAVELENGTHS = 4, (4.0, 8.0, 16.0)


def read_image(path: Path) -> np.ndarray:
    """An image file as an (H, W, 3) uint8 RGB array; DataError if unreadable."""
    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise DataError(f"stimulus image {path} is unreadable ({exc}); replace the file.") from None


def _resized(image: np.ndarray, size: int) -> np.ndarray:
    resized = Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(resized, dtype=np.float64) / 255.0


@cache
def _gabor_bank() -> np.ndarray:
    """(filters, SIZE, SIZE) frequency responses of quadrature Gabor filters."""
    fy, fx = np.meshgrid(np.fft.fftfreq(SIZE), np.fft.fftfreq(SIZE), indexing="ij")
    bank = []
    for wavelength in WAVELENGTHS:
        for k in range(ORIENTATIONS):
            theta = np.pi * k / ORIENTATIONS
            u0, v0 = np.cos(theta) / wavelength, np.sin(theta) / wavelength
            sigma = 0.5 / wavelength  # one-octave bandwidth, roughly
            bank.append(np.exp(-((fx - u0) ** 2 + (fy - v0) ** 2) / (2 * sigma**2)))
    return np.stack(bank)


def _pool(maps: np.ndarray, grid: int) -> np.ndarray:
    """Average (..., SIZE, SIZE) maps over a grid x grid tiling -> (..., grid * grid)."""
    step = SIZE // grid
    tiles = maps.reshape(*maps.shape[:-2], grid, step, grid, step).mean(axis=(-3, -1))
    return tiles.reshape(*maps.shape[:-2], grid * grid)


def builtin_features(images: list[np.ndarray]) -> np.ndarray:
    """The built-in V1-like embedding (N, 48 + 48) of RGB images; see the module docstring."""
    rows = []
    for image in images:
        rgb = _resized(image, SIZE).transpose(2, 0, 1)
        r, g, b = rgb
        lum = rgb.mean(axis=0)
        opponent = np.stack([lum - 0.5, r - g, b - (r + g) / 2])
        colour = _pool(opponent, GRID_COLOUR).ravel()
        spectrum = np.fft.fft2(lum - lum.mean())
        energy = np.abs(np.fft.ifft2(spectrum[None] * _gabor_bank()))  # complex -> quadrature
        pooled = np.log(_pool(energy, GRID_GABOR) + 1e-3)  # (filters, cells)
        pooled = pooled.reshape(len(WAVELENGTHS), ORIENTATIONS, -1)
        contrast = pooled - pooled.mean(axis=1, keepdims=True)  # orientation preference
        rows.append(np.concatenate([colour, contrast.ravel()]))
    return np.asarray(rows, dtype=np.float32)


def transformers_extractor(
    folder: Path, layer: float, aggregation: Literal["mean", "cls"], batch_size: int = 16
) -> Extractor:
    """An extractor running the vision model saved in `folder` (save_pretrained layout)."""
    import torch
    from transformers import AutoConfig, AutoImageProcessor, AutoModel

    folder = Path(folder)
    fix = (
        "point task_options.embedding_model at a folder written by save_pretrained (e.g. "
        f"`huggingface-cli download google/vit-base-patch16-224 --local-dir {folder}`), "
        "or use 'builtin'"
    )
    if not (folder / "config.json").is_file():
        raise DataError(f"embedding model folder {folder} holds no config.json; {fix}.")
    try:
        AutoConfig.from_pretrained(folder, local_files_only=True)
        model = AutoModel.from_pretrained(folder, local_files_only=True).eval()
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"embedding model folder {folder} is not a loadable model ({exc}); {fix}."
        ) from None
    try:
        processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError):
        processor = None
    size = int(getattr(model.config, "image_size", 224))

    def pixels(batch: list[np.ndarray]) -> torch.Tensor:
        if processor is not None:
            return processor(images=list(batch), return_tensors="pt")["pixel_values"]
        arrays = np.stack([_resized(im, size) for im in batch]).transpose(0, 3, 1, 2)
        return torch.as_tensor((arrays - 0.5) / 0.5, dtype=torch.float32)

    def extract(images: list[np.ndarray]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                result = model(
                    pixel_values=pixels(images[start : start + batch_size]),
                    output_hidden_states=True,
                )
                states = result.hidden_states  # embeddings output + one per layer
                hidden = states[round(layer * (len(states) - 1))]
                if hidden.ndim == 4:  # convolutional models: (B, C, H, W) -> tokens
                    hidden = hidden.flatten(2).transpose(1, 2)
                out.append(hidden[:, 0] if aggregation == "cls" else hidden.mean(dim=1))
        return torch.cat(out).float().numpy()

    return extract


def extractor_key(model: str, layer: float, aggregation: str) -> str:
    """A short id of an extractor and its settings (and a local model's files)."""
    parts: dict[str, object] = {"model": "builtin", "version": 1}
    if model != "builtin":
        folder = Path(model)
        files = sorted((p.name, p.stat().st_size) for p in folder.iterdir() if p.is_file())
        config = (folder / "config.json").read_text() if (folder / "config.json").is_file() else ""
        parts = {"model": str(folder.resolve()), "files": files, "config": config}
        parts |= {"layer": layer, "aggregation": aggregation}
    return hashlib.sha1(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def embed_images(
    paths: Sequence[Path],
    cache_dir: Path,
    *,
    model: str = "builtin",
    layer: float = 1.0,
    aggregation: Literal["mean", "cls"] = "mean",
) -> np.ndarray:
    """(N, D) float32 embeddings of the image files, computed once per image and cached."""
    folder = Path(cache_dir) / "embeddings" / extractor_key(model, layer, aggregation)
    digests = [hashlib.sha1(Path(p).read_bytes()).hexdigest() for p in paths]
    todo = [i for i, d in enumerate(digests) if not (folder / f"{d}.npy").is_file()]
    if todo:
        if model == "builtin":
            extract: Extractor = builtin_features
        else:
            extract = transformers_extractor(Path(model), layer, aggregation)
        vectors = extract([read_image(paths[i]) for i in todo])
        folder.mkdir(parents=True, exist_ok=True)
        for i, vector in zip(todo, vectors, strict=True):
            atomic_write(folder / f"{digests[i]}.npy", npy_bytes(vector))
    return np.stack([np.load(folder / f"{d}.npy") for d in digests]).astype(np.float32)


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as float32 .npy bytes (no pickle), for atomic_write."""
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array, dtype=np.float32), allow_pickle=False)
    return buffer.getvalue()
