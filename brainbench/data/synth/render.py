"""One subject: morphometric latents from age, sex and disease, then images and labels.

A subject's voxel grid maps to template space through an affine (head size, shape, pose) plus a
smooth random displacement; one `map_coordinates` pass per template channel gives its tissue
fractions, which contrast tables per modality turn into T1w, T2w, FLAIR and mean-diffusivity
images, with a site-specific gamma, bias field, intensity scale and Rician noise.

Every rendering comes with a brain mask whose edge wanders as skull-stripping tools leave it
(some CSF kept, the cortex occasionally clipped), so a scan can also be given skull-stripped.
In MNI space (`space="mni"`) the grid is the MNI152 field of view and the subject is
affinely normalised: no head size, shape or pose, only the individual deformation is left.
Label maps cover the image's field of view on voxels of at most LABEL_MM (`label_grid`), as
manual or FreeSurfer labels are finer than a coarse scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage
from scipy.special import expit, ndtri

from brainbench.data.synth import anatomy
from brainbench.data.synth.anatomy import STRUCTURES, Template
from brainbench.data.synth.sites import Site

MODALITIES: tuple[str, ...] = ("T1w", "T2w", "FLAIR", "dwi")
TISSUES: tuple[str, ...] = ("gm", "wm", "csf", "lesion", "skull", "scalp")
# Tissue intensity per modality at myelination 0 (unmyelinated) and 1 (adult); T1w/T2w/FLAIR are
# relative to adult white matter on T1w, dwi is mean diffusivity in 10^-3 mm^2/s.
CONTRAST: dict[str, dict[str, tuple[float, float]]] = {
    "T1w": {"gm": (0.70, 0.62), "wm": (0.50, 1.00), "csf": (0.12, 0.18), "lesion": (0.45, 0.45),
            "skull": (0.08, 0.08), "scalp": (0.60, 0.85)},
    "T2w": {"gm": (0.58, 0.52), "wm": (0.80, 0.32), "csf": (1.00, 1.00), "lesion": (0.85, 0.85),
            "skull": (0.05, 0.05), "scalp": (0.50, 0.45)},
    "FLAIR": {"gm": (0.55, 0.62), "wm": (0.58, 0.45), "csf": (0.08, 0.06), "lesion": (0.95, 0.95),
              "skull": (0.05, 0.05), "scalp": (0.55, 0.70)},
    "dwi": {"gm": (1.25, 0.85), "wm": (1.60, 0.70), "csf": (3.00, 3.00), "lesion": (1.20, 1.20),
            "skull": (0.30, 0.30), "scalp": (0.80, 0.80)},
}  # fmt: skip
NOISE_FACTOR = {"T1w": 1.0, "T2w": 1.2, "FLAIR": 1.4, "dwi": 2.0}
SCALP_MM = 5.0  # template mm
EDGE_MM = 0.8  # softness of the head layers
HULL_MARGIN_MM = 4.0
# Brain-mask edge: a subject's share of the extra-axial CSF kept, then +/- a smooth wander (mm),
# as BET/SynthStrip masks differ from the pial surface by 1-2 mm (Hoopes et al. 2022, Fig. 5).
MASK_CSF_SHARE = (0.2, 1.0)
MASK_WANDER_MM = 1.0
MNI_BOX_MM = np.array([[-96.0, -132.0, -78.0], [96.0, 96.0, 114.0]])  # MNI152 2009c, 1 mm FOV
MIDLINE_MM = 2.0  # ventricle voxels this close to x = 0 (third ventricle) get no lateral label
# Label maps are drawn on voxels of at most this size, finer than a coarse image's: on the image's
# own 2.3-3.6 mm voxels a label edge was a staircase a native voxel wide, and a 2 mm grid
# resampled from it disagreed with the anatomy (Dice 0.82-0.87 against a 1.2 mm rendering; 0.90-0.92
# from labels on this grid).
LABEL_MM = 2.0
# Partial volumes of the structures in an image voxel: samples at these offsets (voxel units).
SUBVOXELS = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]) / 4.0
LABEL_SHARE = 0.01  # label voxels are drawn around the image voxels with more of a label than this


def smooth_field(rng: np.random.Generator, shape: tuple[int, ...], n_freq: int) -> np.ndarray:
    """A smooth random 3D field (unit standard deviation) from low-frequency cosines."""
    amplitude = rng.standard_normal((n_freq,) * 3)
    k = np.arange(n_freq)
    amplitude /= 1.0 + (k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    amplitude[0, 0, 0] = 0.0
    bases = [np.cos(np.pi * np.outer(np.arange(n) + 0.5, k) / n) for n in shape]
    field = np.einsum("ia,abc->ibc", bases[0], amplitude)
    field = np.einsum("jb,ibc->ijc", bases[1], field)
    field = (field @ bases[2].T).astype(np.float32)
    return field / max(float(field.std()), 1e-6)


def sample_latents(
    age: float, sex: str, dementia: bool, hypertension: bool, rng: np.random.Generator
) -> dict[str, float]:
    """Morphometric latents of one subject (the oracle's features); z-scores are individual."""
    scale_z = rng.standard_normal()
    male = sex == "M"
    sex_ratio = anatomy.male_volume_ratio(age) ** (1 / 3) if male else 1.0
    scale = anatomy.ADULT_FEMALE_SCALE * anatomy.head_growth(age) ** (1 / 3) * sex_ratio
    scale *= np.exp(0.025 * scale_z)
    gm_z = rng.standard_normal()
    latents = {
        "brain_scale": scale,
        "brain_scale_z": scale_z,
        "gm_thickness": anatomy.grey_thickness(age)
        * (1.0 if male else anatomy.FEMALE_THICKNESS_RATIO)
        * np.exp(0.04 * gm_z)
        - 0.08 * dementia,
        "gm_thickness_z": gm_z,
        "ventricle_mm": anatomy.ventricle_growth(age, np.exp(0.25 * rng.standard_normal()))
        + 0.3 * rng.standard_normal()
        + 1.0 * dementia,
        "extra_csf_mm": anatomy.extra_axial_csf(age) * np.exp(0.15 * rng.standard_normal())
        + 0.8 * dementia,
        "skull_mm": anatomy.skull_thickness(age) * np.exp(0.1 * rng.standard_normal()),
        "myelination": float(
            np.clip(anatomy.myelination(age + 0.08 * rng.standard_normal()), 0, 1)
        ),
        "folding": anatomy.folding(age),
        "wmh_load": 0.0,
    }
    if age >= 35.0:
        wmh = 0.008 * np.exp((age - 45.0) / 18.0) * (1.0 + 1.5 * hypertension)
        latents["wmh_load"] = float(np.clip(wmh * np.exp(0.5 * rng.standard_normal()), 0, 0.35))
    for axis in "xyz":
        latents[f"shape_{axis}"] = float(np.exp(0.025 * rng.standard_normal()))
    for structure in STRUCTURES:
        loss = structure.ageing_loss * np.clip((age - 40.0) / 50.0, 0.0, 1.0) ** 1.5
        factor = (1.0 - loss) * np.exp(0.04 * rng.standard_normal())
        factor *= structure.male_ratio if male else 1.0
        if dementia and structure.name in ("hippocampus", "amygdala"):
            factor *= 0.75 if structure.name == "hippocampus" else 0.85
        latents[f"size_{structure.name}"] = float(factor)
    latents["wm_deficit"] = anatomy.white_matter_deficit(age) * np.exp(0.2 * rng.standard_normal())
    # The brain shrinks inside an unchanged skull: the CSF layer widens by what it gives up.
    atrophy = min(anatomy.adult_atrophy(age) * np.exp(0.3 * rng.standard_normal()), 0.5)
    shrink = (1.0 - atrophy) ** (1 / 3)
    latents["atrophy"] = atrophy
    latents["brain_scale"] *= shrink
    latents["extra_csf_mm"] += anatomy.HULL_RADIUS_MM * (1.0 / shrink - 1.0)
    latents["skull_mm"] /= shrink
    return {key: float(value) for key, value in latents.items()}


@dataclass(frozen=True)
class Rendering:
    """One rendered scan: images by modality, label map and its affine (`label_grid`), brain mask
    (uint8), the images' affine, measured volumes."""

    images: dict[str, np.ndarray]
    labels: np.ndarray | None
    label_affine: np.ndarray | None
    brain_mask: np.ndarray
    affine: np.ndarray
    measured: dict[str, float]


@dataclass(frozen=True)
class Pose:
    """Nuisance geometry of one scan: head rotation (radians), translation (mm), deformation."""

    rotation: np.ndarray
    translation: np.ndarray
    deformation_mm: float


def sample_pose(age: float, rng: np.random.Generator) -> Pose:
    """Head pose: fetuses move more than subjects who can be asked to lie still."""
    fetal = age < 0
    rotation = np.deg2rad(rng.normal(0.0, 10.0 if fetal else 4.0, 3))
    return Pose(rotation, rng.normal(0.0, 6.0 if fetal else 4.0, 3), 2.5)


def _rotation_matrix(angles: np.ndarray) -> np.ndarray:
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def voxel_to_template(affine: np.ndarray, latents: dict[str, float], pose: Pose) -> np.ndarray:
    """4x4 map from subject voxel indices to template mm (before the smooth deformation)."""
    stretch = np.diag([latents["brain_scale"] * latents[f"shape_{a}"] for a in "xyz"])
    forward = _rotation_matrix(pose.rotation) @ stretch  # template mm -> scanner mm
    to_template = np.eye(4)
    to_template[:3, :3] = np.linalg.inv(forward)
    to_template[:3, 3] = anatomy.HEAD_CENTRE_MM - to_template[:3, :3] @ pose.translation
    return to_template @ affine


def _structure_fractions(
    points_mm: np.ndarray, offsets_mm: np.ndarray, latents: dict[str, float]
) -> np.ndarray:
    """Partial-volume fraction of each structure (K, M) from sub-voxel samples; overlaps go to
    the structure whose boundary is farthest."""
    n_struct = len(STRUCTURES)
    parts = []  # (structure index, centre, rotation, radii)
    for index, structure in enumerate(STRUCTURES):
        grow = latents[f"size_{structure.name}"] ** (1 / 3)
        for part in structure.parts:
            for mirror in (False, True):
                centre = np.array(part.centre, dtype=float) * (-1 if mirror else 1, 1, 1)
                radii = np.asarray(part.radii, dtype=float) * grow
                parts.append((index, centre, part.rotation(mirror), radii))
    fractions = np.zeros((n_struct, points_mm.shape[1]), dtype=np.float32)
    for offset in offsets_mm:
        best = np.full(points_mm.shape[1], np.inf, dtype=np.float32)
        owner = np.full(points_mm.shape[1], -1)
        for index, centre, rotation, radii in parts:
            local = (rotation @ (points_mm + (offset - centre)[:, None])) / radii[:, None]
            q = np.einsum("ij,ij->j", local, local)
            better = (q < 1.0) & (q < best)
            best[better] = q[better]
            owner[better] = index
        hit = owner >= 0
        np.add.at(fractions, (owner[hit], np.flatnonzero(hit)), 1.0)
    return fractions / len(offsets_mm)


def mni_grid(grid: int) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Affine and shape of the MNI152 field of view at 192 / `grid` mm (grid voxels across x)."""
    spacing = 192.0 / grid
    extent = (MNI_BOX_MM[1] - MNI_BOX_MM[0]) / spacing
    shape = tuple(int(n) for n in np.round(extent))
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = MNI_BOX_MM[0] + spacing / 2.0
    return affine, shape  # type: ignore[return-value]


def _coordinates(
    template: Template, to_template: np.ndarray, shape: tuple[int, ...], pose: Pose, rng
) -> np.ndarray:
    """Template voxel coordinates (3, *shape) of every subject voxel, smoothly deformed."""
    to_index = np.linalg.inv(template.affine) @ to_template
    axes = [np.arange(n, dtype=np.float32) for n in shape]
    coords = np.empty((3, *shape), dtype=np.float32)
    for row in range(3):
        coords[row] = (
            to_index[row, 0] * axes[0][:, None, None]
            + to_index[row, 1] * axes[1][None, :, None]
            + to_index[row, 2] * axes[2][None, None, :]
            + to_index[row, 3]
        )
        coords[row] += smooth_field(rng, shape, 4) * (pose.deformation_mm / 2.0)
    return coords


def _structures(
    template: Template, coords: np.ndarray, offsets_mm: np.ndarray, latents: dict[str, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of the voxels near the structures and their fractions (K, M) there, sampled
    at `offsets_mm` (S, 3) around each voxel centre."""
    points_mm = np.tensordot(template.affine[:3, :3], coords.reshape(3, -1), 1)
    points_mm += template.affine[:3, 3, None]
    low, high = anatomy.STRUCTURE_BOX
    box = np.flatnonzero(np.all((points_mm > low[:, None]) & (points_mm < high[:, None]), axis=0))
    return box, _structure_fractions(points_mm[:, box], offsets_mm, latents)


def label_grid(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[int, np.ndarray, tuple]:
    """The label map's grid: the image's field of view cut into voxels of at most LABEL_MM,
    `factor` per image voxel along each axis; returns factor, affine and shape."""
    factor = max(1, int(np.ceil(nib.affines.voxel_sizes(affine).max() / LABEL_MM - 1e-6)))
    fine = affine.copy()
    fine[:3, :3] = affine[:3, :3] / factor
    fine[:3, 3] = affine[:3, 3] + affine[:3, :3] @ np.full(3, (1.0 / factor - 1.0) / 2.0)
    return factor, fine, tuple(factor * n for n in shape)


def _labels(
    template: Template,
    coords: np.ndarray,
    affine: np.ndarray,
    latents: dict[str, float],
    brain: np.ndarray,
    present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Label map and its affine on `label_grid`: every label voxel takes the label with the largest
    share at its centre (background = everything else), ventricle CSF left and right of the
    midline being the lateral ventricles. Only the block of image voxels holding a label
    (`present`) is drawn; coordinates and brain fraction are interpolated from the image grid,
    where both are smooth."""
    factor, label_affine, label_shape = label_grid(affine, brain.shape)
    labels = np.zeros(label_shape, dtype=np.uint8)
    where = np.argwhere(present)
    if not len(where):
        return labels, label_affine
    lo = np.maximum(where.min(axis=0) - 1, 0) * factor
    hi = np.minimum(where.max(axis=0) + 2, brain.shape) * factor
    axes = [(np.arange(a, b) + 0.5) / factor - 0.5 for a, b in zip(lo, hi, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"))
    fine = np.stack([ndimage.map_coordinates(c, grid, order=1, mode="nearest") for c in coords])
    inside = ndimage.map_coordinates(brain, grid, order=1, mode="nearest").reshape(-1)
    vent_sd = ndimage.map_coordinates(
        template.channels["vent_sd"], fine.reshape(3, -1), order=1, mode="nearest", prefilter=False
    )
    vent = expit(latents["ventricle_mm"] - vent_sd)
    box, deep = _structures(template, fine, np.zeros((1, 3)), latents)
    deep *= inside[box] * (1.0 - vent[box])
    x_mm = np.tensordot(template.affine[0, :3], fine.reshape(3, -1), 1) + template.affine[0, 3]
    ventricle = vent * inside
    parts = np.zeros((1 + len(STRUCTURES) + 2, ventricle.size), dtype=np.float32)
    parts[1 : 1 + len(STRUCTURES), box] = deep
    parts[-2] = ventricle * (x_mm <= -MIDLINE_MM)
    parts[-1] = ventricle * (x_mm >= MIDLINE_MM)
    parts[0] = 1.0 - parts.sum(axis=0)
    block = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    labels[block] = np.argmax(parts, axis=0).reshape(grid.shape[1:])
    return labels, label_affine


def render(
    template: Template,
    site: Site,
    grid: int,
    age: float,
    latents: dict[str, float],
    rng: np.random.Generator,
    space: str = "native",
    with_labels: bool = True,
) -> Rendering:
    """Images (float32), label map, brain mask, affine and measured volumes (ml) of one subject.

    `space` "native": the site's grid and orientation, the subject's head size and pose;
    "mni": the MNI152 grid, affinely normalised (see module docstring). Without `with_labels`
    the label map is left out (None): it is the costliest part of a rendering.
    """
    if space == "mni":
        affine, shape = mni_grid(grid)
        pose = Pose(np.zeros(3), np.zeros(3), 2.5)
        to_template = affine
    else:
        shape = (grid,) * 3
        affine = site.affine(grid, tuple(rng.normal(0.0, 3.0, 3)))
        pose = sample_pose(age, rng)
        to_template = voxel_to_template(affine, latents, pose)
    coords = _coordinates(template, to_template, shape, pose, rng)
    distance = ndimage.map_coordinates(
        template.channels["head_sd"], coords, order=1, mode="nearest", prefilter=False
    )
    inside = distance < HULL_MARGIN_MM  # brain channels are zero beyond the smooth brain hull
    points = coords[:, inside]

    def sample(name: str, fill: float = 0.0) -> np.ndarray:
        values = np.full(shape, fill, dtype=np.float32)
        values[inside] = ndimage.map_coordinates(
            template.channels[name], points, order=1, mode="nearest", prefilter=False
        )
        return values

    # Brain tissue: unfolded before birth, thinner cortex with age, white matter growing into the
    # cortex until adulthood, lesions, bigger ventricles.
    fold = latents["folding"]
    tissue = {name: sample(name) for name in ("gm", "wm", "csf")}
    if fold < 1.0:
        for name in ("gm", "wm", "csf"):
            tissue[name] = fold * tissue[name] + (1.0 - fold) * sample(f"{name}_smooth")
    thinning = (1.0 - latents["gm_thickness"]) * sample("gm_outer")
    thinning = np.clip(thinning, -tissue["csf"], tissue["gm"])
    tissue["gm"] -= thinning
    tissue["csf"] += thinning
    if latents["wm_deficit"] > 0.0:  # none before birth and from 29 years on
        immature = np.minimum(latents["wm_deficit"] * sample("wm_outer"), tissue["wm"])
        tissue["wm"] -= immature
        tissue["gm"] += immature
    tissue["lesion"] = np.zeros(shape, dtype=np.float32)
    if latents["wmh_load"] > 1e-4:
        threshold = ndtri(1.0 - latents["wmh_load"])
        blobs = expit((smooth_field(rng, shape, 10) - threshold) / 0.25)
        tissue["lesion"] = np.minimum(sample("pv") * blobs, tissue["wm"])
        tissue["wm"] -= tissue["lesion"]
    brain = np.clip(sum(tissue.values()), 0.0, 1.0)
    vent = expit(latents["ventricle_mm"] - sample("vent_sd", fill=100.0)).astype(np.float32)

    # Subcortical structures replace tissue; dilated ventricles replace both.
    box, deep = _structures(template, coords, SUBVOXELS @ to_template[:3, :3].T, latents)
    deep *= brain.reshape(-1)[box]
    keep = 1.0 - deep.sum(axis=0) / np.maximum(brain.reshape(-1)[box], 1e-6)
    deep *= 1.0 - vent.reshape(-1)[box]
    for name in ("gm", "wm", "csf", "lesion"):
        tissue[name] *= 1.0 - vent
        tissue[name].reshape(-1)[box] *= keep
    tissue["csf"] += vent * brain

    # Head: extra-axial CSF, skull and scalp as layers outside the brain hull.
    outside = 1.0 - brain
    csf_edge = latents["extra_csf_mm"]
    skull_edge = csf_edge + latents["skull_mm"]
    scalp_edge = skull_edge + SCALP_MM * min(1.0, latents["skull_mm"] / 3.0)
    layer = [expit((edge - distance) / EDGE_MM) for edge in (csf_edge, skull_edge, scalp_edge)]
    tissue["csf"] += outside * layer[0]
    tissue["skull"] = outside * (layer[1] - layer[0])
    tissue["scalp"] = outside * (layer[2] - layer[1])

    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    parenchyma = float(tissue["gm"].sum() + tissue["wm"].sum() + tissue["lesion"].sum())
    measured = {
        "brain_ml": (parenchyma + float(deep.sum())) * voxel_ml,
        "icv_ml": (float(brain.sum()) + float((outside * layer[0]).sum())) * voxel_ml,
        "gm_ml": float(tissue["gm"].sum() + deep.sum()) * voxel_ml,
        "wm_ml": float(tissue["wm"].sum() + tissue["lesion"].sum()) * voxel_ml,
        "ventricle_ml": float((vent * brain).sum()) * voxel_ml,
        "wmh_ml": float(tissue["lesion"].sum()) * voxel_ml,
    }
    for index, structure in enumerate(STRUCTURES):
        measured[f"{structure.name}_ml"] = float(deep[index].sum()) * voxel_ml

    labels = label_affine = None
    if with_labels:
        present = (vent * brain).reshape(-1) > LABEL_SHARE
        present[box] |= deep.max(axis=0) > LABEL_SHARE
        labels, label_affine = _labels(
            template, coords, affine, latents, brain, present.reshape(shape)
        )
    edge = latents["extra_csf_mm"] * rng.uniform(*MASK_CSF_SHARE)
    mask = distance < edge + MASK_WANDER_MM * smooth_field(rng, shape, 6)
    images = _images(tissue, box, deep, site, age, latents["myelination"], rng)
    return Rendering(images, labels, label_affine, mask.astype(np.uint8), affine, measured)


def _level(modality: str, tissue: str, myelination: float) -> float:
    low, high = CONTRAST[modality][tissue]
    return low + (high - low) * myelination


def _images(
    tissue: dict[str, np.ndarray],
    box: np.ndarray,
    deep: np.ndarray,
    site: Site,
    age: float,
    myelination: float,
    rng: np.random.Generator,
) -> dict[str, np.ndarray]:
    """Tissue fractions -> T1w, T2w, FLAIR, MD images with site contrast, bias and noise."""
    shape = tissue["gm"].shape
    images = {}
    for index, modality in enumerate(MODALITIES):
        image = np.zeros(shape, dtype=np.float32)
        for name in TISSUES:
            image += tissue[name] * np.float32(_level(modality, name, myelination))
        grey, white = _level(modality, "gm", myelination), _level(modality, "wm", myelination)
        levels = np.array([s.grey_fraction * (grey - white) + white for s in STRUCTURES])
        image.reshape(-1)[box] += levels.astype(np.float32) @ deep
        sigma = site.noise * NOISE_FACTOR[modality] * float(np.exp(0.15 * rng.standard_normal()))
        if modality == "dwi":  # mean diffusivity rises in old age
            image *= np.float32(1.0 + 0.08 * np.clip((age - 60.0) / 30.0, 0.0, 1.0))
        else:
            image = image ** np.float32(site.gamma[index])
            image *= np.exp(site.bias * smooth_field(rng, shape, 3))
            scale = site.intensity_scale * float(np.exp(0.05 * rng.standard_normal()))
            image *= np.float32(scale)
            sigma *= scale
        real = image + np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
        imag = np.float32(sigma) * rng.standard_normal(shape, dtype=np.float32)
        images[modality] = np.sqrt(real * real + imag * imag).astype(np.float32)
    return images
