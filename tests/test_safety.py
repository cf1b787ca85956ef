"""Reports are safe to publish: markup from configs is inert, and no pickle is used."""

from __future__ import annotations

from html.parser import HTMLParser

from support import REPO

from gradprobe.bench.execute.runner import run_sweep
from gradprobe.bench.plan.loader import parse_config

PAYLOAD = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_markup_in_config_is_inert_in_the_report(tmp_path):
    text = (f"name = '{PAYLOAD}'\ndescription = '{PAYLOAD}'\n"
            "[model]\ndepth = 2\nwidth = 3\n[sweep]\nseeds = 4\nresidual = [false, true]\n")
    out = tmp_path / "run"
    run_sweep(parse_config(text, source="evil.toml"), out=out, progress=False)
    from gradprobe.analysis.analyze import AnalysisSettings, analyze_run
    from gradprobe.analysis.report.report_page import write_report

    analysis = analyze_run(out, settings=AnalysisSettings(n_resamples=199))
    html = write_report(out, analysis=analysis).read_text()
    assert PAYLOAD not in html
    elements = Elements()
    elements.feed(html)
    assert not [a for tag, a in elements.tags if tag == "img" or "onerror" in dict(a)]
    assert not [text for text in elements.scripts if "alert" in text]
    assert any(PAYLOAD in text for text in elements.text)  # shown to the reader, as text


def test_no_pickle_anywhere():
    for package in ("bench", "analysis"):
        for path in (REPO / package).rglob("*.py"):
            source = path.read_text()
            assert "import pickle" not in source and "pickle." not in source, path
            assert "to_pickle" not in source and "read_pickle" not in source, path


class Elements(HTMLParser):
    """Collects start tags, script bodies and visible text of an HTML page."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self.text, self._in_script = [], [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)
