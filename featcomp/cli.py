"""The `featcomp` command line: one argparse parser, lazily run subcommands, one-line errors.

Why lazy: `featcomp --help`/`--version` must not import ONNX Runtime, and an optional subcommand
whose dependency is missing must fail alone with an install hint instead of breaking the others.
Each entry of COMMANDS pairs a cheap argument builder with a run function that does its heavy
imports inside; a later `compile` entry would do
``try: import tvm except ImportError: raise FeatcompError("featcomp compile needs TVM: pip install 'featcomp[tvm]'")``.

Errors: a FeatcompError (bad input) becomes `featcomp: error: <message>` on stderr and exit code 1;
Ctrl-C exits 130; anything else is a bug and keeps its traceback. Output paths are checked before
any long work and written atomically (modelio.write_bytes), so a failed run leaves no output file.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from featcomp.cli_common import Bars, checked_output, comma_list, size_of, text_table
from featcomp.errors import FeatcompError
from featcomp.quality import (
    ESTIMATORS,
    Allocation,
    BitsPerValue,
    MaxDrop,
    OutputSnr,
    Quality,
    Sqnr,
    Step,
)

if TYPE_CHECKING:
    import onnx

    from featcomp.data import InputReader
    from featcomp.passes.sites import Site

FORMATS = ("table", "json", "csv", "md")  # the same names as featcomp.reporting.render.FORMATS
DEFAULT_NAME = "efficientnet-lite0"
DEFAULT_OUTPUT_SNR = 20.0  # dB of logit SNR for the default job (see README)
REPORT_BYTES_INPUTS = 16  # calibration inputs whose real coded bytes the report after compress counts
DEFAULT_OUT = Path("featcomp-out") / f"{DEFAULT_NAME}.fc.onnx"


@dataclass(frozen=True)
class Command:
    """One subcommand: help text, a cheap argument builder, and the run function (heavy imports inside)."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, Bars], int]


# ---------------------------------------------------------------------------------------------- helpers


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines) or type(exc).__name__


def _emit(text: str, output: Path | None) -> None:
    """Print to stdout, or write atomically to --output."""
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    from featcomp.modelio import write_bytes

    write_bytes(output, text.encode("utf-8"))


def _open(model: onnx.ModelProto, source: object, preprocess: str | None, limit: int | None,
          role: str) -> InputReader:
    """A validating reader built here (not inside the api) so the progress bar knows its length."""
    from featcomp.data import open_inputs
    from featcomp.modelio import input_spec
    from featcomp.preprocess import Preprocess

    spec = Preprocess.parse(preprocess) if preprocess is not None else None
    return open_inputs(source, input_spec(model), spec, limit, role=role)  # type: ignore[arg-type]


def _format_arg(parser: argparse.ArgumentParser, choices: tuple[str, ...] = FORMATS) -> None:
    parser.add_argument("--format", choices=choices, default="table", help="output format (default: table)")


def _output_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", metavar="FILE", help="write the output to FILE instead of stdout")


def _data_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--preprocess", metavar="SPEC",
                        help="how images become tensors, e.g. 'resize=256,crop=224,order=rgb,mean=128,std=128'")
    parser.add_argument("--limit", type=int, metavar="N", help="use at most N samples")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress output")


TOLERANCE_DB = 0.05  # below the 0.1 dB the lines print: a target shown as met is not called missed


def _missed_targets(args: argparse.Namespace, how: Allocation, report: Any) -> list[str]:
    """One line per quality target the compressed model misses, with what it achieves on the calibration data
    (measured by the report: real coded bytes, per-site SQNR and the logit SNR of the model that was written)."""
    notes = []
    if args.bits_per_value is not None and report.totals.bits_per_value > args.bits_per_value + 0.005:
        estimate = how.estimated_bits_per_value
        why = "" if estimate is None else f" (the allocation estimated {estimate:.2f}" + (
            ", the least the coarsest setting allows)" if how.met is False else ")")
        notes.append(f"--bits-per-value {args.bits_per_value:g} was missed: the model codes "
                     f"{report.totals.bits_per_value:.2f} bits/value on the calibration data{why}")
    snr = report.accuracy.get("output_snr_db")
    if args.output_snr is not None and snr is not None and snr < args.output_snr - TOLERANCE_DB:
        notes.append(f"--output-snr {args.output_snr:g} was missed: the logit SNR is {snr:.1f} dB on the "
                     "calibration data")
    if args.sqnr is not None:
        low = [s for s in report.sites if s.sqnr_db < args.sqnr - TOLERANCE_DB]
        if low:
            worst = min(low, key=lambda s: s.sqnr_db)
            notes.append(f"--sqnr {args.sqnr:g} was missed at {len(low)} of {len(report.sites)} sites on the "
                         f"calibration data (lowest: {worst.sqnr_db:.1f} dB at {worst.name})")
    return notes


