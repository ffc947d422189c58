"""`brainbench export`: a model folder anyone can load, and an ONNX graph for inference.

`export_model(source, fmt)` reads a pretrained folder, a run record or an exported folder and
writes `<out>/config.json` (what rebuilds the network), `model.safetensors` and a model card
`README.md` generated from the run records or pretraining metrics. `onnx` adds `model.onnx`,
checked against PyTorch with onnxruntime before it is kept; `hub` adds a `hubconf.py`, so
`torch.hub.load(<out>, 'model', source='local')` works on the folder itself.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from brainbench.config import home
from brainbench.data.sources.base import card_note
from brainbench.errors import BrainbenchError, DataError
from brainbench.loading import EXPORT_VERSION, LoadedModel, load_model
from brainbench.models.base import META_KEY
from brainbench.results.record import environment_info, slug, to_json
from brainbench.spec import METRICS, MODEL_CONFIG, WEIGHTS
from brainbench.stages import STAGE_NAMES

Format = Literal["safetensors", "onnx", "hub"]
FORMATS: tuple[str, ...] = ("safetensors", "onnx", "hub")
ONNX_FILE = "model.onnx"
ONNX_OPSET = 17
ONNX_TOLERANCE = 1e-4  # max abs difference to PyTorch, relative to the output's scale

HUBCONF = '''"""torch.hub entry point of this exported brainbench model (needs brainbench)."""

dependencies = ["torch", "brainbench"]


def model(**kwargs):
    """The network of this folder, in eval mode."""
    from pathlib import Path

    from brainbench.loading import load_model

    return load_model(Path(__file__).parent).net
'''


class ExportError(BrainbenchError):
    """A model cannot be exported in the format asked for."""


def default_name(model: LoadedModel) -> str:
    """'mae3d_cnn-synth-debug-seed0' (pretrained) or 'sfcn-mri-age-synth-debug-seed0-seed33'."""
    if model.config["source"] == "pretrained" or "brainbench_export" in model.config:
        return model.path.name
    seed = model.path.name  # run records live in .../<tag>/seed<N>
    return slug(f"{model.name}-{model.config['task']}-{model.config['dataset']}-{seed}")


def export_model(
    source: Path | str,
    fmt: Format = "safetensors",
    *,
    out: Path | None = None,
    force: bool = False,
) -> Path:
    """Export the model at `source` into `out` (default $BRAINBENCH_HOME/models/<name>)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    model = load_model(source)
    out = Path(out) if out is not None else home() / "models" / default_name(model)
    if out.exists() and not force:
        raise ExportError(f"{out} exists; pass --force to replace it, or --out OTHER_DIR.")
    config = export_config(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
        header = config.get("meta") or config["params"]
        save_file(state, str(tmp / WEIGHTS), metadata={META_KEY: json.dumps(header)})
        (tmp / MODEL_CONFIG).write_text(to_json(config))
        (tmp / "README.md").write_text(model_card(model, config))
        if fmt == "onnx":
            report = export_onnx(model, tmp / ONNX_FILE)
            (tmp / "onnx_check.json").write_text(to_json(report))
        if fmt == "hub":
            (tmp / "hubconf.py").write_text(HUBCONF)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def export_config(model: LoadedModel) -> dict[str, Any]:
    """config.json of an exported folder: what rebuilds the network, and where it came from."""
    config = {k: v for k, v in model.config.items() if k != "brainbench_export"}
    config = {"brainbench_export": EXPORT_VERSION, **config}
    config["exported_from"] = config.get("exported_from") or str(model.path.resolve())
    config["source"] = "pretrained" if config["source"] == "pretrained" else "run"
    config["outputs"] = list(model.output_names)
    config["metrics"] = _source_metrics(model)
    config |= {"exported_with": environment_info()["versions"]}
    return config


def _source_metrics(model: LoadedModel) -> dict[str, Any]:
    """metrics.json of the source (pretraining metrics or the run record), if it is there."""
    file = model.path / METRICS
    if file.is_file():
        return json.loads(file.read_text())
    return model.config.get("metrics") or {}


# --- model card ---------------------------------------------------------------------------------


def _md(value: Any) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(map(_md, header)) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(map(_md, row)) + " |" for row in rows]


