"""Several parcel-series runs per subject: chosen by the BIDS rule with one warning, or by
data.filters.timeseries; a filter that matches nothing is an error naming it."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from brainbench.config import DataConfig
from brainbench.data.records import SubjectRecord
from brainbench.data.sources.base import open_source
from brainbench.data.timeseries import series_files, write_series
from brainbench.errors import ConfigError

RUNS = {
    "01": ["sub-01_task-rest_run-2", "sub-01_task-nback_run-1", "sub-01_task-rest_run-1"],
    "02": ["sub-02_task-rest_desc-clean_run-1", "sub-02_task-rest_run-3"],
    "03": ["sub-03_task-rest"],
}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for subject, names in RUNS.items():
        for name in names:
            path = tmp_path / f"fmri/sub-{subject}/func/{name}_timeseries.npy"
            write_series(path, np.zeros((9, 2)))
    return tmp_path / "fmri"


def records() -> list[SubjectRecord]:
    return [SubjectRecord(s, 30.0, "F", "a") for s in RUNS]


def chosen(found: dict[str, Path]) -> dict[str, str]:
    return {key: path.name.removesuffix("_timeseries.npy") for key, path in found.items()}


def test_the_rule_picks_one_run_and_says_so_once(folder: Path) -> None:
    with pytest.warns(UserWarning, match="2 of 3 records have several parcel series") as told:
        found = series_files(folder, records())
    assert len(told) == 1 and "data.filters.timeseries" in str(told[0].message)
    # the fewest variant entities (desc), then the lowest run, then the name
    assert chosen(found) == {
        "sub-01": "sub-01_task-nback_run-1",
        "sub-02": "sub-02_task-rest_run-3",
        "sub-03": "sub-03_task-rest",
    }


def test_a_filter_chooses_the_task_and_run(folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        found = series_files(folder, records(), {"task": "rest", "run": "1"})
    assert chosen(found) == {
        "sub-01": "sub-01_task-rest_run-1",
        "sub-02": "sub-02_task-rest_desc-clean_run-1",
    }


def test_a_filter_matching_nothing_is_an_error(folder: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.filters.timeseries=task-movie matches no"):
        series_files(folder, records(), {"task": "movie"})


def test_the_source_passes_data_filters_timeseries(folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "ds"
    (root / "derivatives").mkdir(parents=True)
    folder.rename(root / "derivatives" / "fmri")
    (root / "derivatives/fmri/atlas.tsv").write_text("index\tx\ty\tz\n1\t0\t0\t0\n2\t9\t0\t0\n")
    config = DataConfig(dataset="bids", path=root, filters={"timeseries": "task-rest_run-2"})
    files, coords = open_source(config).series(records())
    assert chosen(files) == {"sub-01": "sub-01_task-rest_run-2"} and coords.shape == (2, 3)
