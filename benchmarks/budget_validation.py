"""Does label-free `--max-drop P` land near P points of real top-1 loss? Predicted vs measured, three models.

    .venv/bin/python benchmarks/budget_validation.py [--shared ../shared] [--limit 64] [--models a,b]
        [--estimators flips,smooth] [--defaults-only] [-o benchmarks/results/budget]

Per model and direction (calibrate on imagenet-calib-200, measure on imagenet-val-100; and the other way
round): what `featcomp compress MODEL --calib DIR --limit N --max-drop P` does (api.compress's stages, in
its order: calibrate, dct-cm fronts, sensitivities on the first 8 inputs, allocate.search), with the
P-independent stages shared between the budgets so the run stays short. For each budget the chosen model
is run on the held-out labelled images: measured top-1 drop against the original (± 1.96 s.e. of the
paired per-image differences), top-1 agreement, and the label-free estimate on those same images (is the
estimator right on images it did not choose the setting on, apart from the noise of 100 labels?).
Budgets: P = 0.5 and 1 with the top of the estimate's 95% interval held to P (the default), P = 1 with the
point estimate held to P (api drop_bound="estimate"), (calib -> val only) `--max-drop-agreement 1`, the
old strict form, and P = 0.5 and 1 with `--budget-estimator smooth` (--estimators picks which estimators'
budgets run, --defaults-only keeps the upper-bound --max-drop rows only); the held-out columns give both
estimators' estimates. The finest setting (the
8-bit base quantization at every site) is measured too, and its predicted column gives both estimators'
estimates of the base step alone on the calibration inputs. Writes budget.json and budget.md in -o.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from featcomp import allocate as allocation
from featcomp import api, modelio, zoo
from featcomp.budget import Z95, estimate, measured_drop, probabilities, smooth_estimate
from featcomp.codecs import make_codec
from featcomp.data import collect, open_inputs, read_labels
from featcomp.modelio import input_spec, prepare
from featcomp.passes.insert import insert_pairs
from featcomp.passes.sites import find_sites
from featcomp.preprocess import Preprocess
from featcomp.runtime_ops import ort

MODELS = {  # path under --shared (None: featcomp.zoo), preprocessing, model class index minus label index
    "squeezenet1.1": ("models/squeezenet1.1.onnx", "resize=256,crop=224,order=bgr,mean=104/117/123,std=1", 0),
    "mobilenet_v2_1.0_224": ("models/mobilenet_v2_1.0_224.onnx", "resize=256,crop=224,order=rgb,mean=128,std=128", 1),
    "efficientnet-lite0": (None, zoo.DEFAULT_PREPROCESS, 0),
}
SETS = {"calib": "data/imagenet-calib-200", "val": "data/imagenet-val-100"}
Budget = tuple[float, str, str, str]  # (P, metric, bound, label-free estimator)
BUDGETS: list[Budget] = [(0.5, "expected", "upper", "flips"), (1.0, "expected", "upper", "flips"),
                         (1.0, "expected", "estimate", "flips"), (1.0, "agreement", "upper", "flips"),
                         (0.5, "expected", "upper", "smooth"), (1.0, "expected", "upper", "smooth")]


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def held_out(model: onnx.ModelProto, folder: Path, preprocess: str, limit: int | None
             ) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
    """The images of a labelled folder (all unless `limit`) as feeds, with their labels."""
    reader = open_inputs(folder, input_spec(model), Preprocess.parse(preprocess), limit, role="evaluation")
    feeds = collect(reader, input_spec(model))
    truth = read_labels(folder / "labels.txt")
    return feeds, np.array([truth[p.name] for p in getattr(reader, "paths", [])])


def outputs(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """(top-1 classes [N], the tensor the estimator reads [N, K]: the logits before a final softmax)."""
    out, logit = model.graph.output[0].name, allocation.logits_name(model)
    sess = ort.session(ort.with_outputs(model, list(dict.fromkeys([out, logit]))))
    runs = [ort.run(sess, f, list(dict.fromkeys([out, logit]))) for f in feeds]
    classes = np.concatenate([allocation.top1(r[out]) for r in runs])
    return classes, np.concatenate([r[logit].reshape(len(r[logit]), -1) for r in runs])


def dctcm_stages(proto: Any, feeds: list[Any]) -> tuple[list[Any], dict[str, Any], dict[str, Any], dict[str, float]]:
    """The stages compress runs before its search (sites, statistics, dct-cm fronts, sensitivities), shared by
    every budget a run validates so the estimators are compared on the same fronts."""
    family = make_codec("dct-cm")
    sites = find_sites(proto)
    stats = api.calibrate(proto, feeds, sites=sites, stats_options=family.stats_options)
    fronts = {s.name: family.candidates(stats[s.name]) for s in sites}
    return sites, stats, fronts, allocation.sensitivities(proto, sites, feeds[:api.SENSITIVITY_BATCHES], fronts)


def bits(fronts: dict[str, Any], codecs: dict[str, Any], sizes: dict[str, int]) -> float:
    """Size-weighted bits/value of the chosen candidates on the calibration data (side information included)."""
    per = {n: next(c.bits_per_value for c in fronts[n] if c.site is codecs[n]) for n in codecs}
    return sum(per[n] * sizes[n] for n in codecs) / sum(sizes[n] for n in codecs)


def direction(name: str, shared: Path, fit: str, test: str, limit: int, budgets: list[Budget],
              test_limit: int | None = None) -> list[dict[str, Any]]:
    path, preprocess, offset = MODELS[name]
    given = modelio.load_model(shared / path) if path else zoo.efficientnet_lite0()
    proto = prepare(given)
    t0 = time.perf_counter()
    reader = open_inputs(shared / SETS[fit], input_spec(proto), Preprocess.parse(preprocess), limit)
    feeds = collect(reader, input_spec(proto))
    sites, stats, fronts, gains = dctcm_stages(proto, feeds)
    shared_seconds = time.perf_counter() - t0
    log(f"{name} {fit}->{test}: calibrated on {len(feeds)} inputs in {shared_seconds:.0f} s")
    sizes = {s.name: s.values for s in sites}
    fit_ref = outputs(proto, feeds)[1]
    test_feeds, labels = held_out(proto, shared / SETS[test], preprocess, test_limit)
    orig_classes, orig_ref = outputs(proto, test_feeds)
    labels = labels + offset
    probs = np.max(probabilities(orig_ref), axis=1)
    calibration = {"mean_confidence": float(np.mean(probs)), "top1": float(np.mean(orig_classes == labels))}
    finest = {n: f[-1].site for n, f in fronts.items()}
    rows = []
    for max_drop, metric, bound, estimator in [(None, "finest", "", "flips"), *budgets]:
        t1 = time.perf_counter()
        base: dict[str, Any] | None = None
        if max_drop is None:  # what the 8-bit base alone is estimated to cost on the calibration inputs
            codecs, found = finest, None
            fit_classes, fit_logits = outputs(insert_pairs(proto, codecs).model, feeds)
            base = {"flips": estimate(fit_ref, fit_classes).as_dict(),
                    "smooth": smooth_estimate(fit_ref, fit_logits).as_dict()}
        else:
            found = allocation.search(proto, fronts, gains, stats, feeds, max_drop, metric=metric, bound=bound,
                                      estimator=estimator)
            codecs = found.codecs
        classes, test_logits = outputs(insert_pairs(proto, codecs).model, test_feeds)
        drop, se = measured_drop(orig_classes, classes, labels)
        held = estimate(orig_ref, classes)
        held_smooth = smooth_estimate(orig_ref, test_logits)
        b = bits(fronts, codecs, sizes)
        row = {
            "model": name, "fit": fit, "fit_inputs": len(feeds), "test": test, "test_images": len(labels),
            "max_drop": max_drop, "metric": metric, "bound": bound, "estimator": estimator,
            "output_snr_db": None if found is None else found.output_snr_db,
            "predicted": None if found is None or found.estimate is None else found.estimate.as_dict(),
            "base_predicted": base,
            "calibration_agreement": None if found is None else found.agreement,
            "measured_drop": drop, "measured_ci95": Z95 * se, "held_out_estimate": held.as_dict(),
            "held_out_smooth_estimate": held_smooth.as_dict(),
            "held_out_agreement": float(np.mean(classes == orig_classes)),
            "top1_original": float(np.mean(orig_classes == labels)), "top1": float(np.mean(classes == labels)),
            "bits_per_value": b, "ratio_vs_int8": 8.0 / b, "search_seconds": time.perf_counter() - t1,
            "shared_seconds": shared_seconds, "original_calibration": calibration,
        }
        rows.append(row)
        log(line(row))
    return rows


def setting(r: dict[str, Any]) -> str:
    if r["metric"] == "finest":
        return "finest (8-bit base)"
    if r["metric"] == "agreement":
        return f"--max-drop-agreement {r['max_drop']:g}"
    smooth = " --budget-estimator smooth" if r.get("estimator") == "smooth" else ""
    return f"--max-drop {r['max_drop']:g}{smooth}" + (" (point estimate)" if r["bound"] == "estimate" else "")


def line(r: dict[str, Any]) -> str:
    p = r["predicted"]
    predicted = "—" if p is None else f"{p['points']:.2f} ± {p['ci95']:.2f}"
    if r.get("base_predicted"):
        predicted = " / ".join(f"{k} {b['points']:.2f} ± {b['ci95']:.2f}" for k, b in r["base_predicted"].items())
    h, s = r["held_out_estimate"], r.get("held_out_smooth_estimate")
    smooth = "—" if s is None else f"{s['points']:.2f} ± {s['ci95']:.2f}"
    return (f"| {r['model']} | {r['fit']} ({r['fit_inputs']}) → {r['test']} ({r['test_images']}) | {setting(r)} | "
            f"{predicted} | {h['points']:.2f} ± {h['ci95']:.2f} | {smooth} | "
            f"{r['measured_drop']:.1f} ± {r['measured_ci95']:.1f} | "
            f"{r['held_out_agreement']:.1%} | {r['ratio_vs_int8']:.2f} |")


def markdown(rows: list[dict[str, Any]]) -> str:
    head = ("| model | calibrated on → measured on (images) | setting | predicted drop (calibration, label-free) "
            "| estimate on held-out (label-free, flips) | estimate on held-out (label-free, smooth) "
            "| measured drop (held-out, labels) | agreement (held-out) | x int8 (est.) |\n|---|---|---|---|---|---|---|---|---|")
    calib = {}
    for r in rows:
        calib[(r["model"], r["test"])] = r["original_calibration"]
    notes = [f"- {m} on {t}: mean max softmax {c['mean_confidence']:.1%} vs top-1 {c['top1']:.1%}"
             for (m, t), c in calib.items()]
    return "\n".join([head, *(line(r) for r in rows), "", "Confidence of the original (T = 1) vs its top-1:",
                      *notes]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--limit", type=int, default=64, help="calibration inputs per direction (default 64)")
    parser.add_argument("--test-limit", type=int,
                        help="held-out images (default: all; a smaller number is a smoke run)")
    parser.add_argument("--directions", default="calib:val,val:calib")
    parser.add_argument("--estimators", default="flips,smooth", help="which estimators' budgets to run")
    parser.add_argument("--defaults-only", action="store_true",
                        help="only the default form (upper bound, --max-drop) of each estimator: a shorter run")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results/budget")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for name in args.models.split(","):
        for pair in args.directions.split(","):
            fit, test = pair.split(":")
            budgets = [b for b in BUDGETS if b[3] in args.estimators.split(",")
                       and (fit == "calib" or b[1] != "agreement")
                       and not (args.defaults_only and (b[1] != "expected" or b[2] != "upper"))]
            rows += direction(name, args.shared, fit, test, args.limit, budgets, args.test_limit)
            (args.output / "budget.json").write_text(json.dumps(rows, indent=2) + "\n")
            (args.output / "budget.md").write_text(markdown(rows))
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