def model_card(model: LoadedModel, config: dict[str, Any]) -> str:
    """README.md: Hugging Face front matter, then data, tasks, metrics and intended use."""
    metrics = config["metrics"]
    pretrained = config["source"] == "pretrained"
    dataset = metrics.get("dataset") or config.get("dataset") or "unknown"
    lines = [
        "---",
        "library_name: brainbench",
        "tags: [brainbench, neuroimaging, mri, " + _md(model.name) + "]",
        f"datasets: [{_md(dataset)}]",
        "---",
        "",
        f"# {_md(model.name)}" + (" (pretrained)" if pretrained else f" for {config['task']}"),
        "",
        "Exported by `brainbench export`; generated from "
        + ("the pretraining metrics." if pretrained else "the run records."),
        "",
        "## Model",
        "",
        f"- architecture: `{_md(model.name)}`, parameters {_md(json.dumps(config['params']))}",
        f"- input: one volume of shape {tuple(config['input_shape'])} (channels, X, Y, Z), "
        f"preprocessed with {_md(json.dumps(config['preprocess']))}",
        f"- outputs: {', '.join(config['outputs'])}",
        f"- weights: `{WEIGHTS}` ({sum(p.numel() for p in model.net.parameters()):,} parameters)",
        "",
        "## Training data",
        "",
        f"- dataset: `{_md(dataset)}`",
    ]
    if pretrained:
        lines += _pretrained_card(config, metrics)
    else:
        lines += _task_card(model, config, metrics)
    versions = metrics.get("versions") or config["exported_with"]
    lines += [
        "",
        "## Software",
        "",
        ", ".join(f"{k} {v}" for k, v in versions.items() if v),
        f"code version: {metrics.get('code_version') or 'unknown'}",
        "",
        "## Use",
        "",
        "```python",
        "import brainbench",
        "model = brainbench.load_model('PATH/TO/THIS/FOLDER')",
        "outputs = model(x)  # x: float tensor (batch, *input shape), preprocessed as above",
        "```",
        "",
        "## Intended use and limitations",
        "",
        "Research benchmarking of brain models across the lifespan; not for clinical decisions. "
        "Inputs must be preprocessed as above (RAS, resampled, cropped, intensity-normalised). "
        + card_note(str(dataset)),
    ]
    return "\n".join(lines) + "\n"


