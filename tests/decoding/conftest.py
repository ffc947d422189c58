"""A miniature BOLD5000 copy in its documented layout, written once per test session."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from PIL import Image

from brainbench.data.image_features import builtin_features
from brainbench.data.synth.stimuli import make_image

TR, SOA, N_TRAIN, N_TEST, REPEATS = 2.0, 6.0, 24, 6, 2


def write_bold5000(root: Path, subjects: tuple[str, ...] = ("CSI1", "CSI2")) -> Path:
    """Two subjects, one session, two runs each; ImgName with 'rep_' on repeated images."""
    names = [f"COCO_train2014_{i:012d}.jpg" for i in range(N_TRAIN + N_TEST)]
    (root / "stimuli" / "COCO").mkdir(parents=True)
    for i, name in enumerate(names):
        Image.fromarray(make_image(7, i)).save(root / "stimuli" / "COCO" / name)
    (root / "task-5000scenes_bold.json").write_text(json.dumps({"RepetitionTime": TR}))
    rows = ["participant_id\tage\tsex"] + [f"sub-{s}\t{24 + i}\tF" for i, s in enumerate(subjects)]
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")
    rng = np.random.default_rng(0)
    affine = np.diag([12.0, 12.0, 12.0, 1.0])
    affine[:3, 3] = (-90.0, -126.0, -72.0)
    features = builtin_features([make_image(7, i) for i in range(len(names))])
    features = (features - features.mean(0)) / (features.std(0) + 1e-6)
    weights = rng.normal(size=(features.shape[1], 16 * 19 * 16)) / 5
    patterns = (features @ weights).reshape(len(names), 16, 19, 16)  # a linear encoding model
    for s in subjects:
        trials = names[:N_TRAIN] + [f"rep_{n}" for n in names[N_TRAIN:]] * REPEATS
        order = [trials[i] for i in rng.permutation(len(trials))]
        for run, part in enumerate(np.array_split(order, 2), start=1):
            onsets = 4.0 + SOA * np.arange(len(part))
            n_vols = int((onsets[-1] + 12) / TR)
            data = rng.normal(size=(16, 19, 16, n_vols)) + 100
            for onset, name in zip(onsets, part, strict=True):
                k = int(onset / TR) + 2
                data[..., k : k + 3] += (
                    2 * patterns[names.index(name.removeprefix("rep_"))][..., None]
                )
            func = root / f"sub-{s}" / "ses-01" / "func"
            func.mkdir(parents=True, exist_ok=True)
            stem = f"sub-{s}_ses-01_task-5000scenes_run-{run:02d}"
            nib.save(nib.Nifti1Image(data.astype(np.float32), affine), func / f"{stem}_bold.nii.gz")
            lines = ["onset\tduration\tImgName"] + [
                f"{o}\t1.0\t{n}" for o, n in zip(onsets, part, strict=True)
            ]
            (func / f"{stem}_events.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def bold5000(tmp_path_factory) -> Path:
    return write_bold5000(tmp_path_factory.mktemp("bold5000"))
