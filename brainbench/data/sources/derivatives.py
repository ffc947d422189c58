"""Brain masks and standard-space scans from a BIDS dataset's derivatives, as fMRIPrep names them.

Under `derivatives/<pipeline>/sub-X/[ses-Y/]anat/`: `sub-X_desc-brain_mask.nii.gz` is the
native-space brain mask (skull-stripping); `sub-X_space-S_[desc-preproc_]T1w.nii.gz` (also T2w,
FLAIR) and `sub-X_space-S_desc-brain_mask.nii.gz` are the scans and their mask in space S.
"""

from __future__ import annotations

from pathlib import Path

from brainbench.data.records import SpaceImages

SPACE_MODALITIES = ("T1w", "T2w", "FLAIR")


def name_entities(path: Path) -> tuple[dict[str, str], str] | None:
    """({entity: value}, suffix) of a BIDS NIfTI file name, or None when it is not one."""
    for ext in (".nii.gz", ".nii"):
        if path.name.endswith(ext):
            *pairs, suffix = path.name[: -len(ext)].split("_")
            if all(p.count("-") == 1 for p in pairs):
                return dict(p.split("-") for p in pairs), suffix
    return None


def read_preprocessed(root: Path, rel: Path) -> tuple[Path | None, tuple[SpaceImages, ...]]:
    """(native brain mask, scans in standard spaces) of subject folder `rel` (first sorted wins)."""
    masks: dict[str | None, Path] = {}
    images: dict[str, dict[str, Path]] = {}
    for path in sorted((Path(root) / "derivatives").glob(f"*/{rel.as_posix()}/anat/*.nii*")):
        parsed = name_entities(path)
        if parsed is None:
            continue
        entities, suffix = parsed
        space = entities.get("space")
        if suffix == "mask" and entities.get("desc") == "brain":
            masks.setdefault(space, path)
        elif space and suffix in SPACE_MODALITIES and entities.get("desc", "preproc") == "preproc":
            images.setdefault(space, {}).setdefault(suffix, path)
    spaces = tuple(SpaceImages(s, found, masks.get(s)) for s, found in sorted(images.items()))
    return masks.get(None), spaces
