"""`brainbench submit` and `brainbench report A.json B.json`: packing, validation, comparison."""

from __future__ import annotations

import json

import pytest

from brainbench import api
from brainbench.cli import main
from brainbench.errors import ResultsError
from brainbench.submission import canonical_digest, read_submission


@pytest.fixture(scope="module")
def submission(results, tmp_path_factory):
    out = tmp_path_factory.mktemp("submit") / "lab-a.json"
    return api.submit(results, out=out, group="lab-a")


def _rewrite(path, tmp_path, name, change, reseal=False):
    payload = json.loads(path.read_text())
    change(payload)
    if reseal:
        payload["digest"] = canonical_digest(payload)
    out = tmp_path / name
    out.write_text(json.dumps(payload))
    return out


def test_submission_holds_configs_metrics_versions_and_no_data(submission, results) -> None:
    payload = read_submission(submission)
    (run,) = payload["runs"]
    record = json.loads(next(results.glob("runs/*/*/*/seed33/metrics.json")).read_text())
    assert run["record"]["metrics"] == record["metrics"]
    assert run["record"]["versions"]["torch"] and run["config"]["model"]["name"] == "sfcn"
    text = submission.read_text()
    assert "predictions" not in text and "sub-" not in text  # no predictions, no subject ids
    assert str(results) not in text  # no local paths


def test_report_compares_submissions(submission, tmp_path, capsys) -> None:
    other = _rewrite(submission, tmp_path, "b.json", lambda p: p.update(group="lab-b"), True)
    assert main(["report", str(submission), str(other), "--out", str(tmp_path / "cmp")]) == 0
    out = capsys.readouterr().out
    assert "lab-a/sfcn" in out and "lab-b/sfcn" in out
    assert (tmp_path / "cmp" / "leaderboard.md").is_file()


def test_tampered_or_incomplete_submissions_are_refused(submission, tmp_path, capsys) -> None:
    def better(p):
        p["runs"][0]["record"]["metrics"]["mae"] = 0.1

    tampered = _rewrite(submission, tmp_path, "t.json", better)
    with pytest.raises(ResultsError, match="modified after"):
        read_submission(tampered)
    missing = _rewrite(submission, tmp_path, "m.json", lambda p: p["runs"][0]["record"].pop("seed"))
    with pytest.raises(ResultsError, match="run 0 lacks seed"):
        read_submission(missing)
    no_group = _rewrite(submission, tmp_path, "g.json", lambda p: p.pop("group"))
    assert main(["report", str(submission), str(no_group)]) == 2
    assert "lacks the field(s) group" in capsys.readouterr().err


def test_other_task_version_or_split_is_refused(submission, tmp_path) -> None:
    def version(p):
        p["runs"][0]["record"]["task_version"] = 2

    def split(p):
        p["splits"][p["runs"][0]["split"]]["sha256"] = "0" * 64

    for change, message in ((version, "version 2"), (split, "split dataset")):
        other = _rewrite(submission, tmp_path, "x.json", change, reseal=True)
        with pytest.raises(ResultsError, match=message):
            api.compare([submission, other], out=tmp_path / "cmp")
