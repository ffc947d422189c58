"""fMRI benchmark: brainlm vs transformers' ViTMAE and the reference BrainLM, and 4D parcellation.

1. Masked-autoencoder training on the same scaled parcels x time windows: brainlm
   (brainbench/models/brainlm.py: tokens of `patch` time points of one parcel, only the visible
   ones encoded) against transformers' ViTMAEForPreTraining on the image the published BrainLM
   checkpoints take (parcels ordered by Y, 3 channels, zero-padded to a square that is a multiple
   of its patch), at the same width, depth, heads, decoder, MLP ratio and mask ratio, batch,
   number of AdamW steps and torch threads; and against the published BrainLM network itself
   (models/brainlm_reference.py: the same tokens as brainlm, transformers' Nystromformer layers
   with full softmax attention over all of them, as the released configs set it) at the same
   sizes. Each model trains in a fresh process, `--repeats`
   times alternately (the fastest kept): windows/second over the timed steps (after one warm-up
   step) and the growth of peak RSS over its value after imports (parameters, optimizer state
   and activations).
2. Parcellation of generated 4D runs with the Seitzman atlas: brainbench.data.parcellate
   (what `brainbench parcellate` runs: load, check, NiftiLabelsMasker, write .npy + sidecars)
   against nilearn's NiftiLabelsMasker called directly on the same files (after one untimed
   warm-up run; the series are compared).

    OMP_NUM_THREADS=1 python benchmarks/brainlm.py
    python benchmarks/brainlm.py --parcels 424 --window 200 --width 128 --depth 4 --steps 5
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from data_pipeline import peak_mib

MASK_RATIO = 0.75  # the pretraining default (models/brainlm_mae.py)
MODELS = ("brainlm", "vitmae", "reference")


def vitmae_for(cfg, side: int, vit_patch: int):
    """ViTMAEForPreTraining matching a BrainLMConfig, on (3, side, side) images."""
    from transformers import ViTMAEConfig, ViTMAEForPreTraining

    config = ViTMAEConfig(
        hidden_size=cfg.width,
        num_hidden_layers=cfg.depth,
        num_attention_heads=cfg.heads,
        intermediate_size=int(cfg.width * cfg.mlp_ratio),
        decoder_hidden_size=cfg.decoder_width,
        decoder_num_hidden_layers=cfg.decoder_depth,
        decoder_num_attention_heads=cfg.decoder_heads,
        decoder_intermediate_size=int(cfg.decoder_width * cfg.mlp_ratio),
        image_size=side,
        patch_size=vit_patch,
        num_channels=3,
        mask_ratio=MASK_RATIO,
    )
    return ViTMAEForPreTraining(config)  # attention: torch SDPA, as brainlm


def reference_for(cfg, parcels: int):
    """The published BrainLM network (models/brainlm_reference.py) at a BrainLMConfig's sizes."""
    from brainbench.models.brainlm_reference import BrainLMReference

    return BrainLMReference(
        {
            "hidden_size": cfg.width,
            "num_hidden_layers": cfg.depth,
            "num_attention_heads": cfg.heads,
            "intermediate_size": int(cfg.width * cfg.mlp_ratio),
            "decoder_hidden_size": cfg.decoder_width,
            "decoder_num_hidden_layers": cfg.decoder_depth,
            "decoder_num_attention_heads": cfg.decoder_heads,
            "decoder_intermediate_size": int(cfg.decoder_width * cfg.mlp_ratio),
            "num_brain_voxels": parcels,
            "timepoint_patching_size": cfg.patch,
        }
    )


