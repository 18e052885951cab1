"""End-to-end learned JPEG tables (``--method e2e``) against Pillow's defaults at the operating point.

    .venv/bin/python benchmarks/jpeg_e2e.py [--models NAME,...] [--learn-images 32] [--steps 20]
        [--batch 8] [--lambdas 0.003,...] [--param log|annexk] [--optimizer adam|gd] [--shape-penalty MU]
        [--smooth-penalty NU] [--rounding ste|anneal] [--qualities 50,...] [--pick-images 100] [--out DIR]

- tables: `learn --method e2e`'s ladder, learned on the first --learn-images photos of
  ../shared/data/imagenet-calib-200 (4:2:0, the descent of featcomp.jpeg.e2e with these settings);
- test: the 100 photos of ../shared/data/imagenet-val-100 (224x224 crops, each model's preprocessing);
  bytes are real Pillow files (4:2:0, optimize=True) of the 224x224 view; standard = Pillow's
  ``quality=Q`` file;
- operating points: bytes per image each curve needs to keep top-1 within 0.5 / 1 / 2 points of the
  uncompressed photos (eval's interpolation), next to the standard curve's;
- calib-picked: `learn --max-drop 1`'s selection (smallest file within 1 top-1 point on the first
  --pick-images calib photos, their labels) for the e2e ladder and for Annex K, measured on the test photos.
Writes e2e.json into --out (default benchmarks/results/jpeg/e2e).
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
OUT = ROOT / "benchmarks" / "results" / "jpeg" / "e2e"

from featcomp import zoo  # noqa: E402
from featcomp.data import image_files, read_labels  # noqa: E402
from featcomp.jpeg import evaluate as ev  # noqa: E402
from featcomp.jpeg import learn  # noqa: E402
from featcomp.jpeg.e2e import Settings, e2e_ladder  # noqa: E402
from featcomp.jpeg.encode import load_rgb, model_view  # noqa: E402
from featcomp.jpeg.measure import Classifier, Reference, code, rate  # noqa: E402
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables, standard  # noqa: E402
from featcomp.preprocess import Preprocess  # noqa: E402

MODELS = {  # name: (model file, preprocess, label offset)
    "efficientnet-lite0": (None, zoo.DEFAULT_PREPROCESS, 0),
    "mobilenet_v2": ("mobilenet_v2_1.0_224.onnx", "resize=256,crop=224,order=rgb,mean=128,std=128", 1),
    "squeezenet1.1": ("squeezenet1.1.onnx", "resize=256,crop=224,order=bgr,mean=104/117/123,std=1", 0),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def descent_args(parser: argparse.ArgumentParser) -> None:
    """The descent's settings (featcomp.jpeg.e2e.Settings) as flags; defaults are Settings' own."""
    d = Settings()
    parser.add_argument("--learn-images", type=int, default=32)
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch", type=int, default=d.batch, help="0: all learning photos (full batch)")
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--lambdas", default=",".join(f"{x:g}" for x in d.lambdas))
    parser.add_argument("--param", default=d.param)
    parser.add_argument("--optimizer", default=d.optimizer)
    parser.add_argument("--shape-penalty", type=float, default=d.shape_penalty)
    parser.add_argument("--smooth-penalty", type=float, default=d.smooth_penalty)
    parser.add_argument("--rounding", default=d.rounding)
    parser.add_argument("--temperature", default=",".join(f"{x:g}" for x in d.temperature))


def descent_settings(args: argparse.Namespace) -> Settings:
    t0, t1 = (float(x) for x in args.temperature.split(","))
    return Settings(lambdas=tuple(float(x) for x in args.lambdas.split(",")), steps=args.steps, batch=args.batch,
                    lr=args.lr, param=args.param, optimizer=args.optimizer, shape_penalty=args.shape_penalty,
                    smooth_penalty=args.smooth_penalty, rounding=args.rounding, temperature=(t0, t1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    descent_args(parser)
    parser.add_argument("--qualities", default="50,60,70,75,80,85,90,93,95,97")
    parser.add_argument("--pick-images", type=int, default=100)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    sub = "4:2:0"
    chosen = [m for m in args.models.split(",") if m]
    if set(chosen) - set(MODELS):
        parser.error(f"choose models from {', '.join(MODELS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    geometry = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
    val_paths = image_files(SHARED / "data" / "imagenet-val-100")
    val_known = read_labels(SHARED / "data" / "imagenet-val-100" / "labels.txt")
    labels = np.array([val_known[p.name] for p in val_paths])
    val = [model_view(load_rgb(p), geometry) for p in val_paths]
    calib_paths = image_files(SHARED / "data" / "imagenet-calib-200")
    calib_known = read_labels(SHARED / "data" / "imagenet-calib-200" / "labels.txt")
    calib = [model_view(load_rgb(p), geometry) for p in calib_paths[: max(args.learn_images, args.pick_images)]]
    pick_labels = np.array([calib_known[p.name] for p in calib_paths[: args.pick_images]])
    settings = descent_settings(args)
    qualities = [int(q) for q in args.qualities.split(",")]
    out_path = args.out / "e2e.json"
    results: dict[str, object] = json.loads(out_path.read_text()) if out_path.exists() else {}
    annex_k = Tables.from_profile(STANDARD_LUMA, STANDARD_CHROMA, 1.0, "standard", subsampling=sub)
    for name in chosen:
        file, spec, offset = MODELS[name]
        model = zoo.efficientnet_lite0() if file is None else onnx.load(str(SHARED / "models" / file))
        clf = Classifier(model, Preprocess.parse(spec), name)
        start = time.time()
        ladder, info = e2e_ladder(clf, calib[: args.learn_images], sub, settings)
        learn_s = time.time() - start
        log(f"{name}: {len(ladder)} rungs in {learn_s:.0f} s; {info['trace']}")
        family = Tables(ladder[0, 0], ladder[0, 1], method="e2e", model=name, ladder=ladder, scale=0.0, subsampling=sub)
        val_ref = Reference.of(clf, val, labels, offset)
        uncompressed = float(val_ref.uncompressed["top1"] or 0.0)
        std_points = ev.curve(clf, val, [standard(q, sub) for q in qualities], reference=val_ref)
        e2e_points = ev.curve(clf, val, [family.member(i / (len(ladder) - 1)) for i in range(len(ladder) - 1)],
                              reference=val_ref)
        operating = [o.as_dict() for o in ev.operating_points(std_points, e2e_points, uncompressed, "top1")]
        pick = calib[: args.pick_images]
        ref = Reference.of(clf, pick, pick_labels, offset)
        meets = learn.loss_test(clf, pick, 1.0, "top1", ref)
        picks = {}
        for key, fam in (("standard", annex_k), ("e2e", family)):
            found, tried = learn.smallest(fam, meets, pick)
            if found is None:
                continue
            coded = code(val, found)
            top1 = float(val_ref.scores(clf.top1(coded.decoded))["top1"] or 0.0)
            picks[key] = {"tables": found.label(), "luma": found.luma.tolist(), "chroma": found.chroma.tolist(),
                          "tried": tried, "val_bytes": coded.bytes / len(val), "val_bpp": coded.bpp,
                          "val_loss_points": 100 * (uncompressed - top1), "calib_bpp": rate(pick, found)}
            log(f"{name} --max-drop 1 pick, {key}: {picks[key]['tables']} {picks[key]['val_bytes']:.0f} B/image, "
                f"loss {picks[key]['val_loss_points']:.0f} points")
        results[name] = {"uncompressed_top1": uncompressed, "learn_seconds": round(learn_s, 1), "e2e": info,
                         "standard": [p.as_dict() for p in std_points], "e2e_points": [p.as_dict() for p in e2e_points],
                         "operating_points": operating, "max_drop_1_picks": picks}
        results["settings"] = {"learn_images": args.learn_images, **settings.as_dict(), "qualities": qualities,
                               "pick_images": args.pick_images, "subsampling": sub}
        out_path.write_text(json.dumps(results, indent=1))
        _print(name, uncompressed, operating, picks)
    return 0


def _print(name: str, uncompressed: float, operating: list[dict], picks: dict[str, dict]) -> None:
    print(f"\n{name} (uncompressed top-1 {uncompressed:.0%}), bytes/image on the 100 test photos:")
    print("| loss | e2e bytes (bpp) | standard bytes (bpp), lowest q | fewer bytes |")
    px = 224 * 224 / 8
    for o in operating:
        e = "not reached" if o["bpp"] is None else f"{o['bpp'] * px:.0f} ({o['bpp']:.2f})"
        s = "not reached" if o["standard_bpp"] is None else (
            f"{o['standard_bpp'] * px:.0f} ({o['standard_bpp']:.2f}), q{o['standard_quality']}")
        f = "n/a" if o["saving"] is None else f"{100 * o['saving']:.0f}%"
        print(f"| {o['loss']:g} | {e} | {s} | {f} |")
    if "standard" in picks and "e2e" in picks:
        saving = 1 - picks["e2e"]["val_bytes"] / picks["standard"]["val_bytes"]
        print(f"calib-picked --max-drop 1: e2e {picks['e2e']['val_bytes']:.0f} B ({picks['e2e']['val_loss_points']:.0f} "
              f"points) vs standard {picks['standard']['val_bytes']:.0f} B ({picks['standard']['val_loss_points']:.0f} "
              f"points): {100 * saving:.1f}% fewer bytes")


if __name__ == "__main__":
    raise SystemExit(main())
