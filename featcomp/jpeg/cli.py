"""`featcomp jpeg learn|insert|encode|eval`: the learned-JPEG input from the command line.

Top level imports argparse only (the CLI registry loads this module to build --help); the work and
its heavy imports happen in run(). Bad input raises FeatcompError, which featcomp.cli turns into one
line and exit code 1; outputs are checked before any work and written atomically.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import onnx

    from featcomp.cli_common import Bars
    from featcomp.jpeg.measure import Classifier
    from featcomp.jpeg.tables import Tables
    from featcomp.preprocess import Preprocess

DEFAULT_QUALITIES = "10,20,30,50,75,90"
SUBSAMPLINGS = ("4:2:0", "4:4:4")  # featcomp.jpeg.dct.SUBSAMPLINGS, without importing numpy for --help


def _labels_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--labels", metavar="FILE", help="'FILENAME CLASS_INDEX' lines (default: DIR/labels.txt if present)")
    p.add_argument("--label-offset", type=int, default=0, metavar="K",
                   help="model class index minus label index (e.g. 1 for 1001-class models)")


def _model_args(p: argparse.ArgumentParser, images: bool = True) -> None:
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help="an ONNX image classifier (default: the embedded EfficientNet-Lite0)")
    if images:
        p.add_argument("--images", metavar="DIR",
                       help="a folder of images (default with the embedded model: its sample photos)")
        p.add_argument("--limit", type=int, metavar="N", help="use at most N images")
    p.add_argument("--preprocess", metavar="SPEC",
                   help="how images become the model's input, e.g. 'resize=256,crop=224,order=rgb,mean=128,std=128' "
                        "(default with the embedded model: its own)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")


def arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="jpeg_command", metavar="ACTION", required=True)
    learn = sub.add_parser("learn", help="learn quantization tables (learned, operational, e2e or deepn)",
                           description="Learn JPEG quantization tables for a model and write them as JSON.")
    _model_args(learn)
    learn.add_argument("--method", choices=("deepn", "learned", "operational", "e2e"), default="learned",
                       help="learned: the model's own per-frequency sensitivity (default); operational: Annex K "
                            "tuned per band against real bytes and the model's logits; e2e: the 128 steps by "
                            "gradient descent through a JPEG proxy and the model (needs featcomp[e2e]); deepn: "
                            "DCT statistics")
    target = learn.add_mutually_exclusive_group()
    target.add_argument("--target-bpp", type=float, metavar="B", help="coarsest tables at most B bits/pixel on the images")
    target.add_argument("--max-drop", type=float, metavar="P",
                        help="smallest tables whose top-1 stays within P points of the uncompressed images (default 1)")
    learn.add_argument("--metric", choices=("top1", "expected", "agreement"),
                       help="what --max-drop measures: top-1 against the labels (default with labels), the model's "
                            "expected top-1 under its own uncompressed probabilities (default without), or agreement")
    _labels_args(learn)
    learn.add_argument("--subsampling", choices=SUBSAMPLINGS, default="4:2:0",
                       help="chroma subsampling the tables are made and measured for (default 4:2:0, Pillow's)")
    learn.add_argument("--e2e", metavar="SPEC",
                       help="--method e2e's descent, e.g. 'param=annexk,optimizer=gd,batch=0,shape_penalty=0.1' "
                            "(keys: lambdas (a/b/...), steps, batch (0: all images), lr, start_quality, rounding "
                            "(ste|soft|anneal), param (log|annexk), optimizer (adam|gd), shape_penalty, "
                            "smooth_penalty, temperature (start/end), seed, chunk; see docs/jpeg.md)")
    learn.add_argument("-o", "--output", metavar="TABLES.json", required=True, help="where to write the tables")

    insert = sub.add_parser("insert", help="put the learned-JPEG node at a model's input (or --remove it)",
                            description="Insert the LearnedJpeg node in front of the model's input, or remove it.")
    _model_args(insert, images=False)
    insert.add_argument("--tables", metavar="TABLES.json", help="tables from 'featcomp jpeg learn'")
    insert.add_argument("--remove", action="store_true", help="remove the node instead (the exact original back)")
    insert.add_argument("-o", "--output", metavar="OUT.onnx", required=True, help="the model to write")

    encode = sub.add_parser("encode", help="write ordinary JPEG files with the tables",
                            description="Write baseline JPEG files (OUTDIR/<stem>.jpg) with the tables, and their bpp.")
    encode.add_argument("images", metavar="IMAGE", nargs="+", help="image files or folders of images")
    source = encode.add_mutually_exclusive_group(required=True)
    source.add_argument("--tables", metavar="TABLES.json", help="tables from 'featcomp jpeg learn'")
    source.add_argument("--quality", type=int, metavar="Q", help="standard tables at libjpeg quality Q instead")
    encode.add_argument("--preprocess", metavar="SPEC",
                        help="encode what the model sees (its resize/crop) instead of the whole image")
    encode.add_argument("--subsampling", choices=SUBSAMPLINGS,
                        help="chroma subsampling (default: the tables', or 4:2:0 with --quality as Pillow does)")
    encode.add_argument("-o", "--output", metavar="OUTDIR", required=True, help="folder for the .jpg files")

    ev = sub.add_parser("eval", help="rate-accuracy curves: standard qualities vs tables, BD-rate, plot",
                        description="bpp vs top-1 for standard tables and learned tables; BD-rate; optional PNG.")
    _model_args(ev)
    _labels_args(ev)
    ev.add_argument("--tables", metavar="TABLES.json", action="append", default=[],
                    help="tables to evaluate (repeat for several); each family is swept to the standard rates")
    ev.add_argument("--quality", default=DEFAULT_QUALITIES, metavar="Q,Q,...",
                    help=f"standard qualities (default {DEFAULT_QUALITIES})")
    ev.add_argument("--subsampling", choices=SUBSAMPLINGS, default="4:2:0",
                    help="chroma of the standard points (default 4:2:0: Pillow's defaults, quality=Q); each tables "
                         "file keeps its own")
    ev.add_argument("--no-sweep", action="store_true", help="evaluate each tables file only as it is")
    ev.add_argument("--rate-images", metavar="DIR", help="also measure each setting's bpp on these images at full size")
    ev.add_argument("--plot", metavar="CURVE.png", help="write the rate-accuracy plot")
    ev.add_argument("--json", metavar="OUT.json", help="write all points and BD-rates as JSON")


# --------------------------------------------------------------------------------------------- helpers


def _setup(args: argparse.Namespace, light: bool = False) -> tuple[onnx.ModelProto, str, Preprocess]:
    """The model (validated; upgraded and shape-inferred, or with ``light`` only upgraded when its opset is
    too old for the node, so that --remove gives the very file back), its name and the preprocess spec."""
    from featcomp.errors import FeatcompError
    from featcomp.modelio import load_model, prepare
    from featcomp.preprocess import Preprocess

    if args.model is None:
        from featcomp import zoo

        model, name, spec = zoo.efficientnet_lite0(), "efficientnet-lite0", args.preprocess or zoo.DEFAULT_PREPROCESS
    else:
        if args.preprocess is None:
            raise FeatcompError(f"{args.model} needs --preprocess (how images become its input)")
        model, name, spec = load_model(args.model), Path(args.model).name, args.preprocess
    preprocess = Preprocess.parse(spec)
    if light:
        from featcomp.modelio import default_opset
        from featcomp.ops.jpeg import MIN_OPSET

        if default_opset(model) >= MIN_OPSET:
            import onnx

            try:
                onnx.checker.check_model(model)
            except onnx.checker.ValidationError as exc:
                raise FeatcompError(f"the model is not valid ONNX: {str(exc).strip().splitlines()[0]}") from None
            return model, name, preprocess
    return prepare(model, need_conv=False), name, preprocess


def _views(args: argparse.Namespace, preprocess: Preprocess) -> tuple[list[Path], list[np.ndarray]]:
    from featcomp.data import image_files
    from featcomp.errors import FeatcompError
    from featcomp.jpeg.encode import load_rgb, model_view

    if args.images is not None:
        paths = image_files(Path(args.images))
    elif args.model is None:
        from featcomp import zoo

        paths = zoo.sample_images()
    else:
        raise FeatcompError(f"{args.model} needs --images DIR")
    if args.limit is not None:
        if args.limit <= 0:
            raise FeatcompError(f"--limit must be a positive whole number, got {args.limit}")
        paths = paths[: args.limit]
    return paths, [model_view(load_rgb(p), preprocess) for p in paths]


def _labels(args: argparse.Namespace, paths: list[Path]) -> np.ndarray | None:
    """Labels of ``paths`` from --labels, or DIR/labels.txt when it exists; None without either."""
    import numpy as np

    from featcomp.data import read_labels
    from featcomp.errors import FeatcompError

    label_file = Path(args.labels) if args.labels else (Path(args.images) / "labels.txt" if args.images else None)
    if label_file is None or not (args.labels or label_file.is_file()):
        return None
    known = read_labels(label_file)
    missing = [p.name for p in paths if p.name not in known]
    if missing:
        raise FeatcompError(f"{label_file} has no label for {missing[0]}")
    return np.array([known[p.name] for p in paths])


def _classifier(model: onnx.ModelProto, preprocess: Preprocess, name: str) -> Classifier:
    from featcomp.jpeg.measure import Classifier

    return Classifier(model, preprocess, name)


def _grid(tables: Tables) -> list[str]:
    return [" ".join(f"{v:3d}" for v in row) for row in tables.luma.tolist()]


# --------------------------------------------------------------------------------------------- actions


def _learn(args: argparse.Namespace, bars: Bars) -> int:
    from featcomp.jpeg.learn import learn
    from featcomp.modelio import check_writable

    output = check_writable(args.output)
    settings = None
    if args.e2e is not None:
        from featcomp.errors import FeatcompError
        from featcomp.jpeg.e2e import Settings

        if args.method != "e2e":
            raise FeatcompError("--e2e sets the e2e descent: give it with --method e2e")
        settings = Settings.parse(args.e2e)
    model, name, preprocess = _setup(args)
    paths, views = _views(args, preprocess)
    labels = _labels(args, paths) if args.target_bpp is None else None
    need_model = args.method != "deepn" or args.target_bpp is None
    classifier = _classifier(model, preprocess, name) if need_model else None
    if classifier is not None:
        classifier.check(views)
    stage = {"operational": "tuning bands", "e2e": "descending"}.get(args.method, "probing frequencies")
    tables = learn(args.method, views, classifier, target_bpp=args.target_bpp, max_drop=args.max_drop,
                   model_name=name, progress=bars.track(stage, total=None if args.method == "e2e" else 128), subsampling=args.subsampling,
                   labels=labels, label_offset=args.label_offset, metric=args.metric, e2e_settings=settings)
    tables.save(output)
    meta = tables.meta
    scores = []
    if "top1" in meta:
        scores.append(f"top-1 {meta['top1']:.1%} (uncompressed {meta['top1_uncompressed']:.1%})")
    if "expected_top1_drop" in meta:
        scores.append(f"expected top-1 {100 * meta['expected_top1_drop']:.2f} points below uncompressed")
    if "agreement" in meta:
        scores.append(f"top-1 agreement {meta['agreement']:.1%}")
    note = " (the budget could not be met: finest tables used)" if meta.get("met") is False else ""
    print(f"{output}: {tables.method} tables for {name}, {tables.subsampling}, scale {tables.scale:.4g}: "
          f"{meta['bpp']:.3f} bpp on {meta['images']} images{note}" + "".join(f"\n  {s}" for s in scores))
    print("luma steps:\n  " + "\n  ".join(_grid(tables)))
    return 0


def _insert(args: argparse.Namespace, bars: Bars) -> int:
    from featcomp.errors import FeatcompError
    from featcomp.jpeg.tables import Tables
    from featcomp.modelio import check_writable, load_model, save_model
    from featcomp.passes.jpeg_input import insert_jpeg, strip_jpeg

    output = check_writable(args.output)
    if args.remove:
        if args.model is None:
            raise FeatcompError("--remove needs the MODEL that has the node")
        save_model(strip_jpeg(load_model(args.model)).model, output)
        print(f"{output}: JPEG input node removed")
        return 0
    if args.tables is None:
        raise FeatcompError("insert needs --tables TABLES.json (or --remove)")
    tables = Tables.load(args.tables)
    model, name, preprocess = _setup(args, light=True)
    save_model(insert_jpeg(model, tables, preprocess).model, output)
    print(f"{output}: {name} with a LearnedJpeg input node ({tables.method} tables)")
    return 0


def _encode(args: argparse.Namespace, bars: Bars) -> int:
    from featcomp.data import image_files
    from featcomp.jpeg.encode import write_files
    from featcomp.jpeg.tables import Tables, standard
    from featcomp.preprocess import Preprocess

    from dataclasses import replace

    tables = Tables.load(args.tables) if args.tables is not None else standard(args.quality, "4:2:0")
    if args.subsampling is not None:
        tables = replace(tables, subsampling=args.subsampling)
    preprocess = Preprocess.parse(args.preprocess) if args.preprocess is not None else None
    paths: list[Path] = []
    for item in map(Path, args.images):
        paths += image_files(item) if item.is_dir() else [item]
    done = write_files(paths, tables, args.output, preprocess)
    for e in done:
        print(f"{e.output}  {e.width}x{e.height}  {e.bytes} B  {e.bpp:.3f} bpp")
    total, pixels = sum(e.bytes for e in done), sum(e.width * e.height for e in done)
    print(f"{len(done)} files, {total} bytes, {8 * total / pixels:.3f} bpp ({tables.label()}, {tables.subsampling})")
    return 0


def _eval(args: argparse.Namespace, bars: Bars) -> int:
    import json

    import numpy as np

    from featcomp.errors import FeatcompError
    from featcomp.jpeg import evaluate as ev
    from featcomp.jpeg.measure import Reference
    from featcomp.jpeg.tables import Tables, standard
    from featcomp.modelio import check_writable, write_bytes

    plot, out_json = (check_writable(p) if p else None for p in (args.plot, args.json))
    try:
        qualities = [int(q) for q in args.quality.split(",") if q.strip()]
    except ValueError:
        raise FeatcompError(f"--quality must be whole numbers joined by commas, got {args.quality!r}") from None
    standards = [standard(q, args.subsampling) for q in qualities]
    families = [Tables.load(t) for t in args.tables]
    model, name, preprocess = _setup(args)
    paths, views = _views(args, preprocess)
    labels = _labels(args, paths)
    rate_views = None
    if args.rate_images:
        from featcomp.data import image_files
        from featcomp.jpeg.encode import load_rgb, model_view

        rate_views = [model_view(load_rgb(p), None) for p in image_files(Path(args.rate_images))]
    classifier = _classifier(model, preprocess, name)
    classifier.check(views)
    reference = Reference.of(classifier, views, labels, args.label_offset)
    curves: dict[str, list[ev.Point]] = {}
    curves["standard"] = ev.curve(classifier, views, standards, rate_views=rate_views, reference=reference,
                                  progress=bars.track("standard tables"))
    for i, family in enumerate(families):
        key = f"{family.method}" + (f" ({family.model})" if family.model else "") + (f" #{i + 1}" if len(families) > 1 else "")
        members = [family]
        if not args.no_sweep and family.sweepable:
            members = ev.matched(family, views, [p.bpp for p in curves["standard"]]) + [family]
        curves[key] = ev.curve(classifier, views, members, rate_views=rate_views, reference=reference,
                               progress=bars.track(key))
    summary = _summary(curves, "top1" if labels is not None else "agreement")
    metric = "top1" if labels is not None else "expected"
    uncompressed = float(reference.uncompressed[metric] or 0.0)
    pixels = views[0].shape[0] * views[0].shape[1]
    operating = {key: ev.operating_points(curves["standard"], pts, uncompressed, metric)
                 for key, pts in curves.items() if key != "standard"}
    rows = [[key, p.label, f"{p.bpp:.3f}"] + ([f"{p.rate_bpp:.3f}"] if rate_views is not None else [])
            + ([f"{p.top1:.1%}"] if p.top1 is not None else []) + [f"{p.agreement:.1%}"]
            for key, pts in curves.items() for p in pts]
    headers = ["curve", "tables", "bpp"] + (["bpp (rate set)"] if rate_views is not None else []) \
        + (["top-1"] if labels is not None else []) + ["agreement"]
    from featcomp.cli_common import text_table

    footer = [line for s in summary for line in s["lines"]]
    sys.stdout.write(text_table(headers, rows, left=2, footer=[f"{name}: {len(views)} images, bpp = file bytes x 8 / "
                                                           f"pixels of the {views[0].shape[1]}x{views[0].shape[0]} "
                                                           "view the model sees", *footer]))
    sys.stdout.write(_operating_table(operating, metric, uncompressed, pixels, args.subsampling))
    result = {"model": name, "images": len(views), "preprocess": str(preprocess), "label_offset": args.label_offset,
              "curves": {k: [p.as_dict() for p in v] for k, v in curves.items()},
              "bd_rate": [{k: v for k, v in s.items() if k != "lines"} for s in summary],
              "uncompressed": reference.uncompressed,
              "operating_points": {k: [o.as_dict() for o in v] for k, v in operating.items()}}
    if out_json is not None:
        write_bytes(out_json, (json.dumps(result, indent=1) + "\n").encode("utf-8"))
    if plot is not None:
        from featcomp.jpeg.plot import plot_curves

        notes = [f"BD-rate vs standard, {s['curve']}: {_pct(s['linear'])} (linear), {_pct(s['cubic'])} (cubic)"
                 for s in summary]
        plot_curves(curves, plot, title=f"{name}: rate vs accuracy ({len(views)} images)",
                    metric="top1" if labels is not None else "agreement", notes=notes)
    return 0


def _operating_table(operating: dict[str, Any], metric: str, uncompressed: float, pixels: int, sub: str) -> str:
    """Bytes per image each tables set needs at each loss level, next to the best standard quality's."""
    from featcomp.cli_common import text_table

    def size(bpp: float | None, bound: bool) -> str:
        if bpp is None:
            return "not reached"
        return ("<= " if bound else "") + f"{bpp * pixels / 8:.0f} B ({bpp:.3f} bpp)"

    what = "top-1" if metric == "top1" else "expected top-1 (label-free)"
    rows = []
    for key, ops in operating.items():
        for o in ops:
            std = size(o.standard_bpp, o.standard_below_range)
            if o.standard_quality is not None:
                std += f", q{o.standard_quality} measured"
            saving = "n/a" if o.saving is None else f"{100 * o.saving:.0f}% fewer" if o.saving >= 0 \
                else f"{-100 * o.saving:.0f}% more"
            rows.append([key, f"{o.loss:g}", size(o.bpp, o.below_range), std, saving])
    footer = [f"loss = points of {what} below the uncompressed images ({100 * uncompressed:.1f}%); bytes per image, "
              f"interpolated in log-rate on each curve's monotone envelope; standard = Pillow quality=Q, {sub}, "
              "optimize=True; 'not reached': no measured point gets that close; '<=': the curve's cheapest point "
              "already does"]
    return text_table(["curve", "loss", "bytes needed", f"standard ({sub})", "vs standard"], rows, left=2, footer=footer)


