"""Bits at the accuracy budget (issue 13's table): both codecs, three models, label-free `--max-drop 0.5` and `1`.

    .venv/bin/python benchmarks/rate_table.py [--shared ../shared] [--limit 64] [--models a,b]
        [--codecs dct-cm,transform-vlc] [--budgets 0.5,1] [--estimator flips|smooth] [--bytes-inputs 64]
        [-o benchmarks/results/rate]

Per model, `featcomp.compress(MODEL, imagenet-calib-200, limit=N, quality=MaxDrop(P), codec=C)` exactly as a user
runs it (no labels; the first N calibration images), timed, next to ONNX Runtime's `quantize_static` on the
same N images (QDQ, MinMax: what a user would otherwise run). Everything is then measured on images the
compress did not see:
- top-1 with labels on imagenet-val-100 plus the unused calibration images (200 - N), as the paired
  drop against the original with its 95% interval;
- top-1 agreement and featcomp's label-free expected drop (featcomp.budget) on those plus the 24 Kodak
  photos (unlabelled);
- real coded bytes per inference (the numpy reference bitstream, side information included, as
  `featcomp report` counts them) on the first `--bytes-inputs` held-out images, as bits/value and x int8.
Baselines on the same sites and images: the int8 activations a post-training quantizer keeps (per-tensor
MinMax from the same N images), coded losslessly with zlib level 9 per site and inference, and their order-0
entropy per site (the limit of any per-value code of the int8 symbols).
Writes rate.json and rate.md in -o.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from budget_validation import MODELS, outputs

from featcomp import api, modelio, zoo
from featcomp.budget import Z95, estimate, measured_drop
from featcomp.data import collect, image_files, open_inputs, read_labels
from featcomp.modelio import input_spec, prepare
from featcomp.passes.sites import find_sites
from featcomp.preprocess import Preprocess
from featcomp.quality import ESTIMATORS, MaxDrop
from featcomp.reporting.measure import measure
from featcomp.runtime_ops import ort

CALIB, VAL, KODAK = "data/imagenet-calib-200", "data/imagenet-val-100", "data/kodak"
PUBLISHED = ("Published points (ideal entropy or their own coders; not measured here): Chmiel et al. 2019, "
             "MobileNetV2 3.35 b/v at -0.4 points (2.39x vs int8); DCT-CM (Shao et al.), ResNet-50 2.9x vs int8.")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Feeds:
    """A list of feeds as an ONNX Runtime CalibrationDataReader (also featcomp's InputReader)."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds, self.at = feeds, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        self.at += 1
        return self.feeds[self.at - 1] if self.at <= len(self.feeds) else None


def images(model: onnx.ModelProto, folder: Path, preprocess: str, only: list[Path] | None = None
           ) -> list[dict[str, np.ndarray]]:
    """Feeds of a folder's images (only those in `only` when given, via symlinks in a temporary folder)."""
    if only is None:
        return collect(open_inputs(folder, input_spec(model), Preprocess.parse(preprocess), None, role="evaluation"),
                       input_spec(model))
    with tempfile.TemporaryDirectory() as tmp:
        link(only, Path(tmp))
        return images(model, Path(tmp), preprocess)


def link(paths: list[Path], folder: Path) -> None:
    for p in paths:
        (folder / p.name).symlink_to(p)


def int8_baseline(model: onnx.ModelProto, calib: list[dict[str, np.ndarray]],
                  test: list[dict[str, np.ndarray]]) -> dict[str, float]:
    """Per-tensor MinMax uint8 activations at featcomp's sites: zlib-9 and order-0 entropy, bits/value."""
    sites = find_sites(model)
    names = [s.name for s in sites]
    sess = ort.session(ort.with_outputs(model, names))
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for feed in calib:
        for n, v in zip(names, ort.run(sess, feed, names).values(), strict=True):
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    zbytes = 0
    counts = {n: np.zeros(256, np.int64) for n in names}
    values = 0
    for feed in test:
        for n, v in zip(names, ort.run(sess, feed, names).values(), strict=True):
            scale = max(hi[n] - lo[n], 1e-12) / 255.0
            q = np.clip(np.rint((v - lo[n]) / scale), 0, 255).astype(np.uint8)
            zbytes += len(zlib.compress(q.tobytes(), 9))
            counts[n] += np.bincount(q.reshape(-1), minlength=256)
            values += q.size
    entropy_bits = 0.0
    for c in counts.values():
        p = c[c > 0] / c.sum()
        entropy_bits += float(-(p * np.log2(p)).sum()) * c.sum()
    return {"zlib9_bits_per_value": 8.0 * zbytes / values, "entropy_bits_per_value": entropy_bits / values,
            "values_per_inference": values / len(test)}


def ort_quantize_seconds(model: onnx.ModelProto, calib: list[dict[str, np.ndarray]]) -> float:
    """Wall time of onnxruntime.quantization.quantize_static (QDQ, MinMax) on the same calibration feeds."""
    from onnxruntime.quantization import QuantFormat, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.int8.onnx"
        modelio.save_model(model, src)
        t0 = time.perf_counter()
        quantize_static(str(src), str(dst), Feeds(calib), quant_format=QuantFormat.QDQ)
        return time.perf_counter() - t0


def run_model(name: str, shared: Path, limit: int, codecs: list[str], budgets: list[float],
              bytes_inputs: int, save: Callable[[list[dict[str, Any]]], None], estimator: str = "flips"
              ) -> list[dict[str, Any]]:
    path, preprocess, offset = MODELS[name]
    given = modelio.load_model(shared / path) if path else zoo.efficientnet_lite0()
    proto = prepare(given)
    calib_paths = image_files(shared / CALIB)
    fit, rest = calib_paths[:limit], calib_paths[limit:]
    calib_feeds = images(proto, shared / CALIB, preprocess, fit)
    labelled = images(proto, shared / VAL, preprocess) + images(proto, shared / CALIB, preprocess, rest)
    truth = {**read_labels(shared / VAL / "labels.txt"), **read_labels(shared / CALIB / "labels.txt")}
    val_names = [p.name for p in image_files(shared / VAL)]
    labels = np.array([truth[n] for n in val_names + [p.name for p in rest]]) + offset
    test = labelled + images(proto, shared / KODAK, preprocess)
    log(f"{name}: {len(calib_feeds)} calibration inputs, {len(labelled)} labelled + {len(test) - len(labelled)} "
        "unlabelled held-out inputs")
    orig_classes, orig_ref = outputs(proto, test)
    base = int8_baseline(proto, calib_feeds, test[:bytes_inputs])
    ort_seconds = ort_quantize_seconds(proto, calib_feeds)
    log(f"{name}: int8 zlib-9 {base['zlib9_bits_per_value']:.2f} b/v, entropy {base['entropy_bits_per_value']:.2f} "
        f"b/v; ORT quantize_static {ort_seconds:.1f} s")
    n_lab = len(labelled)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        calib_dir = Path(tmp)
        link(fit, calib_dir)
        for codec in codecs:
            for p in budgets:
                t0 = time.perf_counter()
                result = api.compress(given, calib_dir, codec=codec, preprocess=preprocess, quality=MaxDrop(p, estimator=estimator))
                seconds = time.perf_counter() - t0
                classes, _ = outputs(result.model, test)
                drop, se = measured_drop(orig_classes[:n_lab], classes[:n_lab], labels)
                held = estimate(orig_ref, classes)
                totals = measure(result.model, Feeds(test[:bytes_inputs]), name=name).totals
                row = {
                    "model": name, "codec": codec, "max_drop": p, "estimator": estimator, "calib_inputs": len(fit),
                    "labelled_images": n_lab, "held_out_inputs": len(test), "bytes_inputs": min(bytes_inputs, len(test)),
                    "bits_per_value": totals.bits_per_value, "ratio_vs_int8": totals.ratio_vs_int8,
                    "payload_bits_per_value": totals.payload_bits_per_value,
                    "entropy_bits_per_value": totals.entropy_bits_per_value,
                    "side_bits_per_value": 8.0 * totals.side_bytes / max(1, totals.values),
                    "calibration_estimate": result.allocation.as_dict().get("estimated_drop"),
                    "held_out_estimate": held.as_dict(), "agreement": float(np.mean(classes == orig_classes)),
                    "top1_original": float(np.mean(orig_classes[:n_lab] == labels)),
                    "top1": float(np.mean(classes[:n_lab] == labels)), "measured_drop": drop,
                    "measured_ci95": Z95 * se, "compress_seconds": seconds, "ort_quantize_seconds": ort_seconds,
                    "int8_baseline": base,
                }
                rows.append(row)
                save(rows)  # a long run stopped early keeps its finished rows
                log(line(row))
    return rows


def line(r: dict[str, Any]) -> str:
    h, b = r["held_out_estimate"], r["int8_baseline"]
    smooth = " (smooth)" if r.get("estimator") == "smooth" else ""
    return (f"| {r['model']} | {r['codec']} | {r['max_drop']:g}{smooth} | {r['bits_per_value']:.2f} | "
            f"**{r['ratio_vs_int8']:.2f}x** | {r['payload_bits_per_value']:.2f} / {r['entropy_bits_per_value']:.2f} | "
            f"{h['points']:.2f} ± {h['ci95']:.2f} | {r['measured_drop']:.1f} ± {r['measured_ci95']:.1f} | "
            f"{r['agreement']:.1%} | {8 / b['zlib9_bits_per_value']:.2f}x / {8 / b['entropy_bits_per_value']:.2f}x | "
            f"{r['compress_seconds']:.0f} s ({r['compress_seconds'] / r['ort_quantize_seconds']:.0f}x) |")


def markdown(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    r0 = rows[0]
    head = (f"Calibration: the first {r0['calib_inputs']} of imagenet-calib-200, no labels. Held out: "
            f"{r0['labelled_images']} labelled images (imagenet-val-100 + the other calibration images) + 24 Kodak "
            f"photos; coded bytes on the first {r0['bytes_inputs']} held-out inputs, batch 1, side information "
            "included.\n\n"
            "| model | codec | --max-drop | bits/value | x int8 | payload / order-0 entropy (b/v) "
            "| est. drop, held-out (label-free) | measured drop (labels) | agreement | int8 + zlib-9 / int8 entropy "
            "| compress time (vs ORT quantize_static) |\n|---|---|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(line(r) for r in rows), "", PUBLISHED]) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--codecs", default="dct-cm,transform-vlc")
    parser.add_argument("--budgets", default="0.5,1")
    parser.add_argument("--estimator", choices=ESTIMATORS, default=ESTIMATORS[0],
                        help="the label-free drop estimator of --max-drop (featcomp.budget)")
    parser.add_argument("--limit", type=int, default=64, help="calibration images (default 64)")
    parser.add_argument("--bytes-inputs", type=int, default=64, help="held-out inputs whose bytes are counted")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results/rate")
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    def save(done: list[dict[str, Any]]) -> None:
        (args.output / "rate.json").write_text(json.dumps(done, indent=2) + "\n")
        (args.output / "rate.md").write_text(markdown(done))

    for name in args.models.split(","):
        rows += run_model(name, args.shared, args.limit, args.codecs.split(","),
                          [float(b) for b in args.budgets.split(",")], args.bytes_inputs,
                          lambda model_rows, before=list(rows): save(before + model_rows), args.estimator)
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
