"""Masked-autoencoder backbones: what pretraining and every downstream protocol share.

A backbone module (mae3d_cnn, mae3d_vit, mae2d) calls `register_backbone(name, config, network)`.
`network(cfg)` builds the autoencoder, an nn.Module with
- `encoder`: the part kept downstream, with `encode(x: (B, C, X, Y, Z)) -> (B, out_dim)`;
- `first_layer`: the state-dict prefix a checkpoint must match to be this architecture;
- `mask_unit`: masking patches must be multiples of it (voxels);
- `masked_loss(view, patch, ratio, generator) -> MaskedOutput` (training.masking).

Registering also registers the downstream torch model `name` (`register_pretrainable` does not,
for a network whose downstream model is its own, mae3d_unet): the encoder + a head (SFCN's
soft-label bins for regression, one logit for classification), from scratch or, with `init`,
fine-tuned from a pretrained checkpoint by loading every weight whose name and shape match. A
checkpoint whose first layer does not match is a DataError listing the mismatches. `mae3d_probe`
fits scikit-learn on the frozen encoder of any pretrained backbone.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import Field, create_model
from safetensors import SafetensorError
from safetensors.torch import load_file
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_predict
from torch import Tensor, nn
from torch.utils.data import Dataset

from brainbench.config import StrictModel, TrainerConfig
from brainbench.errors import DataError, unknown
from brainbench.models.classical import binary_targets, fit_linear
from brainbench.models.probe import ProbeConfig, ProbeEstimator, embeddings
from brainbench.models.sfcn import (
    Bins,
    ExpectedValue,
    SoftLabelLoss,
    logit_loss,
    logit_probability,
    target_setup,
)
from brainbench.registry import load_plugins, register_model
from brainbench.spec import MODEL_CONFIG as CONFIG
from brainbench.spec import WEIGHTS, TaskSpec
from brainbench.training.fit import TorchEstimator, TorchModel
from brainbench.training.module import FinetuneConfig

TORCH_SUFFIXES = (".pt", ".pth", ".bin")


@dataclass(frozen=True)
class Backbone:
    name: str
    config: type[StrictModel]
    network: Callable[[Any], nn.Module]
    first_layer: str
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None  # foreign weights
    reconstructs: bool = False  # forward(volume) is the reconstructed volume


BACKBONES: dict[str, Backbone] = {}


class HeadConfig(FinetuneConfig):
    """The downstream fields every backbone's task config adds to its network config."""

    init: Path | None = Field(
        None, description="pretrained folder or weights file (finetune); None = scratch"
    )
    dropout: float = Field(0.2, ge=0, lt=1)
    bin_width: float | None = Field(
        None, gt=0, description="regression: soft-label bin width; None = target range / 48"
    )
    sigma: float = Field(1.0, gt=0, description="regression: soft-label std, in bin widths")
    probe_init: bool = Field(
        True, description="finetune: start the head from the frozen encoder's linear probe"
    )


class FeatureNorm(nn.BatchNorm1d):
    """Batch normalisation without affine parameters, as MAE's linear probe puts before its head
    (He et al. 2022): a pooled embedding varies little between subjects next to its mean
    (std 0.05 against 1.2 for mae3d_cnn), which a freshly initialised head learns to use only
    after many steps. A one-sample training batch is normalised with the running statistics."""

    def __init__(self, features: int) -> None:
        super().__init__(features, affine=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and x.shape[0] < 2:
            return nn.functional.batch_norm(x, self.running_mean, self.running_var, eps=self.eps)
        return super().forward(x)


class EncoderHead(nn.Module):
    """An encoder, feature normalisation, dropout and a linear head on its embedding."""

    def __init__(self, encoder: nn.Module, n_outputs: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.norm = FeatureNorm(encoder.out_dim)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(encoder.out_dim, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.norm(self.encoder.encode(x))))

    def encode(self, x: Tensor) -> Tensor:
        return self.encoder.encode(x)


def weights_path(path: Path) -> Path:
    """`path` itself if a file, else `path`/model.safetensors; DataError if absent or unknown."""
    path = Path(path)
    file = path / WEIGHTS if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"pretrained weights {file} do not exist; run `brainbench pretrain` first.")
    if file.suffix != ".safetensors" and file.suffix not in TORCH_SUFFIXES:
        raise DataError(
            f"{file} is neither .safetensors nor a torch state dict ({', '.join(TORCH_SUFFIXES)});"
            " point init at a pretrained folder, a model.safetensors or a weights-only .pth file."
        )
    return file


