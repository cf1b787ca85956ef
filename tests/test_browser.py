"""The report in a real browser: headless Chromium (Debian's), driven by Playwright.

Checks what a reader and a reviewer would: the page loads offline with no console or script
errors and no request leaving ``file://``/``data:``; every figure is drawn with a size; the
headline table holds the numbers recomputed here from the raw Parquet records; sorting,
copying and CSV downloads work; strings planted in a config stay text. A full-page
screenshot is written to the run directory (``<run>/report.png``) for a human to look at.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
import pandas as pd
import pytest
from browser_support import open_page
from support import HOSTILE_DESCRIPTION, HOSTILE_DIR, HOSTILE_NAME

from gradprobe.analysis.report.pages import page_assets
from gradprobe.analysis.report.report_page import headline_for, write_report
from gradprobe.bench.store.records import read_records
from gradprobe.bench.store.run_dir import RunDir

pytestmark = pytest.mark.browser

CI_TEXT = re.compile(r"^(\S+) \[(\S+), (\S+)\]$")
HEADLINE = {"depth": 3, "width": 8}  # [report] headline of bench/configs/smoke.toml

FIGURE_SIZES = """figures => figures.map(f => {
  const drawn = f.querySelectorAll(':scope > svg, :scope > img');
  const box = drawn.length ? drawn[0].getBoundingClientRect() : {width: 0, height: 0};
  return {id: f.id, count: drawn.length, tag: drawn.length ? drawn[0].tagName : null,
          width: box.width, height: box.height,
          natural: drawn.length && drawn[0].tagName === 'IMG' ? drawn[0].naturalWidth : null,
          label: drawn.length ? (drawn[0].getAttribute('aria-label')
                                 || drawn[0].getAttribute('alt')) : null};
})"""
DECODE_IMAGES = "() => Promise.all(Array.from(document.images, i => i.decode()))"
DUPLICATE_IDS = """() => { const seen = new Map();
  document.querySelectorAll('[id]').forEach(e => seen.set(e.id, (seen.get(e.id) || 0) + 1));
  return Array.from(seen).filter(([, n]) => n > 1).map(([id]) => id); }"""
TABLE_TEXT = """table => Array.from(table.rows, r => Array.from(r.cells,
  c => c.textContent.replace(/\\s+/g, ' ').trim()))"""


@pytest.fixture(scope="module")
def report(smoke_analysis):
    return write_report(smoke_analysis.run_dir, analysis=smoke_analysis)


def test_report_loads_offline_without_errors(browser, report):
    with open_page(browser, report.as_uri()) as (page, log):
        page.evaluate(DECODE_IMAGES)
        figures = page.eval_on_selector_all("#figures figure", FIGURE_SIZES)
        duplicates = page.evaluate(DUPLICATE_IDS)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        shot = report.parent / "report.png"
        page.screenshot(path=str(shot), full_page=True)
    assert report.as_uri() in log.requests  # the guard sees requests at all
    assert log.external() == []
    assert log.console_errors == [] and log.page_errors == [] and log.dialogs == []
    assert [f["id"] for f in figures] == ["figure-profile", "figure-ratio", "figure-depth",
                                          "figure-width", "figure-seeds"]
    for f in figures:
        assert f["count"] == 1 and f["width"] > 100 and f["height"] > 100, f
        assert f["natural"] is None or f["natural"] > 0, f
        assert f["label"] and len(f["label"]) > 40, f
    assert duplicates == []
    assert overflow <= 0  # nothing wider than a 1280 px window
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[20:24], "big") > 2000  # full page, not just the viewport


def test_narrow_window_scrolls_tables_not_the_page(browser, report):
    with open_page(browser, report.as_uri(), width=400, height=800) as (page, log):
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0 and log.console_errors == []


def _shown_matches(text: str, value: float) -> bool:
    """``text`` is ``value`` rounded to the 3 significant digits the report shows."""
    shown = float(text)
    if shown == 0:
        return value == 0
    half_unit = 0.5 * 10 ** (math.floor(math.log10(abs(shown))) - 2)
    return abs(shown - value) <= half_unit * (1 + 1e-9)


def _geo_means(records: pd.DataFrame) -> tuple[dict, dict]:
    """Per (param, residual): 10 ** mean(log10) over seeds; per param: the paired ratio,
    10 ** median of the per-seed log ratios."""
    means = {key: 10 ** np.log10(group["grad_mean_abs"]).mean()
             for key, group in records.groupby(["param", "residual"])}
    wide = records.pivot_table(index=["param", "seed"], columns="residual",
                               values="grad_mean_abs")
    logs = np.log10(wide[True]) - np.log10(wide[False])
    ratios = {param: 10 ** group.median() for param, group in logs.groupby(level="param")}
    return means, ratios


def test_headline_table_holds_the_numbers_in_the_records(browser, report, smoke_analysis):
    with open_page(browser, report.as_uri()) as (page, _):
        header, *rows = page.eval_on_selector("#headline-table", TABLE_TEXT)
    records = read_records(smoke_analysis.run_dir)
    records = records[(records["depth"] == HEADLINE["depth"])
                      & (records["width"] == HEADLINE["width"])]
    assert (records["grad_mean_abs"] > 0).all()  # else the geometric mean drops seeds
    means, ratios = _geo_means(records)
    assert header[:4] == ["layer", "plain [95% CI]", "residual [95% CI]",
                          "residual/plain [95% CI]"]
    assert [r[0] for r in rows] == sorted(records["param"].unique())
    for param, plain, residual, ratio, _ in rows:
        for text, value in ((plain, means[param, False]), (residual, means[param, True]),
                            (ratio, ratios[param])):
            point, low, high = CI_TEXT.match(text).groups()
            assert _shown_matches(point, value), (param, text, value)
            assert float(low) <= float(point) <= float(high)


def _column(page, index: int) -> list[str]:
    return page.eval_on_selector_all(
        f"#headline-table tbody tr > :nth-child({index + 1})",
        "cells => cells.map(c => c.textContent.trim())")


def test_clicking_a_header_sorts_by_value_both_ways(browser, report):
    with open_page(browser, report.as_uri()) as (page, log):
        header = page.locator("#headline-table thead th").nth(1)
        header.get_by_role("button").click()
        ascending = [float(c.split()[0]) for c in _column(page, 1)]
        state = header.get_attribute("aria-sort")
        header.get_by_role("button").click()
        descending = [float(c.split()[0]) for c in _column(page, 1)]
        page.locator("#headline-table thead th").first.get_by_role("button").click()
        layers = _column(page, 0)
    assert state == "ascending" and ascending == sorted(ascending)
    assert descending == sorted(ascending, reverse=True) and ascending != descending
    assert layers == ["layers.0.weight", "layers.1.weight", "layers.2.weight"]
    assert log.console_errors == [] and log.page_errors == []


def test_sort_order_of_ci_cells_p_values_and_missing_values(browser, tmp_path):
    """The page script on cells the report produces: CIs sort by their point estimate,
    "<1e-4" as 1e-4, names with numbers naturally, "n/a" last in both directions."""
    assets = page_assets()
    cells = ["n/a", "1.2e-05 [3e-06, 4e-05]", "<1e-4", "0.5 [0.1, 0.9]", "12 [1, 30]"]
    names = ["layers.10.weight", "layers.2.weight", "layers.1.weight", "n/a", "layers.0.bias"]
    body = "".join(f"<tr><td>{n}</td><td>{c}</td></tr>" for n, c in zip(names, cells,
                                                                        strict=True))
    page_file = tmp_path / "sort.html"
    page_file.write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{assets.csp}"><title>t</title>'
        f'</head><body><table class="sortable" id="t"><thead><tr><th>name</th><th>value</th>'
        f"</tr></thead><tbody>{body}</tbody></table><script>{assets.script}</script>"
        f"</body></html>", encoding="utf-8")
    with open_page(browser, page_file.as_uri()) as (page, log):
        button = page.locator("#t thead th").nth(1).get_by_role("button")
        button.click()
        up = page.eval_on_selector_all("#t tbody td:nth-child(2)", "c => c.map(x => x.textContent)")
        button.click()
        down = page.eval_on_selector_all("#t tbody td:nth-child(2)",
                                         "c => c.map(x => x.textContent)")
        page.locator("#t thead th").first.get_by_role("button").click()
        by_name = page.eval_on_selector_all("#t tbody td:first-child",
                                            "c => c.map(x => x.textContent)")
    assert up == ["1.2e-05 [3e-06, 4e-05]", "<1e-4", "0.5 [0.1, 0.9]", "12 [1, 30]", "n/a"]
    assert down == ["12 [1, 30]", "0.5 [0.1, 0.9]", "<1e-4", "1.2e-05 [3e-06, 4e-05]", "n/a"]
    assert by_name == ["layers.0.bias", "layers.1.weight", "layers.2.weight",
                       "layers.10.weight", "n/a"]
    assert log.console_errors == [] and log.page_errors == []


def test_copy_button_puts_the_table_on_the_clipboard(browser, report, smoke_analysis):
    headline = headline_for(smoke_analysis)
    with open_page(browser, report.as_uri()) as (page, log):
        page.get_by_role("button", name="Copy table (TSV)").click()
        status = page.locator("#headline .status")
        status.filter(has_text="Copied").wait_for()
        copied = page.evaluate("navigator.clipboard.readText()")
        status_text = status.text_content()
    expected = ["\t".join(headline.header)] + ["\t".join(row) for row in headline.rows]
    assert copied.splitlines() == expected
    assert status_text == f"Copied {len(headline.rows)} rows as tab-separated text."
    assert log.console_errors == []


def _download(page, link) -> tuple[str, pd.DataFrame]:
    with page.expect_download() as waiting:
        link.click()
    download = waiting.value
    with open(download.path(), encoding="utf-8") as handle:
        return download.suggested_filename, pd.read_csv(io.StringIO(handle.read()))


def test_every_figure_and_the_headline_download_as_csv(browser, report, smoke_analysis):
    headline = headline_for(smoke_analysis)
    with open_page(browser, report.as_uri()) as (page, log):
        name, table = _download(page, page.locator("#headline a.download"))
        figures = {}
        for figure in page.locator("#figures figure").all():
            link = figure.locator("a.download")
            stated = int(re.search(r"(\d+) rows", link.text_content()).group(1))
            figures[figure.get_attribute("id")] = (stated, *_download(page, link))
    assert name.endswith("-headline.csv")
    assert list(table["param"]) == list(headline.table["param"])
    assert np.allclose(table["plain"], headline.table["plain"], rtol=1e-12)
    assert np.allclose(table["ratio_high"], headline.table["ratio_high"], rtol=1e-12)
    assert set(figures) == {"figure-profile", "figure-ratio", "figure-depth", "figure-width",
                            "figure-seeds"}
    for key, (stated, filename, frame) in figures.items():
        assert filename.endswith(f"-{key.removeprefix('figure-')}.csv")
        assert len(frame) == stated > 0, key
    assert {"variant", "layer", "geo_mean", "ci_low", "ci_high", "n_used"} <= set(
        figures["figure-profile"][2].columns)
    assert {"depth", "width", "ratio", "ci_low", "ci_high", "p_adjusted"} <= set(
        figures["figure-ratio"][2].columns)
    assert {"width", "metric", "param", "geo_mean", "exponent", "exponent_low",
            "exponent_high"} <= set(figures["figure-width"][2].columns)
    assert log.external() == [] and log.console_errors == []


def test_gradient_distributions_are_drawn_and_download_their_rows(browser, report,
                                                                  smoke_analysis):
    with open_page(browser, report.as_uri()) as (page, log):
        page.evaluate(DECODE_IMAGES)
        drawn = page.eval_on_selector_all("#distributions figure", FIGURE_SIZES)
        link = page.locator("#figure-histograms a.download")
        stated = int(re.search(r"(\d+) rows", link.text_content()).group(1))
        filename, frame = _download(page, link)
    assert [f["id"] for f in drawn] == ["figure-histograms"]
    assert drawn[0]["width"] > 100 and drawn[0]["height"] > 100 and drawn[0]["label"]
    assert filename.endswith("-histograms.csv") and len(frame) == stated > 0
    hist = RunDir(smoke_analysis.run_dir).histograms()
    # The pooled counts it draws, plus the entries outside the bins, are every entry.
    outside = hist[["n_over", "n_under", "n_zero", "n_nonfinite"]].to_numpy().sum()
    assert frame["count"].sum() + outside == hist["numel"].sum()
    assert set(frame["depth"]) == {2, 3, 4} and set(frame["width"]) == {8, 16}
    assert log.external() == [] and log.console_errors == []


def test_request_guard_catches_an_external_request(browser, tmp_path):
    """The harness itself can fail: an image from the network is seen and blocked."""
    page_file = tmp_path / "leak.html"
    page_file.write_text('<!DOCTYPE html><img src="http://192.0.2.1/pixel.png" alt="x">',
                         encoding="utf-8")
    with open_page(browser, page_file.as_uri()) as (_, log):
        pass
    assert set(log.external()) == {"http://192.0.2.1/pixel.png"}
    assert log.blocked == ["http://192.0.2.1/pixel.png"]


def test_strings_planted_in_the_config_stay_text(browser, hostile_run):
    report = hostile_run / "index.html"
    with open_page(browser, report.as_uri()) as (page, log):
        title = page.title()
        heading = page.locator("h1").text_content()
        description = page.locator("header p").first.text_content()
        scripts = page.evaluate("document.scripts.length")
        pwned = page.evaluate("window.__pwned === undefined")
        images = page.evaluate("Array.from(document.images, i => i.src)")
    assert heading == f"gradprobe: {HOSTILE_NAME}" and title == heading
    assert description == HOSTILE_DESCRIPTION
    assert scripts == 1 and pwned and log.dialogs == []
    assert images == [] and log.external() == [] and log.page_errors == []
    assert [u for u in log.requests if not u.startswith("data:")] == [report.as_uri()]


def test_published_site_works_offline_and_links_to_every_report(browser, reports_dir,
                                                                 tmp_path):
    from gradprobe.analysis.history.site import publish

    result = publish(reports=reports_dir, out=tmp_path / "site")
    index = (result.out / "index.html").as_uri()
    with open_page(browser, index) as (page, log):
        names = page.eval_on_selector_all("#runs-table tbody th a",
                                          "links => links.map(a => a.textContent)")
        configs = page.eval_on_selector_all("#runs-table tbody th .meta",
                                            "spans => spans.map(s => s.textContent)")
        page.locator("#runs-table thead th").nth(6).get_by_role("button").click()
        by_ratio = page.eval_on_selector_all(
            "#runs-table tbody tr > :nth-child(7)",
            "cells => cells.map(c => Number(c.getAttribute('data-sort')))")
        visited = {}
        for name in names:
            page.get_by_role("link", name=name, exact=True).click()
            page.wait_for_load_state("load")
            visited[name] = (page.url, page.locator("h1").text_content())
            page.go_back()
            page.wait_for_load_state("load")
    assert sorted(names) == sorted(["smoke-run", HOSTILE_DIR])
    assert f"config {HOSTILE_NAME}" in configs
    assert by_ratio == sorted(by_ratio)
    assert visited["smoke-run"][1] == "gradprobe: smoke"
    assert visited[HOSTILE_DIR][1] == f"gradprobe: {HOSTILE_NAME}"
    assert all(url.endswith("/index.html") and "/runs/" in url for url, _ in visited.values())
    assert log.console_errors == [] and log.page_errors == [] and log.dialogs == []
    assert log.external() == []


SERIES_SHOWN = """() => ({points: document.querySelectorAll('#chart circle').length,
  lines: Array.from(document.querySelectorAll('#chart polyline'), l => l.getAttribute('stroke')),
  dashed: document.querySelectorAll('#chart line[stroke-dasharray]').length,
  ticks: Array.from(document.querySelectorAll('#chart text.tick-x'), t => t.textContent)})"""


def test_every_history_series_is_reachable_from_the_index(browser, scratch_history, tmp_path):
    """From the site's index, by clicks only: the history page, every config, cell,
    parameter and metric in its selector drawn over the commits; the regressions page and
    the comparison it links to."""
    from gradprobe.analysis.history.site import publish

    _, shas, reports = scratch_history
    result = publish(reports=reports, out=tmp_path / "site")
    with open_page(browser, (result.out / "index.html").as_uri()) as (page, log):
        page.get_by_role("link", name="History and change points").first.click()
        page.wait_for_load_state("load")
        first = page.evaluate(SERIES_SHOWN)
        seen = set()
        options = "o => o.map(x => x.value)"
        for config in page.eval_on_selector_all("#pick-config option", options):
            page.select_option("#pick-config", config)
            for cell in page.eval_on_selector_all("#pick-cell option", options):
                page.select_option("#pick-cell", cell)
                for param in page.eval_on_selector_all("#pick-param option", options):
                    page.select_option("#pick-param", param)
                    for metric in page.eval_on_selector_all("#pick-metric option", options):
                        page.select_option("#pick-metric", metric)
                        shown = page.evaluate(SERIES_SHOWN)
                        assert shown["points"] == len(shas), (config, cell, param, metric)
                        assert f"metric={metric}" in page.url
                        seen.add((config, cell, param, metric))
        page.get_by_role("link", name="Regressions").first.click()
        page.wait_for_load_state("load")
        flagged = page.locator("#regressions-table tbody tr").count()
        page.get_by_role("link", name="comparison").first.click()
        page.wait_for_load_state("load")
        landed = page.url
    data = re.search(r'id="history-data">(.*?)</script>',
                     (result.out / "history" / "index.html").read_text(encoding="utf-8"), re.S)
    series = __import__("json").loads(data.group(1))["series"]
    assert seen == {(s["config"], s["cell"], s["param"], s["metric"]) for s in series}
    assert first["ticks"] == [sha[:8] for sha in shas] and first["dashed"] == 1
    assert first["lines"] == ["#0072B2"]  # the scratch model is a plain network
    assert flagged >= 1 and landed.endswith(f"/runs/{result.runs[2].name}/index.html#comparison")
    assert log.console_errors == [] and log.page_errors == [] and log.dialogs == []
    assert log.external() == []


TABLE_FITS = """() => { const t = document.querySelector('#headline-table');
  return {table: t.getBoundingClientRect().width,
          column: t.closest('section').getBoundingClientRect().width}; }"""


def test_a_factory_model_report_loads_and_fits_the_page(browser, transformer_analysis,
                                                        tmp_path):
    """The transformer preset's report: figures drawn, the headline figure on top, the
    per-role headline table inside its column at 1400 px, nothing wider than the window."""
    path = write_report(transformer_analysis.run_dir, analysis=transformer_analysis,
                        out=tmp_path / "index.html")
    with open_page(browser, path.as_uri(), width=1400) as (page, log):
        page.evaluate(DECODE_IMAGES)
        figures = page.eval_on_selector_all("figure[id^='figure-']", FIGURE_SIZES)
        fits = page.evaluate(TABLE_FITS)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert log.external() == [] and log.console_errors == [] and log.page_errors == []
    assert [f["id"] for f in figures] == ["figure-headline", "figure-profile", "figure-depth",
                                          "figure-seeds", "figure-histograms"]
    for f in figures:
        assert f["count"] == 1 and f["width"] > 100 and f["height"] > 100, f
    assert fits["table"] <= fits["column"] and overflow <= 0


def test_the_headline_table_fits_its_column_at_1400_px(browser, report):
    with open_page(browser, report.as_uri(), width=1400) as (page, _):
        fits = page.evaluate(TABLE_FITS)
    assert fits["table"] <= fits["column"], fits
