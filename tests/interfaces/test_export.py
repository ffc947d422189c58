"""Export, reload through every interface (load_model, torch.hub, ONNX) with identical outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

import brainbench
from brainbench.cli import main
from brainbench.errors import DataError, UnknownNameError
from brainbench.export import ExportError, export_model, trace_onnx

REPO = Path(__file__).resolve().parents[2]


def _batch(model, n: int = 2) -> torch.Tensor:
    return torch.rand(n, *model.input_shape, generator=torch.Generator().manual_seed(1))


def test_pretrained_export_reloads_identically_everywhere(pretrained, tmp_path) -> None:
    out = export_model(pretrained, "onnx", out=tmp_path / "mae")
    for name in ("config.json", "model.safetensors", "README.md", "model.onnx"):
        assert (out / name).is_file(), name
    original, exported = brainbench.load_model(pretrained), brainbench.load_model(out)
    x = _batch(original, 3)
    want, got = original(x), exported(x)
    assert want.keys() == {"reconstruction", "embedding"}
    for key in want:
        assert torch.equal(want[key], got[key]), key

    hub = torch.hub.load(str(REPO), "mae3d_cnn", weights=str(out), source="local")
    with torch.inference_mode():
        assert torch.equal(hub(x), want["reconstruction"])
        assert torch.equal(hub.encode(x), want["embedding"])

    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    recon, embedding = session.run(None, {"volume": x.numpy()})  # batch 3: dynamic axis
    np.testing.assert_allclose(recon, want["reconstruction"].numpy(), atol=1e-4)
    np.testing.assert_allclose(embedding, want["embedding"].numpy(), atol=1e-4)
    check = json.loads((out / "onnx_check.json").read_text())
    assert check["max_abs_diff"] < 1e-4

    card = (out / "README.md").read_text()
    metrics = json.loads((pretrained / "metrics.json").read_text())
    assert f"{metrics['psnr']:.4g}" in card and "synth-debug-seed0" in card
    assert "Intended use" in card


def test_run_export_predicts_like_the_run(run_dir, tmp_path) -> None:
    out = export_model(run_dir, "hub", out=tmp_path / "sfcn")
    model = brainbench.load_model(out)
    assert model.name == "sfcn" and model.output_names == ("output", "prediction")
    x = _batch(model)
    assert torch.equal(model(x)["prediction"], brainbench.load_model(run_dir)(x)["prediction"])
    hub = torch.hub.load(str(out), "model", source="local")  # the folder's own hubconf.py
    with torch.inference_mode():
        assert torch.equal(hub(x), model(x)["output"])
    card = (out / "README.md").read_text()
    record = json.loads((run_dir / "metrics.json").read_text())
    assert "mri/age" in card and f"{record['metrics']['mae']:.4g}" in card


def test_export_by_name_and_onnx_of_a_run(run_dir) -> None:
    out = export_model(run_dir, "onnx")  # default: $BRAINBENCH_HOME/models/<name>
    model = brainbench.load_model(out.name)
    x = _batch(model, 1)
    session = onnxruntime.InferenceSession(str(out / "model.onnx"))
    output, prediction = session.run(None, {"volume": x.numpy()})
    np.testing.assert_allclose(prediction, model(x)["prediction"].numpy(), rtol=1e-5)
    with pytest.raises(ExportError, match="exists"):
        export_model(run_dir, "onnx")
    with pytest.raises(UnknownNameError, match="exported model"):
        brainbench.load_model("no_such_model")


def test_pickled_checkpoints_are_refused(run_dir, tmp_path) -> None:
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(DataError, match="pickled checkpoint"):
        brainbench.load_model(ckpt)
    folder = tmp_path / "only_pickle"
    folder.mkdir()
    torch.save({}, folder / "model.pt")
    (folder / "config.json").write_text(json.dumps({"name": "mae3d_cnn", "model": {}}))
    with pytest.raises(DataError, match="model.pt are pickles"):
        brainbench.load_model(folder)


class DataDependent(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 3)
        self.gate = Gate()

    def forward(self, x):
        return self.gate(self.conv(x))


class Gate(nn.Module):
    def forward(self, x):
        if x.mean() > 0:  # a branch on tensor values: the tracer would freeze one side
            return x
        return -x


def test_untraceable_part_is_named(tmp_path) -> None:
    with pytest.raises(ExportError, match=r"'gate' \(Gate\)"):
        trace_onnx(DataDependent(), torch.rand(1, 1, 6, 6, 6), tmp_path / "m.onnx", ["y"], "toy")
    assert not (tmp_path / "m.onnx").exists()


def test_export_cli(run_dir, tmp_path, capsys) -> None:
    assert main(["export", str(run_dir), "--out", str(tmp_path / "cli")]) == 0
    assert (tmp_path / "cli" / "model.safetensors").is_file()
    assert main(["export", str(tmp_path / "missing")]) == 2
    assert "is not a model folder" in capsys.readouterr().err
