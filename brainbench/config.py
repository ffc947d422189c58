"""Experiment configuration: pydantic models, YAML layering and dotted command-line overrides.

Layers are merged in order (defaults -> task -> model -> dataset -> overrides); the result is
validated once, so an unknown key or a bad value anywhere is reported with its dotted key, the
layer it came from and the closest valid key.
"""

from __future__ import annotations

import copy
import difflib
import os
import textwrap
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from brainbench.bids_names import parse_filter
from brainbench.errors import ConfigError

# a random seed: numpy and torch take 0 .. 2**32 - 1
Seed = Annotated[int, Field(ge=0, le=2**32 - 1)]


def home() -> Path:
    """Where brainbench keeps generated data and caches ($BRAINBENCH_HOME, ~/.cache/brainbench)."""
    return Path(os.environ.get("BRAINBENCH_HOME", Path.home() / ".cache" / "brainbench"))


class StrictModel(BaseModel):
    """A config section: unknown keys and infinite or NaN numbers are errors."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), allow_inf_nan=False)


def _entity_filter(text: str) -> str:
    parse_filter(text)
    return text


class DataConfig(StrictModel):
    dataset: str = "synth"
    path: Path | None = Field(None, description="dataset root (BIDS folder or manifest CSV)")
    preset: str = Field("default", description="size preset of the embedded cohort")
    cohort_seed: Seed = Field(0, description="seed of the embedded cohort generator")
    cache_dir: Path | None = Field(None, description="array cache; None = home()/cache")
    mix_renderings: bool = Field(
        True,
        description="train on the renderings of a scan the dataset holds (skull-stripped by its "
        "brain mask, standard spaces) at random contrast, half the draws; evaluation uses the "
        "scans as given",
    )
    filters: dict[str, Annotated[str, AfterValidator(_entity_filter)]] = Field(
        {},
        description="BIDS: per modality (T1w, T2w, FLAIR, dwi, seg, timeseries: the parcel "
        "series of derivatives/fmri), the entities its file must "
        "have, e.g. data.filters.T1w=run-1 or acq-mprage_run-2; where several files remain, "
        "the fewest desc/space/acq/rec/ce entities, then the lowest run, wins",
    )


class PreprocessConfig(StrictModel):
    spacing: float = Field(4.0, gt=0, description="isotropic voxel size after resampling (mm)")
    shape: tuple[int, int, int] = Field((40, 48, 40), description="output grid (voxels)")
    crop_to_brain: bool = True
    percentiles: tuple[float, float] = (0.5, 99.5)
    skull_strip: Literal["none", "mask"] = Field(
        "none",
        description="none: images as given (with or without skull); mask: multiply every image "
        "by the subject's brain mask from the dataset's derivatives (*_desc-brain_mask.nii.gz)",
    )

    @model_validator(mode="after")
    def _check(self) -> PreprocessConfig:
        low, high = self.percentiles
        if not 0 <= low < high <= 100:
            raise ValueError("percentiles must satisfy 0 <= low < high <= 100")
        if min(self.shape) < 4:
            raise ValueError("every shape dimension must be at least 4 voxels")
        return self


class SplitConfig(StrictModel):
    seed: Seed = 0
    val_fraction: float = Field(0.15, gt=0, lt=1)
    test_fraction: float = Field(0.25, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> SplitConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError("val_fraction + test_fraction must leave at least 10% for training")
        return self


class TrainerConfig(StrictModel):
    max_epochs: int | list[int] = Field(
        40,
        description="epochs; a list, e.g. [12, 20, 50], trains a run once per budget and keeps "
        "the one with the lowest validation loss (each model's budget chosen on the validation "
        "split)",
    )
    batch_size: int = Field(
        16, ge=1, description="effective batch: split over devices x nodes x accumulation steps"
    )
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-3, ge=0)
    scheduler: Literal["constant", "cosine"] = Field(
        "cosine", description="learning rate: constant, or cosine-annealed over max_epochs"
    )
    patience: int = Field(8, ge=1, description="early-stopping patience in epochs")
    epoch_passes: float | None = Field(
        None,
        gt=0,
        description="passes over the training set per epoch; None: 1, or 1/label_fraction in "
        "label-fraction runs (the full training set's number of steps)",
    )
    accelerator: str = "auto"
    devices: int | str = 1
    strategy: str = "auto"
    precision: str = "32-true"
    num_nodes: int = Field(1, ge=1, description="machines (DDP across nodes)")
    accumulate_grad_batches: int = Field(1, ge=1, description="micro-batches per optimizer step")
    num_workers: int = Field(0, ge=0)
    progress_bar: bool = True

    @field_validator("max_epochs", mode="before")
    @classmethod
    def _epochs(cls, value: Any) -> Any:
        values = value if isinstance(value, list) else [value]
        if not values or not all(type(v) is int and v >= 1 for v in values):
            raise ValueError(
                f"{value!r} is not a number of epochs >= 1 or a non-empty list of them "
                "(e.g. 20, or [12, 20, 50] to keep the budget with the lowest validation loss)"
            )
        return value

    def budgets(self) -> list[TrainerConfig]:
        """One trainer per epoch budget of `max_epochs` (one, unless it is a list)."""
        epochs = self.max_epochs if isinstance(self.max_epochs, list) else [self.max_epochs]
        return [self.model_copy(update={"max_epochs": e}) for e in dict.fromkeys(epochs)]


class ExperimentConfig(StrictModel):
    task: str
    model: dict[str, Any] = Field(description="'name' plus the model's own parameters")
    data: DataConfig = DataConfig()
    preprocess: PreprocessConfig = PreprocessConfig()
    split: SplitConfig = SplitConfig()
    trainer: TrainerConfig = TrainerConfig()
    task_options: dict[str, Any] = Field(
        {}, description="the task runner's own parameters, validated by the runner"
    )
    seeds: list[Seed] = Field([33, 34, 35], min_length=1)
    label_fraction: float = Field(
        1.0, gt=0, le=1, description="share of the training labels used (nested subsets)"
    )
    train_stages: list[str] | None = Field(
        None, description="lifespan stages of the train/val subjects; None = all"
    )
    test_stages: list[str] | None = Field(
        None, description="lifespan stages of the test subjects; None = all"
    )
    output_dir: Path = Path("results")
    debug: bool = False

    @model_validator(mode="after")
    def _check_model(self) -> ExperimentConfig:
        if not isinstance(self.model.get("name"), str):
            raise ValueError("model.name must be set to a registered model name")
        return self

    @field_validator("train_stages", "test_stages")
    @classmethod
    def _check_stages(cls, stages: list[str] | None) -> list[str] | None:
        from brainbench.stages import check_stages

        return None if stages is None else check_stages(stages)

    @property
    def model_name(self) -> str:
        return self.model["name"]

    @property
    def model_params(self) -> dict[str, Any]:
        return {k: v for k, v in self.model.items() if k != "name"}


Layer = tuple[str, dict[str, Any]]  # (where it came from, nested dict)
M = TypeVar("M", bound=BaseModel)


def load_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping with safe loading; errors name the file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist.") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a folder; pass a YAML file.") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not a text file; pass a YAML file.") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}.") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values.")
    return data


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A copy of `base` with `update` merged in; nested mappings merge, other values replace."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Turn ['trainer.max_epochs=3', 'seeds=[33]'] into a nested dict (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(
                f"override '{item}' must look like key.sub=value, e.g. trainer.max_epochs=3."
            )
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override '{item}' conflicts with another override of {part}.")
        node[leaf] = value
    return out


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested mapping as {dotted.key: leaf value}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def _flat_keys(tree: dict[str, Any], prefix: str = "") -> set[str]:
    keys = set()
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        keys.add(dotted)
        if isinstance(value, dict):
            keys |= _flat_keys(value, dotted + ".")
    return keys


def _section(annotation: Any) -> type[BaseModel] | None:
    """The config class of a nested section's annotation, or None for a plain value."""
    is_section = isinstance(annotation, type) and issubclass(annotation, BaseModel)
    return annotation if is_section else None