# ---------------------------------------------------------------------------------------------- inspect


def _inspect_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an ONNX model")
    _format_arg(p)
    _output_arg(p)


def _inspect(args: argparse.Namespace, bars: Bars) -> int:
    output = checked_output(args.output)
    from featcomp import api

    sites = api.inspect(args.model)
    _emit(render_sites(Path(args.model).name, sites, args.format), output)
    return 0


SITE_COLUMNS = ["site", "producer", "op", "consumers", "shape", "fp32 B", "int8 B"]


def render_sites(model: str, sites: list[Site], fmt: str) -> str:
    """The `inspect` listing in one of FORMATS; sizes are one sample's feature map (batch 1)."""
    import csv
    import io
    import json

    rows = [[s.name, s.producer, s.producer_op, " ".join(s.consumers), "x".join(map(str, s.shape)),
             str(4 * s.values), str(s.values)] for s in sites]
    values = sum(s.values for s in sites)
    totals = {"sites": len(sites), "values": values, "fp32_bytes": 4 * values, "int8_bytes": values}
    summary = f"{model}: {len(sites)} sites, {4 * values / 1e6:.3f} MB fp32, {values / 1e6:.3f} MB int8 per inference"
    if fmt == "json":
        data = {"model": model, "sites": [
            {"name": s.name, "producer": s.producer, "producer_op": s.producer_op, "consumers": list(s.consumers),
             "shape": list(s.shape), "values": s.values, "fp32_bytes": 4 * s.values, "int8_bytes": s.values}
            for s in sites], "totals": totals}
        return json.dumps(data, indent=2) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["site", "producer", "op", "consumers", "shape", "fp32_bytes", "int8_bytes"])
        writer.writerows(rows)
        return buf.getvalue()
    if fmt == "md":
        lines = ["| " + " | ".join(SITE_COLUMNS) + " |", "|" + "|".join("---" for _ in SITE_COLUMNS) + "|"]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
        return "\n".join([f"- {summary}", "", *lines]) + "\n"
    return text_table(SITE_COLUMNS, rows, left=5, footer=[summary])


# ---------------------------------------------------------------------------------------------- compress


