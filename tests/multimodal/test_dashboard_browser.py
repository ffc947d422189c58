"""The grid dashboard in a real headless Chromium: no console errors, hover and click work."""

from __future__ import annotations

import pytest
from cdp_browser import Browser, chromium

pytestmark = pytest.mark.skipif(chromium() is None, reason="needs chromium (.ci/run installs it)")


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
