"""Acquisition sites of the synthetic cohort, modelled on public lifespan datasets.

Each site has its own age range, field of view (hence voxel size on a given grid), storage
orientation, noise level, bias-field strength, per-contrast gamma and intensity scale.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from nibabel.orientations import axcodes2ornt

# Gestational age in weeks -> age in years (negative before term, 40 weeks).
WEEK = 1.0 / 52.0


def gestational_age(weeks: float) -> float:
    """Age in years of a fetus or newborn at `weeks` post-menstrual age (term = 40 weeks = 0)."""
    return (weeks - 40.0) * WEEK


@dataclass(frozen=True)
class Site:
    """One acquisition site / cohort."""

    name: str
    age_range: tuple[float, float]  # years, sampled uniformly within each lifespan stage
    fov_mm: tuple[float, float, float]  # field of view along R, A, S
    orientation: str  # NIfTI storage axis codes, e.g. "RAS", "LPS"
    field_tesla: float
    noise: float  # Rician noise sigma relative to adult white matter on T1w
    bias: float  # standard deviation of the log bias field
    gamma: tuple[float, float, float]  # contrast exponent for T1w, T2w, FLAIR
    intensity_scale: float  # scanner units of adult white matter on T1w
    modelled_on: str

    def voxel_size(self, grid: int) -> np.ndarray:
        """Voxel size (mm) along R, A, S on a grid of `grid`^3 voxels."""
        return np.asarray(self.fov_mm, dtype=float) / grid

    def affine(
        self, grid: int, offset_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    ) -> np.ndarray:
        """Voxel -> scanner RAS+ mm; axes follow `orientation`, grid centre at `offset_mm`."""
        ornt = axcodes2ornt(tuple(self.orientation))
        size = self.voxel_size(grid)
        affine = np.zeros((4, 4))
        for axis, (world_axis, flip) in enumerate(ornt.astype(int)):
            affine[world_axis, axis] = flip * size[world_axis]
        affine[3, 3] = 1.0
        centre = np.full(3, (grid - 1) / 2.0)
        affine[:3, 3] = np.asarray(offset_mm) - affine[:3, :3] @ centre
        return affine

    def to_dict(self) -> dict:
        return asdict(self)


# fmt: off
SITES: tuple[Site, ...] = (
    # name, age range (years), FOV R/A/S (mm), axes, tesla,
    #     noise, bias, gamma T1w/T2w/FLAIR, intensity scale, modelled on
    Site("dhcp-fetal", (gestational_age(22), gestational_age(39.5)), (140, 165, 140), "RAS", 1.5,
         0.09, 0.25, (1.0, 1.0, 1.1), 600.0, "developing Human Connectome Project, fetal"),
    Site("dhcp-neonatal", (0.0, gestational_age(44.3)), (145, 170, 145), "RAS", 3.0,
         0.06, 0.2, (1.0, 0.95, 1.0), 1000.0, "developing Human Connectome Project, neonatal"),
    Site("bcp", (1.0 / 12.0, 5.0), (180, 210, 180), "RAS", 3.0,
         0.05, 0.18, (1.05, 1.0, 1.0), 1000.0, "Baby Connectome Project"),
    Site("calgary-preschool", (2.0, 8.0), (200, 230, 200), "RAS", 3.0,
         0.05, 0.15, (0.95, 1.05, 1.0), 800.0, "Calgary Preschool MRI"),
    Site("abcd", (9.0, 11.5), (200, 235, 205), "RAS", 3.0,
         0.04, 0.12, (1.0, 1.0, 0.95), 1.0, "Adolescent Brain Cognitive Development"),
    Site("hbn", (5.0, 21.0), (205, 235, 205), "RAS", 3.0,
         0.045, 0.15, (1.1, 0.9, 1.0), 3000.0, "Healthy Brain Network"),
    Site("ping", (3.0, 21.0), (205, 240, 205), "RAS", 3.0,
         0.05, 0.22, (0.9, 1.0, 1.05), 250.0, "Pediatric Imaging, Neurocognition and Genetics"),
    Site("hcp-d", (8.0, 21.9), (208, 240, 208), "RAS", 3.0,
         0.035, 0.12, (1.0, 1.05, 1.0), 1200.0, "Human Connectome Project Development"),
    Site("abide", (7.0, 50.0), (210, 240, 210), "LAS", 3.0,
         0.06, 0.2, (1.15, 0.9, 0.9), 500.0, "Autism Brain Imaging Data Exchange"),
    Site("hcp-ya", (22.0, 37.0), (210, 245, 210), "RAS", 3.0,
         0.03, 0.1, (1.0, 1.0, 1.0), 1200.0, "Human Connectome Project Young Adult"),
    Site("camcan", (18.0, 88.0), (215, 245, 215), "PIR", 3.0,
         0.04, 0.15, (0.95, 1.0, 1.1), 900.0, "Cambridge Centre for Ageing and Neuroscience"),
    Site("hcp-a", (36.0, 90.0), (210, 245, 215), "RAS", 3.0,
         0.035, 0.12, (1.0, 1.05, 1.0), 1200.0, "Human Connectome Project Aging"),
    Site("ukb", (45.0, 82.0), (200, 240, 210), "RAS", 3.0,
         0.045, 0.2, (0.92, 1.0, 1.15), 2000.0, "UK Biobank imaging"),
    Site("adni", (55.0, 90.0), (215, 250, 220), "LPS", 1.5,
         0.07, 0.28, (1.08, 0.95, 0.95), 400.0, "Alzheimer's Disease Neuroimaging Initiative"),
)
# fmt: on
SITE_BY_NAME: dict[str, Site] = {site.name: site for site in SITES}