def read_weights(path: Path) -> dict[str, Tensor]:
    """The tensors of a safetensors file or of a weights-only torch file (pickles are refused)."""
    file = weights_path(path)
    if file.suffix == ".safetensors":
        try:
            return load_file(str(file))
        except (SafetensorError, OSError) as exc:
            raise DataError(f"{file} is not a readable safetensors file: {exc}") from None
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError, EOFError...
        raise DataError(
            f"{file} is not a weights-only torch state dict ({type(exc).__name__}); pickled "
            "checkpoints are refused. Save it with torch.save(model.state_dict(), ...)."
        ) from None
    for key in ("state_dict", "model"):  # common wrappers of a state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    tensors = (
        {k: v for k, v in state.items() if isinstance(v, Tensor)} if isinstance(state, dict) else {}
    )
    if not tensors:
        raise DataError(f"{file} holds no tensors; expected a state dict (name -> tensor).")
    return tensors


def load_matching(
    net: nn.Module, path: Path, first: str = "encoder.stem.", state: dict[str, Tensor] | None = None
) -> dict[str, Any]:
    """Load every weight of `path` (or `state`) whose name and shape match `net`; report them.

    DataError listing the mismatches when the weights under `first` (the first layer) do not all
    match: another architecture or width.
    """
    source = read_weights(path) if state is None else state
    target = net.state_dict()
    matched = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    if not all(k in matched for k in target if k.startswith(first)):
        problems = [
            f"{k}: checkpoint {tuple(source[k].shape)} vs model {tuple(target[k].shape)}"
            if k in source
            else f"{k}: missing in checkpoint"
            for k in target
            if k not in matched
        ]
        raise DataError(
            f"{path} does not fit this encoder (its first layer '{first}' must match; set the "
            f"model.* keys as in its {CONFIG}). Mismatches: "
            + "; ".join(problems[:8])
            + (f" (+{len(problems) - 8} more)" if len(problems) > 8 else "")
        )
    net.load_state_dict(matched, strict=False)
    return {
        "matched": len(matched),
        "unmatched": sorted(set(target) - set(matched)),
        "ignored": len(source) - len(matched),
    }


