"""The `brainlm` and `brainlm_probe` models: BrainLM on every fMRI task kind.

`brainlm` (datasets are brainbench.data.timeseries.SubjectWindows):
- regression / classification: the encoder + an MLP head on the CLS (or mean) embedding,
  trained end to end on random windows (TorchEstimator, early stopping on val); `init` =
  a pretrained folder (protocol `finetune`), else random weights (`scratch`). A subject's
  prediction averages those of its run's non-overlapping windows.
- reconstruction / forecast / perturbation / clustering: the masked autoencoder itself,
  `reconstruct(x, hidden)`, `parcel_features` (the coupling of the parcels' token embeddings
  over a run) and `parcel_affinity` (attention between parcels); with `init` it is the
  pretrained model as is, else it is pretrained on the task's training split.

`brainlm_probe`: frozen pretrained embeddings (averaged over the run's windows) -> linear, MLP
or k-nearest-neighbours probe, chosen by cross-validation on the training split.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field
from torch import Tensor, nn
from torch.utils.data import Dataset

from brainbench.config import TrainerConfig
from brainbench.data.connectivity import connectivity_profiles
from brainbench.errors import DataError
from brainbench.models.base import load_weights, read_meta, save_weights
from brainbench.models.brainlm import BrainLM, BrainLMConfig, Embedder
from brainbench.models.brainlm_mae import (
    PretrainTrainerConfig,
    brainlm_predictor,
    load_pretrained,
    train_mae,
)
from brainbench.models.classical import binary_targets
from brainbench.models.probe import ProbeConfig, ProbeEstimator
from brainbench.models.sfcn import logit_loss, logit_probability
from brainbench.registry import register_model
from brainbench.spec import TaskSpec
from brainbench.training.fit import TorchEstimator, TorchModel
from brainbench.training.module import FinetuneConfig


class BrainLMTaskConfig(BrainLMConfig, FinetuneConfig):
    init: Path | None = Field(None, description="pretrained folder (finetune); None = scratch")
    pooling: Literal["cls", "mean"] = Field("cls", description="embedding fed to the head")
    hidden: int = Field(64, ge=1, description="hidden units of the MLP head")
    head_dropout: float = Field(0.1, ge=0, lt=1)
    mask_ratio: float = Field(0.75, gt=0, lt=1, description="reconstruction/forecast, scratch")


def windows(data: Any, i: int) -> Tensor:
    """(n, parcels, length): the non-overlapping windows of sample i's run (at least one)."""
    starts = range(0, data.lengths[i] - data.length + 1, data.length)
    return torch.stack([data.window(i, start) for start in starts])


def _architecture(params: BrainLMTaskConfig) -> BrainLMConfig:
    """The network part of the task config."""
    return BrainLMConfig(**params.model_dump(include=set(BrainLMConfig.model_fields)))


def _network(params: BrainLMTaskConfig, coords: Tensor) -> BrainLM:
    """A BrainLM from `init` (the checkpoint's architecture) or fresh from `params`."""
    if params.init is None:
        return BrainLM(_architecture(params), coords)
    net, _ = load_pretrained(params.init)
    if net.n_parcels != len(coords):
        raise DataError(
            f"checkpoint {params.init} was pretrained on {net.n_parcels} parcels but the data has "
            f"{len(coords)}; pretrain on data parcellated with the same atlas."
        )
    return net


class HeadNet(nn.Module):
    def __init__(self, net: BrainLM, params: BrainLMTaskConfig) -> None:
        super().__init__()
        self.net, self.pooling = net, params.pooling
        width = net.cfg.width
        self.head = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, params.hidden),
            nn.GELU(),
            nn.Dropout(params.head_dropout),
            nn.Linear(params.hidden, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.net.encode(x, self.pooling))


def _setup(task: TaskSpec, train: Dataset) -> dict[str, Any]:
    y = np.asarray(train.targets, dtype=float)
    meta: dict[str, Any] = {"coords": np.asarray(train.coords).tolist(), "kind": task.kind}
    if task.kind == "regression":
        meta |= {"mean": float(y.mean()), "std": float(y.std()) or 1.0}
    else:
        binary_targets(y)
    return meta


