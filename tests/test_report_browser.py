"""The HTML report in a real browser (headless Chromium over its DevTools pipe): it draws without console
errors, one bar per measured site, the summary and every table cell as the JSON says, the graph's sites
click through to their rows, excluded sites show as "no data", and the curve and input bytes appear.

Skipped without Chromium, except under CI=true, where it must run. Screenshots go to .ci-artifacts/.
"""

from __future__ import annotations

import json
from pathlib import Path

import models
import needs
import pytest
from conftest import PREPROCESS
from featcomp.passes.jpeg_input import insert_jpeg

from featcomp import api
from featcomp.jpeg.tables import standard
from featcomp.preprocess import Preprocess
from featcomp.quality import Sqnr
from featcomp.reporting.browser import Page, find_chromium
from featcomp.reporting.render import COLUMNS, NARROW, cell, render
from featcomp.reporting.schema import Report
from featcomp.sweep import Sweep, sweep

ARTIFACTS = Path(__file__).resolve().parent.parent / ".ci-artifacts"


@pytest.fixture(scope="module")
def chromium() -> str:
    exe = find_chromium()
    if exe is None:
        needs.missing("Chromium is not installed: apt-get install chromium")
    return exe


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np
    from PIL import Image

    folder = tmp_path_factory.mktemp("browser") / "images"
    folder.mkdir()
    rng = np.random.default_rng(7)
    lines = []
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        lines.append(f"img{i}.png {i % 4}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def made(labelled: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Sweep, Path]:
    """A residual model with the learned-JPEG input node and one site excluded, its report, a real sweep, the page."""
    base = insert_jpeg(api._model(models.residual()), standard(40), Preprocess.parse(PREPROCESS)).model
    model = api.compress(base, labelled, preprocess=PREPROCESS, quality=Sqnr(24.0), exclude=["concat"]).model
    report = api.report(model, labelled, preprocess=PREPROCESS, name="residual+jpeg.fc.onnx")
    curve = sweep(models.residual(), labelled, labelled, labelled / "labels.txt", preprocess=PREPROCESS,
                  codecs=("dct-cm",), snrs=(12.0, 24.0))
    page = tmp_path_factory.mktemp("page") / "report.html"
    page.write_text(render(report, "html", sweep=curve))
    return report, curve, page


@pytest.fixture(scope="module")
def page(chromium: str, made: tuple[Report, Sweep, Path]):  # type: ignore[no-untyped-def]
    with Page(chromium, width=1400, height=1000) as p:
        p.open(made[2])
        yield p


def test_draws_without_console_errors(page: Page) -> None:
    assert page.console_errors() == []
    assert page.evaluate("document.body.dataset.rendered") == "ok"
    assert page.evaluate("document.querySelector('.error')") is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(ARTIFACTS / "report-page-small-model.png", full_page=True)
    assert (ARTIFACTS / "report-page-small-model.png").stat().st_size > 10_000


def test_console_errors_are_caught(chromium: str, tmp_path: Path) -> None:
    """The check above can fail: a page that throws and logs an error is reported."""
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><script>console.error('broken');"
                   "undefinedFunction();</script></body></html>")
    with Page(chromium) as p:
        p.open(bad)
        errors = p.console_errors()
    assert any("broken" in e for e in errors) and any("undefinedFunction" in e for e in errors)


def test_one_bar_per_site_and_excluded_sites_have_no_data(page: Page, made: tuple[Report, Sweep, Path]) -> None:
    report = made[0]
    assert page.evaluate("document.querySelectorAll('rect.bar-after').length") == len(report.sites)
    names = page.evaluate("[...document.querySelectorAll('rect.bar-after')].map(r => r.dataset.site)")
    assert names == [s.name for s in report.sites]  # network order
    assert page.evaluate("[...document.querySelectorAll('rect.bar-nodata')].map(r => r.dataset.site)") == ["concat"]
    row = page.evaluate("[...document.querySelector('tr[data-site=concat]').cells].map(c => c.textContent)")
    assert row[0] == "concat" and "not compressed" in row and "0" not in row and "—" in row
    assert page.evaluate("document.querySelector('.node.site.excluded text').textContent") == "no data"


def test_summary_figures_equal_the_json(page: Page, made: tuple[Report, Sweep, Path]) -> None:
    t, acc = made[0].totals, made[0].accuracy
    tiles = page.evaluate("Object.fromEntries([...document.querySelectorAll('.tile[data-key]')]"
                          ".map(d => [d.dataset.key, d.querySelector('.value').textContent]))")
    assert tiles == {
        "ratio_vs_int8": f"{t.ratio_vs_int8:.2f}×", "ratio_vs_fp32": f"{t.ratio_vs_fp32:.2f}×",
        "bits_per_value": f"{t.bits_per_value:.2f}", "traffic_saving_vs_int8": f"{t.traffic_saving_vs_int8:.1%}",
        "top1_agreement": f"{acc['top1_agreement']:.1%}",
    }
    j = t.input_jpeg
    assert j is not None
    shown = page.evaluate("[...document.querySelectorAll('.hbar-row .num')].map(n => n.textContent)")
    assert shown == [f"{j[k] / 1e3:.1f} kB" for k in ("raw", "standard", "learned")]