def dotted_keys(root: type[BaseModel], prefix: str = "") -> list[str]:
    """Every key of `root`, sections and their fields, dotted: ['data', 'data.path', ...]."""
    keys = []
    for name, field in root.model_fields.items():
        keys.append(prefix + name)
        if section := _section(field.annotation):
            keys += dotted_keys(section, f"{prefix}{name}.")
    return keys


def closest_key(key: str, keys: list[str]) -> str | None:
    """The valid dotted key whose last part is closest to that of `key` (a key of the same
    section wins a tie), so 'max_epochs' -> 'trainer.max_epochs'; None if none is close."""
    section, _, leaf = key.rpartition(".")

    def score(candidate: str) -> tuple[float, bool]:
        where, _, name = candidate.rpartition(".")
        return difflib.SequenceMatcher(None, leaf, name).ratio(), where == section

    best = max(keys, key=score, default=None)
    return best if best is not None and score(best)[0] >= 0.6 else None


def key_summary(root: type[BaseModel], open_sections: tuple[str, ...] = ()) -> str:
    """The config keys of `root` for a --help: one line per section, then the top-level keys.

    A dict-typed section or one of `open_sections` (whose keys depend on the model or task)
    shows as 'name.<parameter>'.
    """
    lines, top = [], []
    for name, field in root.model_fields.items():
        section = _section(field.annotation)
        if name in open_sections or (section is None and _is_mapping(field.annotation)):
            lines.append(f"{name}.<parameter>")
        elif section is not None:
            text = f"{name}.{{{', '.join(section.model_fields)}}}"
            lines.append(textwrap.fill(text, 92, subsequent_indent="    "))
        else:
            top.append(name)
    lines.append(textwrap.fill(" ".join(top), 92, subsequent_indent="  "))
    return "\n".join("  " + line for line in lines)


