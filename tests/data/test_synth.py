"""The embedded synthetic lifespan cohort: layout, determinism, anatomy, atomic caching."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainbench.data.sources.bids import read_bids
from brainbench.data.synth import LABELS, PRESETS, SITES, ensure_cohort, generate_cohort, render
from brainbench.data.synth import generate as gen
from brainbench.data.synth.anatomy import load_template
from brainbench.errors import ConfigError, DataError
from brainbench.stages import STAGE_NAMES, stages_of


@pytest.fixture(autouse=True)
def _home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAINBENCH_HOME", str(tmp_path_factory.mktemp("home")))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_cohort(tmp_path_factory.mktemp("debug") / "cohort", "debug", seed=0)


@pytest.fixture(scope="module")
def table(cohort: Path) -> pd.DataFrame:
    participants = pd.read_csv(cohort / "participants.tsv", sep="\t", na_values="n/a")
    latents = pd.read_csv(cohort / "derivatives" / "latents.tsv", sep="\t")
    return participants.merge(latents, on="participant_id")


def digest(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def image_path(root: Path, subject: str, modality: str) -> Path:
    if modality == "dseg":
        return root / "derivatives" / "labels" / subject / "anat" / f"{subject}_dseg.nii.gz"
    folder = "dwi" if modality == "dwi" else "anat"
    return root / subject / folder / f"{subject}_{modality}.nii.gz"


def test_layout_and_participants(cohort: Path, table: pd.DataFrame) -> None:
    description = json.loads((cohort / "dataset_description.json").read_text())
    assert description["DatasetType"] == "raw" and "BIDSVersion" in description
    assert "debug" in description["GeneratedBy"][0]["Description"]
    columns = json.loads((cohort / "participants.json").read_text())
    participants = pd.read_csv(
        cohort / "participants.tsv", sep="\t", dtype=str, keep_default_na=False
    )
    assert list(participants.columns) == list(columns)
    assert list(participants.columns[:4]) == ["participant_id", "age", "sex", "site"]
    assert len(participants) == PRESETS["debug"].n_subjects
    assert set(participants.sex) == {"F", "M"}
    assert set(participants.site) <= {site.name for site in SITES}
    assert (participants == "n/a").any().any()  # missing values are written BIDS-style
    signal = {name: meta["ImagingSignal"] for name, meta in list(columns.items())[1:]}
    assert signal["cognition"] and signal["weight"] and signal["dementia"]
    assert not signal["handedness"] and not signal["migraine"]
    dseg = pd.read_csv(cohort / "derivatives" / "labels" / "dseg.tsv", sep="\t")
    assert list(dseg.name) == list(LABELS) and list(dseg["index"]) == list(range(10))
    record = json.loads((cohort / gen.MARKER).read_text())
    assert record["seed"] == 0 and len(record["sites"]) == len(SITES)
    for subject in participants.participant_id:
        for modality in ("T1w", "T2w", "FLAIR", "dwi", "dseg"):
            assert image_path(cohort, subject, modality).is_file()
    latent_columns = set(table.columns) - set(participants.columns)
    assert {"brain_scale", "myelination", "size_hippocampus", "brain_ml"} <= latent_columns
    assert "age" not in pd.read_csv(cohort / "derivatives" / "latents.tsv", sep="\t")


def test_every_stage_is_present(table: pd.DataFrame) -> None:
    counts = pd.Series(stages_of(table.age.to_numpy())).value_counts()
    assert set(counts.index) == set(STAGE_NAMES)
    assert counts.min() >= 4
    assert table.age.min() < -0.2 and table.age.max() > 80


def on_image_grid(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label map on `render.label_grid` taken to its image's grid (the label at each image
    voxel's centre, or the nearest label voxel to it)."""
    factor = labels.shape[0] // shape[0]
    return labels[factor // 2 :: factor, factor // 2 :: factor, factor // 2 :: factor]


def test_images_affines_and_labels(cohort: Path, table: pd.DataFrame) -> None:
    orientations = {}
    for row in table.itertuples():
        site = gen.SITE_BY_NAME[row.site]
        t1 = nib.load(image_path(cohort, row.participant_id, "T1w"))
        labels = nib.load(image_path(cohort, row.participant_id, "dseg"))
        data = t1.get_fdata(dtype=np.float32)
        assert t1.shape == (32,) * 3 and t1.get_data_dtype() == np.float32
        assert np.isfinite(data).all() and data.min() >= 0 and data.max() > 0
        assert nib.aff2axcodes(t1.affine) == tuple(site.orientation)
        np.testing.assert_allclose(
            sorted(t1.header.get_zooms()), sorted(site.voxel_size(32)), rtol=1e-5
        )
        factor, label_affine, label_shape = render.label_grid(t1.affine, t1.shape)
        assert factor > 1 and labels.shape == label_shape  # labels are finer than a coarse image
        np.testing.assert_allclose(labels.affine, label_affine)
        assert int(t1.header["sform_code"]) == 1 and int(t1.header["qform_code"]) == 1
        assert labels.get_data_dtype() == np.uint8
        values = np.unique(np.asarray(labels.dataobj))
        assert values.max() <= 9
        orientations[site.orientation] = orientations.get(site.orientation, 0) + 1
        if row.age >= 18:  # at 7 mm voxels the accumbens may vanish; see the 64^3 test
            assert set(values) >= {0, 1, 2, 3, 4, 5, 6}, row.participant_id
    assert len(orientations) > 1  # some sites store non-RAS images


def test_brain_masks_and_mni_space(cohort: Path) -> None:
    """Every subject has a native brain mask holding its labelled structures, and its T1w in
    MNI space (MNI field of view, RAS) with its own mask; the BIDS reader finds both."""
    records = read_bids(cohort)
    for record in records:
        t1, labels = nib.load(record.images["T1w"]), nib.load(record.images["seg"])
        mask = nib.load(record.brain_mask)
        np.testing.assert_allclose(mask.affine, t1.affine)
        inside = np.asarray(mask.dataobj) > 0
        structures = on_image_grid(np.asarray(labels.dataobj), inside.shape) > 0
        assert 0.02 < inside.mean() < 0.6
        assert inside[structures].mean() > 0.98  # the mask keeps the deep structures
        (space,) = record.spaces
        assert space.space == gen.MNI_SPACE and set(space.images) == {"T1w"}
        mni = nib.load(space.images["T1w"])
        assert nib.aff2axcodes(mni.affine) == ("R", "A", "S")
        corner = nib.affines.apply_affine(mni.affine, [0, 0, 0])
        np.testing.assert_allclose(corner, render.MNI_BOX_MM[0] + mni.header.get_zooms()[0] / 2)
        mni_mask = np.asarray(nib.load(space.brain_mask).dataobj) > 0
        data = mni.get_fdata()
        # skull and scalp lie outside the mask: the brightest voxels outside are scalp
        assert data[~mni_mask].max() > 0.5 * data[mni_mask].max()


def test_adult_labels_at_default_resolution() -> None:
    template = load_template()
    for index, age in enumerate((25.0, 50.0, 80.0)):
        latents = render.sample_latents(
            age, "FM"[index % 2], False, False, gen.stream(1, "a", index)
        )
        scan = render.render(
            template, gen.SITE_BY_NAME["camcan"], 64, age, latents, gen.stream(1, "b", index)
        )
        assert set(np.unique(scan.labels)) == set(range(10))
        volumes = scan.measured
        assert 4.0 < volumes["hippocampus_ml"] < 11.0 and 6.0 < volumes["thalamus_ml"] < 16.0
        voxel_ml = abs(np.linalg.det(scan.label_affine[:3, :3])) / 1000
        left, right = ((scan.labels == k).sum() * voxel_ml for k in (8, 9))
        # lateral ventricles: 7-20 ml each in adults, more with age (Kruggel 2006)
        assert 3.0 < left < 40.0 and 0.7 < left / right < 1.4


def test_brain_grows_and_males_are_larger(table: pd.DataFrame) -> None:
    stage = pd.Series(stages_of(table.age.to_numpy()), index=table.index)
    brain = table.brain_ml.groupby(stage).median()
    assert brain["fetal"] < brain["neonatal"] < brain["infant"] < brain["child"]
    assert brain["fetal"] < 0.3 * brain["young_adult"]
    assert brain["older_adult"] < brain["young_adult"]
    # Sex difference, controlling for age with a polynomial in log post-menstrual age.
    log_age = np.log(table.age.to_numpy() + 40 / 52)
    design = np.column_stack([(table.sex == "M").to_numpy(), np.vander(log_age, 6)])
    coefficients, *_ = np.linalg.lstsq(design, np.log(table.brain_ml.to_numpy()), rcond=None)
    assert 0.03 < coefficients[0] < 0.16  # about 10% larger in males


def _same_subjects_at(ages: tuple[float, ...], subjects: int, seed: int) -> pd.DataFrame:
    """Measured volumes of the same subjects' draws rendered at each age (grid 32, one site)."""
    template, rows = load_template(), []
    for index in range(subjects):
        for age in ages:
            latents = render.sample_latents(
                age, "FM"[index % 2], False, False, gen.stream(seed, "a", index)
            )
            scan = render.render(
                template, gen.SITE_BY_NAME["camcan"], 32, age, latents,
                gen.stream(seed, "b", index), with_labels=False,
            )  # fmt: skip
            rows.append({"age": age, **scan.measured})
    return pd.DataFrame(rows)


def test_white_matter_grows_into_the_cortex_until_adulthood() -> None:
    """Grey matter peaks in childhood and white matter near 29 (Bethlehem 2022): the same
    subjects' draws rendered at 8 and at 28 years show more white and less grey matter at 28,
    and development_statistics reads it from a table of such volumes."""
    from brainbench.data.synth.structural_stats import development_statistics

    table = _same_subjects_at((8.0, 20.0, 28.0), subjects=4, seed=4)
    child, adult = table[table.age == 8.0], table[table.age == 28.0]
    assert (adult.wm_ml.to_numpy() / child.wm_ml.to_numpy() > 1.15).all()
    assert (adult.gm_ml.to_numpy() / child.gm_ml.to_numpy() < 0.95).all()
    statistics = {name: value for name, value, _ in development_statistics(table)}
    assert float(statistics["white matter, 22-35 y / 6-12 y"]) > 1.15
    assert float(statistics["grey matter change per year, 8-12 -> 18-24 y"].rstrip("%")) < -0.3


def test_adult_brains_shrink_inside_an_unchanged_skull() -> None:
    """From 40 to 80 the same subjects' brains lose volume (atrophy, thinning, ventricles) while
    their intracranial volume stays: the CSF layer takes what the brain gives up."""
    table = _same_subjects_at((40.0, 80.0), subjects=3, seed=5)
    middle, old = table[table.age == 40.0], table[table.age == 80.0]
    assert (old.brain_ml.to_numpy() / middle.brain_ml.to_numpy() < 0.93).all()
    assert np.abs(old.icv_ml.to_numpy() / middle.icv_ml.to_numpy() - 1).max() < 0.03


def test_sex_differences_follow_the_published_values() -> None:
    """Drawn latents give the male/female brain-volume ratio of the literature at each age, and
    a subcortical structure's sex effect shrinks by its `male_ratio` (hypoallometry)."""
    for age, expected in ((0.0, 1.08), (25.0, 1.11)):
        volumes = {"F": [], "M": []}
        for index in range(600):
            sex = "FM"[index % 2]
            latents = render.sample_latents(age, sex, False, False, gen.stream(3, "s", index))
            shape = latents["shape_x"] * latents["shape_y"] * latents["shape_z"]
            volumes[sex].append(np.log(latents["brain_scale"] ** 3 * shape))
        ratio = np.exp(np.mean(volumes["M"]) - np.mean(volumes["F"]))
        assert ratio == pytest.approx(expected, abs=0.015)


def test_sex_effect_recovers_a_known_d() -> None:
    from brainbench.data.synth.structural_stats import _sex_effect

    rng = np.random.default_rng(0)
    age = rng.uniform(1, 90, 4000)
    male = rng.integers(0, 2, 4000).astype(bool)
    log_volume = 2.0 + 0.3 * np.log(age + 1) + 0.08 * male + 0.1 * rng.standard_normal(4000)
    table = pd.DataFrame({"age": age, "sex": np.where(male, "M", "F"), "v": np.exp(log_volume)})
    difference, d = _sex_effect(table, "v")
    assert difference == pytest.approx(0.08, abs=0.01) and d == pytest.approx(0.8, abs=0.08)


def test_yearly_loss_recovers_a_known_rate() -> None:
    """0.4% of the volume lost a year from 35 to 70, whatever the sex difference and the spread;
    ages outside 35-70 (here: no loss) do not count."""
    from brainbench.data.synth.structural_stats import ageing_statistics, yearly_loss

    rng = np.random.default_rng(1)
    age = rng.uniform(20, 90, 3000)
    male = rng.integers(0, 2, 3000).astype(bool)
    log_volume = 6.5 + 0.1 * male + 0.03 * rng.standard_normal(3000)
    log_volume += np.log(0.996) * (np.clip(age, 35, 70) - 35)
    volumes = {f"{c}_ml": np.exp(log_volume) for c in ("brain", "gm", "wm", "thalamus")}
    table = pd.DataFrame({"age": age, "sex": np.where(male, "M", "F"), **volumes})
    assert yearly_loss(table, "gm_ml") == pytest.approx(0.4, abs=0.02)
    rows = ageing_statistics(table)
    assert [float(value.rstrip("%")) for _, value, _ in rows] == [pytest.approx(0.4, abs=0.02)] * 4
    assert rows[2][2] == "0.02% at 35 -> 0.47% at 70"  # white matter, Schippling 2017
    assert ageing_statistics(table[table.age < 30])[0][1] == "–"  # no one aged 35-70


def test_image_size_follows_latent_volume(cohort: Path, table: pd.DataFrame) -> None:
    """The images show what the latents say: head extent on T1w tracks intracranial volume."""
    head_ml = []
    for row in table.itertuples():
        image = nib.load(image_path(cohort, row.participant_id, "T1w"))
        data = image.get_fdata(dtype=np.float32)
        voxel_ml = float(np.prod(image.header.get_zooms())) / 1000.0
        head_ml.append((data > 0.35 * np.percentile(data, 99)).sum() * voxel_ml)
    assert np.corrcoef(np.log(head_ml), np.log(table.icv_ml))[0, 1] > 0.9


def test_infant_contrast_is_inverted(cohort: Path, table: pd.DataFrame) -> None:
    """Newborn T1w: grey matter brighter than white; adult: the reverse (T2w the opposite)."""

    def ratio(subject: str, modality: str) -> float:
        data = nib.load(image_path(cohort, subject, modality)).get_fdata(dtype=np.float32)
        labels = np.asarray(nib.load(image_path(cohort, subject, "dseg")).dataobj)
        labels = on_image_grid(labels, data.shape)
        grey = data[labels == 4].mean()  # putamen: deep grey matter away from the ventricles
        white = data[labels == 5].mean()  # pallidum: the palest structure
        return float(white / grey)

    newborns = table[(table.age >= 0) & (table.age < 0.1)].participant_id
    adults = table[(table.age > 20) & (table.age < 60)].participant_id
    # a newborn's pallidum is 1-5 voxels at this grid: its noise shows in single subjects
    assert np.median([ratio(s, "T1w") for s in newborns]) < 1.0
    assert 1.0 < min(ratio(s, "T1w") for s in adults)
    assert (
        np.median([ratio(s, "T2w") for s in newborns]) > 1.0 > max(ratio(s, "T2w") for s in adults)
    )


def test_determinism(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    monkeypatch.setitem(gen.PRESETS, "tiny", gen.Preset("tiny", 8, 16, "test"))
    first = digest(generate_cohort(tmp_path / "a", "tiny", seed=3))
    again = digest(generate_cohort(tmp_path / "b", "tiny", seed=3, workers=2))
    assert capsys.readouterr().out.count("synthetic cohort 'tiny' (first use only)") == 2
    other = digest(generate_cohort(tmp_path / "c", "tiny", seed=4))
    assert first == again
    assert first.keys() == other.keys()
    changed = [name for name in first if first[name] != other[name]]
    assert any(name.endswith("_T1w.nii.gz") for name in changed)
    assert "participants.tsv" in changed


def test_subject_streams_do_not_depend_on_cohort_size() -> None:
    rng_a = gen.stream(0, "anatomy", 5).standard_normal(4)
    rng_b = gen.stream(0, "anatomy", 5).standard_normal(4)
    assert np.array_equal(rng_a, rng_b)
    assert not np.array_equal(rng_a, gen.stream(0, "rest", 5).standard_normal(4))


def test_ensure_cohort_is_idempotent_and_atomic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(gen.PRESETS, "tiny", gen.Preset("tiny", 8, 16, "test"))
    root = gen.default_root("tiny", 0)
    host = socket.gethostname()
    dead = root.with_name(f".{root.name}.tmp-{host}-{2**22 + 12345}")  # a crashed run's leftover
    (dead / "sub-0001").mkdir(parents=True)
    assert ensure_cohort("tiny", 0) == root
    assert (root / gen.MARKER).is_file() and not dead.exists()
    assert [p.name for p in root.parent.iterdir()] == [root.name]
    stamp = (root / "participants.tsv").stat().st_mtime_ns

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("regenerated a complete cohort")

    monkeypatch.setattr(gen, "generate_cohort", fail)
    assert ensure_cohort("tiny", 0) == root
    assert (root / "participants.tsv").stat().st_mtime_ns == stamp


def test_ensure_cohort_never_trusts_an_incomplete_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(gen.PRESETS, "tiny", gen.Preset("tiny", 8, 16, "test"))
    partial = tmp_path / "partial"
    (partial / "sub-0001").mkdir(parents=True)
    with pytest.raises(DataError, match="not a complete synthetic cohort"):
        ensure_cohort("tiny", 0, root=partial)

    def crash(root: Path, *args: object, **kwargs: object) -> None:
        (Path(root) / "participants.tsv").parent.mkdir(parents=True)
        (Path(root) / "participants.tsv").write_text("participant_id\n")
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "generate_cohort", crash)
    target = tmp_path / "crashed"
    with pytest.raises(KeyboardInterrupt):
        ensure_cohort("tiny", 0, root=target)
    assert not target.exists() and os.listdir(tmp_path) == ["partial"]


def test_unknown_preset() -> None:
    with pytest.raises(ConfigError, match="debug") as info:
        ensure_cohort("defualt")
    assert "Did you mean 'default'" in str(info.value)
