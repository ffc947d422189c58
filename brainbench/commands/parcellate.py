"""`brainbench parcellate FILE... --atlas ATLAS --out DIR`: runs -> parcel time series."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from brainbench.data.atlases import ATLASES


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "parcellate",
        help="4D NIfTI (or surface) runs + a labels atlas -> parcel time series for the fMRI tasks",
        description="Average each run within every atlas label (nilearn's NiftiLabelsMasker for "
        "volumes, with optional confound regression, linear detrending and band-pass filtering; "
        "per-vertex labels for GIFTI/MGH surface series) and write one .npy series per run plus "
        "a BOLD sidecar with the TR and atlas.tsv (label centroids in mm) under DIR, in the "
        "layout `brainbench fmri ...` reads. The TR comes from each run's sidecar JSON, else "
        "its header (in its time units), else --tr; it must lie within 0.1..30 s.\n\n"
        "built-in atlases (--atlas NAME): published MNI coordinates shipped inside nilearn "
        "(BSD-3-Clause; the coordinate tables' own licence is unknown, so cite the paper), "
        "drawn as spheres on each run's grid: the runs must be in MNI space.\n"
        + "".join(f"  {name:<13} {source}\n" for name, source in ATLASES.items())
        + "\nsurface runs of both hemispheres (hemi-L/hemi-R in the file names) take "
        "--atlas-lh and --atlas-rh; a run's two halves become one series, left parcels then "
        "right, the right labels' ids offset by 1000 (or the next power of ten above the "
        "largest label) in atlas.tsv, whose hemi column says L or R.",
        epilog="examples:\n"
        "  brainbench parcellate data/sub-*/func/*_bold.nii.gz --atlas atlas_dseg.nii.gz "
        "--out data/derivatives/fmri --detrend --high-pass 0.01 --low-pass 0.1\n"
        "  brainbench parcellate run_bold.nii.gz --atlas atlas.nii.gz --confounds "
        "run_confounds.tsv --out parcels\n"
        "  brainbench parcellate sub-*/func/*_space-MNI152NLin2009cAsym_bold.nii.gz --atlas "
        "seitzman300 --drop-empty-labels --out parcels\n"
        "  brainbench parcellate sub-01_hemi-L_bold.func.gii --atlas lh.aparc.annot "
        "--mesh lh.pial.gii --tr 2.0 --out parcels\n"
        "  brainbench parcellate sub-01_hemi-L_bold.func.gii sub-01_hemi-R_bold.func.gii "
        "--atlas-lh lh.aparc.annot --atlas-rh rh.aparc.annot --tr 2.0 --out parcels",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="4D NIfTI or surface")
    parser.add_argument(
        "--atlas",
        metavar="ATLAS",
        help=f"labels NIfTI, vertex labels, or a built-in name: {', '.join(ATLASES)}",
    )
    for side, word in (("lh", "left"), ("rh", "right")):
        parser.add_argument(
            f"--atlas-{side}", type=Path, metavar="FILE", help=f"{word}-hemisphere vertex labels"
        )
        parser.add_argument(
            f"--mesh-{side}", type=Path, metavar="GII", help=f"{word}-hemisphere mesh GIFTI"
        )
    parser.add_argument(
        "--drop-empty-labels",
        action="store_true",
        help="leave out atlas labels with no voxel in a run's field of view (one warning; the "
        "sidecars list them as DroppedLabels) instead of refusing them",
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--confounds", nargs="+", type=Path, metavar="TSV", help="one confounds TSV per run"
    )
    parser.add_argument("--detrend", action="store_true", help="remove linear trends")
    parser.add_argument("--high-pass", type=float, metavar="HZ", help="high-pass cutoff")
    parser.add_argument("--low-pass", type=float, metavar="HZ", help="low-pass cutoff")
    parser.add_argument("--tr", type=float, metavar="SECONDS", help="TR when files lack one")
    parser.add_argument("--mesh", type=Path, help="surface mesh GIFTI (parcel centroids)")
    parser.add_argument(
        "--labels",
        type=Path,
        metavar="TSV",
        help="look-up table of the atlas labels (columns index, name, network...) copied into "
        "atlas.tsv; default: the atlas's name with .tsv (BIDS atlas-X_dseg.tsv), if present",
    )
    return parser


def main(args: argparse.Namespace) -> None:
    from brainbench.data.parcellate import parcellate_files

    with warnings.catch_warnings():
        warnings.showwarning = _one_line
        written = parcellate_files(
            args.files,
            args.atlas,
            args.out,
            confounds=args.confounds,
            detrend=args.detrend,
            high_pass=args.high_pass,
            low_pass=args.low_pass,
            tr=args.tr,
            mesh=args.mesh,
            lookup=args.labels,
            atlas_lh=args.atlas_lh,
            atlas_rh=args.atlas_rh,
            mesh_lh=args.mesh_lh,
            mesh_rh=args.mesh_rh,
            drop_empty_labels=args.drop_empty_labels,
        )
    print(f"wrote {len(written)} parcel series and {args.out / 'atlas.tsv'}")


def _one_line(message, category, *_) -> None:
    print(f"warning: {message}", file=sys.stderr)