def _compress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help=f"an ONNX model; without one, the embedded default job ({DEFAULT_NAME} on sample photos)")
    p.add_argument("-o", "--output", metavar="OUT", help=f"compressed model to write (default job: {DEFAULT_OUT})")
    p.add_argument("--codec", default="dct-cm", choices=("dct-cm", "transform-vlc"), help="codec (default: dct-cm)")
    p.add_argument("--entropy-coder", choices=("auto", "own", "rans"), default=None,
                   help="per site the cheaper of the codec's own coder (dct-cm: Rice, transform-vlc: Huffman) and the "
                        "context-modelled rANS coder (auto, the default), or always one of them")
    p.add_argument("--transform", choices=("pca", "dct", "none"),
                   help="transform-vlc only: calibrated PCA per channel group (default), DCT, or none")
    p.add_argument("--fold", action="store_true",
                   help="transform-vlc only: fold transforms into the producing/consuming convs where possible")
    p.add_argument("--calib", metavar="SRC", help="calibration data: a folder of images or an .npz")
    quality = p.add_mutually_exclusive_group()
    quality.add_argument("--max-drop", type=float, metavar="P",
                         help="fewest bits whose top-1 loss stays within P points of the model given (default 1.0): "
                              "estimated without labels from the model's own softmax on the calibration data, "
                              "measured with --labels")
    quality.add_argument("--max-drop-agreement", type=float, metavar="P",
                         help="the strict form: fewest bits whose top-1 agreement with the original on the "
                              "calibration data stays >= 100-P %%")
    quality.add_argument("--output-snr", type=float, metavar="DB",
                         help="sensitivity-weighted sites for this logit SNR in dB (no search)")
    quality.add_argument("--sqnr", type=float, metavar="DB", help="the same minimum SQNR at every site, in dB")
    quality.add_argument("--bits-per-value", type=float, metavar="B",
                         help="sensitivity-weighted sites for this average of bits/value (side information included)")
    quality.add_argument("--step", type=float, metavar="S",
                         help="transform-vlc only: the same quantizer step at every site, in units of its 8-bit step")
    p.add_argument("--budget-estimator", metavar="{flips,smooth}",
                   help="label-free --max-drop: score the top-1 flips seen on the calibration data (flips, the "
                        "default) or their probability under the margin changes measured on all of them (smooth)")
    p.add_argument("--labels", metavar="FILE", help="labels of the calibration images, for --max-drop on accuracy")
    p.add_argument("--label-offset", type=int, default=0, metavar="K",
                   help="model class index minus label index (e.g. 1 for 1001-class models with background)")
    p.add_argument("--sites", metavar="A,B", help="compress only these sites (names from 'featcomp inspect')")
    p.add_argument("--op-types", metavar="OPS", help="compress only sites produced by these op types, e.g. Conv,Add")
    p.add_argument("--exclude", metavar="A,B", help="never compress these sites")
    p.add_argument("--report", metavar="FILE",
                   help="also write the report: FILE.html a page to open in a browser, .csv, .md, else JSON "
                        "(default job: JSON and HTML next to OUT)")
    p.add_argument("--bytes-inputs", type=int, default=REPORT_BYTES_INPUTS, metavar="N",
                   help=f"the report after compress counts real coded bytes on the first N calibration inputs "
                        f"(whole batches, so at least N; default {REPORT_BYTES_INPUTS}; 0: all, as long again as the compress); SQNR and agreement "
                        "use all of them")
    _data_args(p)
    _format_arg(p)
    _view_args(p)


