"""Generate the synthetic lifespan cohort as a BIDS dataset, deterministically for a seed.

Every random draw comes from a stream keyed by (seed, stream name, subject index), so a subject's
anatomy does not depend on the preset's size or on other modalities: a later modality (resting
state, task fMRI, connectivity) draws from its own stream and leaves existing files unchanged.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from brainbench import __version__
from brainbench.config import home
from brainbench.data.synth import phenotypes, render
from brainbench.data.synth.anatomy import Template, load_template
from brainbench.data.synth.sites import SITE_BY_NAME, SITES
from brainbench.errors import ConfigError, DataError, suggest
from brainbench.labels import SUBCORTICAL_LABELS as LABELS
from brainbench.owners import owner_tag, remove_dead
from brainbench.progress import track
from brainbench.stages import STAGES

# 3: sex differences calibrated (brain volume by age, subcortical d); 4: brain masks, MNI-space
# T1w, lateral-ventricle labels; 5: label maps on voxels of at most 2 mm (render.LABEL_MM)
GENERATOR_VERSION = "7"
MNI_SPACE = "MNI152NLin2009cAsym"
PREPROC = Path("derivatives") / "preproc"  # brain masks and MNI renderings, fMRIPrep's names
MARKER = Path("derivatives") / "brainbench_synth.json"
DROPPED_BITS = 12  # float32 mantissa bits not stored (see round_mantissa)


@dataclass(frozen=True)
class Preset:
    """Size of a generated cohort: subjects (spread evenly over the lifespan stages) and grid."""

    name: str
    n_subjects: int
    grid: int
    description: str


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("debug", 48, 32, "seconds on a laptop; tests and --debug runs"),
        Preset("default", 320, 64, "the quick suite; about a minute on two cores"),
        Preset("pretrain", 1200, 48, "an unlabelled pretraining pool (with another cohort_seed)"),
        Preset("large", 2000, 96, "GPU benchmarking"),
    )
}

LATENT_DESCRIPTIONS: dict[str, str] = {
    "brain_scale": "linear head and brain size relative to MNI152 (growth, sex, individual)",
    "brain_scale_z": "individual deviation of brain size (z), after age and sex",
    "gm_thickness": "cortical thickness factor relative to a 25-year-old",
    "gm_thickness_z": "individual deviation of cortical thickness (z)",
    "ventricle_mm": "ventricle dilation in template mm",
    "extra_csf_mm": "CSF thickness between brain and skull, template mm",
    "skull_mm": "skull thickness, template mm",
    "atrophy": "fraction of brain volume lost by shrinking inside the skull after 35",
    "wm_deficit": "fraction of the adult white matter still grey-like next to the cortex",
    "myelination": "white-matter maturity 0..1 (sets the grey/white contrast)",
    "folding": "cortical folding 0..1 (fetal cortex is smooth)",
    "wmh_load": "white-matter hyperintensity load (fraction of periventricular white matter)",
    "shape_x": "head shape stretch along x (likewise shape_y, shape_z)",
    "size_hippocampus": "structure volume factor (likewise every size_* column)",
    "brain_ml": "measured grey + white matter volume in the image (likewise every *_ml column)",
}


def stream(seed: int, name: str, index: int = 0) -> np.random.Generator:
    """The random stream `name` of subject `index` (0 = cohort level) for a seed."""
    return np.random.default_rng([seed, zlib.crc32(name.encode()), index])


def check_preset(preset: str) -> Preset:
    """The preset called `preset`, or a ConfigError naming the valid ones."""
    if preset not in PRESETS:
        raise ConfigError(
            f"unknown synthetic cohort preset '{preset}'.{suggest(preset, PRESETS)} "
            f"Valid presets: {', '.join(PRESETS)}."
        )
    return PRESETS[preset]


def demographics(n_subjects: int, seed: int) -> list[dict]:
    """Age, sex and site per subject: evenly over the lifespan stages, sites eligible per stage."""
    rng = stream(seed, "cohort")
    rows = []
    for position, (_, low, high) in enumerate(STAGES):
        count = n_subjects // len(STAGES) + (position < n_subjects % len(STAGES))
        eligible = [s for s in SITES if s.age_range[0] < high and s.age_range[1] > low]
        for _ in range(count):
            site = eligible[rng.integers(len(eligible))]
            age = rng.uniform(max(low, site.age_range[0]), min(high, site.age_range[1]))
            rows.append({"age": float(age), "sex": "FM"[rng.integers(2)], "site": site.name})
    order = rng.permutation(len(rows))
    return [{"index": i + 1, **rows[j]} for i, j in enumerate(order)]


def subject_id(index: int) -> str:
    return f"sub-{index:04d}"


def round_mantissa(data: np.ndarray, bits: int = DROPPED_BITS) -> np.ndarray:
    """float32 rounded to 23 - `bits` mantissa bits (relative error < 2^(bits - 24)).

    Far below the images' noise, it halves gzip's time and shrinks the files by a third.
    """
    raw = np.ascontiguousarray(data, dtype=np.float32).view(np.uint32)
    half, keep = np.uint32(1 << (bits - 1)), np.uint32((0xFFFFFFFF << bits) & 0xFFFFFFFF)
    return ((raw + half) & keep).view(np.float32)


def write_nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> None:
    """Save a NIfTI with scanner-space qform/sform (nibabel's gzip header has no timestamp)."""
    if data.dtype == np.float32:
        data = round_mantissa(data)
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


_TEMPLATE: Template | None = None


def _init_worker(template: Template) -> None:
    global _TEMPLATE
    _TEMPLATE = template


def make_subject(root: Path, seed: int, grid: int, row: dict) -> tuple[dict, dict]:
    """Draw, render and write one subject; returns its participants row and latents row."""
    template = _TEMPLATE or load_template()
    index, age, sex, site = row["index"], row["age"], row["sex"], SITE_BY_NAME[row["site"]]
    disease = phenotypes.clinical(age, site.name, stream(seed, "clinical", index))
    latents = render.sample_latents(
        age, sex, bool(disease["dementia"]), bool(disease["hypertension"]),
        stream(seed, "anatomy", index),
    )  # fmt: skip
    scan = render.render(template, site, grid, age, latents, stream(seed, "anat-image", index))
    sub = subject_id(index)
    for modality, image in scan.images.items():
        folder = "dwi" if modality == "dwi" else "anat"
        write_nifti(root / sub / folder / f"{sub}_{modality}.nii.gz", image, scan.affine)
    anat = Path(sub) / "anat"
    labels = root / "derivatives" / "labels" / anat / f"{sub}_dseg.nii.gz"
    write_nifti(labels, scan.labels, scan.label_affine)
    mask = root / PREPROC / anat / f"{sub}_desc-brain_mask.nii.gz"
    write_nifti(mask, scan.brain_mask, scan.affine)
    mni = render.render(
        template, site, grid, age, latents, stream(seed, "mni-image", index),
        space="mni", with_labels=False,
    )  # fmt: skip
    prefix = root / PREPROC / anat / f"{sub}_space-{MNI_SPACE}"
    write_nifti(Path(f"{prefix}_T1w.nii.gz"), mni.images["T1w"], mni.affine)
    write_nifti(Path(f"{prefix}_desc-brain_mask.nii.gz"), mni.brain_mask, mni.affine)
    pheno = phenotypes.derived(age, sex, disease, latents, stream(seed, "phenotypes", index))
    participant = {
        "participant_id": sub,
        "age": round(age, 4),
        "sex": sex,
        "site": site.name,
        **pheno,
    }
    return participant, {"participant_id": sub, **latents, **scan.measured}


def _make_subject_job(args: tuple[Path, int, int, dict]) -> tuple[dict, dict]:
    return make_subject(*args)


def _cell(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_tsv(path: Path, rows: list[dict]) -> None:
    columns = list(rows[0])
    lines = ["\t".join(columns)] + ["\t".join(_cell(row[c]) for c in columns) for row in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def default_workers(n_subjects: int, grid: int) -> int:
    """Processes to use: one for small cohorts, else the available cores (at most 8)."""
    if n_subjects * grid**3 < 2e7:
        return 1
    return max(1, min(len(os.sched_getaffinity(0)), 8))


def generate_cohort(
    root: Path, preset: str = "default", seed: int = 0, workers: int | None = None
) -> Path:
    """Write the cohort of `preset` for `seed` as a BIDS dataset under `root`; returns root.

    Byte-identical for the same preset and seed, whatever the number of worker processes.
    The generator's description (derivatives/brainbench_synth.json) is written last.
    """
    spec = check_preset(preset)
    root = Path(root)
    rows = demographics(spec.n_subjects, seed)
    jobs = [(root, seed, spec.grid, row) for row in rows]
    workers = workers or default_workers(spec.n_subjects, spec.grid)
    template = load_template()
    what = f"synthetic cohort '{preset}' (first use only)"
    if workers == 1:
        _init_worker(template)
        results = list(track(map(_make_subject_job, jobs), len(jobs), what))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(workers, context, _init_worker, (template,)) as pool:
            done = pool.map(_make_subject_job, jobs, chunksize=4)
            results = list(track(done, len(jobs), what))
    participants = [participant for participant, _ in results]
    write_tsv(root / "participants.tsv", participants)
    write_json(root / "participants.json", phenotypes.COLUMNS)
    write_tsv(root / "derivatives" / "latents.tsv", [latent for _, latent in results])
    write_json(root / "dataset_description.json", _description(spec, seed))
    labels_root = root / "derivatives" / "labels"
    write_tsv(labels_root / "dseg.tsv", [{"index": i, "name": n} for i, n in enumerate(LABELS)])
    write_json(
        labels_root / "dataset_description.json",
        {**_description(spec, seed), "Name": "subcortical labels", "DatasetType": "derivative"},
    )
    write_json(
        root / PREPROC / "dataset_description.json",
        {**_description(spec, seed), "Name": "brain masks, MNI space", "DatasetType": "derivative"},
    )
    write_json(root / MARKER, _generator_record(spec, seed))
    return root


def _description(spec: Preset, seed: int) -> dict:
    return {
        "Name": "brainbench synthetic lifespan cohort",
        "BIDSVersion": "1.9.0",
        "DatasetType": "raw",
        "License": "CC0",
        "GeneratedBy": [
            {
                "Name": "brainbench",
                "Version": __version__,
                "Description": f"brainbench.data.synth v{GENERATOR_VERSION}, "
                f"preset '{spec.name}', seed {seed}",
            }
        ],
    }


def _generator_record(spec: Preset, seed: int) -> dict:
    return {
        "generator": "brainbench.data.synth",
        "version": GENERATOR_VERSION,
        "preset": asdict(spec),
        "seed": seed,
        "modalities": list(render.MODALITIES),
        "labels": list(LABELS),
        "template": "MNI152 2009 (nilearn), 2 mm",
        "streams": ["cohort", "clinical", "anatomy", "anat-image", "mni-image", "phenotypes"],
        "derivatives": {
            "labels": "subcortical and lateral-ventricle label maps (dseg)",
            "preproc": f"brain masks (desc-brain_mask) and T1w in {MNI_SPACE} space",
        },
        "latents": LATENT_DESCRIPTIONS,
        "sites": [site.to_dict() for site in SITES],
    }


def default_root(preset: str, seed: int) -> Path:
    return home() / "synth" / f"{preset}-seed{seed}"


def ensure_cohort(preset: str = "default", seed: int = 0, root: Path | None = None) -> Path:
    """The cohort's folder, generated first if needed (idempotent, atomic).

    Generation writes into a hidden sibling folder renamed onto `root` only when complete, so
    an interrupted run never looks complete; leftovers of dead runs are removed. A cohort from
    an older generator version is regenerated.
    """
    spec = check_preset(preset)
    root = Path(root) if root is not None else default_root(preset, seed)
    if root.exists():
        record = _read_record(root)
        if record["preset"]["name"] != spec.name or record["seed"] != seed:
            raise ConfigError(
                f"{root} holds the synthetic cohort '{record['preset']['name']}' with seed "
                f"{record['seed']}, not '{spec.name}' with seed {seed}; choose another path."
            )
        if record["version"] == GENERATOR_VERSION:
            return root
    root.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{root.name}.tmp-"  # staging folders of generations that died are removed
    remove_dead(root.parent, prefix)
    staging = root.with_name(prefix + owner_tag())
    shutil.rmtree(staging, ignore_errors=True)
    try:
        generate_cohort(staging, preset, seed)
        if root.exists():  # outdated version: swap it out
            retired = staging.with_name(staging.name.replace(".tmp-", ".old-"))
            os.rename(root, retired)
            os.rename(staging, root)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.rename(staging, root)
    except OSError as exc:  # fine if another process finished first
        if not (root / MARKER).exists():
            raise DataError(f"cannot write the synthetic cohort to {root}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return root


def _read_record(root: Path) -> dict:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        if root.is_file() or (root / "participants.tsv").is_file():
            raise ConfigError(
                f"data.path={root} is your own data, but the dataset is the synthetic cohort; "
                "add --dataset bids (a BIDS folder) or --dataset manifest (a CSV file)."
            ) from None
        raise DataError(
            f"{root} exists but is not a complete synthetic cohort (no readable {MARKER}); "
            "delete it or choose another path."
        ) from None
