"""Rate-accuracy of standard vs deepn vs learned JPEG tables on the three real models (docs/jpeg.md).

    .venv/bin/python benchmarks/jpeg_curves.py [--probe-images 16] [--learn-images 32] [--tune-quality 30]
        [--tune-images 32] [--models NAME,...] [--out DIR] [--subsampling 4:4:4|4:2:0]
        [--qualities 10,20,...] [--pick-images N]

- learning set: the first --learn-images photos of ../shared/data/imagenet-calib-200 (the learned
  method probes the model on the first --probe-images of them; the operational method tunes the Annex K
  bands on the first --tune-images, starting at the Annex K scale of libjpeg quality --tune-quality);
- accuracy: the 100 photos of ../shared/data/imagenet-val-100, resize 256 / centre crop 224, as each
  model expects; bpp = real file bytes x 8 / (224 x 224), 4:4:4, optimised Huffman tables;
- rate on Kodak: the same tables on the 24 Kodak photos at full size (768x512);
- each deepn / learned curve is swept to the bpp of the six standard points (10, 20, 30, 50, 75, 90);
- universality: tables learned on model A evaluated on model B;
- operating points: the bpp each curve needs to stay within 0.5 / 1 / 2 top-1 points of the uncompressed
  images (interpolated on its envelope) next to standard tables', and the tables `jpeg learn --max-drop 1`
  would pick on the first --pick-images calib photos (their labels; smallest file within 1 point there),
  then measured on the val photos, for each family and for standard qualities picked the same way.
--subsampling sets the chroma of every setting (standard: Pillow's defaults are 4:2:0).
Writes curves.json and one PNG per model into --out (default benchmarks/results/jpeg); --models
runs a subset (the universality rows then cover only those).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "jpeg"

from featcomp import zoo  # noqa: E402
from featcomp.data import image_files, read_labels  # noqa: E402
from featcomp.jpeg import evaluate as ev  # noqa: E402
from featcomp.jpeg import learn, search  # noqa: E402
from featcomp.jpeg.encode import load_rgb, model_view  # noqa: E402
from featcomp.jpeg.measure import Classifier, code, rate  # noqa: E402
from featcomp.jpeg.plot import plot_curves  # noqa: E402
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables, standard  # noqa: E402
from featcomp.preprocess import Preprocess  # noqa: E402

MODELS = {  # name: (model, preprocess, label offset)
    "efficientnet-lite0": (None, zoo.DEFAULT_PREPROCESS, 0),
    "squeezenet1.1": ("squeezenet1.1.onnx", "resize=256,crop=224,order=bgr,mean=104/117/123,std=1", 0),
    "mobilenet_v2": ("mobilenet_v2_1.0_224.onnx", "resize=256,crop=224,order=rgb,mean=128,std=128", 1),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learn-images", type=int, default=32)
    parser.add_argument("--probe-images", type=int, default=16)
    parser.add_argument("--tune-quality", type=int, default=30)
    parser.add_argument("--tune-images", type=int, default=32)
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated subset of " + ", ".join(MODELS))
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--subsampling", default="4:4:4", choices=("4:4:4", "4:2:0"))
    parser.add_argument("--qualities", default=",".join(map(str, ev.QUALITIES)))
    parser.add_argument("--val-images", type=int, default=100, help="first N val photos (a quick check)")
    parser.add_argument("--pick-images", type=int, default=0, help="calib photos for the --max-drop 1 picks (0: none)")
    args = parser.parse_args()
    chosen = [m for m in args.models.split(",") if m]
    unknown = sorted(set(chosen) - set(MODELS))
    if unknown or not chosen:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    geometry = Preprocess.parse(zoo.DEFAULT_PREPROCESS)  # all three: resize 256, crop 224
    val_paths = image_files(SHARED / "data" / "imagenet-val-100")[: args.val_images]
    known = read_labels(SHARED / "data" / "imagenet-val-100" / "labels.txt")
    labels = np.array([known[p.name] for p in val_paths])
    val = [model_view(load_rgb(p), geometry) for p in val_paths]
    calib_paths = image_files(SHARED / "data" / "imagenet-calib-200")[: max(args.learn_images, args.tune_images,
                                                                            args.pick_images)]
    calib_known = read_labels(SHARED / "data" / "imagenet-calib-200" / "labels.txt")
    calib = [model_view(load_rgb(p), geometry) for p in calib_paths]
    pick, pick_labels = calib[: args.pick_images], np.array([calib_known[p.name] for p in calib_paths[: args.pick_images]])
    tune, calib = calib, calib[: args.learn_images]
    sub = args.subsampling
    qualities = [int(q) for q in args.qualities.split(",")]
    kodak = [model_view(load_rgb(p), None) for p in image_files(SHARED / "data" / "kodak")]
    classifiers = {}
    for name, (file, spec, _) in ((m, MODELS[m]) for m in chosen):
        model = zoo.efficientnet_lite0() if file is None else onnx.load(str(SHARED / "models" / file))
        classifiers[name] = Classifier(model, Preprocess.parse(spec), name)
    log = lambda text: print(f"[{time.time() - start:6.0f}s] {text}", file=sys.stderr, flush=True)  # noqa: E731

    families: dict[str, Tables] = {}
    luma, chroma, _ = learn.deepn_profile(calib, sub)
    families["deepn"] = Tables.from_profile(luma, chroma, 1.0, "deepn", subsampling=sub)
    gains = {}
    for name, clf in classifiers.items():
        g_luma, g_chroma = learn.sensitivities(clf, calib[: args.probe_images], subsampling=sub)
        gains[name] = {"luma": g_luma.tolist(), "chroma": g_chroma.tolist()}
        ladder = learn.rd_ladder(calib, g_luma, g_chroma, sub)
        families[f"learned on {name}"] = Tables(ladder[0, 0], ladder[0, 1], method="learned", model=name,
                                                ladder=ladder, scale=0.0, subsampling=sub)
        log(f"learned tables for {name}: {len(ladder)} rungs")
    tuned = {}
    for name, clf in classifiers.items():
        luma, chroma, info = search.operational(clf, tune[: args.tune_images], standard(args.tune_quality).scale or 1.0,
                                                subsampling=sub)
        tuned[name] = info
        families[f"operational on {name}"] = Tables.from_profile(luma, chroma, 1.0, "operational", model=name,
                                                                 subsampling=sub)
        log(f"operational tables for {name}: {info['trials']} trials, {info['accepted']} moves, "
            f"J {info['start']} -> {info['end']}")

    settings: dict[str, list[Tables]] = {"standard": [standard(q, sub) for q in qualities]}
    targets = [rate(val, t) for t in settings["standard"]]
    for key, family in families.items():
        settings[key] = ev.matched(family, val, targets)
    log("families matched to the standard rates")

    reference = {name: clf.top1(val) for name, clf in classifiers.items()}
    uncompressed = {name: float(np.mean(reference[name] - MODELS[name][2] == labels)) for name in classifiers}
    points: dict[str, dict[str, list[dict]]] = {name: {} for name in classifiers}
    for key, tables_list in settings.items():
        for tables in tables_list:
            coded, kodak_bpp = code(val, tables), rate(kodak, tables)
            for name, clf in classifiers.items():
                got = clf.top1(coded.decoded)
                points[name].setdefault(key, []).append(ev.Point(
                    tables.label(), tables.method, tables.scale, coded.bpp,
                    float(np.mean(got - MODELS[name][2] == labels)), float(np.mean(got == reference[name])),
                    tables.luma.tolist(), tables.chroma.tolist(), tables.meta.get("quality"), kodak_bpp,
                    bytes=coded.bytes / len(val), subsampling=tables.subsampling).as_dict())
        log(f"evaluated {key}")

    def curve(model: str, key: str, metric: str = "top1", x: str = "bpp") -> tuple[list[float], list[float]]:
        pts = points[model][key]
        return [p[x] for p in pts], [p[metric] for p in pts]

    summary: dict[str, dict] = {}
    for name in classifiers:
        rows = {}
        for key in settings:
            if key == "standard":
                continue
            rows[key] = {
                f"{fit}_{metric}_{x}": ev.bd_rate(curve(name, "standard", metric, x), curve(name, key, metric, x), fit)
                for fit in ("cubic", "linear") for metric in ("top1", "agreement") for x in ("bpp", "rate_bpp")}
            rs, accs = curve(name, key)
            rows[key]["equal_top1"] = [
                {"standard": p["label"], "top1": p["top1"], "standard_bpp": p["bpp"], "bpp": ev.rate_at(rs, accs, p["top1"])}
                for p in points[name]["standard"]]
        summary[name] = rows
        own, tuned_own = f"learned on {name}", f"operational on {name}"
        plot_curves({k: [ev.Point(**p) for p in v] for k, v in points[name].items()
                     if k in ("standard", "deepn", own, tuned_own)}, args.out / f"{name}.png",
                    title=f"{name}: 100 ImageNet val images at 224x224 (uncompressed top-1 {uncompressed[name]:.0%})",
                    notes=[f"BD-rate vs standard (top-1, linear envelope): "
                           f"operational {_pct(rows[tuned_own]['linear_top1_bpp'])}, "
                           f"learned {_pct(rows[own]['linear_top1_bpp'])}, deepn {_pct(rows['deepn']['linear_top1_bpp'])}"])
    operating = {name: {key: [o.as_dict() for o in ev.operating_points(
        [ev.Point(**p) for p in points[name]["standard"]], [ev.Point(**p) for p in points[name][key]],
        uncompressed[name], "top1")] for key in settings if key != "standard"} for name in classifiers}
    picks: dict[str, dict[str, dict]] = {name: {} for name in classifiers}
    if args.pick_images:
        annex_k = Tables.from_profile(STANDARD_LUMA, STANDARD_CHROMA, 1.0, "standard", subsampling=sub)
        for name, clf in classifiers.items():
            ref = learn.Reference.of(clf, pick, pick_labels, MODELS[name][2])
            meets = learn.loss_test(clf, pick, 1.0, "top1", ref)
            val_ref = learn.Reference.of(clf, val, labels, MODELS[name][2])
            options = {"standard": annex_k, **{k: f for k, f in families.items() if k != "deepn"}}
            for key, family in options.items():
                found, tried = learn.smallest(family, meets, pick)
                if found is None:
                    continue
                coded = code(val, found)
                on_val = val_ref.scores(clf.top1(coded.decoded))
                picks[name][key] = {"tables": found.label(), "tried": tried, "val_bpp": coded.bpp,
                                    "val_bytes": coded.bytes / len(val), "val_top1": on_val["top1"],
                                    "val_loss_points": 100 * (uncompressed[name] - float(on_val["top1"] or 0.0)),
                                    "calib_bpp": rate(pick, found)}
                log(f"--max-drop 1 pick for {name}, {key}: {picks[name][key]}")
    result = {"images": {"accuracy": "imagenet-val-100 (224x224 crops)", "rate": "kodak (768x512)",
                         "learn": f"imagenet-calib-200, first {args.learn_images} (probes: {args.probe_images})",
                         "tune_quality": args.tune_quality, "tune_images": args.tune_images},
              "subsampling": sub, "qualities": qualities, "operating_points": operating, "max_drop_1_picks": picks,
              "uncompressed_top1": uncompressed, "gains": gains, "operational": tuned, "points": points, "bd_rate": summary,
              "seconds": round(time.time() - start, 1)}
    (args.out / "curves.json").write_text(json.dumps(result, indent=1) + "\n")
    _print(summary, points, qualities)
    _print_operating(operating, picks, uncompressed)
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.0f}%"


def _print_operating(operating: dict[str, dict], picks: dict[str, dict], uncompressed: dict[str, float]) -> None:
    def cell(v: float | None, bound: bool = False) -> str:
        return "not reached" if v is None else ("<=" if bound else "") + f"{v:.2f}"

    print()
    print("| model | tables | top-1 loss (points) | bpp | standard bpp (lowest q within it) | fewer bytes |")
    print("|---|---|---|---|---|---|")
    for model, rows in operating.items():
        for key, ops in rows.items():
            for o in ops:
                saving = "n/a" if o["saving"] is None else f"{o['saving']:+.0%}"
                q = f" (q{o['standard_quality']})" if o["standard_quality"] is not None else ""
                print(f"| {model} | {key} | {o['loss']:g} | {cell(o['bpp'], o['below_range'])} | "
                      f"{cell(o['standard_bpp'], o['standard_below_range'])}{q} | {saving} |")
    if any(picks.values()):
        print()
        print("| model | --max-drop 1 on calib | tables | val bytes/image | val bpp | val top-1 loss (points) |")
        print("|---|---|---|---|---|---|")
        for model, rows in picks.items():
            for key, r in rows.items():
                print(f"| {model} | {key} | {r['tables']} | {r['val_bytes']:.0f} | {r['val_bpp']:.3f} | "
                      f"{r['val_loss_points']:+.1f} (uncompressed {uncompressed[model]:.0%}) |")


def _print(summary: dict[str, dict], points: dict[str, dict], qualities: list[int]) -> None:
    print("| evaluated on | tables | BD-rate top-1 (cubic) | BD-rate top-1 (linear) | BD-rate agreement (linear) "
          "| BD-rate top-1, Kodak rate (linear) |")
    print("|---|---|---|---|---|---|")
    for model, rows in summary.items():
        for key, r in rows.items():
            print(f"| {model} | {key} | {_pct(r['cubic_top1_bpp'])} | {_pct(r['linear_top1_bpp'])} | "
                  f"{_pct(r['linear_agreement_bpp'])} | {_pct(r['linear_top1_rate_bpp'])} |")
    print()
    print("| model | tables | " + " | ".join(f"q{q}" for q in qualities) + " |")
    print("|---|---|" + "---|" * len(qualities))
    for model, curves in points.items():
        for key, pts in curves.items():
            cells = [f"{p['bpp']:.2f} / {p['top1']:.0%}" for p in pts]
            print(f"| {model} | {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
