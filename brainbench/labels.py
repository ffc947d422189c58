"""The label set of the cohort's label maps: subcortical structures and lateral ventricles.

The generator writes it, mri/seg scores it, predict reports a volume per label.
"""

SUBCORTICAL_LABELS: tuple[str, ...] = (
    "background",
    "hippocampus",
    "amygdala",
    "caudate",
    "putamen",
    "pallidum",
    "thalamus",
    "accumbens",
    "left_lateral_ventricle",
    "right_lateral_ventricle",
)
