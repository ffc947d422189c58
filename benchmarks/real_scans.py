"""A trained run (brain age or segmentation) on scans like users have, which its training never saw.

Renders adults (25-75 years) at a scanner that is in no training site (1.2 mm voxels, strong
bias field, other gamma and noise) and writes each with skull, skull-stripped by its brain mask
and in MNI space, plus a partial field of view and a T2w given as T1w; adds nilearn's MNI152
2009 T1w (a real average of adult brains, skull-stripped). Runs `brainbench predict` on them
and prints, per kind of input, the out-of-distribution flags and either the predicted ages
(mri/age) or the Dice of the predicted label maps against the rendered ones on the scan's own
1.2 mm grid (mri/seg), beside the true labels taken to the run's grid and back (`round_trip`).

    python benchmarks/real_scans.py results/runs/mri-age/sfcn/<protocol>/seed33
    python benchmarks/real_scans.py results/runs/mri-seg/unet/<protocol>/seed33
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from brainbench.config import ExperimentConfig, load_yaml
from brainbench.data.preprocess import grid_affine, preprocess_volume
from brainbench.data.synth import generate as gen
from brainbench.data.synth import render
from brainbench.data.synth.anatomy import load_template
from brainbench.data.synth.sites import Site
from brainbench.metrics import segmentation_metrics
from brainbench.predict import predict_files, to_input_space
from brainbench.spec import RECORD_CONFIG

UNSEEN = Site(
    "unseen-scanner", (18.0, 90.0), (230, 256, 230), "LIA", 3.0, 0.05, 0.3, (1.2, 0.85, 1.0),
    4000.0, "no training site: larger FOV, sagittal LIA storage, strong bias, other gamma",
)  # fmt: skip


def write_inputs(folder: Path, n: int) -> tuple[dict[Path, str], dict[Path, nib.Nifti1Image]]:
    """Input file -> kind, for n adults rendered at the unseen scanner, and the MNI template;
    input file -> its true label map where it has one."""
    template = load_template()
    kinds: dict[Path, str] = {}
    truth: dict[Path, nib.Nifti1Image] = {}
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
        labels = {"with skull": scan, "skull-stripped": scan, "MNI, skull-stripped": mni}
        for kind, (data, affine) in files.items():
            path = folder / f"age{age:.1f}_{kind.split()[0].strip(',')}_{index}.nii.gz"
            nib.save(nib.Nifti1Image(np.asarray(data, np.float32), affine), path)
            kinds[path] = kind
            if kind in labels:
                truth[path] = nib.Nifti1Image(labels[kind].labels, labels[kind].label_affine)
    mni152 = Path(nib.__file__).parents[1] / "nilearn" / "datasets" / "data"
    kinds[mni152 / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"] = "nilearn MNI152 T1w"
    return kinds, truth


def dice_rows(run: Path, table: pd.DataFrame, truth: dict[Path, nib.Nifti1Image]) -> pd.DataFrame:
    """Per input with a true label map: mean Dice of the prediction and of the true labels taken
    to the run's grid and back (a reference, not a bound: between two offset grids of the same
    spacing the round trip can cost more than the network loses)."""
    raw = load_yaml(run / RECORD_CONFIG)
    raw.pop("model_params", None)
    config = ExperimentConfig.model_validate(raw)
    rows = []
    for file, output in zip(table.file, table.output, strict=True):
        true = truth.get(Path(file))
        if true is None or not isinstance(output, str) or not output:
            continue
        image = nib.load(file)
        on_grid = preprocess_volume(true, config.preprocess, is_label=True, reference=image)
        grid = grid_affine(image, config.preprocess)
        round_trip = to_input_space(on_grid, grid, image, labels=True)
        labels = np.asarray(true.dataobj)
        predicted = np.asarray(nib.load(output).dataobj)
        rows.append({
            "file": file,
            "dice": segmentation_metrics(predicted, labels)["dice_mean"],
            "round_trip": segmentation_metrics(round_trip, labels)["dice_mean"],
        })  # fmt: skip
    return pd.DataFrame(rows, columns=["file", "dice", "round_trip"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a trained mri/age run record")
    parser.add_argument("--subjects", type=int, default=8)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        kinds, truth = write_inputs(Path(tmp), args.subjects)
        table = predict_files(args.run, list(kinds), Path(tmp) / "out", log=lambda _: None)
        segmentation = "output" in table  # a segmentation run writes label maps
        if segmentation:
            table = table.merge(dice_rows(args.run, table, truth), on="file", how="left")
    table["kind"] = [kinds[Path(f)] for f in table.file]
    table["true_age"] = [
        float(Path(f).name[3:].split("_")[0]) if Path(f).name.startswith("age") else np.nan
        for f in table.file
    ]
    if not segmentation:
        table["abs_error"] = (table.prediction - table.true_age).abs()
    flagged = table.get("ood", pd.Series("n/a", index=table.index)) == "yes"
    columns = (
        {
            "dice_mean": ("dice", "mean"),
            "dice_min": ("dice", "min"),
            "round_trip": ("round_trip", "mean"),
        }
        if segmentation
        else {
            "predicted_median": ("prediction", "median"),
            "predicted_min": ("prediction", "min"),
            "true_median": ("true_age", "median"),
            "mae": ("abs_error", "mean"),
        }
    )
    summary = (
        table.assign(flagged=flagged)
        .groupby("kind", sort=False)
        .agg(**columns, flagged=("flagged", "mean"))
    )
    print(summary.round(3 if segmentation else 1).to_string())


if __name__ == "__main__":
    main()
