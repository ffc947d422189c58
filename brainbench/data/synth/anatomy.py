"""Anatomy of the synthetic cohort: the MNI152 template, subcortical structures, growth curves.

Tissue maps come from the MNI152 2009 grey-matter, white-matter and brain-mask templates that
nilearn ships (2 mm). Everything here is in template (MNI) millimetres; a subject is a smooth
deformation of this space (see render.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class Ellipsoid:
    """An ellipsoid in left-hemisphere MNI mm: centre, radii, direction of the first radius."""

    centre: tuple[float, float, float]
    radii: tuple[float, float, float]
    axis: tuple[float, float, float] = (0.0, 1.0, 0.0)

    def rotation(self, mirror: bool) -> np.ndarray:
        """Rows are the ellipsoid's axes in MNI space (x mirrored for the right hemisphere)."""
        u = np.asarray(self.axis, dtype=float)
        if mirror:
            u[0] = -u[0]
        u /= np.linalg.norm(u)
        helper = np.array([0.0, 0.0, 1.0]) if abs(u[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
        v = np.cross(helper, u)
        v /= np.linalg.norm(v)
        return np.stack([u, v, np.cross(u, v)])


@dataclass(frozen=True)
class Structure:
    """A bilateral subcortical structure (left-hemisphere parts; the right one is mirrored)."""

    name: str
    parts: tuple[Ellipsoid, ...]
    grey_fraction: float  # intensity as a grey/white mixture (pallidum and thalamus are paler)
    ageing_loss: float  # fractional volume lost from 40 to 90 years
    male_ratio: float  # male / female volume beyond brain size (< 1: grows less than the brain)


STRUCTURES: tuple[Structure, ...] = (
    Structure("hippocampus",
              (Ellipsoid((-26, -22, -13), (22, 8, 7), (0.29, -0.8, 0.52)),), 0.95, 0.22, 0.985),
    Structure("amygdala", (Ellipsoid((-23, -4, -19), (9, 8, 7.5)),), 0.95, 0.15, 0.99),
    Structure("caudate",
              (Ellipsoid((-13, 13, 9), (11, 7.5, 9)),
               Ellipsoid((-17, -10, 19), (13, 4.5, 5), (-0.21, -0.94, 0.26))), 0.9, 0.06, 0.98),
    Structure("putamen",
              (Ellipsoid((-27, 2, 1), (18, 6, 12), (0.0, 1.0, 0.15)),), 0.85, 0.15, 0.99),
    Structure("pallidum", (Ellipsoid((-19, -4, 0), (11, 4, 8)),), 0.35, 0.10, 0.99),
    Structure("thalamus",
              (Ellipsoid((-11, -18, 7), (17, 9, 11), (0.2, 1.0, 0.0)),), 0.6, 0.08, 1.0),
    Structure("accumbens", (Ellipsoid((-9, 11, -7), (6.5, 6, 5)),), 0.95, 0.20, 0.965),
)  # fmt: skip
# Box (MNI mm) holding every structure, with a margin for deformation and size variation.
STRUCTURE_BOX = np.array([[-50.0, -60.0, -42.0], [50.0, 40.0, 40.0]])

# Head (MNI) point placed at the centre of the field of view.
HEAD_CENTRE_MM = np.array([0.0, -18.0, 12.0])
# Linear scale of an adult female brain relative to MNI152 (about 1150 ml of grey+white matter).
ADULT_FEMALE_SCALE = 0.882
# Female / male cortical thickness: women's cortex is thicker (Ritchie 2018, UK Biobank).
FEMALE_THICKNESS_RATIO = 1.02


def male_volume_ratio(age: float) -> float:
    """Male / female mean brain volume: ~8% in neonates (Gilmore 2007), ~9-10% in childhood
    (Lenroot 2007), ~11% in adults (Ruigrok 2014 meta-analysis; Eliot 2021)."""
    return float(np.interp(age, [0.0, 6.0, 18.0], [1.08, 1.095, 1.11]))


def post_menstrual_years(age: float) -> float:
    """Years since the last menstrual period before conception (term birth = 40 weeks)."""
    return age + 40.0 / 52.0


def head_growth(age: float) -> float:
    """Intracranial volume relative to an adult's: fast fetal and infant growth, adult plateau."""
    knots_age = [-0.346, -0.19, 0.0, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 25.0, 90.0]
    volume = [0.06, 0.17, 0.33, 0.50, 0.60, 0.72, 0.83, 0.93, 0.98, 1.0, 1.0, 0.99]
    x = np.log(np.maximum([post_menstrual_years(a) for a in knots_age], 1e-3))
    return float(np.interp(np.log(max(post_menstrual_years(age), 0.2)), x, volume))


def myelination(age: float) -> float:
    """White-matter maturity 0..1: unmyelinated before birth, adult-like by about two years.

    T1w grey/white contrast crosses over (isointense phase) near m = 0.35, about six months.
    Mild demyelination after sixty.
    """
    maturity = 1.0 - np.exp(-max(age, 0.0) / 1.2)
    return float(maturity * (1.0 - 0.1 * np.clip((age - 60.0) / 30.0, 0.0, 1.0)))


def folding(age: float) -> float:
    """Cortical folding 0..1: near-smooth cortex at 20 weeks' gestation, adult-like at 44 weeks."""
    return float(np.clip((40.0 + age * 52.0 - 20.0) / 24.0, 0.0, 1.0))


def grey_thickness(age: float) -> float:
    """Cortical thickness relative to a 25-year-old: thin at birth, peaks in early childhood."""
    return float(
        np.interp(age, [-0.4, 0.0, 1.0, 3.0, 10.0, 18.0, 25.0, 60.0, 90.0],
                  [0.75, 0.85, 1.0, 1.1, 1.07, 1.03, 1.0, 0.9, 0.8])
    )  # fmt: skip


def white_matter_deficit(age: float) -> float:
    """Fraction of the adult white-matter volume still grey-like next to the cortex.

    White matter grows into the deepest cortex until the late twenties while grey matter
    shrinks: grey matter volume peaks at ~6 years and white matter at ~29 (Bethlehem et al.
    2022, Nature 604:525); cortical volume falls by ~1% a year from 8 to 22 (Tamnes et al.
    2013, NeuroImage 68:63); white matter rises fast until 12-15 years, then slowly to a
    plateau in the fourth decade (Courchesne et al. 2000, Radiology 216:672). None before
    birth, when myelination() sets the white matter's look.
    """
    return float(
        np.interp(age, [0.0, 1.0, 6.0, 12.0, 18.0, 29.0], [0.0, 0.25, 0.2, 0.1, 0.045, 0.0])
    )


def ventricle_growth(age: float, ageing_rate: float = 1.0) -> float:
    """Ventricle dilation in template mm: large in the fetus, small in youth, growing after 40."""
    early = float(np.interp(age, [-0.4, 0.0, 2.0, 10.0], [1.5, 0.6, 0.0, -0.3]))
    return early + ageing_rate * 0.0012 * max(age - 40.0, 0.0) ** 2


def extra_axial_csf(age: float) -> float:
    """Thickness (template mm) of CSF between brain and skull, wide in infancy; in ageing the
    shrinking brain widens it further (`adult_atrophy`)."""
    return float(np.interp(age, [-0.4, 0.5, 3.0], [3.0, 3.0, 1.5]))


# Yearly brain volume loss by shrinkage within the skull rises by this much per year after 35,
# on top of cortical thinning, ventricles and subcortical ageing.
ATROPHY_ACCELERATION = 1.0e-4
# Radius (template mm) of a ball of the template's smooth brain hull volume (2.1 l).
HULL_RADIUS_MM = 79.0


def adult_atrophy(age: float) -> float:
    """Fraction of the brain's volume lost after 35 by the brain shrinking inside a skull that
    keeps its size (intracranial volume is stable in adulthood). With cortical thinning,
    ventricles and subcortical ageing the brain then loses ~0.2% a year at 35 and ~0.5% at 70,
    white matter ~0.05% and ~0.4% (Schippling et al. 2017, J Neurol 264:520)."""
    years = max(age - 35.0, 0.0)
    return float(-np.expm1(-0.5 * ATROPHY_ACCELERATION * years**2))


def skull_thickness(age: float) -> float:
    """Skull thickness in template mm: thin and soft before birth, adult by twenty."""
    return float(np.interp(age, [-0.4, 0.0, 2.0, 20.0], [0.8, 1.5, 3.0, 6.0]))


@dataclass(frozen=True)
class Template:
    """MNI152 channels on a padded 2 mm grid, sampled per subject by render.py."""

    affine: np.ndarray  # voxel -> MNI mm of the padded grid
    channels: dict[str, np.ndarray]  # float32 volumes, all of one shape


def _signed_distance(mask: np.ndarray, spacing: float) -> np.ndarray:
    """Signed distance (mm) to the mask's surface: negative inside, positive outside."""
    outside = ndimage.distance_transform_edt(~mask) * spacing
    inside = ndimage.distance_transform_edt(mask) * spacing
    return (outside - inside).astype(np.float32)


@lru_cache(maxsize=1)
def load_template(pad: int = 14) -> Template:
    """Build the template channels from nilearn's MNI152 maps (cached per process).

    gm, wm (ventricles filled with white matter), csf (without ventricles), their smoothed
    (unfolded) versions, gm_outer (grey matter weighted by distance from white matter, lost
    first when the cortex thins), wm_outer (white matter within 8 mm of the cortex, scaled to
    the white matter's volume: grey-like where white matter is still immature), vent_sd and
    head_sd (signed distances to the ventricles and a smooth brain hull) and pv (periventricular
    white matter where lesions form).
    """
    from nilearn import datasets

    def load(fetch) -> tuple[np.ndarray, np.ndarray]:
        """A 1 mm template averaged over 2x2x2 blocks and padded; with its affine."""
        image = fetch(resolution=1)
        data = np.asarray(image.get_fdata(dtype=np.float32))
        blocks = [n // 2 for n in data.shape]
        data = data[: 2 * blocks[0], : 2 * blocks[1], : 2 * blocks[2]]
        data = data.reshape(blocks[0], 2, blocks[1], 2, blocks[2], 2).mean(axis=(1, 3, 5))
        to_coarse = np.diag([2.0, 2.0, 2.0, 1.0])
        to_coarse[:3, 3] = 0.5 - 2.0 * pad
        return np.pad(np.clip(data, 0.0, 1.0), pad), image.affine @ to_coarse

    mask, affine = load(datasets.load_mni152_brain_mask)
    mask = mask > 0.5
    gm, _ = load(datasets.load_mni152_gm_template)
    wm, _ = load(datasets.load_mni152_wm_template)
    spacing = 2.0
    total = gm + wm
    over = total > 1.0
    gm[over] /= total[over]
    wm[over] /= total[over]
    csf = np.clip(mask - gm - wm, 0.0, 1.0)

    deep = ndimage.distance_transform_edt(mask) * spacing > 12.0
    components, count = ndimage.label((csf > 0.5) & deep)
    sizes = ndimage.sum_labels(np.ones_like(csf), components, np.arange(1, count + 1))
    keep = np.flatnonzero(sizes * spacing**3 > 500.0) + 1
    ventricles = np.isin(components, keep)
    vent_fraction = csf * ndimage.binary_dilation(ventricles)
    vent_sd = _signed_distance(ventricles, spacing)

    hull = ndimage.gaussian_filter(mask.astype(np.float32), 3.0) > 0.3
    from_white = ndimage.distance_transform_edt(wm < 0.5) * spacing
    wm_outer = wm * np.clip(1.0 - ndimage.distance_transform_edt(wm >= 0.5) * spacing / 8.0, 0, 1)
    smooth = {
        f"{name}_smooth": ndimage.gaussian_filter(channel, 1.5)
        for name, channel in (("gm", gm), ("wm", wm + vent_fraction), ("csf", csf - vent_fraction))
    }
    channels = {
        "gm": gm,
        "wm": wm + vent_fraction,
        "csf": csf - vent_fraction,
        **smooth,
        "gm_outer": gm * np.clip(from_white / 6.0, 0.2, 1.0),
        "wm_outer": wm_outer * (wm.sum() / wm_outer.sum()),
        "vent_sd": vent_sd,
        "head_sd": _signed_distance(hull, spacing),
        "pv": wm * (0.2 + 0.8 * np.clip(1.0 - vent_sd / 14.0, 0.0, 1.0)),
    }
    return Template(affine, {k: np.ascontiguousarray(v, np.float32) for k, v in channels.items()})
