"""How much of the sex oracle a perfect volumetry could reach: cross-validated balanced accuracy
of sex from sets of the embedded cohort's latents (docs/synthetic_sex_differences.md).

The `mri/sex` oracle sees every latent but the individual draws (`*_z`); an image shows volumes
(`*_ml`, measured from the rendered partial volumes) and, less exactly, age. Each set is scored
with the oracle's logistic regression and gradient boosting on the whole cohort:

    python benchmarks/sex_ceiling.py --data ~/.cache/brainbench/synth/default-seed0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainbench.data.synth.generate import default_root


def feature_sets(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Named feature tables, from everything the oracle sees down to brain size and age."""
    latents = [c for c in table.columns if c not in ("age", "sex") and not c.endswith("_z")]
    volumes = [c for c in table.columns if c.endswith("_ml")]
    parts = [c for c in volumes if c not in ("brain_ml", "wmh_ml")]
    age = pd.DataFrame({"age": table["age"], "log_age": np.log(table["age"] + 1.5)})
    ratios = np.log(table[parts].div(table["brain_ml"], axis=0)).add_suffix("_ratio")
    return {
        "the oracle's latents and age": table[latents].join(age),
        "measured volumes and true age": table[volumes].join(age),
        "log volume / brain volume, brain volume, true age": ratios.join(
            np.log(table[["brain_ml"]])
        ).join(age),
        "measured volumes only": table[volumes],
        "brain and intracranial volume, true age": table[["brain_ml", "icv_ml"]].join(age),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="cohort root (default: the default cohort)")
    args = parser.parse_args()
    root = args.data or default_root("default", 0)
    latents = pd.read_csv(root / "derivatives" / "latents.tsv", sep="\t", index_col=0)
    people = pd.read_csv(root / "participants.tsv", sep="\t", index_col=0)
    table = latents.join(people[["age", "sex"]])
    y = (table.pop("sex") == "M").to_numpy(int)
    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    models = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)),
        "gradient boosting": HistGradientBoostingClassifier(
            max_iter=300, learning_rate=0.05, min_samples_leaf=12, random_state=0
        ),
    }
    print(f"{len(y)} subjects of {root}; 5-fold balanced accuracy of sex")
    print(f"| features | {' | '.join(models)} |\n|---|---|---|")
    for name, x in feature_sets(table).items():
        scores = [
            cross_val_score(m, x.to_numpy(float), y, cv=folds, scoring="balanced_accuracy").mean()
            for m in models.values()
        ]
        print(f"| {name} | {' | '.join(f'{s:.3f}' for s in scores)} |")


if __name__ == "__main__":
    main()
