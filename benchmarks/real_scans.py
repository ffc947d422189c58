"""Brain age of a trained run on scans like users have, which its training never saw.

Renders adults (25-75 years) at a scanner that is in no training site (1.2 mm voxels, strong
bias field, other gamma and noise) and writes each with skull, skull-stripped by its brain mask
and in MNI space, plus a partial field of view and a T2w given as T1w; adds nilearn's MNI152
2009 T1w (a real average of adult brains, skull-stripped). Runs `brainbench predict` on them
and prints the predicted ages and out-of-distribution flags per kind of input:

    python benchmarks/real_scans.py results/runs/mri-age/sfcn/<protocol>/seed33
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainbench.data.synth import generate as gen
from brainbench.data.synth import render
from brainbench.data.synth.anatomy import load_template
from brainbench.data.synth.sites import Site
from brainbench.predict import predict_files

UNSEEN = Site(
    "unseen-scanner", (18.0, 90.0), (230, 256, 230), "LIA", 3.0, 0.05, 0.3, (1.2, 0.85, 1.0),
    4000.0, "no training site: larger FOV, sagittal LIA storage, strong bias, other gamma",
)  # fmt: skip


def write_inputs(folder: Path, n: int) -> dict[Path, str]:
    """Input file -> kind, for n adults rendered at the unseen scanner, and the MNI template."""
    template = load_template()
    kinds: dict[Path, str] = {}
    for index in range(n):
        rng = gen.stream(99, "age", index)
        age, sex = float(rng.uniform(25, 75)), "FM"[index % 2]
        latents = render.sample_latents(age, sex, False, False, gen.stream(99, "anat", index))
        scan = render.render(template, UNSEEN, 192, age, latents, gen.stream(99, "img", index))
        mni = render.render(template, UNSEEN, 96, age, latents, gen.stream(99, "mni", index), "mni")
        t1 = scan.images["T1w"]
        files = {
            "with skull": (t1, scan.affine),
            "skull-stripped": (t1 * scan.brain_mask, scan.affine),
            "MNI, skull-stripped": (mni.images["T1w"] * mni.brain_mask, mni.affine),
            "T2w given as T1w": (scan.images["T2w"], scan.affine),
        }
        canonical = nib.as_closest_canonical(nib.Nifti1Image(t1, scan.affine))
        keep = int(canonical.shape[2] * 0.6)
        files["partial FOV (top cut)"] = (canonical.get_fdata()[..., :keep], canonical.affine)
        for kind, (data, affine) in files.items():
            path = folder / f"age{age:.1f}_{kind.split()[0].strip(',')}_{index}.nii.gz"
            nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
            kinds[path] = kind
    mni152 = Path(nib.__file__).parents[1] / "nilearn" / "datasets" / "data"
    kinds[mni152 / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"] = "nilearn MNI152 T1w"
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained mri/age run record")
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kinds = write_inputs(Path(tmp), args.subjects)
        table = predict_files(args.run, list(kinds), Path(tmp) / "out", log=lambda _: None)
    table["kind"] = [kinds[Path(f)] for f in table.file]
    table["true_age"] = [
        float(Path(f).name[3:].split("_")[0]) if Path(f).name.startswith("age") else np.nan
        for f in table.file
    ]
    flagged = table.get("ood", pd.Series("n/a", index=table.index)) == "yes"
    summary = (
        table.assign(flagged=flagged)
        .groupby("kind", sort=False)
        .agg(
            predicted_median=("prediction", "median"),
            predicted_min=("prediction", "min"),
            true_median=("true_age", "median"),
            flagged=("flagged", "mean"),
        )
    )
    print(summary.round(1).to_string())


if __name__ == "__main__":
    main()