def _compress(args: argparse.Namespace, bars: Bars) -> int:
    if args.bytes_inputs < 0:
        raise FeatcompError(f"--bytes-inputs must be 0 (all inputs) or more, got {args.bytes_inputs}")
    output, report_paths = _compress_paths(args)
    sweep = _sweep(args.sweep, [report_format(p) for p in report_paths])
    from featcomp import api
    from featcomp.modelio import load_model, prepare, save_model, write_bytes
    from featcomp.reporting.render import render

    if args.model is None:
        from featcomp import zoo

        model, name = zoo.efficientnet_lite0(), DEFAULT_NAME
        preprocess = args.preprocess or zoo.DEFAULT_PREPROCESS
        calib: object = args.calib or zoo.sample_images()
        if all(v is None for v in (args.max_drop, args.max_drop_agreement, args.sqnr, args.output_snr,
                                   args.bits_per_value, args.step)):
            args.output_snr = DEFAULT_OUTPUT_SNR  # ten photos are too few for an accuracy search
    else:
        model, name = load_model(args.model), Path(args.model).name
        preprocess, calib = args.preprocess, args.calib
    original, model = model, prepare(model)  # compress gets the original: strip gives that back byte for byte
    known = {s.name for s in api.inspect(model)}
    include, exclude = comma_list(args.sites), comma_list(args.exclude) or []
    unknown = [n for n in [*(include or []), *exclude] if n not in known]
    if unknown:
        raise FeatcompError(f"{name} has no site named '{unknown[0]}'; 'featcomp inspect' lists the sites")
    if args.codec != "transform-vlc" and (args.transform is not None or args.step is not None or args.fold):
        raise FeatcompError("--transform, --step and --fold belong to --codec transform-vlc")
    codec_options: dict[str, Any] = {"transform": args.transform} if args.transform is not None else {}
    if args.entropy_coder is not None:
        codec_options["coder"] = args.entropy_coder
    labels = {"labels": args.labels, "label_offset": args.label_offset} if args.labels is not None else {}

    def reader(role: str) -> InputReader:  # an InputReader is consumed once: one per pass
        if isinstance(calib, list):
            from featcomp.data import ImageReader
            from featcomp.modelio import input_spec
            from featcomp.preprocess import Preprocess

            return ImageReader(calib, Preprocess.parse(preprocess), input_spec(model), args.limit, role=role)
        return _open(model, calib, preprocess, args.limit, role)

    calib_reader = reader("calibration")
    stages = bars.track("calibrating", "fitting codecs", "measuring sensitivity", "searching allocation",
                        total=size_of(calib_reader))
    result = api.compress(original, calib_reader, codec=args.codec, quality=quality_of(args),
                          codec_options=codec_options, include=include, op_types=comma_list(args.op_types),
                          exclude=exclude, progress=stages, fold=args.fold, **labels)
    save_model(result.model, output)
    report_reader = reader("report")
    report = api.report(result.model, report_reader, name=output.name,
                        progress=bars.track("measuring", total=size_of(report_reader)),
                        bytes_samples=args.bytes_inputs or None)
    data = "scikit-image sample photos" if args.model is None and args.calib is None else str(calib)
    how = result.allocation.as_dict()
    report.meta.update(featcomp=_version(), allocation=how, compress_seconds=result.seconds, data=data)
    text = render(report, args.format, wide=args.wide)
    sys.stdout.write(text)
    for path in report_paths:
        fmt = report_format(path)
        write_bytes(path, render(report, fmt, sweep=sweep).encode("utf-8"))
    # keeps json/csv on stdout parseable: the closing line goes to stderr for those formats
    done = sys.stdout if args.format in ("table", "md") else sys.stderr
    for note in _missed_targets(args, result.allocation, report):
        print(f"note: {note}", file=sys.stderr)
    for line in budget_lines(how, args.max_drop_agreement is not None):  # the closing line stays last
        print(line, file=sys.stderr if line.startswith("note:") else done)
    chosen = f", output SNR {how['output_snr_db']:.1f} dB" if "output_snr_db" in how else ""
    print(f"compressed model: {output} ({len(result.sites)} sites{chosen}, in {result.seconds['total']:.1f}s)", file=done)
    for path in report_paths:
        if report_format(path) == "html":
            print(f"report: {path} (open it in a browser)", file=done)
    return 0


def quality_of(args: argparse.Namespace) -> Quality | None:
    """The policy of compress's mutually exclusive quality flags (None: api.compress's default, MaxDrop(1.0)).

    --budget-estimator goes with --max-drop or no quality flag (the default MaxDrop); anything else is an error.
    """
    chosen = getattr(args, "budget_estimator", None)
    if chosen is not None:
        if chosen not in ESTIMATORS:
            raise FeatcompError(f"unknown --budget-estimator {chosen!r}; choose {' or '.join(ESTIMATORS)}")
        if any(getattr(args, k) is not None for k in ("max_drop_agreement", "output_snr", "sqnr", "bits_per_value",
                                                      "step")) or getattr(args, "labels", None) is not None:
            raise FeatcompError("--budget-estimator applies to the label-free --max-drop only")
        return MaxDrop(1.0 if args.max_drop is None else args.max_drop, estimator=chosen)
    if args.max_drop is not None:
        return MaxDrop(args.max_drop)
    if args.max_drop_agreement is not None:
        return MaxDrop(args.max_drop_agreement, metric="agreement")
    if args.output_snr is not None:
        return OutputSnr(args.output_snr)
    if args.sqnr is not None:
        return Sqnr(args.sqnr)
    if args.bits_per_value is not None:
        return BitsPerValue(args.bits_per_value)
    if args.step is not None:
        return Step(args.step)
    return None