def _pretrained_card(config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    pre = config["pretraining"]
    lines = [
        f"- subjects: {metrics.get('n_train', '?')} train, {metrics.get('n_val', '?')} val "
        "(every task's test subjects excluded)",
        f"- modalities: {', '.join(config['modalities'])}",
        "",
        "## Pretraining",
        "",
        f"Masked autoencoder, {metrics.get('steps', '?')} steps; batch "
        f"{pre['trainer']['batch_size']}, lr {pre['trainer']['lr']}. Settings:",
        "",
        *_table(["key", "value"], [[k, json.dumps(v)] for k, v in pre.items() if _plain(k, v)]),
        "",
        "## Metrics (validation subjects, masked voxels)",
        "",
    ]
    rows = [["all", metrics.get("mse"), metrics.get("psnr"), metrics.get("n")]]
    per_stage = metrics.get("per_stage", {})
    rows += [[s, *(per_stage[s].get(k) for k in ("mse", "psnr", "n"))] for s in per_stage]
    return lines + _table(["subjects", "MSE", "PSNR (dB)", "n"], rows)


def _plain(key: str, value: Any) -> bool:
    """A pretraining setting worth a row: a scalar or flat list, not a path or a section."""
    flat = not isinstance(value, dict | list) or all(not isinstance(v, dict) for v in value)
    return flat and key not in ("output_dir", "name")


def _task_card(model: LoadedModel, config: dict[str, Any], metrics: dict[str, Any]) -> list[str]:
    lines = [
        f"- subjects: {metrics.get('n_train')} train, {metrics.get('n_val')} val, "
        f"{metrics.get('n_test')} test",
        "",
        "## Task",
        "",
        f"`{_md(config['task'])}` (version {config.get('task_version')}), protocol "
        f"{_md(metrics.get('protocol'))}, seed {metrics.get('seed')}.",
        "",
        "## Metrics (test split)",
        "",
    ]
    rows = [[name, value] for name, value in metrics.get("metrics", {}).items()]
    lines += _table(["metric", "value"], rows)
    head = metrics.get("headline", {}).get("name")
    per_stage = metrics.get("per_stage", {})
    if head and per_stage:
        lines += ["", f"{head} per lifespan stage:", ""]
        stages = [s for s in STAGE_NAMES if s in per_stage]
        row = [per_stage[s].get(head) for s in stages]
        lines += _table(stages, [row])
    seeds = _sibling_seeds(model.path, head) if head else []
    if len(seeds) > 1:
        values = np.array([v for _, v in seeds], dtype=float)
        lines += [
            "",
            f"Across {len(seeds)} seeds of this run: {head} {values.mean():.4g} ± "
            f"{values.std(ddof=1):.4g} (this model: seed {metrics.get('seed')}).",
        ]
    return lines


def _sibling_seeds(run_dir: Path, headline: str) -> list[tuple[int, float]]:
    """(seed, headline value) of the run's other seeds next to it, the same config."""
    out = []
    for file in sorted(run_dir.parent.glob("seed*/metrics.json")):
        data = json.loads(file.read_text())
        if data.get("headline", {}).get("name") == headline:
            out.append((data["seed"], data["headline"]["value"]))
    return out


# --- ONNX -------------------------------------------------------------------------------------


class _Outputs(nn.Module):
    """The LoadedModel's named outputs as a plain module the exporter can trace."""

    def __init__(self, model: LoadedModel) -> None:
        super().__init__()
        self.model = model
        self.net = model.net  # registered, so the exporter sees the parameters

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return self.model.outputs(x)


@contextmanager
def _module_stack(net: nn.Module) -> Iterator[list[str]]:
    """A list holding the names of the modules being run, innermost last."""
    stack: list[str] = []
    names = {module: name for name, module in net.named_modules()}
    handles = []

    def enter(module: nn.Module, args: Any) -> None:
        stack.append(f"'{names[module] or '(root)'}' ({type(module).__name__})")

    def leave(module: nn.Module, args: Any, output: Any) -> None:
        stack.pop()

    for module in names:
        handles += [module.register_forward_pre_hook(enter), module.register_forward_hook(leave)]
    try:
        yield stack
    finally:
        for handle in handles:
            handle.remove()


def trace_onnx(
    net: nn.Module, example: Tensor, path: Path, output_names: list[str], what: str
) -> float:
    """Export `net` to ONNX at `path` with a dynamic batch axis; return the seconds it took.

    The tracer records one path through the code: a branch or loop on tensor values, or a
    tensor turned into a Python number, would be frozen into the graph. Those are errors here,
    naming the module that holds them.
    """
    axes = {name: {0: "batch"} for name in ["volume", *output_names]}
    torch_dir = str(Path(torch.__file__).parent)
    frozen: list[str] = []  # tracer warnings raised by model code, not by torch itself
    start = time.perf_counter()
    with _module_stack(net) as stack, warnings.catch_warnings():

        def record(message, category, filename, lineno, file=None, line=None) -> None:
            if issubclass(category, torch.jit.TracerWarning) and torch_dir not in filename:
                part = stack[-1] if stack else "the top level"
                frozen.append(f"its part {part} at {filename}:{lineno} ({message})")

        warnings.simplefilter("always", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter
        warnings.showwarning = record
        try:
            torch.onnx.export(
                net.eval(),
                (example,),
                str(path),
                input_names=["volume"],
                output_names=output_names,
                dynamic_axes=axes,
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        except (RuntimeError, TypeError, ValueError) as exc:
            reason = str(exc).strip().splitlines()[0].split(" [Caused by")[0][:300]
            where = f"its part {stack[-1]}" if stack else "converting the traced graph"
            frozen.append(f"{where} failed: {reason}")
    if frozen:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"cannot export {what} to ONNX: {frozen[0]}. The tracer records one path through "
            "the code, so a branch or loop on tensor values or a tensor turned into a Python "
            "number would be frozen into the graph: replace it in that module with tensor "
            "operations, or export with --format safetensors."
        )
    return time.perf_counter() - start


def check_onnx(net: nn.Module, path: Path, inputs: list[Tensor], names: list[str]) -> float:
    """Max abs difference between onnxruntime and PyTorch over `inputs`; ExportError if large."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for x in inputs:
        with torch.inference_mode():
            expected = net.eval()(x)
        got = session.run(None, {"volume": x.numpy()})
        for name, want, have in zip(names, expected, got, strict=True):
            want = want.numpy()
            diff = float(np.abs(want - have).max())
            scale = max(1.0, float(np.abs(want).max()))
            if diff > ONNX_TOLERANCE * scale:
                raise ExportError(
                    f"the ONNX graph at {path} gives '{name}' outputs {diff:.3g} away from "
                    f"PyTorch (tolerance {ONNX_TOLERANCE * scale:.3g}); it is not kept."
                )
            worst = max(worst, diff)
    return worst


def export_onnx(model: LoadedModel, path: Path) -> dict[str, Any]:
    """Write `model.onnx`, checked on batches of 1 and 3 random volumes; return the figures."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise DataError(
            "ONNX export needs onnx and onnxruntime: pip install onnx onnxruntime"
        ) from None
    generator = torch.Generator().manual_seed(0)
    shape = model.input_shape
    example, *checks = (torch.rand(n, *shape, generator=generator) for n in (2, 1, 3))
    wrapper = _Outputs(model)
    names = list(model.output_names)
    seconds = trace_onnx(wrapper, example, path, names, f"'{model.name}'")
    diff = check_onnx(wrapper, path, checks, names)
    return {"export_s": seconds, "max_abs_diff": diff, "opset": ONNX_OPSET, "outputs": names}
