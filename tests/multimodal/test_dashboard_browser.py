"""The dashboard in a real headless Chromium: no console errors, hover and click work, and the
page fits a phone and a laptop (screenshots of both)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from cdp_browser import Browser, chromium

from brainbench import api
from brainbench.results.record import run_dir, write_record

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs chromium (.ci/run installs it)")
PNG = b"\x89PNG\r\n\x1a\n"  # a figure's first bytes: enough for a link to point at


def test_hover_and_click_show_the_best_model_and_every_combination(grid_dir, tmp_path):
    page = grid_dir / "dashboard.html"
    browser = Browser(tmp_path / "profile")
    try:
        browser.load(page)
        assert browser.evaluate("document.querySelectorAll('#grid-heatmap rect').length") == 6
        verdicts = browser.evaluate(
            "Array.from(document.querySelectorAll('#grid-heatmap rect'))"
            ".map((r) => r.dataset.verdict)"
        )
        assert set(verdicts) <= {"legible", "not legible"} and len(verdicts) == 6
        browser.evaluate("document.getElementById('grid-graph').scrollIntoView()")
        box = browser.evaluate(
            "(() => { const r = document.querySelector('.node[data-target=\"age\"] circle')"
            ".getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; })()"
        )
        browser.mouse("mouseMoved", *box)
        info = browser.evaluate("document.getElementById('grid-info').textContent")
        assert info.startswith("age: best model fusion with inputs ")
        assert "Hover" not in info
        browser.mouse("mousePressed", *box)
        browser.mouse("mouseReleased", *box)
        rows = browser.evaluate(
            "Array.from(document.querySelectorAll('#grid-detail tbody tr'))"
            ".map((tr) => tr.cells[0].textContent)"
        )
        assert sorted(rows) == ["T1w", "T1w+metadata", "metadata"]
        head = browser.evaluate(
            "Array.from(document.querySelectorAll('#grid-detail th')).map((th) => th.textContent)"
        )
        assert head[3:7] == ["verdict", "p_cell", "p_holm", "expected"]
        heading = browser.evaluate("document.querySelector('#grid-detail h4').textContent")
        assert heading == "Every combination for age"
        assert browser.errors == []
    finally:
        browser.close()


def _wide_results(grid_dir, tmp_path):
    """The grid's results plus a 13-column task (as fmri/image's) whose run has a figure."""
    root = tmp_path / "results"
    shutil.copytree(grid_dir, root)
    metrics = {f"metric_{i}": 0.1 * i for i in range(12)}
    folder = write_record(
        run_dir(root, "fmri/image", "fmri_mlp", 33),
        config={"task": "fmri/image"},
        metrics={
            "task": "fmri/image", "task_version": 1, "model": "fmri_mlp", "protocol": "scratch",
            "seed": 33, "dataset": "synth-debug-seed0", "metrics": metrics, "per_stage": {},
            "headline": {"name": "metric_5", "value": 0.5, "higher_is_better": True},
            "n_train": 8, "n_val": 2, "n_test": 4, "timings": {"total_s": 1.0},
        },
        predictions=pd.DataFrame({"subject": ["a"], "y_pred": [0.0]}),
        files={"predictions.png": lambda path: path.write_bytes(PNG)},
    )  # fmt: skip
    api.report(root, log=lambda _: None)
    return root / "dashboard.html", folder


@pytest.mark.parametrize("width", [375, 1366])  # a phone, a laptop
def test_the_page_fits_phone_and_laptop_widths(grid_dir, tmp_path, width):
    page, run = _wide_results(grid_dir, tmp_path)
    browser = Browser(tmp_path / "profile")
    try:
        browser.viewport(width, 800)
        browser.load(page)
        # the page never scrolls sideways; a table or chart wider than the screen scrolls in
        # its own box
        assert browser.evaluate("document.documentElement.scrollWidth") <= width
        boxes = browser.evaluate(
            "Array.from(document.querySelectorAll('.scroll'))"
            ".map((b) => [b.scrollWidth > b.clientWidth, b.clientWidth])"
        )
        assert all(client <= width for _, client in boxes)
        assert any(wide for wide, _ in boxes)  # the 13-column table, at least
        link = browser.evaluate("document.querySelector('td a[href$=\".png\"]').href")
        assert link == (run / "predictions.png").resolve().as_uri()
        shot = browser.screenshot(tmp_path.parent / f"dashboard-{width}px.png")
        assert shot.read_bytes()[:8] == PNG[:8] and shot.stat().st_size > 10_000
        assert browser.errors == []
    finally:
        browser.close()
