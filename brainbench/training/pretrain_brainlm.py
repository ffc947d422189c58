"""BrainLM pretraining on parcel time series: `brainbench pretrain brainlm`.

Trains the masked autoencoder (models/brainlm.py) on random windows of the dataset's 'train'
subjects and monitors the masked MSE on fixed windows of its 'val' subjects; 'test' subjects
are never read. Writes `<output_dir>/pretrained/brainlm-<dataset>/`: model.safetensors (the
config in its header too), config.json and metrics.json (masked-patch MSE, R^2 and Pearson r on
the val subjects at every mask ratio of `eval_ratios`). A folder that already holds a finished
pretraining of the same config is kept, so that rerunning a suite does not train it again; one
of another config is an error, as for `brainbench pretrain mae3d_cnn`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from brainbench.config import DataConfig, Layer, SplitConfig, build_config
from brainbench.data.records import count_text
from brainbench.data.sources.base import open_source
from brainbench.data.splits import dataset_id, dataset_splits, save_split, split_file
from brainbench.data.timeseries import SubjectWindows, split_windows
from brainbench.errors import ConfigError, DataError
from brainbench.metrics import signal_metrics
from brainbench.models.brainlm import BrainLM
from brainbench.models.brainlm_mae import (
    BrainLMPretrainConfig,
    brainlm_predictor,
    reconstruct,
    train_mae,
    write_pretrained,
)
from brainbench.owners import atomic_write, locked, pretraining_lock
from brainbench.results.record import environment_info, peak_memory_mb, to_json
from brainbench.spec import METRICS
from brainbench.training.pretrain import check_same_config


def build_brainlm_pretrain_config(layers: list[Layer]) -> BrainLMPretrainConfig:
    config = build_config(layers, root=BrainLMPretrainConfig)
    if config.window % config.model.patch:
        raise ConfigError(
            f"window={config.window} must be a multiple of model.patch={config.model.patch}."
        )
    return config


def recon_scores(net: BrainLM, data: SubjectWindows, ratios: list[float]) -> dict[str, Any]:
    """Masked-value MSE, MAE, R^2 and Pearson r of `net` on `data` at every ratio."""
    out = {}
    for ratio in ratios:
        truth, pred, _ = reconstruct(brainlm_predictor(net), data, ratio, net.cfg.patch)
        out[f"mask{ratio:g}"] = signal_metrics(truth, pred)
    return out


def subject_windows(
    data: DataConfig, split: SplitConfig, output_dir: Path, window: int, *, demean: bool = True
) -> dict[str, SubjectWindows]:
    """split_windows of every subject with a series in the dataset's shared split."""
    records, splits = dataset_splits(data, split, output_dir)
    files, coords = open_source(data).series(records)
    by_key = {r.key: r for r in records}
    chosen = {name: [by_key[k] for k in keys if k in files] for name, keys in splits.items()}
    short = [name for name, subset in chosen.items() if len(subset) < 2]
    if short:
        raise DataError(
            f"dataset '{data.dataset}' has fewer than 2 subjects with a parcel series in the "
            f"{', '.join(short)} split."
        )
    return split_windows(chosen, files, coords, window, demean=demean)


def pretrained_dir(config: BrainLMPretrainConfig) -> Path:
    return Path(config.output_dir) / "pretrained" / f"brainlm-{dataset_id(config.data)}"


# settings that leave the weights alone (flattened keys, as pretrain.RESUMABLE)
UNWEIGHTED = {"output_dir", "trainer.progress_bar", "trainer.num_workers"}


def pretrain_brainlm(config: BrainLMPretrainConfig, *, log: Callable[[str], Any] = print) -> Path:
    """Pretrain and write the pretrained folder; returns its path. A folder holding a finished
    pretraining (metrics.json is written last) of the same config is kept; of another config,
    a ConfigError: runs fine-tuned from its weights would then point at others."""
    out = pretrained_dir(config)
    with locked(pretraining_lock(out), log):  # one pretraining per folder at a time
        if (out / METRICS).is_file():
            check_same_config(out, config, UNWEIGHTED, use="keep")
            log(f"pretrain brainlm: {out} holds this pretraining already; kept (delete to retrain)")
            return out
        return _pretrain_into(out, config, log)


def _pretrain_into(out: Path, config: BrainLMPretrainConfig, log: Callable[[str], Any]) -> Path:
    """Train brainlm into `out` and write the pretrained folder."""
    data = subject_windows(
        config.data, config.split, config.output_dir, config.window, demean=config.demean
    )
    train, val = data["train"], data["val"]
    sizes = f"train {count_text(train.records)}, val {count_text(val.records)}"
    log(f"pretrain brainlm: {sizes}, {len(train.coords)} ROIs")
    torch.manual_seed(config.seed)
    net = BrainLM(config.model, torch.from_numpy(train.coords))
    info = train_mae(
        net,
        train,
        val,
        config.trainer,
        mask_ratio=config.mask_ratio,
        seed=config.seed,
        run_dir=out,
        max_steps=config.max_steps,
        forecast_share=config.forecast_share,
    )
    scores = recon_scores(net, val, config.eval_ratios)
    metrics = {
        "model": "brainlm",
        "dataset": dataset_id(config.data),
        "n_train": len(train),
        "n_val": len(val),
        "n_params": sum(p.numel() for p in net.parameters()),
        "val": scores,
        **info,
        "peak_memory_mb": peak_memory_mb(),
        **environment_info(),
    }
    save_split(split_file(config.data, config.split, config.output_dir))
    write_pretrained(out, net, config)
    atomic_write(out / METRICS, to_json(metrics).encode())
    main = scores[f"mask{config.mask_ratio:g}"] if config.mask_ratio in config.eval_ratios else {}
    log(f"pretrain brainlm: {info['steps']} steps, val masked {main or scores}")
    return out
