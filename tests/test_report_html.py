"""The HTML report without a browser: it embeds the report JSON exactly, needs no network, carries the graph;
the narrow terminal table; `featcomp report --format html`, re-rendering a saved report, and bad input."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import models
import pytest
from conftest import PREPROCESS
from featcomp.passes.sites import find_sites

from featcomp import api
from featcomp.errors import FeatcompError
from featcomp.quality import Sqnr
from featcomp.reporting.html import render_html
from featcomp.reporting.render import COLUMNS, NARROW, WIDTH, render
from featcomp.reporting.schema import Report

SCRIPT = re.compile(r'<script type="application/json" id="([\w-]+)">(.*?)</script>', re.S)


def embedded(page: str) -> dict[str, str]:
    """The JSON blocks of a page, by id, as text."""
    return {key: text for key, text in SCRIPT.findall(page)}


@pytest.fixture(scope="module")
def calib(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import numpy as np

    path = tmp_path_factory.mktemp("html") / "calib.npz"
    x = np.random.default_rng(5).normal(size=(4, 3, models.SIZE, models.SIZE)).astype(np.float32)
    np.savez(path, **{models.INPUT: x})
    return path


@pytest.fixture(scope="module")
def report(calib: Path) -> Report:
    """The residual model with one site excluded: the graph knows it, the report has no data for it."""
    compressed = api.compress(models.residual(), calib, quality=Sqnr(22.0), exclude=["add"]).model
    return api.report(compressed, calib, name="residual.fc.onnx")


def test_graph_lists_every_site_and_node(report: Report) -> None:
    original = api._model(models.residual())
    assert report.graph is not None
    assert [s["name"] for s in report.graph["sites"]] == [s.name for s in find_sites(original)]
    assert "add" in [s["name"] for s in report.graph["sites"]] and "add" not in [s.name for s in report.sites]
    assert [n["op"] for n in report.graph["nodes"]] == [n.op_type for n in original.graph.node]
    weights = {t.name for t in original.graph.initializer}
    assert not weights & {t for n in report.graph["nodes"] for t in n["inputs"]}
    assert report.graph["inputs"] == [models.INPUT]


def test_page_embeds_the_report_json_and_needs_no_network(report: Report) -> None:
    page = render_html(report)
    blocks = embedded(page)
    assert Report.from_json(blocks["featcomp-report"]) == report
    assert json.loads(blocks["featcomp-columns"]) == [{"name": c.name, "key": c.key, "style": c.style,
                                                       "narrow": c.narrow} for c in COLUMNS]
    assert blocks["featcomp-sweep"] == "null"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page), "the page must load nothing"
    assert "<link" not in page and "@import" not in page
    assert "var dagre=" in page and "sourceMappingURL" not in page


def test_markup_in_names_stays_data(report: Report) -> None:
    """A site named like markup cannot end the JSON block early (the page's '<' become \\u003c)."""
    tricky = "x</script><script>alert(1)</script><!--"
    other = replace(report, model=tricky, sites=[replace(report.sites[0], name=tricky), *report.sites[1:]])
    page = render_html(other)
    assert page.count("</script>") == 5  # three JSON blocks, dagre, the page's script
    again = Report.from_json(embedded(page)["featcomp-report"])
    assert again.model == tricky and again.sites[0].name == tricky


def test_reports_without_a_graph_still_read(report: Report) -> None:
    data = json.loads(report.to_json())
    del data["graph"]
    old = Report.from_json(json.dumps(data))
    assert old.graph is None and old.sites == report.sites
    assert Report.from_json(embedded(render_html(old))["featcomp-report"]) == old


def test_narrow_table_fits_100_columns_and_wide_has_all(report: Report) -> None:
    long = replace(report, model="a-model-with-a-long-name_v2_1.0_224.fc.onnx",
                   sites=[replace(s, name=f"features.{i}.conv.2.block.relu6_output_{i:03d}")
                          for i, s in enumerate(report.sites)])
    narrow = render(long, "table")
    assert max(len(line) for line in narrow.splitlines()) <= WIDTH
    head = next(line for line in narrow.splitlines() if "site" in line)
    assert [c.name for c in NARROW] == re.findall(r"\S+(?: \S+)?", head.strip())
    assert "producer" not in head and "entropy" not in head
    wide = render(long, "table", wide=True)
    wide_head = next(line for line in wide.splitlines() if "site" in line)
    assert all(c.name in wide_head for c in COLUMNS)
    assert all(s.name in narrow.replace("\n", "") or s.name[:20] in narrow for s in long.sites)


def test_cli_html_from_a_model_and_from_saved_json(cli, model_file, calib_npz: Path, images: Path,
                                                   tmp_path: Path) -> None:
    compressed, saved = tmp_path / "m.fc.onnx", tmp_path / "m.report.json"
    run = cli("compress", model_file(models.residual()), "-o", compressed, "--calib", calib_npz, "--quiet",
              "--report", saved)
    assert run.code == 0, run.err
    page = tmp_path / "m.html"
    run = cli("report", compressed, "--calib", images, "--preprocess", PREPROCESS, "--format", "html", "-o", page)
    assert run.code == 0 and run.out == "", run.err
    measured = Report.from_json(embedded(page.read_text())["featcomp-report"])
    assert measured.samples == 5 and measured.meta["data"] == str(images) and measured.graph is not None

    again = tmp_path / "again.html"
    run = cli("report", saved, "--format", "html", "-o", again)
    assert run.code == 0, run.err
    assert embedded(again.read_text())["featcomp-report"] == saved.read_text().strip().replace("<", "\\u003c")
    run = cli("report", saved)  # a saved report prints as the narrow table too
    assert run.code == 0 and "bits/val" in run.out and "producer" not in run.out
    assert "producer" in cli("report", saved, "--wide").out


def test_compress_report_format_follows_the_extension(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    out, page = tmp_path / "m.fc.onnx", tmp_path / "m.report.html"
    run = cli("compress", model_file(models.residual()), "-o", out, "--calib", calib_npz, "--quiet", "--report", page)
    assert run.code == 0, run.err
    assert page.read_text().startswith("<!DOCTYPE html>")
    assert Report.from_json(embedded(page.read_text())["featcomp-report"]).totals.sites == 4
    assert run.out.splitlines()[-1] == f"report: {page} (open it in a browser)"


@pytest.mark.parametrize("content, message", [
    ('{"schema": "featcomp.report/0", "sites": []}', "schema is 'featcomp.report/0'"),
    ('{"schema": "featcomp.report/1", "model": "m", "sit', "not JSON"),
    ("", "not JSON"),
])
def test_foreign_or_truncated_report_json_is_one_line(cli, tmp_path: Path, content: str, message: str) -> None:
    source, page = tmp_path / "old.json", tmp_path / "out.html"
    source.write_text(content)
    run = cli("report", source, "--format", "html", "-o", page)
    assert run.code == 1 and run.out == ""
    assert len(run.err.splitlines()) == 1 and message in run.err and "Traceback" not in run.err
    assert not page.exists()


def test_bad_sweep_or_misplaced_flags_are_one_line(cli, report: Report, tmp_path: Path) -> None:
    saved = tmp_path / "r.json"
    saved.write_text(report.to_json())
    curve = tmp_path / "curve.json"
    curve.write_text('{"schema": "featcomp.sweep/1", "points": [')
    for argv, message in [
        (("--format", "html", "--sweep", curve), "curve is not JSON"),
        (("--format", "html", "--sweep", tmp_path / "none.json"), "does not exist"),
        (("--sweep", curve), "--sweep is drawn in the HTML report"),
    ]:
        run = cli("report", saved, *argv, "-o", tmp_path / "x.html")
        assert run.code == 1 and len(run.err.splitlines()) == 1 and message in run.err, run.err
    run = cli("report", tmp_path / "m.fc.onnx")
    assert run.code == 1 and "needs --calib" in run.err
    assert not (tmp_path / "x.html").exists()
    with pytest.raises(FeatcompError, match="schema"):
        from featcomp.sweep import Sweep

        Sweep.from_json('{"schema": "other"}')


def test_cli_sweep_curve_goes_into_the_page(cli, report: Report, tmp_path: Path) -> None:
    from featcomp.sweep import Point, Sweep

    saved, curve, page = tmp_path / "r.json", tmp_path / "curve.json", tmp_path / "r.html"
    saved.write_text(report.to_json())
    points = [Point(codec="dct-cm", output_snr_db=snr, bits_per_value=bits, payload_bits_per_value=bits,
                    entropy_bits_per_value=bits, side_bits_per_value=0.0, ratio_vs_int8=8 / bits, top1=top1,
                    top1_reference=0.7, agreement=top1 + 0.1) for snr, bits, top1 in ((12, 2.0, 0.5), (24, 4.0, 0.6))]
    curve.write_text(Sweep(model="m", images=10, calibration=4, points=points, seconds={}).to_json())
    run = cli("report", saved, "--format", "html", "--sweep", curve, "-o", page)
    assert run.code == 0, run.err
    assert Sweep.from_json(embedded(page.read_text())["featcomp-sweep"]) == Sweep.from_json(curve.read_text())
