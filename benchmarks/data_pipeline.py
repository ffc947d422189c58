"""Data-pipeline benchmark: brainbench VolumeDataset vs MONAI on the same NIfTI files.

For each pipeline, in a fresh process: the first pass (cold: preprocess and fill the cache),
then warm passes read the cache; reported are warm volumes/second (median of the warm passes),
the cold time, peak memory as the growth of the process's peak RSS (resource.ru_maxrss) over
its value after imports (the cold pass's preprocessing sets it), the memory the pipeline still
holds after the warm passes (resident set growth over the same point: what a long training run
keeps), and the cache's size on disk. Every pipeline yields (1, *shape) volumes.

    python benchmarks/data_pipeline.py                # 64 synthetic 96^3 volumes
    python benchmarks/data_pipeline.py --data BIDS    # the T1w images of a BIDS folder
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import statistics
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

PIPELINES = ("brainbench", "monai-persistent", "monai-cache")


def synthetic_files(folder: Path, n: int, size: int, seed: int = 0) -> list[Path]:
    """n brain-like volumes (head, skull, grey/white matter, ventricles, noise), 2 mm voxels,
    varying brain size, a third stored LAS and a third LPS."""
    rng = np.random.default_rng(seed)
    axes = np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij")
    paths = []
    for i in range(n):
        scale = rng.uniform(0.75, 0.95, 3)
        r = np.sqrt(sum((a / s) ** 2 for a, s in zip(axes, scale, strict=True)))
        wiggle = 0.03 * np.sin(9 * axes[0] + i) * np.cos(7 * axes[1])
        data = np.select(
            [r < 0.18, r < 0.55 + wiggle, r < 0.78, r < 0.84, r < 0.92],
            [30.0, 110.0, 75.0, 15.0, 90.0],
            0.0,
        )
        data = np.abs(data + rng.normal(0, 4, data.shape)).astype(np.float32)
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        affine[:3, 3] = -size
        img = nib.Nifti1Image(data, affine)
        codes = ("RAS", "LAS", "LPS")[i % 3]
        ornt = nib.orientations.ornt_transform(
            nib.orientations.io_orientation(affine), nib.orientations.axcodes2ornt(codes)
        )
        paths.append(folder / f"sub-{i:03d}_T1w.nii.gz")
        nib.save(img.as_reoriented(ornt), paths[-1])
    return paths


def bids_files(root: Path) -> list[Path]:
    from brainbench.data.sources.bids import read_bids

    return [r.images["T1w"] for r in read_bids(root) if "T1w" in r.images]


def peak_mib() -> float:
    """This process's peak resident memory so far, in MiB (shared with benchmarks/brainlm.py)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def resident_mib() -> float:
    """This process's resident memory now, in MiB (Linux /proc)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _dir_mib(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20


def _loader(name: str, files: list[Path], spacing: float, shape: tuple[int, ...], cache: Path):
    """A DataLoader over the files, and the time spent building it (CacheDataset fills here)."""
    from monai.data import CacheDataset, DataLoader, PersistentDataset
    from monai.transforms import (
        Compose,
        EnsureChannelFirstd,
        LoadImaged,
        Orientationd,
        ResizeWithPadOrCropd,
        ScaleIntensityRangePercentilesd,
        Spacingd,
    )

    from brainbench.config import PreprocessConfig
    from brainbench.data.cache import VolumeCache
    from brainbench.data.dataset import VolumeDataset
    from brainbench.data.records import SubjectRecord

    start = time.perf_counter()
    if name == "brainbench":
        cfg = PreprocessConfig(spacing=spacing, shape=shape)
        records = [
            SubjectRecord(f"{i}", 30.0, "F", "a", images={"T1w": p}) for i, p in enumerate(files)
        ]
        dataset = VolumeDataset(records, ["T1w"], "age", cfg, VolumeCache(cache))
    else:
        keys = ["image"]
        transform = Compose(
            [
                LoadImaged(keys, image_only=True),
                EnsureChannelFirstd(keys),
                Orientationd(keys, axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S"))),
                Spacingd(keys, pixdim=(spacing,) * 3, mode="bilinear"),
                ScaleIntensityRangePercentilesd(keys, 0.5, 99.5, b_min=0.0, b_max=1.0, clip=True),
                ResizeWithPadOrCropd(keys, spatial_size=shape),
            ]
        )
        items = [{"image": str(p)} for p in files]
        if name == "monai-persistent":
            dataset = PersistentDataset(items, transform, cache_dir=cache)
        else:
            dataset = CacheDataset(items, transform, cache_rate=1.0, num_workers=0, progress=False)
    return DataLoader(dataset, batch_size=8, num_workers=0), time.perf_counter() - start


def measure(name: str, files: list[Path], spacing: float, shape: tuple, passes: int) -> dict:
    """Run one pipeline (call in a fresh process): cold pass, warm passes, peak RSS growth."""
    # every pipeline's modules are imported before the baseline, so only its work is measured
    import monai.data  # noqa: F401
    import monai.transforms  # noqa: F401
    import torch

    import brainbench.data.dataset  # noqa: F401

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        base, resident = peak_mib(), resident_mib()
        loader, build = _loader(name, files, spacing, shape, cache)
        times, sample = [], None
        for _ in range(1 + passes):
            start = time.perf_counter()
            for batch in loader:
                sample = batch[0] if isinstance(batch, list | tuple) else batch["image"]
            times.append(time.perf_counter() - start)
        return {
            "pipeline": name,
            "cold_s": build + times[0],
            "warm_vps": len(files) / statistics.median(times[1:]),
            "peak_mib": peak_mib() - base,
            "held_mib": resident_mib() - resident,
            "disk_mib": _dir_mib(cache) if cache.exists() else 0.0,
            "shape": tuple(sample.shape[1:]),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="a BIDS folder (its T1w images are used)")
    parser.add_argument("-n", type=int, default=64, help="synthetic volumes (default 64)")
    parser.add_argument("--size", type=int, default=96, help="synthetic grid size (default 96)")
    parser.add_argument("--spacing", type=float, default=4.0, help="output voxel size in mm")
    parser.add_argument("--shape", type=int, nargs=3, default=(40, 48, 40), help="output grid")
    parser.add_argument(
        "--passes", type=int, default=30, help="warm passes (median reported; default 30)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = (
            bids_files(args.data) if args.data else synthetic_files(Path(tmp), args.n, args.size)
        )
        what = f"{args.data}" if args.data else f"{args.n} synthetic {args.size}^3 volumes"
        print(f"{len(files)} files ({what}) -> {tuple(args.shape)} at {args.spacing} mm\n")
        ctx = mp.get_context("spawn")
        rows = []
        for name in PIPELINES:
            with ctx.Pool(1) as pool:
                job = (name, files, args.spacing, tuple(args.shape), args.passes)
                rows.append(pool.apply(measure, job))
    header = f"{'pipeline':<18}{'warm vol/s':>11}{'cold s':>9}{'peak RSS +MiB':>15}"
    print(f"{header}{'held MiB':>10}{'cache MiB':>11}  shape")
    for r in rows:
        print(
            f"{r['pipeline']:<18}{r['warm_vps']:>11.1f}{r['cold_s']:>9.2f}{r['peak_mib']:>15.1f}"
            f"{r['held_mib']:>10.1f}{r['disk_mib']:>11.1f}  {r['shape']}"
        )
    ours = rows[0]
    print("\nbrainbench / MONAI (same run):")
    for r in rows[1:]:
        print(
            f"  vs {r['pipeline']:<17} warm throughput x{ours['warm_vps'] / r['warm_vps']:.2f}, "
            f"cold time x{ours['cold_s'] / r['cold_s']:.2f}, "
            f"peak RSS growth x{ours['peak_mib'] / max(r['peak_mib'], 1e-9):.2f}, "
            f"memory held x{ours['held_mib'] / max(r['held_mib'], 1e-9):.2f}"
        )


if __name__ == "__main__":
    main()
