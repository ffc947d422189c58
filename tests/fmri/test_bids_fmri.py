"""A user's BIDS folder of 4D NIfTI + atlas, end to end through the CLI: parcellate, then tasks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from brainbench.cli import main as cli_main
from brainbench.data.synth.functional import series_path, write_volume_run
from brainbench.data.timeseries import read_series

N_SUBJECTS, N_VOLUMES = 12, 60


@pytest.fixture(scope="module")
def bids(cohort: Path, fmri: Path, tmp_path_factory) -> Path:
    """12 adults of the debug cohort as a BIDS folder: 4D NIfTI runs, atlas + look-up table."""
    import nibabel as nib

    root = tmp_path_factory.mktemp("bids")
    people = pd.read_csv(cohort / "participants.tsv", sep="\t")
    people = people[people["age"] > 18].head(N_SUBJECTS)[["participant_id", "age", "sex", "site"]]
    people.to_csv(root / "participants.tsv", sep="\t", index=False)
    atlas = nib.load(fmri / "nifti" / "atlas-Seitzman300_dseg.nii.gz")
    latents = pd.read_csv(fmri / "latents.tsv", sep="\t").set_index("participant_id")
    for pid in people["participant_id"]:
        series = read_series(series_path(fmri, pid))[:N_VOLUMES]
        write_volume_run(root, pid, series, float(latents.loc[pid, "tr"]), atlas)
    shutil.copy(fmri / "nifti" / "atlas-Seitzman300_dseg.nii.gz", root)
    table = pd.read_csv(fmri / "atlas.tsv", sep="\t")
    table[["index", "network"]].to_csv(root / "atlas-Seitzman300_dseg.tsv", sep="\t", index=False)
    return root


def test_parcellate_then_tasks(bids: Path, tmp_path: Path, capsys) -> None:
    runs = sorted(str(p) for p in bids.glob("sub-*/func/*_bold.nii.gz"))
    out = bids / "derivatives" / "fmri"
    atlas = bids / "atlas-Seitzman300_dseg.nii.gz"
    assert cli_main(["parcellate", *runs, "--atlas", str(atlas), "--out", str(out)]) == 0
    assert "network" in pd.read_csv(out / "atlas.tsv", sep="\t").columns  # from the look-up table
    common = [
        "--dataset",
        "bids",
        f"data.path={bids}",
        "task_options.window=40",
        "split.val_fraction=0.25",
        "seeds=[33]",
        f"output_dir={tmp_path}",
    ]
    # one task per runner (sex and phenotype share age's); 12 subjects are too few for sex
    tasks = {"age": "connectome", "networks": "connectome", "recon": "parcel_mean",
             "forecast": "persistence"}  # fmt: skip
    for task, model in tasks.items():
        assert cli_main(["fmri", task, "-m", model, *common]) == 0, task
    for task in (f"fmri-{name}" for name in tasks):
        (record,) = (tmp_path / "runs" / task).rglob("metrics.json")
        metrics = json.loads(record.read_text())
        assert metrics["dataset"].startswith("bids") and metrics["n_test"] >= 2
    (record,) = (tmp_path / "runs" / "fmri-networks").rglob("metrics.json")
    assert json.loads(record.read_text())["metrics"]["ari"] > 0.3
    capsys.readouterr()
    # perturbation needs the generator's truth; a BIDS folder has none: a clear error, exit 2
    assert cli_main(["fmri", "perturb", "-m", "chance", *common]) == 2
    assert "only the synthetic cohort" in capsys.readouterr().err


def test_networks_need_network_labels(bids: Path, tmp_path: Path, capsys) -> None:
    run = next(bids.glob("sub-*/func/*_bold.nii.gz"))
    folder = tmp_path / "ds"
    shutil.copytree(bids, folder, ignore=shutil.ignore_patterns("derivatives", "*_dseg.tsv"))
    atlas = folder / "atlas-Seitzman300_dseg.nii.gz"
    out = folder / "derivatives" / "fmri"
    assert cli_main(["parcellate", str(run), "--atlas", str(atlas), "--out", str(out)]) == 0
    capsys.readouterr()
    args = ["fmri", "networks", "-m", "chance", "--dataset", "bids", f"data.path={folder}"]
    assert cli_main([*args, f"output_dir={tmp_path}/r"]) == 2
    assert "network" in capsys.readouterr().err
    bad = tmp_path / "lookup.tsv"
    bad.write_text("name\tnetwork\nA\tVisual\n")
    assert (
        cli_main(
            ["parcellate", str(run), "--atlas", str(atlas), "--out", str(out), "--labels", str(bad)]
        )
        == 2
    )
    assert "'index' column" in capsys.readouterr().err
