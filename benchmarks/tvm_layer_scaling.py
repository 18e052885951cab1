"""Per-function speed-up from 1 to N threads of one TVM build (default schedules): which compiled
functions do not scale, and what share of the N-thread time they are.

    .venv/bin/python benchmarks/tvm_layer_scaling.py --model mobilenet_v2_1.0_224 [efficientnet-lite0] \
        [--threads 2] [--rounds 20] [--top 15]
    .venv/bin/python benchmarks/tvm_layer_scaling.py --base REV --model ...   # a schedule change, function by function

Models: squeezenet1.1 and mobilenet_v2_1.0_224 from ../shared/models, efficientnet-lite0
(featcomp.zoo); the original model, batch 1, host target. The model is compiled and exported once;
child processes then profile it (TVM's VM instrument hook around every call, `build.profile_calls`)
with TVM_NUM_THREADS=1 and =N in turn, --repeats times each (TVM reads the thread count once per
process), with TVM_BIND_THREADS=0 unless set (in our runs about half of the pinned N-thread processes
ran at 1-thread speed; docs/tvm.md "Traps" has our reading of why). Per function: seconds per call
times calls per inference, pooled over the repeats; by default the fastest call of each function
(`--stat min`): on a shared 2-core machine most 2-thread calls wait for a descheduled worker, the
fastest shows what the schedule allows. Lists the functions whose N-thread time is more than 0.6x
their 1-thread time (the ones that do not use the second core), largest N-thread time first. The hook adds a few microseconds
per call, so tiny functions look worse than they are.

--base REV also compiles that commit (as tvm_model_ab.py does) and profiles both builds in
alternating child processes: per function (by name), base and work tree at 1 and N threads, and
the sums, so a schedule change shows where it gained or lost.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from tvm_model_ab import checkout, compile_side  # noqa: E402

PROFILE = """
import json, sys
import numpy as np
from featcomp.runtime_ops.tvm import build
x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
calls = build.profile_calls(sys.argv[1], [x], int(sys.argv[2]))
print(json.dumps(calls))
"""


def profile(lib: Path, threads: int, rounds: int) -> dict[str, list[float]]:
    """Per-call seconds by function name, from a child process running `rounds` inferences."""
    env = {"TVM_BIND_THREADS": "0", **os.environ, "TVM_NUM_THREADS": str(threads)}  # unpinned: docs/tvm.md "Traps"
    done = subprocess.run([sys.executable, "-c", PROFILE, str(lib), str(rounds)], env=env, capture_output=True,
                          text=True, cwd=ROOT)
    if done.returncode != 0:
        sys.exit(f"tvm_layer_scaling: profiling {lib.name} failed:\n{done.stderr[-2000:]}")
    calls: dict[str, list[float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return calls


def per_inference(samples: list[dict[str, list[float]]], rounds: int, stat: str) -> dict[str, float]:
    """Milliseconds per inference of each function: the per-call statistic x calls per inference."""
    names = {k for s in samples for k in s}
    out = {}
    for name in names:
        pooled = [t for s in samples for t in s.get(name, [])]
        per_call = min(pooled) if stat == "min" else statistics.median(pooled)
        out[name] = per_call * 1e3 * (len(pooled) // (rounds * len(samples)))
    return out


def compare(name: str, tree: Path, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Base and work tree builds of one model, profiled in alternating child processes at 1 and N threads."""
    libs = {side: tmp / f"{name}-{side}.so" for side in ("base", "work")}
    for side, lib in libs.items():
        compile_side(name, lib, args.threads, tree if side == "base" else None)
    samples: dict[tuple[str, int], list[dict[str, list[float]]]] = {}
    for repeat in range(args.repeats):
        for threads in (1, args.threads):
            order = list(libs.items()) if repeat % 2 == 0 else list(libs.items())[::-1]  # no side always second
            for side, lib in order:
                samples.setdefault((side, threads), []).append(profile(lib, threads, args.rounds))
    ms = {key: per_inference(v, args.rounds, args.stat) for key, v in samples.items()}
    n = args.threads
    names = sorted(set(ms[("base", n)]) | set(ms[("work", n)]), key=lambda k: -ms[("base", n)].get(k, 0.0))
    totals = {f"{side}_{t}": sum(ms[(side, t)].values()) for side in libs for t in (1, n)}
    print(f"\n{name} ({args.stat} per call x calls, ms per inference; load {os.getloadavg()[0]:.1f}): "
          + ", ".join(f"{k} {v:.2f}" for k, v in totals.items()))
    print(f"| function | base 1 | work 1 | base {n} | work {n} | work/base at {n} |")
    print("|---|---|---|---|---|---|")
    rows = []
    for k in names:
        row = {"function": k, **{f"{side}_{t}": ms[(side, t)].get(k, 0.0) for side in libs for t in (1, n)}}
        rows.append(row)
        if len(rows) <= args.top:
            ratio = row[f"work_{n}"] / row[f"base_{n}"] if row[f"base_{n}"] else float("nan")
            print(f"| {k} | {row['base_1']:.3f} | {row['work_1']:.3f} | {row[f'base_{n}']:.3f} | {row[f'work_{n}']:.3f} | {ratio:.2f} |")
    slow = [r for r in rows if r["work_1"] > 0 and r[f"work_{n}"] / r["work_1"] > 0.6]
    slow_ms = sum(r[f"work_{n}"] for r in slow)
    print(f"work tree: {len(slow)} of {len(rows)} functions take more than 0.6x their 1-thread time at {n} threads, "
          f"{slow_ms:.2f} ms = {slow_ms / totals[f'work_{n}']:.0%} of the {n}-thread sum: "
          + ", ".join(f"{r['function']} {r[f'work_{n}'] / r['work_1']:.2f}" for r in slow[:12]))
    return {"totals": totals, "rows": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["mobilenet_v2_1.0_224"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--stat", choices=("min", "median"), default="min",
                        help="per-call statistic: min (the call least disturbed by other tenants) or median")
    parser.add_argument("--json", type=Path, help="also write the per-function rows here")
    parser.add_argument("--base", help="a commit to compare against, function by function")
    args = parser.parse_args()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="tvm_layer_scaling-") as tmp:
        if args.base:
            tree = checkout(args.base, Path(tmp) / "base")
            for name in args.model:
                report[name] = compare(name, tree, Path(tmp), args)
            if args.json:
                args.json.write_text(json.dumps({"threads": args.threads, "base": args.base, "models": report}, indent=1) + "\n")
            return 0
        for name in args.model:
            lib = Path(tmp) / f"{name}.so"
            compile_side(name, lib, args.threads, None)
            one: list[dict[str, list[float]]] = []
            many: list[dict[str, list[float]]] = []
            for _ in range(args.repeats):
                one.append(profile(lib, 1, args.rounds))
                many.append(profile(lib, args.threads, args.rounds))
            t1, tn = per_inference(one, args.rounds, args.stat), per_inference(many, args.rounds, args.stat)
            total1, totaln = sum(t1.values()), sum(tn.values())
            rows = sorted(({"function": k, "ms_1": t1[k], "ms_n": tn.get(k, 0.0), "ratio": tn.get(k, 0.0) / t1[k]}
                           for k in t1 if t1[k] > 0), key=lambda r: -r["ms_n"])
            slow = [r for r in rows if r["ratio"] > 0.6]
            share = sum(r["ms_n"] for r in slow) / totaln
            print(f"\n{name}: sum of functions {total1:.2f} ms at 1 thread, {totaln:.2f} ms at {args.threads} "
                  f"({totaln / total1:.2f}x); {len(slow)} of {len(rows)} functions above 0.6x, "
                  f"{share:.0%} of the {args.threads}-thread time; load {os.getloadavg()[0]:.1f}")
            print(f"| function | 1 thread ms | {args.threads} threads ms | ratio | share of {args.threads}-thread time |")
            print("|---|---|---|---|---|")
            for r in slow[:args.top]:
                print(f"| {r['function']} | {r['ms_1']:.3f} | {r['ms_n']:.3f} | {r['ratio']:.2f} | {r['ms_n'] / totaln:.1%} |")
            report[name] = {"total_ms_1": total1, "total_ms_n": totaln, "rows": rows}
    if args.json:
        args.json.write_text(json.dumps({"threads": args.threads, "rounds": args.rounds, "models": report}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
