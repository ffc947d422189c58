"""Run fmri/perturb: in-silico perturbation of one network, scored against the true coupling.

Protocol, for each held-out subject's window (scaled, [parcels, time]) and each ordered pair of
atlas networks (source a, target b): every parcel of b is hidden over the whole window and the
model reconstructs it from the visible parcels (`reconstruct(x, hidden)`, as in fmri/recon),
once as is and once with a's parcels perturbed: clamped to 0 (the run's mean after scaling) or
multiplied by `factor`. The predicted effect of a on b is the least-squares slope of the change
in b's predicted mean signal on the change imposed on a's mean signal, pooled over time points
and subjects: sum(d_b * d_a) / sum(d_a ** 2).

True effect. The generator (data/synth/functional.py) mixes independent, identically
autocorrelated latent processes instantaneously (n = M s): it has no lagged network-to-network
coupling, so a network's future given its own past does not depend on the others, and the
only true effect is instantaneous. With S a subject's true network correlation (latents.tsv
`fc_<a>_<b>`), parcel i of network k is x_i = l_i n_k + sqrt(1 - l_i^2) e_i + w_i: l_i the
subject's loading times the parcel's weight in ground_truth.json, e the parcels' non-network
parts, correlated by R = (1 - share) I + share exp(-distance / length) (ground_truth.json's
spatial_share and spatial_length_mm), w white noise of std `noise`. The cross-spectra of the
latent series are proportional to their covariance C = L S L' + E R E + noise^2 I
(E = diag sqrt(1 - l^2)), so the best prediction of b's hidden parcels from every visible
parcel, at all time points, is C_hv C_vv^-1 x_v at each. The true effect of a on b is the slope
that ideal predictor gives (`true_effects`): the partial regression coefficient S_bo S_oo^-1
of a when parcels measure their networks exactly, shrunk towards the plain correlation as they
get noisier. Motion, physiological noise and drift are left out. It is averaged over the
subjects scored; the score is the Pearson (headline) and Spearman correlation between
predicted and true effects across all ordered pairs, overall and per lifespan stage. Only the
synthetic cohort has a known truth.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, model_validator

from brainbench.config import ExperimentConfig, validate_section
from brainbench.data.sources.base import Source, open_source
from brainbench.data.timeseries import SubjectWindows, atlas_networks
from brainbench.errors import DataError
from brainbench.metrics import regression_metrics
from brainbench.stages import STAGE_NAMES
from brainbench.tasks.fmri_signal import series_splits
from brainbench.tasks.fmri_supervised import FmriOptions
from brainbench.tasks.runs import Evaluation, Experiment, run_seeds


class PerturbOptions(FmriOptions):
    perturbation: Literal["clamp", "scale"] = Field(
        "clamp", description="clamp the source network to 0, or multiply it by `factor`"
    )
    factor: float = Field(2.0, description="scale: the multiplier of the source network")

    @model_validator(mode="after")
    def _check(self) -> PerturbOptions:
        if self.perturbation == "scale" and self.factor == 1:
            raise ValueError("factor=1 does not perturb anything; pick another factor")
        return self


def options(config: ExperimentConfig) -> PerturbOptions:
    return validate_section(
        PerturbOptions,
        config.task_options,
        [("task_options", config.task_options)],
        "task_options.",
    )


def _latents(source: Source, keys: list[str], columns: list[str]) -> pd.DataFrame:
    """`columns` of the source's fMRI latents for `keys`; DataError where the truth is unknown."""
    table = source.latents("fmri")
    table = pd.DataFrame() if table is None else table
    missing = [c for c in columns if c not in table.columns]
    missing += [k for k in keys if k not in table.index]
    if missing or source.series_truth() is None:
        raise DataError(
            "fmri/perturb scores against the generator's true network coupling, which dataset "
            f"'{source.config.dataset}' does not give for every network and subject (e.g. "
            f"{(missing or ['the parcel weights'])[0]}); only the synthetic cohort (--dataset "
            "synth) has it."
        )
    return table.loc[keys, columns]


def true_correlations(source: Source, keys: list[str], networks: list[str]) -> np.ndarray:
    """(subjects, networks, networks) true network correlations (latents `fc_<a>_<b>`)."""
    columns = [f"fc_{a}_{b}" for i, a in enumerate(networks) for b in networks[i + 1 :]]
    values = _latents(source, keys, columns).to_numpy(dtype=float)
    k = len(networks)
    rows, cols = np.triu_indices(k, 1)
    out = np.repeat(np.eye(k)[None], len(keys), axis=0)
    out[:, rows, cols] = out[:, cols, rows] = values
    return out


def true_effects(
    correlation: np.ndarray,
    loadings: np.ndarray,
    noise: float,
    member: np.ndarray,
    private: np.ndarray | None = None,
) -> np.ndarray:
    """(targets, sources) expected effect slopes of an ideal linear predictor; NaN diagonal.

    Parcel i of network k is x_i = l_i n_k + sqrt(1 - l_i^2) e_i + w_i with corr(e) = `private`
    (default I) and var(w_i) = noise^2, so the parcels' covariance is C = L S L' + E private E
    + noise^2 I, E = diag sqrt(1 - l^2). Hiding target b, the ideal prediction of b's parcels is
    C_hv C_vv^-1 x_v; perturbing source a's parcels by d (proportional to x_a) changes b's mean
    by c' d, c the coefficients of a's parcels averaged over b's, so the expected slope on a's
    mean change is |a| c' C_aa 1 / (1' C_aa 1).
    """
    k = int(member.max()) + 1
    lam = np.zeros((len(member), k))
    lam[np.arange(len(member)), member] = loadings
    spread = np.sqrt(1 - loadings**2)
    private = np.eye(len(member)) if private is None else private
    cov = (
        lam @ correlation @ lam.T
        + spread[:, None] * private * spread
        + noise**2 * np.eye(len(member))
    )
    effects = np.full((k, k), np.nan)
    for b in range(k):
        hidden, visible = member == b, member != b
        coef = np.linalg.solve(cov[np.ix_(visible, visible)], cov[np.ix_(visible, hidden)])
        mean_coef = coef.mean(axis=1)  # per visible parcel
        for a in range(k):
            if a == b:
                continue
            source = member[visible] == a
            c_aa = cov[np.ix_(member == a, member == a)]
            ones = np.ones(int(source.sum()))
            effects[b, a] = len(ones) * (mean_coef[source] @ c_aa @ ones) / (ones @ c_aa @ ones)
    return effects


