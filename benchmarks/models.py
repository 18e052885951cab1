"""The README's results table: DCT-CM on three real ImageNet classifiers, measured side by side.

    .venv/bin/python benchmarks/models.py [--shared ../shared] [-o benchmarks/results/models.json]

Per model: compress with --max-drop 1 on the 200 labelled calibration images (top-1 accuracy may
drop at most 1 point there), then on the 100 validation images at batch 1: real coded bytes (side
information included) vs int8 and fp32, bits/value, top-1 before/after and top-1 agreement. Extra
rows at fixed logit SNRs show the rate-accuracy trade-off without the search.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from featcomp import api, modelio, zoo
from featcomp.quality import MaxDrop, OutputSnr

MODELS = {
    "squeezenet1.1": ("models/squeezenet1.1.onnx", "resize=256,crop=224,order=bgr,mean=104/117/123,std=1", 0),
    "mobilenet_v2_1.0_224": ("models/mobilenet_v2_1.0_224.onnx", "resize=256,crop=224,order=rgb,mean=128,std=128", 1),
    "efficientnet-lite0": (None, zoo.DEFAULT_PREPROCESS, 0),
}


def run(name: str, shared: Path, snr: float | None) -> dict[str, object]:
    path, preprocess, offset = MODELS[name]
    model = modelio.load_model(shared / path) if path else zoo.efficientnet_lite0()
    calib, val = shared / "data/imagenet-calib-200", shared / "data/imagenet-val-100"
    t0 = time.perf_counter()
    if snr is not None:
        result = api.compress(model, calib, preprocess=preprocess, quality=OutputSnr(snr))
    else:
        result = api.compress(model, calib, preprocess=preprocess, quality=MaxDrop(1.0), labels=calib / "labels.txt",
                              label_offset=offset)
    seconds = time.perf_counter() - t0
    report = api.report(result.model, val, preprocess=preprocess, name=name)
    ev = api.evaluate(result.model, val, val / "labels.txt", preprocess=preprocess,
                      reference=modelio.prepare(model), label_offset=offset)
    t = report.totals
    return {
        "model": name, "setting": f"output SNR {snr:g} dB" if snr is not None else "max-drop 1 (labels)",
        "output_snr_db": result.allocation.output_snr_db, "sites": t.sites,
        "ratio_vs_int8": t.ratio_vs_int8, "ratio_vs_fp32": t.ratio_vs_fp32, "bits_per_value": t.bits_per_value,
        "traffic_saving_vs_int8": t.traffic_saving_vs_int8, "top1_before": ev.reference_top1, "top1_after": ev.top1,
        "agreement": ev.agreement, "compress_seconds": seconds,
        "modes": {m: sum(1 for s in report.sites if s.mode == m) for m in ("mask", "dct")},
    }


def markdown(rows: list[dict[str, object]]) -> str:
    head = ("| model | setting | x int8 | x fp32 | bits/value | traffic saved | top-1 before | top-1 after "
            "| agreement | sites (mask/dct) | compress s |\n|---|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        modes = r["modes"]
        lines.append(
            f"| {r['model']} | {r['setting']} | {r['ratio_vs_int8']:.2f} | {r['ratio_vs_fp32']:.2f} | "
            f"{r['bits_per_value']:.2f} | {r['traffic_saving_vs_int8']:.1%} | {r['top1_before']:.0%} | "
            f"{r['top1_after']:.0%} | {r['agreement']:.0%} | {r['sites']} ({modes['mask']}/{modes['dct']}) | "
            f"{r['compress_seconds']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--snr", default="14,20", help="extra rows at these logit SNRs (dB); empty for none")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results/models.json")
    args = parser.parse_args()
    rows = []
    for name in args.models.split(","):
        for snr in [None, *(float(s) for s in args.snr.split(",") if s)]:
            rows.append(run(name, args.shared, snr))
            print(markdown(rows[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(rows, indent=2) + "\n")
    print(markdown(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