def _pct(value: float | None) -> str:
    return "n/a (curves do not overlap)" if value is None else f"{value:+.1f}%"


def _summary(curves: dict[str, Any], metric: str) -> list[dict[str, Any]]:
    """BD-rate (cubic, linear) and the rate at the accuracy of each standard point, per non-standard curve."""
    from featcomp.jpeg import evaluate as ev

    base = curves["standard"]
    r0, a0 = [p.bpp for p in base], [getattr(p, metric) for p in base]
    out = []
    for key, pts in curves.items():
        if key == "standard":
            continue
        r1, a1 = [p.bpp for p in pts], [getattr(p, metric) for p in pts]
        cubic, linear = ev.bd_rate((r0, a0), (r1, a1), "cubic"), ev.bd_rate((r0, a0), (r1, a1), "linear")
        lines = [f"{key}: BD-rate vs standard on {metric}: {_pct(cubic)} (cubic), {_pct(linear)} (linear envelope)"]
        equal = []
        for p in base:
            need = ev.rate_at(r1, a1, getattr(p, metric))
            if need is not None:
                equal.append({"standard": p.label, "standard_bpp": p.bpp, metric: getattr(p, metric), "bpp": need})
        if equal:
            lines.append(f"{key}: bpp at equal {metric}: " + ", ".join(
                f"{e['standard']} {e['standard_bpp']:.2f} -> {e['bpp']:.2f}" for e in equal))
        out.append({"curve": key, "metric": metric, "cubic": cubic, "linear": linear, "equal": equal, "lines": lines})
    return out


ACTIONS = {"learn": _learn, "insert": _insert, "encode": _encode, "eval": _eval}


def run(args: argparse.Namespace, bars: Bars) -> int:
    """Run one action; input-policy warnings (greyscale converted to RGB) become one stderr line each."""
    import warnings

    from featcomp.jpeg.encode import GreyscaleWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GreyscaleWarning)
        code = ACTIONS[args.jpeg_command](args, bars)
    for w in caught:
        if issubclass(w.category, GreyscaleWarning):
            print(f"featcomp: warning: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return code
