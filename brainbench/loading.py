"""`load_model(path_or_name)`: any brainbench model, ready for inference, from safetensors only.

Three kinds of folder hold a model:

- an exported folder (`brainbench export`): config.json with a `brainbench_export` version,
  model.safetensors and a model card;
- a pretrained folder (`brainbench pretrain`): config.json (the pretraining config) and
  model.safetensors;
- a run record (`brainbench run`): config.yaml, metrics.json and model.safetensors.

A bare name is an exported model under `$BRAINBENCH_HOME/models/<name>`, where `brainbench
export` puts models by default. Pickled checkpoints (.ckpt, .pt, .pth, .bin, .pkl) are refused:
unpickling runs arbitrary code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import Tensor, nn

from brainbench.config import ExperimentConfig, TrainerConfig, home, load_yaml
from brainbench.errors import DataError, unknown
from brainbench.registry import get_model, load_plugins
from brainbench.spec import METRICS, MODEL_CONFIG, RECORD_CONFIG, WEIGHTS, TaskSpec
from brainbench.tasks import get_task

EXPORT_VERSION = 1
PICKLED = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")


@dataclass
class LoadedModel:
    """A network in eval mode plus what it is: `outputs(x)` gives its named outputs.

    Pretrained masked autoencoders output `embedding` (and `reconstruction` when their forward
    reconstructs the volume, as mae3d_cnn's does); task models output `output` (the raw network
    output) and `prediction` (years, P(y=1)...).
    """

    name: str  # the registered model name, e.g. 'mae3d_cnn'
    net: nn.Module
    config: dict[str, Any]  # what an exported folder's config.json holds
    path: Path
    predictor: Callable[[Tensor], Tensor] | None = None  # raw output -> prediction (task models)
    reconstructs: bool = False  # a pretrained backbone whose forward(volume) is a volume

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(channels, X, Y, Z) of one input volume."""
        return tuple(self.config["input_shape"])

    @property
    def output_names(self) -> tuple[str, ...]:
        if self.predictor is not None:
            return ("output", "prediction")
        return ("reconstruction", "embedding") if self.reconstructs else ("embedding",)

    def outputs(self, x: Tensor) -> tuple[Tensor, ...]:
        """The outputs named by `output_names`, for a (B, C, X, Y, Z) batch."""
        if self.predictor is not None:
            y = self.net(x)
            return y, self.predictor(y)
        embedding = self.net.encoder.encode(x)
        return (self.net(x), embedding) if self.reconstructs else (embedding,)

    @torch.inference_mode()
    def __call__(self, x: Tensor) -> dict[str, Tensor]:
        return dict(zip(self.output_names, self.outputs(x), strict=True))


def load_model(path_or_name: str | Path) -> LoadedModel:
    """Load an exported folder, a pretrained folder, a run record or an exported model's name."""
    path = _locate(path_or_name)
    _weights_file(path)
    if (path / MODEL_CONFIG).is_file():
        config = _read_json(path / MODEL_CONFIG)
        if "brainbench_export" in config:
            return _from_export(path, config)
        return _from_pretrained(path, config)
    if (path / RECORD_CONFIG).is_file() and (path / METRICS).is_file():
        return _from_config(path, run_config(path))
    raise DataError(
        f"{path} holds no brainbench model: expected an exported folder (config.json + "
        f"{WEIGHTS}), a pretrained folder or a run record (config.yaml + metrics.json)."
    )


def _locate(path_or_name: str | Path) -> Path:
    path = Path(path_or_name)
    if path.suffix.lower() in PICKLED:
        raise DataError(
            f"{path} is a pickled checkpoint; brainbench never unpickles (it can run arbitrary "
            f"code). Load a folder holding {WEIGHTS}, or convert the weights to safetensors."
        )
    if path.is_file() and path.suffix == ".safetensors":
        return path.parent
    if path.is_dir():
        return path
    if path.exists() or "/" in str(path_or_name) or path.suffix:
        raise DataError(f"{path} is not a model folder or a .safetensors file.")
    exported = exported_models()
    if str(path_or_name) not in exported:
        raise unknown("exported model", str(path_or_name), exported)
    return exported[str(path_or_name)]


def exported_models() -> dict[str, Path]:
    """Exported models by name, under $BRAINBENCH_HOME/models."""
    root = home() / "models"
    return {p.parent.name: p.parent for p in sorted(root.glob("*/config.json"))}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is unreadable ({exc}); export the model again.") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a JSON object.")
    return data


def _weights_file(folder: Path) -> Path:
    file = folder / WEIGHTS
    if not file.is_file():
        pickles = [p.name for p in folder.glob("*") if p.suffix.lower() in PICKLED]
        hint = f" ({', '.join(pickles)} are pickles and are not read)" if pickles else ""
        raise DataError(f"{file} does not exist{hint}; export or save the model as safetensors.")
    return file


def read_state(folder: Path) -> dict[str, Tensor]:
    """The tensors of `folder`/model.safetensors; DataError if missing or unreadable."""
    file = _weights_file(folder)
    try:
        return load_file(str(file))
    except (SafetensorError, OSError) as exc:
        raise DataError(f"{file} is not a readable safetensors file: {exc}") from None


