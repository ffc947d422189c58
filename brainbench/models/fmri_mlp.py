"""FmriMlp: a residual MLP from a window of BOLD volumes to an image embedding (CLIP-trained).

Input: {"bold": (batch, n_trs, features), "subject": (batch,)}, the volumes of a stimulus'
response window in a feature space (fsaverage5 vertices, parcels or mask voxels) and the index of
the subject who saw it. Time is aggregated by a learned linear combination of the TRs
(initialised to their mean; signed, so it can subtract the tail of the previous trial's
response), `before` the MLP (one pattern in) or `after` it (the MLP embeds each TR). The input
layer is shared by all subjects plus, with `subject_layer`, a linear layer of each subject's own
(zero-initialised, so every subject starts from the shared decoder and weight decay pulls it
back there): the multi-subject design of MindEye-style decoders, since each subject's cortical
maps differ. Then `blocks` residual blocks (norm -> GELU -> dropout -> linear) and an MLP head
give the embedding; training uses the CLIP loss against the frozen image embeddings.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field
from torch import Tensor, nn

from brainbench.config import StrictModel, TrainerConfig
from brainbench.errors import ConfigError, DataError
from brainbench.registry import register_model
from brainbench.spec import TaskSpec
from brainbench.training.clip_loss import ClipLoss
from brainbench.training.fit import TorchEstimator, TorchModel


class FmriMlpConfig(StrictModel):
    hidden: int = Field(256, ge=8, description="width of the residual MLP")
    blocks: int = Field(0, ge=0, description="residual blocks (0: one hidden layer)")
    norm: Literal["layer", "batch"] = "layer"
    dropout: float = Field(0.5, ge=0, lt=1, description="in the residual blocks")
    input_dropout: float = Field(0.9, ge=0, lt=1, description="on the time-aggregated input")
    subject_layer: bool = Field(True, description="a linear input layer per subject")
    n_trs: int | None = Field(None, ge=1, description="volumes per sample; null = from the data")
    time_aggregation: Literal["before", "after"] = "before"
    clip_normalize: Literal["x", "y", "both", "none"] = "both"
    temperature: float = Field(0.2, gt=0)
    learn_temperature: bool = False
    symmetric: bool = True


class ResidualBlock(nn.Module):
    def __init__(self, width: int, norm: str, dropout: float) -> None:
        super().__init__()
        layer = nn.LayerNorm(width) if norm == "layer" else nn.BatchNorm1d(width)
        self.body = nn.Sequential(layer, nn.GELU(), nn.Dropout(dropout), nn.Linear(width, width))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SubjectLinear(nn.Module):
    """One zero-initialised linear layer (features -> width) per subject, chosen per sample.

    A subject of the dataset with no training sample keeps a zero layer (the shared decoder).
    """

    def __init__(self, subjects: list[str], n_features: int, width: int) -> None:
        super().__init__()
        self.subjects = subjects
        self.weight = nn.Parameter(torch.zeros(len(subjects), n_features, width))
        self.bias = nn.Parameter(torch.zeros(len(subjects), width))

    def forward(self, x: Tensor, subject: Tensor) -> Tensor:
        if subject.numel() and not 0 <= int(subject.min()) <= int(subject.max()) < len(
            self.subjects
        ):
            raise DataError(
                f"a batch holds subject index {int(subject.max())} (or {int(subject.min())}) but "
                f"the model was built for {len(self.subjects)} subjects ({', '.join(self.subjects)}"
                "); decode subjects of the dataset it was trained on."
            )
        out = x.new_zeros(len(x), self.bias.shape[1])
        for s in subject.unique().tolist():
            rows = subject == s
            out[rows] = x[rows] @ self.weight[s] + self.bias[s]
        return out


class FmriMlp(nn.Module):
    def __init__(
        self, params: FmriMlpConfig, n_trs: int, n_features: int, dim: int, subjects: list[str]
    ) -> None:
        super().__init__()
        self.after = params.time_aggregation == "after"
        self.time_weights = nn.Parameter(torch.full((n_trs,), 1.0 / n_trs))
        h = params.hidden
        self.input_dropout = nn.Dropout(params.input_dropout)
        self.stem = nn.Linear(n_features, h)
        self.subject = SubjectLinear(subjects, n_features, h) if params.subject_layer else None
        self.blocks = nn.Sequential(
            *[ResidualBlock(h, params.norm, params.dropout) for _ in range(params.blocks)]
        )
        self.head = nn.Sequential(nn.LayerNorm(h), nn.GELU(), nn.Linear(h, dim))

    def _pool(self, x: Tensor) -> Tensor:  # (B, T, ...) -> (B, ...)
        return torch.einsum("t,bt...->b...", self.time_weights, x)

    def _embed(self, x: Tensor, subject: Tensor) -> Tensor:  # (N, features) -> (N, dim)
        x = self.input_dropout(x)
        hidden = self.stem(x)
        if self.subject is not None:
            hidden = hidden + self.subject(x, subject)
        return self.head(self.blocks(hidden))

    def forward(self, x: dict[str, Tensor]) -> Tensor:
        bold, subject = x["bold"], x["subject"]
        if not self.after:
            return self._embed(self._pool(bold), subject)
        b, t, f = bold.shape
        per_tr = self._embed(bold.reshape(b * t, f), subject.repeat_interleave(t))
        return self._pool(per_tr.reshape(b, t, -1))


def _setup(params: FmriMlpConfig, train) -> dict[str, Any]:
    x, y = train[0]
    n_trs, n_features = int(x["bold"].shape[0]), int(x["bold"].shape[1])
    if params.n_trs is not None and params.n_trs != n_trs:
        raise ConfigError(
            f"model.n_trs={params.n_trs} but the samples hold {n_trs} volumes; set "
            f"model.n_trs={n_trs} or change task_options.window."
        )
    return {
        "n_trs": n_trs,
        "n_features": n_features,
        "dim": int(y.shape[0]),
        "subjects": list(train.subjects),
        "params": params.model_dump(),
    }


def _build(meta: dict[str, Any]) -> TorchModel:
    params = FmriMlpConfig.model_validate(meta["params"])
    net = FmriMlp(params, meta["n_trs"], meta["n_features"], meta["dim"], meta["subjects"])
    loss = ClipLoss(
        normalize=params.clip_normalize,
        temperature=params.temperature,
        learn_temperature=params.learn_temperature,
        symmetric=params.symmetric,
    )
    return TorchModel(net=net, loss=loss, predict=lambda out: out)


@register_model(
    "fmri_mlp",
    kind="torch",
    config=FmriMlpConfig,
    description="Residual MLP from a window of BOLD volumes to an image embedding (CLIP loss)",
    task_kinds=("retrieval",),
)
def build_fmri_mlp(
    params: FmriMlpConfig, *, task: TaskSpec, trainer: TrainerConfig
) -> TorchEstimator:
    """FmriMlp trained with Lightning and the CLIP loss."""
    return TorchEstimator(lambda train: _setup(params, train), _build, trainer)
