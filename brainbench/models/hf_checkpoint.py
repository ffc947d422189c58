"""Loading a local Hugging Face checkpoint folder whole: every tensor by name and shape, or refuse.

Weights are read safely (safetensors, or `torch.load(weights_only=True)` for `.bin` files, single
or sharded with an `.index.json`); nothing is downloaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from brainbench.errors import DataError
from brainbench.spec import MODEL_CONFIG, WEIGHTS

WEIGHT_FILES = (WEIGHTS, "pytorch_model.bin")
SHOWN = 8  # keys listed per kind in an error message


def read_config(folder: Path) -> dict[str, Any]:
    """The folder's config.json as a dict."""
    path = Path(folder) / MODEL_CONFIG
    if not path.is_file():
        raise DataError(
            f"{folder} is not a Hugging Face checkpoint folder (no config.json); download the "
            "BrainLM checkpoint and give its local folder as model.init."
        )
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path} is not valid JSON: {exc}") from None


def _read_file(path: Path) -> dict[str, Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a corrupt, truncated or unsafe file: all say the same to a user
        raise DataError(f"cannot read the weights in {path}: {exc}") from None


def read_state_dict(folder: Path) -> tuple[dict[str, Tensor], Path]:
    """(state dict, weights file) of a checkpoint folder."""
    folder = Path(folder)
    for name in WEIGHT_FILES:
        if (folder / name).is_file():
            return _read_file(folder / name), folder / name
        index = folder / f"{name}.index.json"
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (json.JSONDecodeError, KeyError, AttributeError) as exc:
                raise DataError(f"{index} is not a valid weights index: {exc!r}") from None
            state: dict[str, Tensor] = {}
            for shard in shards:
                state |= _read_file(folder / shard)
            return state, index
    raise DataError(f"{folder} has no weights ({' or '.join(WEIGHT_FILES)}).")


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"


def _listing(title: str, keys: Iterable[str]) -> str:
    keys = list(keys)
    more = f" (+{len(keys) - SHOWN} more)" if len(keys) > SHOWN else ""
    return f"{title} ({len(keys)}): {', '.join(keys[:SHOWN])}{more}" if keys else ""


@dataclass
class LoadReport:
    """What loading a checkpoint into a module matched, by tensor name."""

    file: Path
    matched: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # module tensors the file lacks
    unexpected: list[str] = field(default_factory=list)  # file tensors the module lacks
    mismatched: list[str] = field(default_factory=list)  # "name file_shape != module_shape"
    renamed: int = 0  # file names translated to the module's (older library versions)

    @property
    def whole(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        return f"{len(self.matched)} tensors matched from {self.file}" + (
            f" ({self.renamed} renamed from older transformers names)" if self.renamed else ""
        )


def load_whole(
    module: nn.Module,
    state: dict[str, Tensor],
    file: Path,
    renames: Iterable[tuple[str, str]] = (),
) -> LoadReport:
    """Copy every tensor of `state` into `module`; DataError unless all match by name and shape.

    A file name the module lacks is translated by the substring `renames` (old -> new), in
    order, when that gives one the module has.
    """
    target = module.state_dict()
    report = LoadReport(file)
    loaded: dict[str, Tensor] = {}
    wrong: set[str] = set()
    for name, tensor in state.items():
        new = name
        if new not in target:
            for old, replacement in renames:
                new = new.replace(old, replacement)
            new = new if new in target else name
            report.renamed += new != name
        if new not in target:
            report.unexpected.append(f"{name} {_shape(tensor)}")
        elif tensor.shape != target[new].shape:
            report.mismatched.append(f"{name} {_shape(tensor)} != {_shape(target[new])}")
            wrong.add(new)
        else:
            loaded[new] = tensor
            report.matched.append(new)
    seen = loaded.keys() | wrong
    report.missing = [f"{k} {_shape(v)}" for k, v in target.items() if k not in seen]
    if not report.whole:
        parts = [
            _listing("missing", report.missing),
            _listing("wrong shape (file != model)", report.mismatched),
            _listing("unexpected", report.unexpected),
        ]
        raise DataError(
            f"the checkpoint {file} does not fit the model its config.json describes "
            f"({len(report.matched)} of {len(target)} tensors matched); "
            + "; ".join(p for p in parts if p)
            + ". Give the folder of an unmodified published checkpoint."
        )
    module.load_state_dict(loaded, strict=True, assign=True)  # `module` may be on 'meta'
    return report