def subject_effects(source: Source, keys: list[str], networks: list[str], member: np.ndarray):
    """(subjects, targets, sources) true_effects of every subject in `keys`."""
    correlations = true_correlations(source, keys, networks)
    latents = _latents(source, keys, ["loading", "noise"]).to_numpy(dtype=float)
    truth = source.series_truth()
    weights, private = truth["parcel_weight"], truth["private"]
    if len(weights) != len(member):
        raise DataError(
            f"the generator's truth of dataset '{source.config.dataset}' does not describe the "
            f"atlas's {len(member)} parcels."
        )
    return np.stack(
        [
            true_effects(s, loading * weights, noise, member, private)
            for s, (loading, noise) in zip(correlations, latents, strict=True)
        ]
    )


def perturbation_sums(
    reconstruct, x: torch.Tensor, member: np.ndarray, opts: PerturbOptions
) -> tuple[np.ndarray, np.ndarray]:
    """(sum d_b d_a, sum d_a^2) per (target b, source a) for one window x (parcels, time)."""
    k = int(member.max()) + 1
    products, squares = np.zeros((k, k)), np.zeros((k, k))
    for b in range(k):
        sources = [a for a in range(k) if a != b]
        batch = x[None].repeat(len(sources) + 1, 1, 1)
        for j, a in enumerate(sources, start=1):
            parcels = torch.from_numpy(member == a)
            batch[j, parcels] = (
                0.0 if opts.perturbation == "clamp" else batch[j, parcels] * opts.factor
            )
        hidden = torch.zeros_like(batch, dtype=torch.bool)
        hidden[:, torch.from_numpy(member == b)] = True
        with torch.inference_mode():
            pred = reconstruct(batch, hidden)
        response = (pred[1:, member == b] - pred[:1, member == b]).mean(1).double().numpy()
        for j, a in enumerate(sources):
            imposed = (batch[j + 1, member == a] - x[member == a]).mean(0).double().numpy()
            products[b, a] = float(response[j] @ imposed)
            squares[b, a] = float(imposed @ imposed)
    return products, squares


def atlas_members(folder: Path) -> tuple[list[str], np.ndarray]:
    """(sorted network names, each parcel's index into them) from `folder`/atlas.tsv."""
    labels = atlas_networks(folder)
    networks = sorted(set(labels))
    return networks, np.array([networks.index(n) for n in labels])


def prepare(config: ExperimentConfig, log) -> dict[str, SubjectWindows]:
    datasets = series_splits(config, options(config), log)
    source = open_source(config.data)
    networks = atlas_members(source.series_folder())[0]
    true_correlations(source, datasets["test"].keys, networks)  # fail early
    return datasets


def evaluate(opts: PerturbOptions, source: Source, estimator, test: SubjectWindows) -> Evaluation:
    """Predicted vs true effects overall and per stage; one prediction row per network pair."""
    networks, member = atlas_members(source.series_folder())
    truth = subject_effects(source, test.keys, networks, member)
    sums = [
        perturbation_sums(estimator.reconstruct, test[i][0], member, opts) for i in range(len(test))
    ]
    products = np.stack([s[0] for s in sums])
    squares = np.stack([s[1] for s in sums])
    pairs = ~np.eye(len(networks), dtype=bool)

    def effects(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        denominator = squares[rows].sum(0)
        predicted = products[rows].sum(0) / np.where(denominator > 0, denominator, np.nan)
        return predicted, truth[rows].mean(0)

    def scores(rows: np.ndarray) -> dict[str, float]:
        predicted, true = effects(rows)
        values = regression_metrics(true[pairs], np.nan_to_num(predicted[pairs]))
        return {k: values[k] for k in ("pearson_r", "spearman_r")}

    everyone = np.arange(len(test))
    stages = np.array(test.stages)
    per_stage = {
        stage: {**scores(everyone[stages == stage]), "n": int((stages == stage).sum())}
        for stage in STAGE_NAMES
        if (stages == stage).any()
    }
    predicted, true = effects(everyone)
    b, a = np.nonzero(pairs)
    predictions = pd.DataFrame(
        {
            "source": np.array(networks)[a],
            "target": np.array(networks)[b],
            "predicted_effect": predicted[b, a],
            "true_effect": true[b, a],
        }
    )
    return Evaluation(scores(everyone), per_stage, predictions)


def run_experiment(
    experiment: Experiment, datasets: dict[str, SubjectWindows], *, force: bool, log
) -> list[Path]:
    """Fit (brainlm: pretrain unless model.init) and perturb once per seed; one record each."""
    config = experiment.config
    evaluate_fn = partial(evaluate, options(config), open_source(config.data))
    return run_seeds(experiment, datasets, evaluate_fn, force=force, log=log)
