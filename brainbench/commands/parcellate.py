"""`brainbench parcellate FILE... --atlas ATLAS --out DIR`: runs -> parcel time series."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "parcellate",
        help="4D NIfTI (or surface) runs + a labels atlas -> parcel time series for the fMRI tasks",
        description="Average each run within every atlas label (nilearn's NiftiLabelsMasker for "
        "volumes, with optional confound regression, linear detrending and band-pass filtering; "
        "per-vertex labels for GIFTI/MGH surface series) and write one .npy series per run plus "
        "a BOLD sidecar with the TR and atlas.tsv (label centroids in mm) under DIR, in the "
        "layout `brainbench fmri ...` reads. The TR comes from each run's sidecar JSON, else "
        "its header, else --tr.",
        epilog="examples:\n"
        "  brainbench parcellate data/sub-*/func/*_bold.nii.gz --atlas atlas_dseg.nii.gz "
        "--out data/derivatives/fmri --detrend --high-pass 0.01 --low-pass 0.1\n"
        "  brainbench parcellate run_bold.nii.gz --atlas atlas.nii.gz --confounds "
        "run_confounds.tsv --out parcels\n"
        "  brainbench parcellate sub-01_hemi-L_bold.func.gii --atlas lh.aparc.annot "
        "--mesh lh.pial.gii --tr 2.0 --out parcels",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="4D NIfTI or surface")
    parser.add_argument("--atlas", type=Path, required=True, help="labels NIfTI or vertex labels")
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
    )
    print(f"wrote {len(written)} parcel series and {args.out / 'atlas.tsv'}")