def budget_lines(how: dict[str, Any], agreement_flag: bool = False) -> list[str]:
    """The closing lines of an accuracy-budget compress: what was estimated or measured, how sure, and what the
    8-bit base quantization costs alone; a 'note:' line instead when even that misses the budget."""
    if "max_drop" not in how or "estimated_drop" not in how:
        return []
    from featcomp.budget import Z95, describe

    flag = f"--max-drop{'-agreement' if agreement_flag else ''} {how['max_drop']:g}"

    def estimated(d: dict[str, Any]) -> str:
        return describe(d["points"], d["se"], d["inputs"], d.get("changed", 0))

    est, base = how["estimated_drop"], how.get("base_estimated_drop") or how["estimated_drop"]
    metric = how.get("metric", "expected")
    if metric == "top1":
        measured = 100.0 * (how["original_top1"] - how["calibration_top1"])
        said = (f"top-1 on the {est['inputs']} calibration inputs {how['calibration_top1']:.1%} "
                f"(original {how['original_top1']:.1%}, measured drop {measured:.1f} points); {estimated(est)}")
        base_said = f"{how['base_top1_drop']:.1f} points of measured top-1"
    elif metric == "agreement":
        said = f"top-1 agreement {how['calibration_agreement']:.1%} on the calibration inputs; {estimated(est)}"
        base_said = f"top-1 agreement {how['base_agreement']:.1%} (needed {how['required']:.1%})"
    else:
        upper = " (its 95% upper bound was held to the budget)" if how.get("bound") == "upper" else ""
        smooth = " [smooth estimator: flip probabilities under the measured margin changes]" \
            if how.get("estimator") == "smooth" else ""
        said = estimated(est) + upper + smooth
        base_said = f"{base['points']:.2f} ± {Z95 * base['se']:.2f} points, estimated"
    if how.get("met") is False:
        cost = base_said if metric == "agreement" else f"costs {base_said}"
        return [f"note: {flag} cannot be met: the 8-bit base quantization alone (the finest setting) {cost}, "
                f"against the model given; the finest setting was used ({estimated(base)})"]
    return [f"budget: {flag}: {said}; of which the 8-bit base quantization alone: "
            f"{base['points']:.2f} points, estimated"]


def _compress_paths(args: argparse.Namespace) -> tuple[Path, list[Path]]:
    """The model and report outputs, checked before any work (the default job makes featcomp-out/)."""
    from featcomp.modelio import check_writable

    if args.model is not None:
        missing = [flag for flag, value in (("-o OUT", args.output), ("--calib SRC", args.calib)) if value is None]
        if missing:
            raise FeatcompError(f"compress {args.model} needs {' and '.join(missing)} "
                                "(run 'featcomp compress' without a model for the embedded default job)")
        return check_writable(args.output), [check_writable(args.report)] if args.report else []
    if args.output is None:
        try:
            DEFAULT_OUT.parent.mkdir(exist_ok=True)
        except OSError as exc:
            raise FeatcompError(f"cannot create folder {DEFAULT_OUT.parent}: {exc.strerror or exc}") from None
    output = Path(args.output or DEFAULT_OUT)
    stem = output.name.removesuffix(".onnx").removesuffix(".fc")
    if args.report:
        return check_writable(output), [check_writable(args.report)]
    reports = [output.with_name(f"{stem}.report.json"), output.with_name(f"{stem}.report.html")]
    return check_writable(output), [check_writable(p) for p in reports]


# ---------------------------------------------------------------------------------------------- report


def _report_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_FC",
                   help="a model written by 'featcomp compress', or a report .json to render again (no data needed)")
    p.add_argument("--calib", "--images", dest="calib", metavar="SRC",
                   help="the data to measure on: a folder of images or an .npz (required for a model)")
    p.add_argument("--bundle", metavar="DIR",
                   help="add a 'deployed' section: this bundle's stored bytes per site, planned memory and measured "
                        "DRAM traffic (a bundle of MODEL_FC from 'featcomp compile')")
    _data_args(p)
    _format_arg(p, (*FORMATS, "html"))
    _view_args(p)
    _output_arg(p)


def _view_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wide", action="store_true", help="table format: all columns (default: the first-read ones)")
    p.add_argument("--sweep", metavar="CURVE.json",
                   help="html: add the rate-accuracy curve of this 'featcomp sweep' JSON")


