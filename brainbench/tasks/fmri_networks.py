"""Run fmri/networks: zero-shot functional networks from a model's parcel representations.

A model here exposes `parcel_features(data) -> (subjects, parcels, features)` and optionally
`parcel_affinity(data) -> (subjects, parcels, parcels)` for held-out subjects' runs: brainlm's
coupling of the parcels' token embeddings over the run (rows of the Fisher-z matrix) and its
last encoder block's attention between parcels; `connectome`'s rows of the Fisher-z
correlation matrix (each parcel's connectivity profile, the classic approach); `chance`'s
random features. Features are
averaged over the test subjects, standardised per feature, and clustered into k = the number of
atlas networks (those not in `exclude_networks`) by k-means and by Ward agglomeration; the
affinity, symmetrised, by spectral clustering. Scores are scikit-learn's adjusted Rand index
and normalised mutual information against the atlas's network labels (atlas.tsv `network`),
overall and per lifespan stage (clustering that stage's subjects only).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import Field
from sklearn.cluster import AgglomerativeClustering, KMeans, SpectralClustering
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score
from sklearn.preprocessing import StandardScaler

from brainbench.config import ExperimentConfig, validate_section
from brainbench.data.sources.base import open_source
from brainbench.data.timeseries import SubjectWindows, atlas_networks, read_atlas_table
from brainbench.errors import DataError
from brainbench.stages import STAGE_NAMES
from brainbench.tasks.fmri_signal import series_splits
from brainbench.tasks.fmri_supervised import FmriOptions
from brainbench.tasks.runs import Evaluation, Experiment, run_seeds

CLUSTER_SEED = 0  # k-means and spectral initialisation: the same for every model


class NetworkOptions(FmriOptions):
    exclude_networks: list[str] = Field(
        ["unassigned"], description="atlas network labels left out of clustering and scoring"
    )


def options(config: ExperimentConfig) -> NetworkOptions:
    return validate_section(
        NetworkOptions,
        config.task_options,
        [("task_options", config.task_options)],
        "task_options.",
    )


def prepare(config: ExperimentConfig, log) -> dict[str, SubjectWindows]:
    atlas_networks(open_source(config.data).series_folder())  # fail early without network labels
    return series_splits(config, options(config), log)


def cluster_scores(truth: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """ARI and NMI (scikit-learn) of predicted cluster labels against the true networks."""
    return {
        "ari": float(adjusted_rand_score(truth, labels)),
        "nmi": float(normalized_mutual_info_score(truth, labels)),
    }


def cluster(
    truth: np.ndarray, features: np.ndarray, affinity: np.ndarray | None
) -> tuple[dict[str, float], dict[str, np.ndarray]]:
    """(scores, cluster labels per method) of one set of parcel features / affinity."""
    k = len(np.unique(truth))
    x = StandardScaler().fit_transform(features)
    labels = {
        "kmeans": KMeans(k, n_init=10, random_state=CLUSTER_SEED).fit_predict(x),
        "ward": AgglomerativeClustering(k).fit_predict(x),
    }
    if affinity is not None:
        a = np.clip((affinity + affinity.T) / 2, 0, None)
        spectral = SpectralClustering(k, affinity="precomputed", random_state=CLUSTER_SEED)
        labels["attention"] = spectral.fit_predict(a)
    scores = {}
    for method, found in labels.items():
        suffix = "" if method == "kmeans" else f"_{method}"
        scores |= {f"{m}{suffix}": v for m, v in cluster_scores(truth, found).items()}
    return scores, labels


def evaluate(
    opts: NetworkOptions, atlas: pd.DataFrame, estimator, test: SubjectWindows
) -> Evaluation:
    """Cluster the test subjects' parcel representations, all together and per stage."""
    keep = ~atlas["network"].astype(str).isin(opts.exclude_networks).to_numpy()
    truth = atlas["network"].astype(str).to_numpy()[keep]
    if len(np.unique(truth)) < 2:
        raise DataError(
            "fewer than 2 atlas networks are left to cluster; check atlas.tsv's network column "
            "and task_options.exclude_networks."
        )
    features = np.asarray(estimator.parcel_features(test))[:, keep]
    affinity = None
    if hasattr(estimator, "parcel_affinity"):
        affinity = np.asarray(estimator.parcel_affinity(test))[:, keep][:, :, keep]

    def scored(rows: np.ndarray) -> tuple[dict[str, float], dict[str, np.ndarray]]:
        mean_affinity = None if affinity is None else affinity[rows].mean(0)
        return cluster(truth, features[rows].mean(0), mean_affinity)

    everyone = np.arange(len(test))
    metrics, labels = scored(everyone)
    stages = np.array(test.stages)
    per_stage = {
        stage: {**scored(everyone[stages == stage])[0], "n": int((stages == stage).sum())}
        for stage in STAGE_NAMES
        if (stages == stage).any()
    }
    predictions = atlas.loc[keep, ["index", "network"]].reset_index(drop=True)
    for method, found in labels.items():
        predictions[f"cluster_{method}"] = found
    return Evaluation(metrics, per_stage, predictions)


def run_experiment(
    experiment: Experiment, datasets: dict[str, SubjectWindows], *, force: bool, log
) -> list[Path]:
    """Fit (brainlm: pretrain unless model.init) and cluster once per seed; one record each."""
    config = experiment.config
    atlas = read_atlas_table(open_source(config.data).series_folder())
    atlas["network"] = atlas_networks(open_source(config.data).series_folder())
    evaluate_fn = partial(evaluate, options(config), atlas)
    return run_seeds(experiment, datasets, evaluate_fn, force=force, log=log)
