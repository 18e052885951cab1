"""Rate-accuracy of standard vs deepn vs learned JPEG tables on the three real models (docs/jpeg.md).

    .venv/bin/python benchmarks/jpeg_curves.py [--probe-images 16] [--learn-images 32] [--tune-quality 30]
        [--tune-images 32] [--models NAME,...] [--out DIR]

- learning set: the first --learn-images photos of ../shared/data/imagenet-calib-200 (the learned
  method probes the model on the first --probe-images of them; the operational method tunes the Annex K
  bands on the first --tune-images, starting at the Annex K scale of libjpeg quality --tune-quality);
- accuracy: the 100 photos of ../shared/data/imagenet-val-100, resize 256 / centre crop 224, as each
  model expects; bpp = real file bytes x 8 / (224 x 224), 4:4:4, optimised Huffman tables;
- rate on Kodak: the same tables on the 24 Kodak photos at full size (768x512);
- each deepn / learned curve is swept to the bpp of the six standard points (10, 20, 30, 50, 75, 90);
- universality: tables learned on model A evaluated on model B.
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
from featcomp.jpeg.tables import Tables, standard  # noqa: E402
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
    args = parser.parse_args()
    chosen = [m for m in args.models.split(",") if m]
    unknown = sorted(set(chosen) - set(MODELS))
    if unknown or not chosen:
        parser.error(f"unknown models {unknown}; choose from {', '.join(MODELS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.time()
    geometry = Preprocess.parse(zoo.DEFAULT_PREPROCESS)  # all three: resize 256, crop 224
    val_paths = image_files(SHARED / "data" / "imagenet-val-100")
    known = read_labels(SHARED / "data" / "imagenet-val-100" / "labels.txt")
    labels = np.array([known[p.name] for p in val_paths])
    val = [model_view(load_rgb(p), geometry) for p in val_paths]
    calib = [model_view(load_rgb(p), geometry) for p in image_files(SHARED / "data" / "imagenet-calib-200")
             [: max(args.learn_images, args.tune_images)]]
    tune, calib = calib, calib[: args.learn_images]
    kodak = [model_view(load_rgb(p), None) for p in image_files(SHARED / "data" / "kodak")]
    classifiers = {}
    for name, (file, spec, _) in ((m, MODELS[m]) for m in chosen):
        model = zoo.efficientnet_lite0() if file is None else onnx.load(str(SHARED / "models" / file))
        classifiers[name] = Classifier(model, Preprocess.parse(spec), name)
    log = lambda text: print(f"[{time.time() - start:6.0f}s] {text}", file=sys.stderr, flush=True)  # noqa: E731

    families: dict[str, Tables] = {}
    luma, chroma, _ = learn.deepn_profile(calib)
    families["deepn"] = Tables.from_profile(luma, chroma, 1.0, "deepn")
    gains = {}
    for name, clf in classifiers.items():
        g_luma, g_chroma = learn.sensitivities(clf, calib[: args.probe_images])
        gains[name] = {"luma": g_luma.tolist(), "chroma": g_chroma.tolist()}
        ladder = learn.rd_ladder(calib, g_luma, g_chroma)
        families[f"learned on {name}"] = Tables(ladder[0, 0], ladder[0, 1], method="learned", model=name,
                                                ladder=ladder, scale=0.0)
        log(f"learned tables for {name}: {len(ladder)} rungs")
    tuned = {}
    for name, clf in classifiers.items():
        luma, chroma, info = search.operational(clf, tune[: args.tune_images], standard(args.tune_quality).scale or 1.0)
        tuned[name] = info
        families[f"operational on {name}"] = Tables.from_profile(luma, chroma, 1.0, "operational", model=name)
        log(f"operational tables for {name}: {info['trials']} trials, {info['accepted']} moves, "
            f"J {info['start']} -> {info['end']}")

    settings: dict[str, list[Tables]] = {"standard": [standard(q) for q in ev.QUALITIES]}
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
                    tables.luma.tolist(), tables.chroma.tolist(), tables.meta.get("quality"), kodak_bpp).as_dict())
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
    result = {"images": {"accuracy": "imagenet-val-100 (224x224 crops)", "rate": "kodak (768x512)",
                         "learn": f"imagenet-calib-200, first {args.learn_images} (probes: {args.probe_images})",
                         "tune_quality": args.tune_quality, "tune_images": args.tune_images},
              "uncompressed_top1": uncompressed, "gains": gains, "operational": tuned, "points": points, "bd_rate": summary,
              "seconds": round(time.time() - start, 1)}
    (args.out / "curves.json").write_text(json.dumps(result, indent=1) + "\n")
    _print(summary, points)
    return 0


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.0f}%"


def _print(summary: dict[str, dict], points: dict[str, dict]) -> None:
    print("| evaluated on | tables | BD-rate top-1 (cubic) | BD-rate top-1 (linear) | BD-rate agreement (linear) "
          "| BD-rate top-1, Kodak rate (linear) |")
    print("|---|---|---|---|---|---|")
    for model, rows in summary.items():
        for key, r in rows.items():
            print(f"| {model} | {key} | {_pct(r['cubic_top1_bpp'])} | {_pct(r['linear_top1_bpp'])} | "
                  f"{_pct(r['linear_agreement_bpp'])} | {_pct(r['linear_top1_rate_bpp'])} |")
    print()
    print("| model | tables | " + " | ".join(f"q{q}" for q in ev.QUALITIES) + " |")
    print("|---|---|" + "---|" * len(ev.QUALITIES))
    for model, curves in points.items():
        for key, pts in curves.items():
            cells = [f"{p['bpp']:.2f} / {p['top1']:.0%}" for p in pts]
            print(f"| {model} | {key} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    sys.exit(main())