def _is_mapping(annotation: Any) -> bool:
    return getattr(annotation, "__origin__", annotation) is dict


def origin(key: str, layers: list[Layer]) -> str:
    """The name of the last layer that set the dotted `key` (or the list holding it: seeds.0)."""
    parts = key.split(".")
    for end in range(len(parts), 0, -1):
        for name, tree in reversed(layers):
            if ".".join(parts[:end]) in _flat_keys(tree):
                return name
    return "defaults"


def build_config(layers: list[Layer], root: type[M] = ExperimentConfig) -> M:
    """Merge the layers in order and validate as `root`; errors name the key, layer and a fix."""
    merged: dict[str, Any] = {}
    for _, tree in layers:
        merged = deep_merge(merged, tree)
    try:
        return root.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, layers, root=root)) from None


def format_validation_error(
    exc: ValidationError,
    layers: list[Layer],
    *,
    root: type[BaseModel] = ExperimentConfig,
    prefix: str = "",
) -> str:
    """One line per problem: the dotted key, the layer that set it and the closest valid key."""
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        key = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "config"
        where = origin(key, layers)
        if err["type"] == "extra_forbidden":
            close = closest_key(key, dotted_keys(root, prefix))
            hint = f" Did you mean '{close}'?" if close else ""
            lines.append(f"unknown config key '{key}' (from {where}).{hint}")
        else:
            lines.append(f"bad value for '{key}' (from {where}): {err['msg']}.")
    return " ".join(lines)


def validate_section(
    cls: type[BaseModel],
    values: dict[str, Any],
    layers: list[Layer],
    prefix: str,
    owner: str = "",
) -> BaseModel:
    """Validate a free-form section (e.g. a model's parameters) against its own config class;
    an error starts with `owner` (e.g. "model 'atlas'"), the one refusing the keys."""
    try:
        return cls.model_validate(values)
    except ValidationError as exc:
        message = format_validation_error(exc, layers, root=cls, prefix=prefix)
        raise ConfigError(f"{owner}: {message}" if owner else message) from None


def config_to_dict(config: BaseModel) -> dict[str, Any]:
    """A YAML/JSON-friendly dict of a config."""
    return config.model_dump(mode="json")


def save_config(config: BaseModel, path: Path) -> None:
    Path(path).write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
