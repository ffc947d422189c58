import re
from html.parser import HTMLParser

from brainbench.results.dashboard import _ticks, render_dashboard
from brainbench.results.leaderboard import (
    build_leaderboard,
    format_table,
    to_markdown,
    write_reports,
)
from brainbench.results.record import write_oracle

EVIL = "<script>alert(1)</script>"
ORACLE = {
    "task": "mri/age",
    "headline": {"name": "mae", "value": 1.0, "higher_is_better": False},
    "metrics": {"mae": 1.0},
    "per_stage": {"child": {"mae": 0.5, "n": 3}},
    "description": "latents",
}


class _Scripts(HTMLParser):
    """Collects the text of every <script> element and every tag seen."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.tags: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def test_data_strings_are_escaped(payload):
    records = [
        payload(model=EVIL, seed=33, mae=2.0),
        payload(model=EVIL, seed=34, mae=3.0),
        payload(model="ok", protocol=f'"{EVIL}', dataset=EVIL, mae=4.0),
        payload(task=f"mri/{EVIL}", model="x&y", mae=1.0),
    ]
    records[0]["metrics"][f"<b>{EVIL}"] = 1.0
    page = render_dashboard(build_leaderboard(records), records)
    assert EVIL not in page and "<b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "x&amp;y" in page
    parser = _Scripts()
    parser.feed(page)
    assert parser.tags.count("script") == 1  # only the page's own sorting script
    assert "alert" not in "".join(parser.scripts)


def test_self_contained_and_complete(tmp_path, write):
    for seed, (ridge, sfcn) in zip((33, 34, 35), [(5.0, 3.0), (6.0, 2.0), (5.5, 2.5)], strict=True):
        write(model="ridge", seed=seed, mae=ridge)
        write(model="sfcn", seed=seed, mae=sfcn, protocol="scratch")
    write_oracle(tmp_path, "mri/age", ORACLE)
    page = write_reports(tmp_path)[1]["dashboard"].read_text()
    assert not re.search(r"https?://|//cdn|src=|<link", page, flags=re.IGNORECASE)
    assert "sortable" in page and page.count("<svg") == 2
    assert "oracle ceiling" in page and "2.5 ± 0.5" in page
    assert page.count("<circle") == 6  # one dot per seed
    assert "young adult" not in page and "older adult" in page  # only stages with data


def test_axis_ticks_are_round_numbers():
    ticks = _ticks(-0.99, 0.01)  # np.arange used to put a tick at -2.22e-16
    assert [text for _, text in ticks] == ["-0.8", "-0.6", "-0.4", "-0.2", "0.0"]
    assert ticks[-1][0] == 0.0
    assert [text for _, text in _ticks(0.0, 1e5)][-1] == "100000"
    assert [text for _, text in _ticks(0.6939, 0.7012)][0] == "0.694"


def test_rows_link_their_figures_and_wide_parts_scroll(tmp_path, write):
    for seed in (33, 34):
        folder = write(model="ridge", seed=seed, mae=5.0)
        (folder / "predictions.png").write_bytes(b"\x89PNG")
    page = write_reports(tmp_path)[1]["dashboard"].read_text()
    hrefs = re.findall(r'<a href="([^"]+\.png)">predictions</a>', page)
    assert len(hrefs) == 2 and all((tmp_path / href).is_file() for href in hrefs)
    assert "33: <a href" in page and 'name="viewport"' in page
    assert (
        page.count('<div class="scroll"><table') == 1
        and page.count('<div class="scroll"><svg') == 2
    )


def test_hugely_negative_stage_r2_is_explained(payload):
    records = [payload(task="multimodal/age", headline="r2", higher_is_better=True)]
    records[0]["per_stage"]["neonatal"] = {"mae": 0.1, "r2": -5.4e4, "n": 3}
    table = build_leaderboard(records)
    page = render_dashboard(table, records)
    assert "even small errors give hugely negative values" in page and "(neonatal)" in page
    for text in (format_table(table), to_markdown(table)):  # the terminal, leaderboard.md
        assert "hugely negative" in " ".join(text.split())
    records[0]["per_stage"]["neonatal"]["r2"] = -0.5
    assert "hugely negative" not in render_dashboard(build_leaderboard(records), records)