def _build(params: BrainLMTaskConfig, meta: dict[str, Any], *, pretrained: bool) -> TorchModel:
    coords = torch.tensor(meta["coords"], dtype=torch.float32)
    if pretrained:
        net = _network(params, coords)
    else:  # the architecture of the checkpoint, without its weights (they are restored after)
        cfg = load_pretrained(params.init)[1].model if params.init else _architecture(params)
        net = BrainLM(cfg, coords)
    model = HeadNet(net, params)
    finetune = params.finetune("net.") if params.init else None
    if meta["kind"] == "classification":
        return TorchModel(model, logit_loss, logit_probability, finetune=finetune)
    mean, std = meta["mean"], meta["std"]

    def loss(out: Tensor, y: Tensor) -> Tensor:
        return ((out[:, 0] - (y.float() - mean) / std) ** 2).mean()

    return TorchModel(model, loss, lambda out: out[:, 0] * std + mean, finetune=finetune)


class BrainLMSupervised(TorchEstimator):
    """Fine-tuning (or training from scratch) on random windows; predictions average windows."""

    def __init__(self, params: BrainLMTaskConfig, task: TaskSpec, trainer: TrainerConfig) -> None:
        super().__init__(partial(_setup, task), partial(_build, params, pretrained=False), trainer)
        self.params = params

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        plain = self.build
        self.build = partial(_build, self.params, pretrained=True)
        train.random = True
        try:
            return super().fit(train, val, seed=seed, run_dir=run_dir)
        finally:
            self.build, train.random = plain, False

    def predict(self, data: Any) -> np.ndarray:
        model = self._fitted()
        net = model.net.cpu().eval()
        with torch.inference_mode():
            return np.array(
                [float(model.predict(net(windows(data, i))).mean()) for i in range(len(data))]
            )


SIGNAL_KINDS = ("reconstruction", "forecast", "perturbation", "clustering")


