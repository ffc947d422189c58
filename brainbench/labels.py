"""The 8-class subcortical label set: the cohort generator writes it, mri/seg scores it."""

SUBCORTICAL_LABELS: tuple[str, ...] = (
    "background",
    "hippocampus",
    "amygdala",
    "caudate",
    "putamen",
    "pallidum",
    "thalamus",
    "accumbens",
)
