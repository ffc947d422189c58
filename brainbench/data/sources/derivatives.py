"""Brain masks and standard-space scans from a BIDS dataset's derivatives, as fMRIPrep names them.

Under `derivatives/<pipeline>/sub-X/[ses-Y/]anat/`: `sub-X_desc-brain_mask.nii.gz` is the
native-space brain mask (skull-stripping); `sub-X_space-S_[desc-preproc_]T1w.nii.gz` (also T2w,
FLAIR) and `sub-X_space-S_desc-brain_mask.nii.gz` are the scans and their mask in space S.
"""

from __future__ import annotations

from pathlib import Path

from brainbench.bids_names import parse_name
from brainbench.data.records import SpaceImages

SPACE_MODALITIES = ("T1w", "T2w", "FLAIR")


def read_preprocessed(root: Path, rel: Path) -> tuple[Path | None, tuple[SpaceImages, ...]]:
    """(native brain mask, scans in standard spaces) of subject folder `rel` (first sorted wins)."""
    masks: dict[str | None, Path] = {}
    images: dict[str, dict[str, Path]] = {}
    for path in sorted((Path(root) / "derivatives").glob(f"*/{rel.as_posix()}/anat/*.nii*")):
        parsed = parse_name(path.name)
        if parsed is None or not parsed.extension.startswith(".nii"):
            continue
        entities, suffix = parsed.entities, parsed.suffix
        space = entities.get("space")
        if suffix == "mask" and entities.get("desc") == "brain":
            masks.setdefault(space, path)
        elif space and suffix in SPACE_MODALITIES and entities.get("desc", "preproc") == "preproc":
            images.setdefault(space, {}).setdefault(suffix, path)
    spaces = tuple(SpaceImages(s, found, masks.get(s)) for s, found in sorted(images.items()))
    return masks.get(None), spaces