def pretrained_backbone(path: Path) -> tuple[Backbone, StrictModel]:
    """The backbone and network config saved next to pretrained weights (config.json)."""
    file = weights_path(path).parent / CONFIG
    load_plugins()  # every backbone module registered
    try:
        saved = json.loads(file.read_text())
        name = saved.get("name", "mae3d_cnn")
        if name not in BACKBONES:
            raise unknown("pretrained backbone", name, BACKBONES)
        backbone = BACKBONES[name]
        return backbone, backbone.config.model_validate(saved["model"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{file} is missing or not a brainbench pretraining config ({exc}); pretrained "
            "weights must sit next to the config.json `brainbench pretrain` writes."
        ) from None


def load_encoder(path: Path) -> nn.Module:
    """The pretrained encoder at `path` (folder or model.safetensors), in eval mode."""
    backbone, cfg = pretrained_backbone(path)
    encoder = backbone.network(cfg).encoder
    state = {k.removeprefix("encoder."): v for k, v in read_weights(path).items()}
    missing = set(encoder.state_dict()) - set(state)
    if missing:
        raise DataError(f"{weights_path(path)} lacks encoder weights: {', '.join(sorted(missing))}")
    encoder.load_state_dict({k: state[k] for k in encoder.state_dict()})
    return encoder.eval()


def _build(
    backbone: Backbone, params: HeadConfig, task: TaskSpec, meta: dict[str, Any]
) -> TorchModel:
    cfg = backbone.config.model_validate(
        params.model_dump(include=set(backbone.config.model_fields))
    )
    encoder = backbone.network(cfg).encoder
    if task.kind == "regression":
        bins = Bins(**meta["bins"])
        net = EncoderHead(encoder, bins.count, params.dropout)
        return TorchModel(net, SoftLabelLoss(bins, params.sigma), ExpectedValue(bins))
    return TorchModel(EncoderHead(encoder, 1, params.dropout), logit_loss, logit_probability)


class MAEEstimator(TorchEstimator):
    """TorchEstimator whose fresh network loads the `init` weights before fine-tuning."""

    def __init__(
        self, backbone: Backbone, params: HeadConfig, task: TaskSpec, trainer: TrainerConfig
    ) -> None:
        self._plain = partial(_build, backbone, params, task)
        super().__init__(partial(target_setup, params, task), self._plain, trainer)
        self.backbone = backbone
        self.params = params
        self.init = params.init
        self.report: dict[str, Any] = {}

    def fit(self, train: Dataset, val: Dataset, *, seed: int, run_dir: Path) -> dict[str, Any]:
        """Fit as TorchEstimator does; when fine-tuning, info adds the matched weights."""
        if self.init is not None:
            self._check_init()  # fail before any training
            # only while fitting: `load` restores saved weights
            self.build = partial(self._initialised, train=train, val=val, seed=seed)
        try:
            return super().fit(train, val, seed=seed, run_dir=run_dir) | self.report
        finally:
            self.build = self._plain

    def _check_init(self) -> None:
        config = weights_path(self.init).parent / CONFIG
        if config.is_file():
            name = pretrained_backbone(self.init)[0].name
            if name != self.backbone.name:
                raise DataError(
                    f"{self.init} was pretrained as {name}, not {self.backbone.name}; fine-tune "
                    f"it with -m {name}."
                )

    def _initialised(
        self, meta: dict[str, Any], *, train: Dataset, val: Dataset, seed: int
    ) -> TorchModel:
        model = self._plain(meta)
        state = read_weights(self.init)
        if self.backbone.rename is not None:
            state = self.backbone.rename(state)
        self.report = load_matching(model.net, self.init, self.backbone.first_layer, state)
        model.finetune = self.params.finetune("encoder.")
        if self.params.probe_init:
            bins = Bins(**meta["bins"]) if "bins" in meta else None
            alpha, penalty = probe_head(model.net, train, val, bins, self.params, seed)
            self.report |= {"probe_alpha": alpha, "probe_penalty": penalty}
        return model


def probe_head(
    net: EncoderHead,
    train: Dataset,
    val: Dataset,
    bins: Bins | None,
    params: HeadConfig,
    seed: int,
) -> tuple[float | None, str]:
    """Linear probing, the first step of LP-FT (Kumar et al. 2022): the frozen encoder's
    cross-validated ridge / logistic probe (as mae3d_probe fits it, falling back to the training
    mean / prior when CV cannot choose the penalty or the fit does worse on `val`) written into
    the head, so fine-tuning starts from the probe's predictions, not from a random head's.
    Returns the probe's penalty (None: the mean / prior) and how it was chosen.

    For a regression head, logits c_k y / s^2 - c_k^2 / 2 s^2 (bin centres c_k) are the log of a
    Gaussian over the bins centred on the probe's prediction y, up to a constant per sample that
    the softmax ignores: the head starts where the probe is, as sure as the probe's out-of-fold
    error (s^2 = its mean squared error + the soft label's variance; a head as sure as the soft
    label starts with a validation loss of ~28 instead of ~1.5).
    """
    probe = ProbeConfig(init=Path("."))  # the probe's penalty grid, folds and fallback rule
    was_training = net.encoder.training
    x, x_val = (
        torch.from_numpy(embeddings(net.encoder.eval(), d, probe.batch_size)) for d in (train, val)
    )
    net.encoder.train(was_training)
    mean, var = x.mean(0), x.var(0, unbiased=False)
    net.norm.running_mean.copy_(mean)
    net.norm.running_var.copy_(var)
    z, z_val = (((e - mean) / torch.sqrt(var + net.norm.eps)).numpy() for e in (x, x_val))
    y = np.asarray(train.targets, dtype=float)
    if bins is None:
        y = binary_targets(y)
    alpha, coef, intercept, penalty = fit_linear(
        z, y, "regression" if bins else "classification", probe.alphas(), probe.cv_folds, seed,
        min_subjects=probe.cv_min_subjects, val=(z_val, np.asarray(val.targets, dtype=float)),
    )  # fmt: skip
    w = torch.as_tensor(np.ravel(coef), dtype=torch.float64)
    b = float(np.ravel(intercept)[0])
    if bins is not None:  # the probe's out-of-fold error widens the Gaussian over the bins
        if alpha is None:
            residual = y - y.mean()
        else:
            residual = y - cross_val_predict(Ridge(alpha=alpha), z, y, cv=min(5, len(y)))
        variance = (params.sigma * bins.width) ** 2 + float(np.mean(residual**2))
        centres = bins.centres()
        w = centres[:, None] * w[None, :] / variance
        b = (centres * b - centres**2 / 2) / variance
    with torch.no_grad():
        net.head.weight.copy_(w.reshape(net.head.weight.shape))
        net.head.bias.copy_(torch.as_tensor(b, dtype=torch.float64).reshape(net.head.bias.shape))
    return alpha, penalty


def register_pretrainable(
    name: str,
    config: type[StrictModel],
    network: Callable[[Any], nn.Module],
    *,
    first_layer: str,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    reconstructs: bool = False,
) -> Backbone:
    """Register a backbone `pretrain` can train, without a downstream model: for a network
    whose downstream model `name` is registered on its own (mae3d_unet, voxelwise tasks)."""
    backbone = Backbone(name, config, network, first_layer, rename, reconstructs)
    BACKBONES[name] = backbone
    return backbone


def register_backbone(
    name: str,
    config: type[StrictModel],
    network: Callable[[Any], nn.Module],
    *,
    first_layer: str,
    description: str,
    rename: Callable[[dict[str, Tensor]], dict[str, Tensor]] | None = None,
    reconstructs: bool = False,
) -> type[StrictModel]:
    """Register a pretrainable backbone and its downstream model `name`; return its task config.

    `rename` maps the parameter names of published foreign weights onto this backbone's;
    `reconstructs` says its forward(volume) returns the reconstructed volume.
    """
    backbone = register_pretrainable(
        name, config, network, first_layer=first_layer, rename=rename, reconstructs=reconstructs
    )
    task_name = config.__name__.removesuffix("Config") + "TaskConfig"
    task_config = create_model(task_name, __base__=(config, HeadConfig))

    @register_model(
        name,
        kind="torch",
        config=task_config,
        description=f"{description} + head; scratch, or finetune with init=PATH",
        task_kinds=("regression", "classification"),
        needs_volume=True,
        # SFCN's patience; of 100 and 200 epochs, the budget with the lower validation loss.
        # mae3d_cnn on the default cohort at 4 mm (generator v7): with patience 8 fine-tuning
        # stopped at epoch 23 (seed 33: test MAE 8.54; scratch 12.26); 100 epochs with
        # patience 30 gave 6.48 fine-tuned (best epoch 99) and 8.84 from scratch. Over seeds
        # 33-35, fine-tuned, 100 epochs: best validation loss 0.97 / 1.04 / 1.02, test MAE
        # 6.43 +- 0.09; 200 (SFCN's): 0.99 / 1.05 / 1.06, 7.27 +- 0.76.
        defaults={"trainer": {"lr": 0.001, "max_epochs": 100, "patience": 30}},
        protocol=lambda params: "finetune" if params.init else "scratch",
    )
    def build(params: HeadConfig, *, task: TaskSpec, trainer: TrainerConfig) -> MAEEstimator:
        return MAEEstimator(backbone, params, task, trainer)

    return task_config


@register_model(
    "mae3d_probe",
    kind="sklearn",
    config=ProbeConfig,
    description="Frozen pretrained MAE embeddings (any backbone) -> ridge/logistic or MLP (CV)",
    task_kinds=("regression", "classification"),
    needs_volume=True,
    protocol=lambda params: f"{params.head}_probe",
)
def build_mae3d_probe(
    params: ProbeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> ProbeEstimator:
    """A linear or MLP probe on the frozen encoder of the pretrained model at `params.init`."""
    return ProbeEstimator(load_encoder(params.init), params, task)