def _report(args: argparse.Namespace, bars: Bars) -> int:
    output = checked_output(args.output)
    sweep = _sweep(args.sweep, [args.format])
    from featcomp.reporting.render import render
    from featcomp.reporting.schema import Report

    if args.model.endswith(".json"):  # a saved report: render it again, measure nothing
        if args.bundle is not None:
            raise FeatcompError("--bundle needs the compressed model, not a saved report .json: "
                                "pass MODEL_FC to measure the deployed section")
        report = Report.from_json(_read_text(args.model, "report"))
    else:
        from featcomp import api
        from featcomp.modelio import load_model

        if args.calib is None:
            raise FeatcompError(f"report {args.model} needs --calib SRC, the data to measure on "
                                "(or give a report .json to render it again)")
        model = load_model(args.model)
        if not api.site_codecs(model):  # say so before reading any data
            raise FeatcompError(f"{args.model} has no featcomp pairs: compress it first ('featcomp compress')")
        if args.bundle is not None:
            from featcomp.deploy import bundle

            bundle.load_manifest(args.bundle)  # fail before measuring
        reader = _open(model, args.calib, args.preprocess, args.limit, "report")
        report = api.report(model, reader, name=Path(args.model).name,
                            progress=bars.track("measuring", total=size_of(reader)))
        report.meta.update(featcomp=_version(), data=str(args.calib))
        if args.bundle is not None:
            from featcomp.reporting.deployed import from_bundle

            report.deployed = from_bundle(args.bundle, report.sites)
    _emit(render(report, args.format, wide=args.wide, sweep=sweep), output)
    return 0


