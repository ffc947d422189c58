"""Sex differences, development and ageing of the synthetic cohort's measured volumes on a large
sample, beside the published values (the calibration behind docs/synthetic_sex_differences.md and
docs/synthetic_development.md).

Renders N subjects aged 1-90 (half uniform, half log-uniform in age) at one site and grid 64,
without writing images, and prints brainbench.data.synth.structural_stats's three tables:

    python benchmarks/synth_anatomy.py --subjects 800
"""

from __future__ import annotations

import argparse
from multiprocessing import Pool

import numpy as np
import pandas as pd

from brainbench.data.synth import generate as gen
from brainbench.data.synth import render
from brainbench.data.synth.anatomy import load_template
from brainbench.data.synth.structural_stats import (
    ageing_statistics,
    development_statistics,
    format_table,
    sex_statistics,
)

_TEMPLATE = None


def measure(index: int) -> dict:
    global _TEMPLATE
    _TEMPLATE = _TEMPLATE or load_template()
    rng = gen.stream(7, "age", index)
    log_uniform = index % 2 == 1
    age = float(np.exp(rng.uniform(0.4, np.log(90.0)))) if log_uniform else rng.uniform(1, 90)
    sex = "FM"[(index // 2) % 2]
    latents = render.sample_latents(age, sex, False, False, gen.stream(7, "latents", index))
    site = gen.SITE_BY_NAME["camcan"]
    scan = render.render(_TEMPLATE, site, 64, age, latents, gen.stream(7, "image", index))
    return {"age": age, "sex": sex, **scan.measured}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=800)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with Pool(args.workers) as pool:
        rows = pool.map(measure, range(args.subjects), chunksize=16)
    print(f"{args.subjects} subjects rendered at grid 64:")
    table = pd.DataFrame(rows)
    print(format_table(sex_statistics(table)))
    print(format_table(development_statistics(table)))
    print(format_table(ageing_statistics(table)))


if __name__ == "__main__":
    main()
