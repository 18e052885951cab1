"""MetaSchedule's random vs XGBoost cost model at one small trial budget on EfficientNet-Lite0 (original).

    .venv/bin/python benchmarks/tune_cost_models.py [--tune 64] [--threads 2] [--rounds 20]

Each cost model tunes from an empty database (a fresh temporary folder) with the same budget and seed;
then the untuned build (default schedules) and the two tuned builds are timed interleaved call by call
(medians). The random run hides xgboost, the way featcomp falls back when it is not installed.
Writes benchmarks/results/tvm/tune-cost-models-tune<N>.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "tvm"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tune", type=int, default=64, metavar="N", help="measured trials per cost model")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20, help="interleaved timing rounds")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from tvm_bench import _interleaved

    from featcomp import zoo
    from featcomp.modelio import input_spec
    from featcomp.runtime_ops.tvm import build, tune

    model = zoo.efficientnet_lite0()
    spec = input_spec(model)
    shapes = {spec.name: [1, 3, 224, 224]}
    target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]),
                                "num-cores": args.threads})
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    built: dict[str, Any] = {"untuned": build.compile_model(model, target, shape_dict=shapes)}
    rows: dict[str, dict[str, Any]] = {}
    has_xgboost = tune.has_xgboost
    for kind in ("random", "xgb"):
        tune.has_xgboost = (lambda: False) if kind == "random" else has_xgboost  # type: ignore[method-assign]
        with tempfile.TemporaryDirectory(prefix=f"tune-{kind}-") as db:
            t0 = time.perf_counter()
            built[kind] = build.compile_model(model, target, shape_dict=shapes, tune_trials=args.tune, tune_dir=Path(db))
            rows[kind] = {"compile_s": time.perf_counter() - t0, "cost_model": built[kind].stats["cost_model"],
                          "tuned_tasks": built[kind].stats["tuned_tasks"],
                          "from_database": built[kind].stats["from_database"]}
    tune.has_xgboost = has_xgboost  # type: ignore[method-assign]
    times = _interleaved({k: build.runner(c, [x]) for k, c in built.items()}, args.rounds)
    ref = build.run_local(built["untuned"], [x])[0]
    for kind in built:
        ms = statistics.median(times[kind]) * 1e3
        diff = float(np.abs(build.run_local(built[kind], [x])[0] - ref).max())
        rows.setdefault(kind, {}).update({"median_ms": ms, "max_abs_diff_vs_untuned": diff})
        print(f"{kind}: {ms:.1f} ms median over {args.rounds} rounds, {rows[kind]}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"tune-cost-models-tune{args.tune}.json"
    path.write_text(json.dumps({"tune": args.tune, "threads": args.threads, "rounds": args.rounds, "rows": rows},
                               indent=1) + "\n")
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