def run_config(run_dir: Path) -> dict[str, Any]:
    """The export-style config of a run record: model, task, parameters, input shape, metrics."""
    saved = yaml.safe_load((run_dir / RECORD_CONFIG).read_text())
    metrics = _read_json(run_dir / METRICS)
    return {
        "source": "run",
        "model": saved["model"]["name"],
        "task": saved["task"],
        "task_version": metrics.get("task_version"),
        "params": saved.get("model_params", {}),
        "input_shape": None,  # set from the weights' meta once built
        "preprocess": saved["preprocess"],
        "dataset": metrics.get("dataset"),
    }


def pretrained_export_config(config: dict[str, Any]) -> dict[str, Any]:
    """The export-style config of a `brainbench pretrain` folder's config.json."""
    try:
        shape = [len(config["modalities"]), *config["preprocess"]["shape"]]
        return {
            "source": "pretrained",
            "model": config["name"],
            "task": None,
            "params": config["model"],
            "input_shape": shape,
            "preprocess": config["preprocess"],
            "modalities": config["modalities"],
            "pretraining": config,
        }
    except (KeyError, TypeError) as exc:
        raise DataError(f"not a brainbench pretraining config: missing {exc}") from None


def _from_pretrained(path: Path, config: dict[str, Any]) -> LoadedModel:
    try:
        export_config = pretrained_export_config(config)
    except DataError as exc:
        raise DataError(f"{path / 'config.json'}: {exc}") from None
    return _from_config(path, export_config | {"dataset": None})


def _from_export(path: Path, config: dict[str, Any]) -> LoadedModel:
    if config["brainbench_export"] != EXPORT_VERSION:
        raise DataError(
            f"{path} was exported in format {config['brainbench_export']}; this brainbench "
            f"reads format {EXPORT_VERSION}. Export it again with this version."
        )
    return _from_config(path, config)


def _from_config(path: Path, config: dict[str, Any]) -> LoadedModel:
    """Rebuild the network `config` describes and load `path`/model.safetensors into it."""
    if config["source"] == "pretrained":
        from brainbench.models.mae import BACKBONES

        load_plugins()
        if config["model"] not in BACKBONES:
            raise unknown("pretrained model", config["model"], BACKBONES)
        backbone = BACKBONES[config["model"]]
        net = backbone.network(backbone.config.model_validate(config["params"]))
        _load_strict(net, read_state(path), path)
        return LoadedModel(
            config["model"], net.eval(), config, path, reconstructs=backbone.reconstructs
        )
    entry = get_model(config["model"])
    if entry.kind != "torch":
        raise DataError(
            f"'{config['model']}' is a {entry.kind} model; only torch models load as networks "
            "(export and ONNX cover torch models)."
        )
    params = entry.config_cls.model_validate(config["params"])
    task = get_task(config["task"])
    estimator = restore(path, config["model"], params, task, TrainerConfig())
    model = estimator.model
    config = config | {"input_shape": list(estimator.meta["in_shape"]), "meta": estimator.meta}
    return LoadedModel(config["model"], model.net.eval(), config, path, model.predict)


def restore(path: Path, model: str, params: Any, task: TaskSpec, trainer: TrainerConfig) -> Any:
    """Registered model `model` rebuilt from its parameters, with `path`/model.safetensors
    loaded (a DataError when the file is missing, unreadable or does not fit)."""
    estimator = get_model(model).build(params, task=task, trainer=trainer)
    read_state(path)  # a clear error for a missing or broken file
    try:
        estimator.load(path / WEIGHTS)
    except RuntimeError as exc:  # state dict does not fit the rebuilt network
        raise DataError(f"{path / WEIGHTS} does not fit '{model}': {exc}") from None
    return estimator


def load_run(run_dir: Path) -> tuple[ExperimentConfig, TaskSpec, Any]:
    """(config, task, fitted estimator) of a run record; DataError when it holds no model."""
    run_dir = Path(run_dir)
    if not (run_dir / WEIGHTS).is_file() or not (run_dir / RECORD_CONFIG).is_file():
        raise DataError(
            f"{run_dir} holds no trained model ({WEIGHTS} and {RECORD_CONFIG}); pass a run folder "
            "such as results/runs/mri-age/sfcn/scratch_synth-default-seed0/seed33."
        )
    raw = load_yaml(run_dir / RECORD_CONFIG)
    params = raw.pop("model_params", None)
    try:
        config = ExperimentConfig.model_validate(raw)
        entry = get_model(config.model_name)
        validated = entry.config_cls.model_validate(
            config.model_params if params is None else params
        )
    except ValidationError as exc:
        raise DataError(
            f"{run_dir / RECORD_CONFIG} is not a config this brainbench can read "
            f"({exc.error_count()} problems); rerun the experiment with this version."
        ) from None
    spec = get_task(config.task)
    return config, spec, restore(run_dir, config.model_name, validated, spec, config.trainer)


def _load_strict(net: nn.Module, state: dict[str, Tensor], path: Path) -> None:
    missing = sorted(set(net.state_dict()) - set(state))
    extra = sorted(set(state) - set(net.state_dict()))
    if missing or extra:
        raise DataError(
            f"{path / WEIGHTS} does not fit its config.json: missing {missing[:5]}, "
            f"unexpected {extra[:5]}."
        )
    net.load_state_dict(state)