def test_table_cells_equal_the_terminal_renderer(page: Page, made: tuple[Report, Sweep, Path]) -> None:
    report = made[0]
    visible = "[...document.querySelectorAll('#sites-table th')].filter(h => h.offsetParent).map(h => h.textContent)"
    assert page.evaluate(visible) == [c.name for c in NARROW]  # as `--format table`
    page.evaluate("document.getElementById('wide-toggle').click()")
    assert page.evaluate(visible) == [c.name for c in COLUMNS]  # as `--format table --wide`
    page.evaluate("document.getElementById('wide-toggle').click()")
    for s in report.sites:
        row = page.evaluate(f"[...document.querySelector('tr[data-site={json.dumps(s.name)}]').cells]"
                            ".map(c => c.textContent)")
        assert row == [cell(s, c) for c in COLUMNS]


def test_sorting_and_graph_clicks(page: Page, made: tuple[Report, Sweep, Path]) -> None:
    report = made[0]
    page.evaluate("[...document.querySelectorAll('#sites-table th')].find(h => h.textContent === 'bits/val').click()")
    order = page.evaluate("[...document.querySelectorAll('#sites-table tbody tr')].map(r => r.dataset.site)")
    by_bits = sorted(report.sites, key=lambda s: -s.bits_per_value)
    assert order == [s.name for s in by_bits] + ["concat"]  # the site with no data sorts last
    graph_sites = page.evaluate("[...document.querySelectorAll('.node.site')].map(n => n.dataset.site)")
    assert sorted(graph_sites) == sorted(s["name"] for s in report.graph["sites"])
    target = report.sites[-1].name
    page.evaluate(f"document.querySelector('.node.site[data-site={json.dumps(target)}]')"
                  ".dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    assert page.evaluate("[...document.querySelectorAll('tr.selected')].map(r => r.dataset.site)") == [target]
    first = report.sites[0].name
    page.evaluate(f"document.querySelector('tr[data-site={json.dumps(first)}]').click()")
    assert page.evaluate("[...document.querySelectorAll('.node.site.selected')].map(n => n.dataset.site)") == [first]
    assert page.evaluate("[...document.querySelectorAll('.bar-slot.selected')].map(n => n.dataset.site)") == [first]


def test_rate_accuracy_curve_is_drawn(page: Page, made: tuple[Report, Sweep, Path]) -> None:
    curve = made[1]
    assert page.evaluate("document.getElementById('curve-card').hidden") is False
    assert page.evaluate("document.querySelectorAll('#curve svg').length") == 2
    assert page.evaluate("document.querySelectorAll('#curve svg[data-curve=top1] circle').length") == len(curve.points)


def test_numbers_round_like_python(page: Page) -> None:
    """The page's fixed() is Python's f"{x:.Nf}": exact ties go to even, nan and inf spelled alike."""
    import random

    rng = random.Random(3)
    values = [0.125, 0.375, 2.5, 3.5, -2.5, 12.5, 1.005, 0.045, 1e-9, 123456.5, 0.0, float("nan"), float("inf"),
              float("-inf"), *(rng.uniform(-50, 50) for _ in range(200)), *(rng.randint(0, 4000) / 8 for _ in range(100))]
    for digits in (0, 1, 2, 3):
        got = page.evaluate(f"{json.dumps([repr(v) for v in values])}.map(v => fixed(Number(v === 'nan' ? NaN : "
                            f"v === 'inf' ? Infinity : v === '-inf' ? -Infinity : v), {digits}))")
        assert got == [f"{v:.{digits}f}" for v in values], digits


def test_deployed_section_shows_only_the_keys_it_has(chromium: str, made: tuple[Report, Sweep, Path],
                                                      tmp_path: Path) -> None:
    """A report with a "deployed" section (featcomp report --bundle) gets a card with exactly its keys."""
    data = json.loads(made[0].to_json())
    data["deployed"] = {"target": "x86_64", "planned_peak_bytes": 123456, "dram_bytes_per_inference": 7654321,
                        "sites": [{"name": s.name, "stored_bytes": 1000 + i} for i, s in enumerate(made[0].sites)]}
    page_text = made[2].read_text()
    start = page_text.index('<script type="application/json" id="featcomp-report">')
    end = page_text.index("</script>", start)
    head = '<script type="application/json" id="featcomp-report">'
    page = tmp_path / "deployed.html"
    page.write_text(page_text[:start] + head + json.dumps(data).replace("<", "\\u003c") + page_text[end:])
    with Page(chromium) as p:
        p.open(made[2])
        assert p.evaluate("document.getElementById('deployed-card').hidden") is True  # no section, no card
        p.open(page)
        assert p.console_errors() == []
        assert p.evaluate("document.getElementById('deployed-card').hidden") is False
        keys = p.evaluate("[...document.querySelectorAll('#deployed .kv [data-key]')].map(d => d.dataset.key)")
        assert keys == ["target", "planned_peak_bytes", "dram_bytes_per_inference"]
        assert p.evaluate("document.querySelector('#deployed [data-key=dram_bytes_per_inference] b').textContent") \
            == f"{7654321 / 1e6:.2f} MB"
        rows = p.evaluate("[...document.querySelectorAll('#deployed table[data-key=sites] tbody tr')]"
                          ".map(r => r.cells[0].textContent)")
        assert rows == [s.name for s in made[0].sites]