def train(name: str, coords: np.ndarray, args: argparse.Namespace) -> dict:
    """Train one model for 1 + args.steps AdamW steps (call in a fresh process)."""
    import torch
    import transformers  # noqa: F401  (imported before the baseline)

    from brainbench.models.brainlm import BrainLM, BrainLMConfig, hidden_count, random_mask
    from brainbench.models.brainlm_vitmae import vitmae_image

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    base = peak_mib()
    cfg = BrainLMConfig(patch=args.patch, width=args.width, depth=args.depth, heads=args.heads)
    x = torch.randn(args.batch, args.parcels, args.window)
    n_tokens = args.parcels * (args.window // args.patch)
    encoded = n_tokens - hidden_count(n_tokens, MASK_RATIO)  # what random_mask keeps
    if name == "brainlm":
        net = BrainLM(cfg, torch.as_tensor(coords))

        def loss() -> torch.Tensor:
            return net.masked_loss(x, random_mask(len(x), n_tokens, MASK_RATIO))[0]
    elif name == "reference":
        net = reference_for(cfg, args.parcels)
        xyz = torch.as_tensor(coords)

        def loss() -> torch.Tensor:
            hidden = random_mask(len(x), n_tokens, MASK_RATIO)
            keep = torch.argsort(hidden.float(), dim=1, stable=True)[:, :encoded]
            error = net.reconstruct(x, xyz, keep) - x
            return error.view(len(x), n_tokens, -1)[hidden].square().mean()
    else:
        side = -(-max(args.parcels, args.window) // args.vit_patch) * args.vit_patch
        net = vitmae_for(cfg, side, args.vit_patch)
        n_tokens = (side // args.vit_patch) ** 2
        encoded = int(n_tokens * (1 - MASK_RATIO))

        def loss() -> torch.Tensor:
            return net(pixel_values=vitmae_image(x, coords, side)).loss

    net.train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=0.05)
    times = []
    for _ in range(1 + args.steps):
        start = time.perf_counter()
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
        times.append(time.perf_counter() - start)
    return {
        "model": name,
        "params": sum(p.numel() for p in net.parameters()),
        "tokens": n_tokens,
        "encoded": encoded,
        "wps": args.batch * args.steps / sum(times[1:]),
        "peak_mib": peak_mib() - base,
    }


def _coords(parcels: int) -> np.ndarray:
    """The Seitzman ROIs' MNI xyz (mm) for 300 parcels, else random points in the brain's box."""
    if parcels == 300:
        from brainbench.data.synth.functional import seitzman_atlas

        return seitzman_atlas()[["x", "y", "z"]].to_numpy(np.float32)
    rng = np.random.default_rng(0)
    return rng.uniform((-70, -100, -45), (70, 70, 75), (parcels, 3)).astype(np.float32)


def generate_runs(folder: Path, runs: int, grid: tuple[int, int, int], volumes: int):
    """(the runs' paths, the atlas path): the Seitzman labels image the synthetic cohort writes,
    resampled (nearest) onto a `grid` covering it, and 4D runs carrying random parcel series."""
    from nilearn.image import resample_img

    from brainbench.data.synth.functional import (
        atlas_grid,
        seitzman_atlas,
        write_atlas_image,
        write_volume_run,
    )

    coarse = write_atlas_image(folder / "coarse.nii.gz", seitzman_atlas())
    extent = np.array(coarse.shape) * np.diag(atlas_grid())[:3]
    affine = np.diag([*(extent / np.array(grid)), 1.0])
    affine[:3, 3] = atlas_grid()[:3, 3]
    atlas = resample_img(
        coarse,
        target_affine=affine,
        target_shape=grid,
        interpolation="nearest",
        force_resample=True,
        copy_header=True,
    )
    atlas = nib.Nifti1Image(np.asarray(atlas.dataobj, dtype=np.int16), affine)
    atlas_path = folder / "atlas-Seitzman300_dseg.nii.gz"
    nib.save(atlas, atlas_path)
    parcels = int(np.asarray(atlas.dataobj).max())
    rng = np.random.default_rng(0)
    paths = []
    for i in range(runs):
        series = rng.standard_normal((volumes, parcels)).astype(np.float32)
        paths.append(write_volume_run(folder / "bids", f"sub-{i:02d}", series, 2.0, atlas))
    return paths, atlas_path


def parcellation(args: argparse.Namespace) -> None:
    """Print runs/s of brainbench.data.parcellate and of NiftiLabelsMasker on the same runs."""
    from nilearn.maskers import NiftiLabelsMasker

    from brainbench.data.parcellate import parcellate_files
    from brainbench.data.timeseries import read_series

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        files, atlas = generate_runs(Path(tmp), args.runs, tuple(args.grid), args.volumes)
        grid = "x".join(map(str, args.grid))
        print(
            f"\nParcellation: {len(files)} runs of {grid} x {args.volumes} volumes (int16 "
            f".nii.gz), Seitzman 300 labels (generated in {time.perf_counter() - start:.1f} s)"
        )
        NiftiLabelsMasker(atlas, standardize=None).fit_transform(str(files[0]))  # warm-up
        start = time.perf_counter()
        reference = [
            NiftiLabelsMasker(atlas, standardize=None).fit_transform(str(f)) for f in files
        ]
        nilearn_s = time.perf_counter() - start
        start = time.perf_counter()
        written = parcellate_files(files, atlas, Path(tmp) / "out")
        ours_s = time.perf_counter() - start
        diff = max(
            float(np.abs(read_series(w) - r).max()) for w, r in zip(written, reference, strict=True)
        )
    print(f"{'pipeline':<34}{'runs/s':>8}{'s/run':>8}")
    print(
        f"{'brainbench.data.parcellate':<34}{len(files) / ours_s:>8.2f}{ours_s / len(files):>8.2f}"
    )
    print(
        f"{'nilearn NiftiLabelsMasker':<34}{len(files) / nilearn_s:>8.2f}"
        f"{nilearn_s / len(files):>8.2f}"
    )
    print(
        f"brainbench / nilearn (same run): throughput x{nilearn_s / ours_s:.2f}; "
        f"series max |difference| {diff:.2g}"
    )


def models(args: argparse.Namespace) -> None:
    """Print windows/s, peak RSS growth and their ratio for brainlm and ViTMAE."""
    coords = _coords(args.parcels)
    ctx = mp.get_context("spawn")
    runs = []
    for _ in range(args.repeats):  # alternated, so both see the same machine load
        for name in MODELS:
            with ctx.Pool(1) as pool:
                runs.append(pool.apply(train, (name, coords, args)))
    rows = [max((r for r in runs if r["model"] == m), key=lambda r: r["wps"]) for m in MODELS]
    print(
        f"MAE training: {args.parcels} parcels x {args.window} time points, width {args.width}, "
        f"depth {args.depth}, heads {args.heads}, mask {MASK_RATIO}, batch {args.batch}, "
        f"{args.steps} AdamW steps (best of {args.repeats}), {args.threads} thread(s);\n"
        f"brainlm patch {args.patch} time points, ViTMAE patch {args.vit_patch}^2 pixels"
    )
    print(
        f"{'model':<9}{'params':>9}{'tokens':>8}{'encoded':>9}{'windows/s':>11}"
        f"{'peak RSS +MiB':>15}"
    )
    for r in rows:
        print(
            f"{r['model']:<9}{r['params']:>9}{r['tokens']:>8}{r['encoded']:>9}"
            f"{r['wps']:>11.2f}{r['peak_mib']:>15.1f}"
        )
    ours = rows[0]
    for other in rows[1:]:
        print(
            f"brainlm / {other['model']} (same run): throughput x{ours['wps'] / other['wps']:.2f}, "
            f"peak RSS growth x{ours['peak_mib'] / max(other['peak_mib'], 1e-9):.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parcels", type=int, default=300, help="parcels (300: Seitzman)")
    parser.add_argument("--window", type=int, default=40, help="time points per window")
    parser.add_argument("--patch", type=int, default=20, help="brainlm time points per token")
    parser.add_argument("--vit-patch", type=int, default=16, help="ViTMAE patch edge (pixels)")
    parser.add_argument("--width", type=int, default=64, help="encoder width of both")
    parser.add_argument("--depth", type=int, default=2, help="encoder blocks of both")
    parser.add_argument("--heads", type=int, default=4, help="encoder heads of both")
    parser.add_argument("--batch", type=int, default=8, help="windows per step")
    parser.add_argument("--steps", type=int, default=20, help="timed AdamW steps")
    parser.add_argument("--repeats", type=int, default=2, help="fresh runs per model (best)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--runs", type=int, default=8, help="4D runs to parcellate (0: skip)")
    parser.add_argument("--grid", type=int, nargs=3, default=(64, 64, 48), help="run grid")
    parser.add_argument("--volumes", type=int, default=120, help="volumes per run")
    args = parser.parse_args()
    if args.window % args.patch:
        parser.error(f"--window {args.window} must be a multiple of --patch {args.patch}")
    models(args)
    if args.runs:
        parcellation(args)


if __name__ == "__main__":
    main()
