"""Issue 12: latency of the compressed model with stored codes (the consumers read the 8-bit symbols)
against the compiled original, with the valid interleaved protocol of tvm_model_ab.py, and optionally
function by function (tvm_layer_scaling.py's profiler).

    .venv/bin/python benchmarks/tvm_stored_ab.py [--threads 2] [--rounds 40] [--model mobilenet_v2_1.0_224 ...]
        [--cache DIR] [--profile] [--base REV] [--json benchmarks/results/tvm/stored-ab-t2.json]

Models: MobileNetV2, EfficientNet-Lite0 and SqueezeNet 1.1, compressed as tvm_bench.py does (the
benchmarks' default: 20 dB logit SNR, 16 calibration images; --cache keeps the compressed models and
the original's library between runs; the compressed model is compiled afresh every run). Both sides are compiled for featcomp's x86_64 target (x86-64-v2) with
`num-cores` = --threads, exported, and loaded here; batch 1. Timing: tvm_model_ab.interleaved, i.e.
ORT without spinning, ORT as shipped in its own slot between pauses, original ("base") and
compressed ("work") swapping places every round; TVM_NUM_THREADS = ORT intra-op threads = --threads,
TVM_BIND_THREADS=0 unless set (docs/tvm.md "Traps"). Ratios: medians and 10th percentiles (the
latter least disturbed by other tenants of a shared machine).

--profile then profiles both libraries per function in alternating child processes
(tvm_layer_scaling.profile, fastest call x calls per inference) and lists the compressed model's
largest functions and the original's, grouped by kind (producers with a fused encode, consumers
reading codes, kept decodes, the rest).

--base REV compares the compressed model compiled by that commit (`git archive`, as tvm_model_ab.py
does) with the working tree's instead: a schedule or kernel change, measured the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from tvm_model_ab import checkout, interleaved, ort_runs, vm_runner  # noqa: E402

NAMES = ("mobilenet_v2_1.0_224", "efficientnet-lite0", "squeezenet1.1")


def compressed_models(names: list[str], cache: Path) -> dict[str, tuple[Path, Path]]:
    """(original, compressed) model files per model, compressed like tvm_bench.py and kept in `cache`."""
    from featcomp import modelio
    from tvm_bench import models

    paths = {n: (cache / f"{n}.orig.onnx", cache / f"{n}.fc.onnx") for n in names}
    if not all(p.exists() for pair in paths.values() for p in pair):
        for name, original, compressed, _ in models(quick=False):
            if name in paths:
                modelio.save_model(original, paths[name][0])
                modelio.save_model(compressed, paths[name][1])
    return paths


COMPILE = """
import sys
from featcomp import modelio
from featcomp.deploy import targets
from featcomp.runtime_ops.tvm import build
model = modelio.load_model(sys.argv[1])
target = build.make_target({**targets.tvm_spec("x86_64"), "num-cores": int(sys.argv[3])})
compiled = build.compile_model(model, target, shape_dict={modelio.input_spec(model).name: [1, 3, 224, 224]})
build.export(compiled, sys.argv[2])
"""


def library(model: Path, out: Path, threads: int, tree: Path | None = None) -> Path:
    """The model compiled (stored codes: the default compile) for featcomp's x86_64 target and exported,
    in a child process; tree: a commit's tree (tvm_model_ab.checkout), None = the working tree."""
    if out.exists():
        return out
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    done = subprocess.run([sys.executable, "-c", COMPILE, str(model), str(out), str(threads)], env=env,
                          capture_output=True, text=True, cwd=tree or ROOT)
    if done.returncode != 0:
        sys.exit(f"tvm_stored_ab: compiling {model.name} failed:\n{done.stderr[-2000:]}")
    return out


def kind(function: str) -> str:
    """A compiled function's role, from the names fuse_decode and FuseOps give it: "fc_encode" = writes
    a site's codes (an encode fused into its producer), "fc_decode" = a decode merged into it (reads
    a site's codes); a conv whose decode is folded into its weights keeps its plain name."""
    writes, reads = "fc_encode" in function, "fc_decode" in function
    if function.startswith("fc_decode") or function.startswith("fused_fc_decode"):
        return "decode kernel kept"
    return {(True, True): "encode + merged decode", (True, False): "producer + encode",
            (False, True): "merged decode"}.get((writes, reads), "other (incl. folded convs)")


def layer_key(function: str) -> str:
    """The layer a compiled function computes, comparable across builds: the name without the fused
    encode/decode suffixes and the conv's number (TVM numbers each model's functions on its own; the
    fused ops after the conv keep theirs, e.g. add2_maximum1_minimum1)."""
    base = re.sub(r"_fc_(en|de)code.*$", "", function)
    return re.sub(r"conv2d\d+", "conv2d", base)