def _read_text(path: str, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise FeatcompError(f"{what} file {p} does not exist")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatcompError(f"cannot read {what} {p}: {getattr(exc, 'strerror', None) or exc}") from None


def _sweep(path: str | None, formats: list[str]) -> Any:
    """The --sweep curve, read and checked before any long work (it is drawn only in the HTML page)."""
    if path is None:
        return None
    if "html" not in formats:
        raise FeatcompError("--sweep is drawn in the HTML report: add --format html (or --report FILE.html)")
    from featcomp.sweep import Sweep

    return Sweep.from_json(_read_text(path, "curve"))


REPORT_FORMATS = {".html": "html", ".htm": "html", ".csv": "csv", ".md": "md"}  # --report by extension; else json


def report_format(path: Path) -> str:
    return REPORT_FORMATS.get(path.suffix.lower(), "json")


# ---------------------------------------------------------------------------------------------- eval


def _eval_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL", help="an ONNX classifier (compressed or not)")
    p.add_argument("--images", metavar="DIR", required=True, help="a folder of labelled images")
    p.add_argument("--labels", metavar="FILE", help="'FILENAME CLASS_INDEX' lines (default: DIR/labels.txt)")
    p.add_argument("--preprocess", metavar="SPEC", required=True,
                   help="how images become tensors, e.g. 'resize=256,crop=224,order=rgb,mean=128,std=128'")
    p.add_argument("--label-offset", type=int, default=0, metavar="K",
                   help="subtract K from the model's class index (e.g. 1 for models with a background class)")
    p.add_argument("--reference", metavar="MODEL", help="also evaluate this model and report top-1 agreement")
    p.add_argument("--limit", type=int, metavar="N", help="use at most N images")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    _format_arg(p, ("table", "json"))
    _output_arg(p)


def _eval(args: argparse.Namespace, bars: Bars) -> int:
    output = checked_output(args.output)
    import json

    from featcomp import api
    from featcomp.data import image_files

    images = Path(args.images)
    labels = Path(args.labels) if args.labels else images / "labels.txt"
    count = len(image_files(images))
    total = min(count, args.limit) if args.limit and args.limit > 0 else count
    result = api.evaluate(args.model, images, labels, preprocess=args.preprocess, reference=args.reference,
                          label_offset=args.label_offset, limit=args.limit,
                          progress=bars.track("evaluating", total=total))
    if args.format == "json":
        _emit(json.dumps(result.as_dict(), indent=2) + "\n", output)
        return 0
    rows = [["images", str(result.images)], ["top-1", f"{result.top1:.1%}"], ["top-5", f"{result.top5:.1%}"]]
    if result.agreement is not None:
        rows += [["reference top-1", f"{result.reference_top1:.1%}"],
                 ["reference top-5", f"{result.reference_top5:.1%}"],
                 ["top-1 agreement", f"{result.agreement:.1%}"]]
    _emit(text_table(["metric", Path(args.model).name], rows, left=1), output)
    return 0


# ---------------------------------------------------------------------------------------------- strip


def _strip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", metavar="MODEL_FC", help="a model written by 'featcomp compress'")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="where to write the original model")


def _strip(args: argparse.Namespace, bars: Bars) -> int:
    output = checked_output(args.output)
    assert output is not None
    from featcomp import api
    from featcomp.modelio import load_model, save_model
    from featcomp.passes.insert import strip_to_original

    model = load_model(args.model)
    pairs = len(api.site_codecs(model))
    if not pairs:
        raise FeatcompError(f"{args.model} has no featcomp pairs: there is nothing to strip")
    from featcomp.passes.insert import EXACT

    stripped = strip_to_original(model)
    exact = EXACT in stripped.notes
    save_model(stripped.model, output)
    how = ("the model compress was given, byte for byte" if exact else
           "pairs removed; not byte for byte: the model was edited after compress or made by an older featcomp")
    print(f"stripped {pairs} pairs: wrote {output} ({how})")
    return 0


# ------------------------------------------------------------------------------- plug-in subcommands


def _plugin(module: str, help: str) -> Command:
    """A subcommand whose parser and runner live in `module` (its top level imports argparse only)."""

    def arguments(p: argparse.ArgumentParser) -> None:
        import importlib

        importlib.import_module(module).arguments(p)

    def run(args: argparse.Namespace, bars: Bars) -> int:
        import importlib

        result: int = importlib.import_module(module).run(args, bars)
        return result

    return Command(help, arguments, run)


# ---------------------------------------------------------------------------------------------- main

COMMANDS: dict[str, Command] = {
    "inspect": Command("list the compressible activation sites of a model", _inspect_args, _inspect),
    "compress": Command("calibrate codecs and insert compress/decompress pairs", _compress_args, _compress),
    "report": Command("measure coded bytes, ratios and SQNR of a compressed model", _report_args, _report),
    "eval": Command("top-1/top-5 accuracy on labelled images", _eval_args, _eval),
    "strip": Command("recover the original model from a compressed one", _strip_args, _strip),
}
# Subcommands in their own modules (each module's top level imports argparse only; the heavy and the
# optional imports, TVM among them, happen in its run()).
PLUGINS = {
    "sweep": ("featcomp.sweep_cli", "bits/value vs top-1 curves of the codecs (JSON + PNG plot)"),
    "jpeg": ("featcomp.jpeg.cli", "learned-JPEG input: learn tables, insert the node, encode files, evaluate"),
    "compile": ("featcomp.deploy.compile_cli", "compile a (compressed) model with TVM into a bundle for a target"),
    "run": ("featcomp.deploy.run_cli", "run a compiled bundle on this host, under qemu, or on a board via RPC"),
}


def _installed(module: str) -> bool:
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is absent
        return False


COMMANDS.update({name: _plugin(module, text) for name, (module, text) in PLUGINS.items() if _installed(module)})


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("featcomp")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="featcomp", description="Compress the feature maps a CNN moves.")
    parser.add_argument("--version", action="version", version=f"featcomp {_version()}")
    sub = parser.add_subparsers(dest="command_name", metavar="COMMAND", required=True)
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.arguments(p)
        p.set_defaults(command=command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit code (0 ok, 1 bad input, 2 usage error, 130 interrupted)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors: argparse has printed them
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    quiet = getattr(args, "quiet", False)
    try:
        with Bars(enabled=not quiet, terminal=sys.stderr.isatty()) as bars:
            code: int = args.command.run(args, bars)
            return code
    except FeatcompError as exc:
        print(f"featcomp: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("featcomp: interrupted", file=sys.stderr)
        return 130
