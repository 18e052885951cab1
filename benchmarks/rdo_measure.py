"""Compress one shared model as `featcomp compress` does, then measure it on held-out images.

    .venv/bin/python benchmarks/rdo_measure.py MODEL [--codec dct-cm] [--max-drop 1] [--limit 64]
        [--shared ../shared] [-o out.json] [--option key=value ...]

MODEL is a key of budget_validation.MODELS (squeezenet1.1, mobilenet_v2_1.0_224, efficientnet-lite0).
Calibrates on the first --limit images of imagenet-calib-200 (label-free --max-drop), then on all of
imagenet-val-100: the report's real coded bytes + side information (ratio vs int8, side b/v), top-1
agreement with the original, the label-free estimated drop and the measured drop with labels. Used for
the before/after tables of docs/rdo.md (compact side information, quantizer changes).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from budget_validation import MODELS, SETS, held_out, outputs

from featcomp.quality import MaxDrop, OutputSnr
from featcomp import api, modelio, zoo
from featcomp.budget import Z95, estimate, measured_drop
from featcomp.modelio import prepare


def _number(text: str) -> int | float:
    """An option value: int when written as one (grid=30, a count), else float (deadzone=0.33)."""
    return int(text) if text.strip().lstrip("+-").isdigit() else float(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model", choices=sorted(MODELS))
    ap.add_argument("--codec", default="dct-cm")
    ap.add_argument("--max-drop", type=float, default=1.0)
    ap.add_argument("--output-snr", type=float, help="fixed sensitivity-weighted allocation at this logit SNR "
                    "(no search: compares quantizers at equal allocation, free of the search's steps)")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    ap.add_argument("--option", action="append", default=[], help="codec option key=value (int or float)")
    ap.add_argument("-o", "--output", type=Path)
    args = ap.parse_args(argv)
    path, preprocess, offset = MODELS[args.model]
    given = modelio.load_model(args.shared / path) if path else zoo.efficientnet_lite0()
    proto = prepare(given)
    options = {k: _number(v) for k, v in (o.split("=", 1) for o in args.option)}
    t0 = time.perf_counter()
    result = api.compress(proto, args.shared / SETS["calib"], codec=args.codec, preprocess=preprocess,
                          limit=args.limit, codec_options=options,
                          quality=OutputSnr(args.output_snr) if args.output_snr else MaxDrop(args.max_drop))
    seconds = time.perf_counter() - t0
    rep = api.report(result.model, args.shared / SETS["val"], preprocess=preprocess)
    t = rep.totals
    feeds, labels = held_out(proto, args.shared / SETS["val"], preprocess, None)
    orig_classes, orig_ref = outputs(proto, feeds)
    classes, _ = outputs(result.model, feeds)
    labels = labels + offset
    drop, se = measured_drop(orig_classes, classes, labels)
    held = estimate(orig_ref, classes)
    row = {
        "model": args.model, "codec": args.codec, "max_drop": None if args.output_snr else args.max_drop,
        "output_snr_db": args.output_snr, "limit": args.limit, "options": options,
        "ratio_vs_int8": t.ratio_vs_int8, "bits_per_value": t.bits_per_value,
        "side_bits_per_value": 8.0 * t.side_bytes / t.values, "side_bytes": t.side_bytes,
        "coded_bits_per_value": 8.0 * t.coded_bytes / t.values,
        "agreement": float(np.mean(classes == orig_classes)), "held_out_estimate": held.as_dict(),
        "measured_drop": drop, "measured_ci95": Z95 * se, "compress_seconds": seconds,
        "calibration_estimate": result.allocation.as_dict().get("estimated_drop"),
    }
    how = f"--output-snr {args.output_snr:g}" if args.output_snr else f"--max-drop {args.max_drop:g}"
    print(f"{args.model} {args.codec} {how} {options or ''}: {t.ratio_vs_int8:.3f}x int8, "
          f"{t.bits_per_value:.3f} b/v (side {row['side_bits_per_value']:.3f}), agreement {row['agreement']:.1%}, "
          f"held-out estimated drop {held.drop:.2f} ± {Z95 * held.se:.2f}, measured {drop:.1f} ± {Z95 * se:.1f}, "
          f"compress {seconds:.0f} s")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(row, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
