"""The README's codec comparison: `featcomp sweep` on the three real models, dct-cm vs transform-vlc.

Calibration: ../shared/data/imagenet-calib-200 (first N images, default 100); evaluation: imagenet-val-100,
batch 1. Writes benchmarks/results/sweep/<model>.json and .png, and prints a Markdown table.

    .venv/bin/python benchmarks/sweep_models.py [--calib-limit N] [--models a,b]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "sweep"
MODELS = {
    "squeezenet1.1": ("models/squeezenet1.1.onnx", "resize=256,crop=224,order=bgr,mean=104/117/123,std=1", 0),
    "mobilenet_v2_1.0_224": ("models/mobilenet_v2_1.0_224.onnx", "resize=256,crop=224,order=rgb,mean=128,std=128", 1),
    "efficientnet-lite0": (None, None, 0),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calib-limit", type=int, default=100)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--snr", default="10,13,16,19,22,26,30")
    args = parser.parse_args()
    from featcomp import sweep, zoo

    OUT.mkdir(parents=True, exist_ok=True)
    for name in args.models.split(","):
        rel, pre, offset = MODELS[name]
        model = zoo.efficientnet_lite0() if rel is None else str(SHARED / rel)
        pre = pre or zoo.DEFAULT_PREPROCESS
        images = SHARED / "data" / "imagenet-val-100"
        result = sweep.sweep(model, SHARED / "data" / "imagenet-calib-200", images, images / "labels.txt",
                             preprocess=pre, snrs=[float(v) for v in args.snr.split(",")], label_offset=offset,
                             calib_limit=args.calib_limit, name=name)
        (OUT / f"{name}.json").write_text(result.to_json() + "\n")
        sweep.plot(result, OUT / f"{name}.png")
        print(f"\n{name} ({result.images} images, calibration {result.calibration}, seconds {json.dumps({k: round(v) for k, v in result.seconds.items()})})")
        print("| codec | logit SNR dB | bits/value | payload | entropy | side | x int8 | top-1 | reference | agreement |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for p in result.points:
            print(f"| {p.codec} | {p.output_snr_db:g} | {p.bits_per_value:.2f} | {p.payload_bits_per_value:.2f} | "
                  f"{p.entropy_bits_per_value:.2f} | {p.side_bits_per_value:.2f} | {p.ratio_vs_int8:.2f} | "
                  f"{100 * p.top1:.0f}% | {100 * p.top1_reference:.0f}% | {100 * p.agreement:.0f}% |")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
