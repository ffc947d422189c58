"""Submissions: a results folder packed into one JSON file a leaderboard can merge.

`pack(results_dir)` keeps, per run record, its metrics.json and resolved config (local paths
blanked), plus the oracle ceilings and a digest of each split's subject lists; no images, no
predictions, no subject ids. A SHA-256 digest of the canonical JSON of everything else makes
edits evident (it detects changes, it does not prove authorship: anyone can re-pack).
`compare(files)` merges several submissions into one leaderboard, refusing submissions whose
version of a task or split of a dataset differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

import brainbench
from brainbench.errors import ResultsError
from brainbench.results.record import HEADLINE_KEYS, REQUIRED_KEYS, read_records, to_json
from brainbench.spec import RECORD_CONFIG

FORMAT = "brainbench-submission"
VERSION = 1
TOP_KEYS = ("format", "version", "group", "created", "brainbench", "runs", "oracles", "splits")
LOCAL_KEYS = ("path", "cache_dir")  # data.* values that are paths on the submitter's machine


def canonical_digest(payload: dict[str, Any]) -> str:
    """sha256 of the payload's canonical JSON (sorted keys, no spaces), without `digest`."""
    body = {k: v for k, v in payload.items() if k != "digest"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def split_key(dataset: str, split_seed: int) -> str:
    return f"{dataset}_split{split_seed}"


def _split_digests(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Per split file: its config and a digest of its sorted subject lists (not the ids)."""
    out = {}
    for path in sorted((results_dir / "splits").glob("*.json")):
        saved = json.loads(path.read_text())
        lists = {name: sorted(saved[name]) for name in ("train", "val", "test")}
        digest = hashlib.sha256(json.dumps(lists, sort_keys=True).encode()).hexdigest()
        sizes = {name: len(keys) for name, keys in lists.items()}
        out[path.stem] = {"config": saved.get("config"), "sizes": sizes, "sha256": digest}
    return out


def pack(results_dir: Path | str, *, group: str | None = None) -> dict[str, Any]:
    """The submission payload of every run record under `results_dir` (with its digest)."""
    root = Path(results_dir)
    records = read_records(root)
    if not records:
        raise ResultsError(f"no run records under {root}; run `brainbench run` first.")
    splits = _split_digests(root)
    runs = []
    for record in records:
        rdir = Path(record.pop("path"))
        config = yaml.safe_load((rdir / RECORD_CONFIG).read_text())
        for key in LOCAL_KEYS:
            if config.get("data", {}).get(key) is not None:
                config["data"][key] = "<local>"
        config["output_dir"] = "<local>"
        key = split_key(record["dataset"], config["split"]["seed"])
        if key not in splits:
            raise ResultsError(
                f"{rdir} used split {key}, but {root / 'splits' / (key + '.json')} is missing; "
                "submit the results folder the runs wrote."
            )
        runs.append({"record": record, "config": config, "split": key})
    oracles = [json.loads(p.read_text()) for p in sorted((root / "oracle").glob("*.json"))]
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "group": group or root.resolve().name,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "brainbench": brainbench.__version__,
        "runs": runs,
        "oracles": oracles,
        "splits": {k: splits[k] for k in sorted({r["split"] for r in runs})},
    }
    payload = json.loads(to_json(payload))  # plain JSON values, as they will be read back
    return payload | {"digest": canonical_digest(payload)}


def write_submission(results_dir: Path | str, out: Path, *, group: str | None = None) -> Path:
    out = Path(out)
    payload = pack(results_dir, group=group)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=1, sort_keys=True) + "\n")
    return out


def read_submission(path: Path | str) -> dict[str, Any]:
    """A submission file, validated: format, every required field, and the digest."""
    path = Path(path)
    try:
        payload = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"submission {path} is unreadable ({exc}).") from None
    fix = "regenerate it with `brainbench submit RESULTS_DIR`"
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ResultsError(f"{path} is not a brainbench submission (format '{FORMAT}').")
    missing = [k for k in (*TOP_KEYS, "digest") if k not in payload]
    if missing:
        raise ResultsError(f"submission {path} lacks the field(s) {', '.join(missing)}; {fix}.")
    if payload["version"] != VERSION:
        raise ResultsError(f"submission {path} has version {payload['version']}, not {VERSION}.")
    for i, run in enumerate(payload["runs"]):
        record = run.get("record") if isinstance(run, dict) else None
        lacks = [k for k in REQUIRED_KEYS if not isinstance(record, dict) or k not in record]
        lacks += [
            f"headline.{k}" for k in HEADLINE_KEYS if k not in (record or {}).get("headline", {})
        ]
        lacks += [k for k in ("config", "split") if not isinstance(run, dict) or k not in run]
        if lacks:
            raise ResultsError(f"submission {path}: run {i} lacks {', '.join(lacks)}; {fix}.")
        if run["split"] not in payload["splits"]:
            raise ResultsError(f"submission {path}: run {i} names unknown split {run['split']}.")
    if canonical_digest(payload) != payload["digest"]:
        raise ResultsError(
            f"submission {path} was modified after `brainbench submit`: its content digest "
            f"does not match; {fix}."
        )
    return payload | {"file": str(path)}


def _check_compatible(submissions: list[dict[str, Any]]) -> None:
    """ResultsError when two submissions ran a task in another version or on another split."""
    seen: dict[tuple[str, str], tuple[Any, str, str]] = {}
    for sub in submissions:
        for run in sub["runs"]:
            record = run["record"]
            split = sub["splits"][run["split"]]
            key = (record["task"], record["dataset"])
            mine = (record["task_version"], split["sha256"], sub["file"])
            other = seen.setdefault(key, mine)
            if other[0] != mine[0]:
                raise ResultsError(
                    f"{mine[2]} ran {key[0]} version {mine[0]} but {other[2]} ran version "
                    f"{other[0]}: their results are not comparable. Rerun with the same "
                    "brainbench task version."
                )
            if other[1] != mine[1]:
                raise ResultsError(
                    f"{mine[2]} and {other[2]} split dataset {key[1]} differently (split "
                    f"{run['split']}): test sets differ, so results are not comparable. Use "
                    "the same split.seed and the same data."
                )


def merged_records(files: Iterable[Path | str]) -> tuple[list[dict], list[dict]]:
    """Run records (model named '<group>/<model>') and oracles of compatible submissions."""
    submissions = [read_submission(f) for f in files]
    _check_compatible(submissions)
    groups = [s["group"] for s in submissions]
    records, oracles = [], {}
    for sub in submissions:
        group = sub["group"] if groups.count(sub["group"]) == 1 else Path(sub["file"]).stem
        for run in sub["runs"]:
            record = run["record"]
            records.append(record | {"model": f"{group}/{record['model']}", "path": sub["file"]})
        for oracle in sub["oracles"]:
            oracles[(oracle["task"], oracle.get("dataset"))] = oracle
    return records, list(oracles.values())


def compare(files: Iterable[Path | str], out: Path | str) -> tuple[Any, dict[str, Path]]:
    """Leaderboard of several submissions in `out`: leaderboard.md, .csv and dashboard.html."""
    from brainbench.results.dashboard import render_dashboard
    from brainbench.results.leaderboard import build_leaderboard, mark_configs, to_markdown
    from brainbench.results.record import atomic_write_text, check_writable

    records, oracles = merged_records(files)
    records = mark_configs(records)
    df = build_leaderboard(records, oracles)
    root = check_writable(out)
    return df, {
        "markdown": atomic_write_text(root / "leaderboard.md", to_markdown(df)),
        "csv": atomic_write_text(root / "leaderboard.csv", df.to_csv(index=False)),
        "dashboard": atomic_write_text(root / "dashboard.html", render_dashboard(df, records)),
    }
