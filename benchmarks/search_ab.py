"""The accuracy search on real pairs (as before passes/simulate.py) vs on the stand-in: same result? how fast?

    .venv/bin/python benchmarks/search_ab.py MODEL [--limit 64] [--shared ../shared] [-o DIR]

MODEL is a key of budget_validation.MODELS. Calibrates and fits the dct-cm fronts once (defaults), then runs
the sensitivity probes and the label-free `--max-drop 1` search twice in one process, real pairs first, and
checks that the chosen codecs (param ids), output SNR, estimate and sensitivities are identical.
Writes DIR/search_ab_MODEL_N.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import onnx
from budget_validation import MODELS
from rate_table import CALIB, images

from featcomp import allocate as allocation
from featcomp import api, modelio
from featcomp.codecs import SiteCodec, make_codec
from featcomp.data import image_files
from featcomp.modelio import prepare
from featcomp.passes.insert import insert_pairs
from featcomp.passes.simulate import simulate_pairs
from featcomp.passes.sites import find_sites


def real_pairs(model: onnx.ModelProto, codecs: dict[str, SiteCodec]) -> onnx.ModelProto:
    return insert_pairs(model, codecs).model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=list(MODELS))
    parser.add_argument("--limit", type=int, default=64)
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared")
    parser.add_argument("-o", "--output", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    path, preprocess, _ = MODELS[args.model]
    proto = prepare(modelio.load_model(args.shared / path))
    feeds = images(proto, args.shared / CALIB, preprocess, image_files(args.shared / CALIB)[:args.limit])
    family = make_codec("dct-cm")
    sites = find_sites(proto)
    t0 = time.perf_counter()
    stats = api.calibrate(proto, feeds, sites=sites, stats_options=family.stats_options)
    t1 = time.perf_counter()
    fronts = {s.name: family.candidates(stats[s.name]) for s in sites}
    t2 = time.perf_counter()
    out: dict[str, Any] = {"model": args.model, "calib_inputs": len(feeds), "calibrate_s": t1 - t0,
                           "fronts_s": t2 - t1, "runs": []}
    print(f"{args.model}: calibrate {t1 - t0:.1f} s, fronts {t2 - t1:.1f} s", flush=True)
    for mode, stand_in in (("real pairs", real_pairs), ("stand-in", simulate_pairs)):
        allocation.simulate_pairs = stand_in  # what sensitivities() and search() insert
        t0 = time.perf_counter()
        gains = allocation.sensitivities(proto, sites, feeds[:api.SENSITIVITY_BATCHES], fronts)
        t1 = time.perf_counter()
        found = allocation.search(proto, fronts, gains, stats, feeds, 1.0)
        t2 = time.perf_counter()
        assert found.estimate is not None
        out["runs"].append({"mode": mode, "sensitivities_s": t1 - t0, "search_s": t2 - t1,
                            "output_snr_db": found.output_snr_db, "score": found.score,
                            "estimate": found.estimate.as_dict(),
                            "params": {k: c.param_id for k, c in found.codecs.items()}, "gains": gains})
        print(f"{mode}: sensitivities {t1 - t0:.1f} s, search {t2 - t1:.1f} s, output SNR "
              f"{found.output_snr_db:.3f} dB, score {found.score}", flush=True)
    allocation.simulate_pairs = simulate_pairs
    a, b = out["runs"]
    out["same_result"] = all(a[k] == b[k] for k in ("params", "output_snr_db", "score", "estimate"))
    out["same_sensitivities"] = a["gains"] == b["gains"]
    print(f"same codecs, SNR, score, estimate: {out['same_result']}; same sensitivities: {out['same_sensitivities']}")
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / f"search_ab_{args.model}_{len(feeds)}.json").write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
