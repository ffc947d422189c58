"""Oracle ceiling: the best a model could do from the generator's true latent variables.

Only generated data (the embedded cohort) has latents. Three flexible candidates (gradient
boosting, k-nearest neighbours, a linear model on standardised latents) are compared by 5-fold
cross-validation on the training split only; the best is refitted on it and scored on the test
split with the task's metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.linear_model import LogisticRegression, RidgeCV
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainbench.tasks import TaskSpec
from brainbench.tasks.scoring import headline, score


def _candidates(kind: str, n_train: int) -> dict[str, object]:
    leaf = max(2, min(20, n_train // 15))
    k = max(1, min(7, n_train // 10))
    if kind == "regression":
        return {
            "gradient boosting": HistGradientBoostingRegressor(
                random_state=0, max_iter=300, learning_rate=0.05, min_samples_leaf=leaf
            ),
            "k-nearest neighbours": make_pipeline(StandardScaler(), KNeighborsRegressor(k)),
            "ridge": make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-3, 3, 13))),
        }
    return {
        "gradient boosting": HistGradientBoostingClassifier(
            random_state=0, max_iter=300, learning_rate=0.05, min_samples_leaf=leaf
        ),
        "k-nearest neighbours": make_pipeline(StandardScaler(), KNeighborsClassifier(k)),
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    }


def oracle_payload(
    spec: TaskSpec,
    latents: pd.DataFrame,
    train: tuple[list[str], np.ndarray],
    test: tuple[list[str], np.ndarray, np.ndarray],
) -> dict:
    """Fit on (train keys, targets), score on (test keys, targets, ages); a leaderboard oracle row.

    `latents` is indexed by record key; the target's own column is never a feature, nor are the
    individual deviations (`*_z`): an image shows a size or a thickness, not how much of it is
    the person's own draw rather than their age's or sex's (with them, sex is brain size
    divided by the individual factor).
    """
    dropped = [c for c in latents.columns if c == spec.target or c.endswith("_z")]
    features = latents.drop(columns=dropped)
    features = features.select_dtypes("number")
    train_keys, y_train = train
    test_keys, y_test, ages = test
    x_train = features.loc[train_keys].to_numpy()
    x_test = features.loc[test_keys].to_numpy()
    scoring = "neg_mean_absolute_error" if spec.kind == "regression" else "balanced_accuracy"
    folds = min(5, len(train_keys) // 2)
    candidates = _candidates(spec.kind, len(train_keys))
    cv = {
        name: cross_val_score(model, x_train, y_train, cv=folds, scoring=scoring).mean()
        for name, model in candidates.items()
    }
    best = max(cv, key=cv.get)
    model = candidates[best].fit(x_train, y_train)
    if spec.kind == "regression":
        y_pred = model.predict(x_test)
    else:
        y_pred = model.predict_proba(x_test)[:, 1]
    metrics, per_stage = score(spec, y_test, y_pred, ages)
    return {
        "task": spec.name,
        "headline": headline(spec, metrics),
        "metrics": metrics,
        "per_stage": per_stage,
        "description": (
            f"{best} (chosen by cross-validation on the training split) on the generator's "
            f"true latents ({', '.join(features.columns)})"
        ),
    }