def gaps(ms: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Per layer (layer_key), work minus base ms per inference, largest first, with the share of the total gap."""
    sums: dict[str, dict[str, float]] = {}
    for side, functions in ms.items():
        for name, t in functions.items():
            sums.setdefault(layer_key(name), {"base": 0.0, "work": 0.0})[side] += t
    total = sum(v["work"] - v["base"] for v in sums.values())
    rows = [{"layer": k, **v, "gap": v["work"] - v["base"], "share": (v["work"] - v["base"]) / total if total else 0.0}
            for k, v in sums.items()]
    return sorted(rows, key=lambda r: -r["gap"])


def per_function(libs: dict[str, Path], threads: int, rounds: int, repeats: int, top: int) -> dict[str, Any]:
    """Per function ms per inference of both libraries (fastest call x calls), and the gap's largest parts."""
    from tvm_layer_scaling import per_inference, profile

    samples: dict[str, list[dict[str, list[float]]]] = {side: [] for side in libs}
    for _ in range(repeats):
        for side, lib in libs.items():
            samples[side].append(profile(lib, threads, rounds))
    ms = {side: per_inference(s, rounds, "min") for side, s in samples.items()}
    totals = {side: sum(v.values()) for side, v in ms.items()}
    for side in libs:
        print(f"  {side}: sum of functions {totals[side]:.2f} ms; largest:")
        for name, t in sorted(ms[side].items(), key=lambda kv: -kv[1])[:top]:
            print(f"    {t:7.3f} ms {t / totals[side]:5.1%}  [{kind(name)}] {name}")
    groups: dict[str, float] = {}
    for name, t in ms["work"].items():
        groups[kind(name)] = groups.get(kind(name), 0.0) + t
    rows = gaps(ms)
    print(f"  largest gaps by layer (work - base, of the total {totals['work'] - totals['base']:+.2f} ms):")
    for r in rows[:top]:
        print(f"    {r['gap']:+7.3f} ms {r['share']:6.1%}  {r['base']:.3f} -> {r['work']:.3f}  {r['layer']}")
    print("  compressed by kind: " + ", ".join(f"{k} {v:.2f} ms" for k, v in sorted(groups.items(), key=lambda kv: -kv[1])))
    return {"totals": totals, "functions": ms, "kinds": groups, "gaps": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=list(NAMES), choices=NAMES)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--cache", type=Path, help="directory that keeps compressed models and libraries between runs")
    parser.add_argument("--profile", action="store_true", help="also profile both libraries function by function")
    parser.add_argument("--profile-rounds", type=int, default=10)
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--base", help="a commit: compare the compressed model compiled there ('base') with the "
                                       "working tree's, instead of the original with the compressed")
    args = parser.parse_args()
    os.environ["TVM_NUM_THREADS"] = str(args.threads)
    os.environ.setdefault("TVM_BIND_THREADS", "0")  # read when TVM's thread pool starts (docs/tvm.md "Traps")
    from featcomp.modelio import load_model

    report: dict[str, Any] = {"threads": args.threads, "rounds": args.rounds, "base": args.base, "models": {}}
    with tempfile.TemporaryDirectory(prefix="tvm_stored_ab-") as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        pairs = compressed_models(args.model, cache)
        tree = checkout(args.base, Path(tmp) / "base") if args.base else None
        sides = ("compressed at " + args.base, "compressed") if args.base else ("original", "compressed")
        for name in args.model:
            original_path, compressed_path = pairs[name]
            original = load_model(original_path)
            fc = cache / f"{name}-fc-t{args.threads}.so"
            fc.unlink(missing_ok=True)  # compiled fresh: the working tree may have changed since the cache
            libs = {"base": (library(compressed_path, Path(tmp) / f"{name}-fc-base.so", args.threads, tree) if tree
                             else library(original_path, cache / f"{name}-orig-t{args.threads}.so", args.threads)),
                    "work": library(compressed_path, fc, args.threads)}
            x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
            ref, runs = ort_runs(original, x, args.threads)
            checks: dict[str, Any] = {}
            outs = {}
            for side, lib in libs.items():
                runs[side], out = vm_runner(lib, x)
                outs[side] = out = out.reshape(ref.shape)
                checks[side] = {"max_abs_diff_vs_ort": float(np.abs(out - ref).max()), "same_top1": bool(out.argmax() == ref.argmax())}
            if args.base:  # a schedule or kernel change must not move a single bit of the output
                checks["bit_identical_to_base"] = bool(np.array_equal(outs["base"], outs["work"]))
            times = interleaved(runs, args.rounds)
            med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
            low = {k: float(np.percentile(v, 10)) * 1e3 for k, v in times.items()}
            load = os.getloadavg()[0]
            row = {"ms_median": med, "ms_p10": low, "ratio_median": med["work"] / med["base"],
                   "ratio_p10": low["work"] / low["base"], "load": load, "checks": checks}
            print(f"{name}, {args.threads} thread(s), {args.rounds} rounds, load {load:.1f}: {sides[0]} {med['base']:.2f} ms, "
                  f"{sides[1]} {med['work']:.2f} ms, ratio {row['ratio_median']:.2f} (10th percentiles "
                  f"{low['base']:.2f} / {low['work']:.2f} ms: {row['ratio_p10']:.2f}); ORT {med['ort']:.2f} ms "
                  f"(spinning {med['ort_spin']:.2f}); top-1 = ORT: {checks['work']['same_top1']}"
                  + (f"; bit-identical to base: {checks['bit_identical_to_base']}" if args.base else ""), flush=True)
            if args.profile:
                row["profile"] = per_function(libs, args.threads, args.profile_rounds, 2, args.top)
            report["models"][name] = row
    if args.json:
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
