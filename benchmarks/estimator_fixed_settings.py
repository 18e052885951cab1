"""Both label-free estimators at fixed settings: does each read the same drop on calibration and held-out images?

    .venv/bin/python benchmarks/estimator_fixed_settings.py --model squeezenet1.1 [--fit calib --test val]
        [--limit 64] [--snrs 16,20,24,28] [--shared ../shared] [-o benchmarks/results/budget]

budget_validation.py judges an estimator through the search it drives; here the settings are fixed (the finest,
then allocate.allocate at each output SNR, the same stages as budget_validation: calibrate on the first `limit`
images of --fit, dct-cm fronts, sensitivities), so the flips estimator (featcomp.budget.estimate) and the smooth
one (smooth_estimate) are compared on the very same compressed models, on the calibration inputs and on the
held-out labelled images, next to the measured top-1 drop. Writes fixed-<model>-<fit>-<test>.md in -o.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from budget_validation import MODELS, SETS, bits, dctcm_stages, held_out, outputs

from featcomp import allocate as allocation
from featcomp import modelio, zoo
from featcomp.budget import DropEstimate, estimate, measured_drop, smooth_estimate
from featcomp.data import collect, open_inputs
from featcomp.modelio import input_spec, prepare
from featcomp.passes.insert import insert_pairs
from featcomp.preprocess import Preprocess


def cell(e: DropEstimate) -> str:
    return f"{e.drop:.2f} ± {1.96 * e.se:.2f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="squeezenet1.1", choices=list(MODELS))
    parser.add_argument("--fit", default="calib", choices=list(SETS))
    parser.add_argument("--test", default="val", choices=list(SETS))
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--snrs", default="16,20,24,28", help="output SNRs (dB) of the fixed settings")
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results/budget")
    args = parser.parse_args()
    path, preprocess, offset = MODELS[args.model]
    proto = prepare(modelio.load_model(args.shared / path) if path else zoo.efficientnet_lite0())
    reader = open_inputs(args.shared / SETS[args.fit], input_spec(proto), Preprocess.parse(preprocess), args.limit)
    feeds = collect(reader, input_spec(proto))
    sites, stats, fronts, gains = dctcm_stages(proto, feeds)
    test_feeds, labels = held_out(proto, args.shared / SETS[args.test], preprocess, None)
    labels = labels + offset
    fit_classes, fit_ref = outputs(proto, feeds)
    test_classes, test_ref = outputs(proto, test_feeds)
    power = allocation.output_power(proto, feeds)
    settings = {"finest (8-bit base)": {n: f[-1].site for n, f in fronts.items()}}
    for snr in sorted((float(s) for s in args.snrs.split(",")), reverse=True):
        settings[f"{snr:g} dB"] = allocation.allocate(fronts, gains, stats, power, snr)
    sizes = {s.name: s.values for s in sites}
    lines = [f"{args.model}, dct-cm, calibrated on {args.fit} ({len(feeds)}), held out {args.test} ({len(labels)})",
             "", "| setting | x int8 (est.) | flips, calibration | smooth, calibration | flips, held-out "
             "| smooth, held-out | measured drop (held-out, labels) |", "|---|---|---|---|---|---|---|"]
    for name, codecs in settings.items():
        model = insert_pairs(proto, codecs).model
        fc, fl = outputs(model, feeds)
        tc, tl = outputs(model, test_feeds)
        drop, se = measured_drop(test_classes, tc, labels)
        lines.append(f"| {name} | {8.0 / bits(fronts, codecs, sizes):.2f} | {cell(estimate(fit_ref, fc))} | "
                     f"{cell(smooth_estimate(fit_ref, fl))} | {cell(estimate(test_ref, tc))} | "
                     f"{cell(smooth_estimate(test_ref, tl))} | {drop:.1f} ± {1.96 * se:.1f} |")
        print(lines[-1], file=sys.stderr, flush=True)
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / f"fixed-{args.model}-{args.fit}-{args.test}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
