"""The fMRI tasks end to end on the debug cohort, with tiny models."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from brainbench import api
from brainbench.errors import ConfigError, DataError
from brainbench.models.brainlm_mae import load_pretrained
from brainbench.models.fmri_baselines import ARConfig, Autoregressive
from brainbench.tasks.fmri_supervised import oracle_latents


def _records(root: Path, task: str) -> dict[str, dict]:
    out = {}
    for path in (root / "runs" / task.replace("/", "-")).rglob("metrics.json"):
        record = json.loads(path.read_text())
        out[f"{record['model']}:{record['protocol']}"] = record
    return out


@pytest.fixture(scope="module")
def pretrained(fmri: Path, tiny: list[str], tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pre")
    overrides = [*tiny, "window=40", "max_steps=3", "trainer.progress_bar=false"]
    return api.pretrain(
        "brainlm", debug=True, overrides=[*overrides, f"output_dir={out}"], log=lambda s: None
    )


def test_pretrained_checkpoint(pretrained: Path, tmp_path: Path) -> None:
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert metrics["steps"] == 3 and np.isfinite(metrics["val"]["mask0.75"]["mse"])
    net, config = load_pretrained(pretrained)
    assert net.n_parcels == 300 and config.window == 40
    (tmp_path / "model.safetensors").write_bytes(b"junk")
    with pytest.raises(DataError, match="not a brainlm checkpoint"):
        load_pretrained(tmp_path)


def test_a_finished_pretraining_is_kept_and_another_config_is_refused(
    pretrained: Path, tiny: list[str], tmp_path: Path
) -> None:
    """A rerun of a suite finds brainlm's folder finished and keeps it; a pretraining of other
    settings into it is refused, naming them, and leaves the weights as they were."""
    folder = tmp_path / "pretrained" / pretrained.name
    shutil.copytree(pretrained, folder)
    weights, before = folder / "model.safetensors", (folder / "model.safetensors").read_bytes()
    common = [*tiny, "window=40", "trainer.progress_bar=false", f"output_dir={tmp_path}"]
    logs: list[str] = []
    api.pretrain("brainlm", debug=True, overrides=[*common, "max_steps=3"], log=logs.append)
    assert any("already; kept" in line for line in logs) and weights.read_bytes() == before
    with pytest.raises(ConfigError, match=r"another config \(max_steps: 3 -> 4\)"):
        api.pretrain("brainlm", debug=True, overrides=[*common, "max_steps=4"], log=logs.append)
    assert weights.read_bytes() == before
    assert json.loads((folder / "metrics.json").read_text())["steps"] == 3


def test_pretraining_in_float64_saves_a_float32_checkpoint(
    fmri: Path, tiny: list[str], tmp_path: Path
) -> None:
    """trainer.precision=64-true trains in float64; evaluation and the checkpoint are float32."""
    overrides = [*tiny, "window=40", "max_steps=2", "trainer.progress_bar=false"]
    overrides += ["trainer.precision=64-true", f"output_dir={tmp_path}"]
    folder = api.pretrain("brainlm", debug=True, overrides=overrides, log=lambda s: None)
    net, _ = load_pretrained(folder)
    assert {p.dtype for p in net.parameters()} == {torch.float32}


def test_recon_and_forecast(fmri: Path, tiny: list[str], pretrained: Path, tmp_path: Path) -> None:
    common = ["task_options.window=40", "trainer.progress_bar=false", f"output_dir={tmp_path}"]
    api.run(
        ["fmri/recon"],
        ["parcel_mean", "interpolate"],
        debug=True,
        overrides=common,
        log=lambda s: None,
    )
    api.run(
        ["fmri/recon", "fmri/forecast"],
        ["brainlm"],
        debug=True,
        overrides=[*common, f"model.init={pretrained}"],
        log=lambda s: None,
    )
    api.run(
        ["fmri/forecast"],
        ["chance", "persistence", "autoregressive"],
        debug=True,
        overrides=common,
        log=lambda s: None,
    )
    recon = _records(tmp_path, "fmri/recon")
    assert set(recon) == {"parcel_mean:baseline", "interpolate:baseline", "brainlm:finetune"}
    for record in recon.values():
        assert {"r2", "mse", "r2_mask0.2", "mse_mask0.9"} <= set(record["metrics"])
        assert record["per_stage"] and np.isfinite(record["headline"]["value"])
    forecast = _records(tmp_path, "fmri/forecast")
    assert set(forecast) == {
        "chance:baseline", "persistence:baseline", "autoregressive:baseline", "brainlm:finetune"
    }  # fmt: skip
    chance = forecast["chance:baseline"]["metrics"]["r2"]
    assert chance < forecast["autoregressive:baseline"]["metrics"]["r2"] and chance < -0.5
    with pytest.raises(ConfigError, match="multiple of patch"):
        api.run(
            ["fmri/recon"],
            ["parcel_mean"],
            debug=True,
            overrides=[*common, "task_options.window=45", f"output_dir={tmp_path}/x"],
            log=lambda s: None,
        )


def test_age_and_sex(fmri: Path, tiny: list[str], pretrained: Path, tmp_path: Path) -> None:
    common = ["task_options.window=40", "trainer.progress_bar=false", f"output_dir={tmp_path}"]
    quiet = {"debug": True, "overrides": common, "log": lambda s: None}
    api.run(["fmri/age", "fmri/sex"], ["chance"], **quiet)
    # connectome on sex is a 45k-feature LogisticRegressionCV: too slow for a unit test
    api.run(["fmri/age"], ["connectome"], **quiet)
    api.run(
        ["fmri/sex"],
        ["brainlm"],
        debug=True,
        overrides=[*common, *tiny, "trainer.max_epochs=1"],
        log=lambda s: None,
    )
    for head in ("linear", "knn"):
        api.run(
            ["fmri/age"],
            ["brainlm_probe"],
            debug=True,
            overrides=[*common, f"model.init={pretrained}", f"model.head={head}"],
            log=lambda s: None,
        )
    age, sex = _records(tmp_path, "fmri/age"), _records(tmp_path, "fmri/sex")
    assert {
        "chance:baseline",
        "connectome:baseline",
        "brainlm_probe:linear_probe",
        "brainlm_probe:knn_probe",
    } <= set(age)
    assert {"chance:baseline", "brainlm:scratch"} <= set(sex)
    assert (
        age["connectome:baseline"]["headline"]["value"]
        < age["chance:baseline"]["headline"]["value"]
    )
    oracle = json.loads((tmp_path / "oracle" / "fmri-age_synth-debug-seed0.json").read_text())
    assert oracle["task"] == "fmri/age" and "fc_component1" in oracle["description"]
    # the ceiling is above the floor, even on the debug cohort's 29 training subjects
    assert oracle["headline"]["value"] < age["chance:baseline"]["headline"]["value"]


def test_oracle_sees_two_components_of_the_network_correlations() -> None:
    rng = np.random.default_rng(0)
    coupling, sex = rng.uniform(0.2, 1.0, 40), rng.choice([-1.0, 1.0], 40)
    pairs = rng.normal(size=(2, 91))
    fc = np.tanh(np.outer(coupling, pairs[0]) + 0.1 * np.outer(sex, pairs[1]))
    table = pd.DataFrame(fc, columns=[f"fc_{i}" for i in range(91)]).assign(coupling=coupling)
    table.index = [f"sub-{i}" for i in range(40)]
    seen = oracle_latents(table, list(table.index[:30]))
    assert list(seen.columns) == ["coupling", "fc_component1", "fc_component2"]
    assert abs(np.corrcoef(seen["fc_component2"], sex)[0, 1]) > 0.9  # sex survives


def test_autoregressive_recovers_an_ar1_process() -> None:
    rng = np.random.default_rng(0)
    x = np.zeros((20, 3, 60), np.float32)
    for t in range(1, 60):
        x[..., t] = 0.8 * x[..., t - 1] + rng.normal(size=(20, 3))

    class Windows:
        def __len__(self) -> int:
            return len(x)

        def __getitem__(self, i: int):
            return torch.from_numpy(x[i]), torch.tensor(0.0)

    model = Autoregressive(ARConfig(order=1, ridge=0.0))
    model.fit(Windows(), None, seed=0, run_dir=Path("."))
    np.testing.assert_allclose(model.arrays["coef"][:, 0], 0.8, atol=0.03)
    hidden = torch.zeros(1, 3, 60, dtype=torch.bool)
    hidden[..., -2:] = True
    pred = model.reconstruct(torch.from_numpy(x[:1]), hidden)
    c = model.arrays["coef"]
    np.testing.assert_allclose(pred[0, :, -2], c[:, 0] * x[0, :, -3] + c[:, 1], rtol=1e-5)