class BrainLMSignal:
    """The masked autoencoder as a reconstruction / forecast / networks / perturbation model."""

    def __init__(self, params: BrainLMTaskConfig, trainer: TrainerConfig) -> None:
        self.params, self.trainer = params, trainer
        self.net: BrainLM | None = None

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        torch.manual_seed(seed)
        self.net = _network(self.params, torch.from_numpy(train.coords))
        if self.params.init is not None:
            return {"init": str(self.params.init)}
        cfg = PretrainTrainerConfig(**self.trainer.model_dump())
        ratio = self.params.mask_ratio
        return train_mae(self.net, train, val, cfg, mask_ratio=ratio, seed=seed, run_dir=run_dir)

    def reconstruct(self, x: Tensor, hidden: Tensor) -> Tensor:
        net = self._fitted()
        patch = net.cfg.patch
        token_hidden = hidden[..., ::patch]
        if not torch.equal(token_hidden.repeat_interleave(patch, dim=-1), hidden):
            raise DataError(
                f"the hidden values are not whole patches of {patch} time points; set "
                f"task_options.patch={patch} (and a horizon that is a multiple of it)."
            )
        with torch.inference_mode():
            return torch.where(hidden, brainlm_predictor(net)(x, hidden), x)

    def parcel_features(self, data: Any) -> np.ndarray:
        """(subjects, parcels, parcels): Fisher-z coupling of the parcels' token embeddings over
        each run (as `connectome` correlates the signals), zero diagonal."""
        net = self._fitted()
        with torch.inference_mode():
            coupling = [net.parcel_coupling(windows(data, i)).numpy() for i in range(len(data))]
        return np.stack([connectivity_profiles(r) for r in coupling])

    def parcel_affinity(self, data: Any) -> np.ndarray:
        """(subjects, parcels, parcels): attention between parcels averaged over the windows."""
        return self._per_run(data, self._fitted().parcel_attention)

    def _per_run(self, data: Any, fn) -> np.ndarray:
        with torch.inference_mode():
            return np.stack([fn(windows(data, i)).mean(0).numpy() for i in range(len(data))])

    def _fitted(self) -> BrainLM:
        if self.net is None:
            raise RuntimeError("fit() or load() must be called first")
        return self.net

    def save(self, path: Path) -> None:
        net = self._fitted()
        state = {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        save_weights(path, state, {"model": "brainlm", "config": net.cfg.model_dump()})

    def load(self, path: Path) -> None:
        cfg = BrainLMConfig(**read_meta(path)["config"])
        state = {k: torch.from_numpy(v) for k, v in load_weights(path, "brainlm").items()}
        self.net = BrainLM(cfg, state["coords"])
        self.net.load_state_dict(state)


@register_model(
    "brainlm",
    kind="torch",
    config=BrainLMTaskConfig,
    description="BrainLM masked autoencoder over parcel x time; scratch, or finetune (init=PATH)",
    task_kinds=("regression", "classification", *SIGNAL_KINDS),
    defaults={"trainer": {"lr": 0.0005, "max_epochs": 20, "patience": 5, "batch_size": 8}},
    protocol=lambda params: "finetune" if params.init else "scratch",
    trains=lambda params, task: task.kind not in SIGNAL_KINDS or params.init is None,
)
def build_brainlm(params: BrainLMTaskConfig, *, task: TaskSpec, trainer: TrainerConfig) -> Any:
    if task.kind in SIGNAL_KINDS:
        return BrainLMSignal(params, trainer)
    return BrainLMSupervised(params, task, trainer)


class BrainLMProbeConfig(ProbeConfig):
    head: Literal["linear", "mlp", "knn"] = "linear"
    pooling: Literal["cls", "mean"] = "cls"
    neighbours: list[int] = Field([3, 5, 9, 15], min_length=1, description="knn: k grid (CV)")


class BrainLMProbe(ProbeEstimator):
    """ProbeEstimator on run-averaged BrainLM embeddings, plus a kNN head."""

    def __init__(self, params: BrainLMProbeConfig, task: TaskSpec) -> None:
        net, _ = load_pretrained(params.init)
        super().__init__(Embedder(net, params.pooling), params, task)

    def embed(self, data: Any) -> np.ndarray:
        with torch.inference_mode():
            rows = [self.encoder.encode(windows(data, i)).mean(0) for i in range(len(data))]
        return torch.stack(rows).double().numpy()

    def fit(self, train: Any, val: Any, *, seed: int, run_dir: Path) -> dict[str, Any]:
        if self.params.head != "knn":
            return super().fit(train, val, seed=seed, run_dir=run_dir)
        from sklearn.model_selection import GridSearchCV
        from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

        x, y = self.embed(train), np.asarray(train.targets, dtype=float)
        mean, scale = x.mean(0), np.where(x.std(0) > 1e-12, x.std(0), 1.0)
        cls = KNeighborsRegressor if self.kind == "regression" else KNeighborsClassifier
        ks = [k for k in self.params.neighbours if k < len(y) * 2 // 3] or [1]
        search = GridSearchCV(cls(), {"n_neighbors": ks}, cv=self.params.cv_folds)
        search.fit((x - mean) / scale, y if self.kind == "regression" else binary_targets(y))
        k = int(search.best_params_["n_neighbors"])
        arrays = {"mean": mean, "scale": scale, "train": (x - mean) / scale, "y": y, "k": [k]}
        self.arrays = {
            n: torch.from_numpy(np.asarray(v, dtype=np.float64)) for n, v in arrays.items()
        }
        return {"k": k, "embedding_dim": x.shape[1]}

    def predict(self, data: Any) -> np.ndarray:
        if self.params.head != "knn":
            return super().predict(data)
        a = {k: v.numpy() for k, v in self.arrays.items()}
        z = (self.embed(data) - a["mean"]) / a["scale"]
        distance = ((z[:, None] - a["train"][None]) ** 2).sum(-1)
        nearest = np.argsort(distance, axis=1, kind="stable")[:, : int(a["k"][0])]
        return a["y"][nearest].mean(axis=1)  # the mean label: P(y = 1) for classification


@register_model(
    "brainlm_probe",
    kind="sklearn",
    config=BrainLMProbeConfig,
    description="Frozen pretrained brainlm embeddings -> linear / MLP / kNN probe (CV on train)",
    task_kinds=("regression", "classification"),
    protocol=lambda params: f"{params.head}_probe",
)
def build_brainlm_probe(
    params: BrainLMProbeConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> BrainLMProbe:
    return BrainLMProbe(params, task)
