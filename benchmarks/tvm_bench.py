"""TVM benchmarks: codec kernels vs a plain copy, end-to-end latency with and without the codec
pairs vs ONNX Runtime (same host, same threads, same run), compile time, planned activation
memory, bundle size per target.

    .venv/bin/python benchmarks/tvm_bench.py [--threads 2] [--quick] [--tune N] [--rounds 30] [--no-bundles]
    .venv/bin/python benchmarks/tvm_bench.py --stored-codes   # issue 12: decodes folded/fused vs kernels

Writes benchmarks/results/tvm/results.json and results.md. The models are the embedded
EfficientNet-Lite0 and, when ../shared is there, MobileNetV2, compressed at 20 dB logit SNR
(calibrated on 16 images of imagenet-calib-200, or on the 6 zoo photos without ../shared).
Latency: batch 1, medians of --rounds rounds in which ORT (intra-op threads not spinning, see
docs/tvm.md "Traps"), TVM with the default (tiled conv)
schedules and TVM with the generic schedule only run one call each in turn. Then the top-10
functions of MobileNetV2 (TVM's VM instrument hook). The kernel rows run in a child process on one thread
(TVM_NUM_THREADS=1), next to a one-thread numpy copy: on a shared machine a two-thread kernel's
time mostly measures the other tenants.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.quality import OutputSnr

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "tvm"
KERNEL_SHAPES = [(96, 112, 112, 1), (32, 112, 112, 8), (64, 56, 56, 8), (144, 56, 56, 16), (576, 14, 14, 16)]


def models(quick: bool) -> list[tuple[str, Any, Any, str]]:
    """(name, original, compressed, preprocess) with the compressed model calibrated here."""
    from featcomp import api, modelio, zoo
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec
    from featcomp.preprocess import Preprocess

    todo: list[tuple[str, Any, str]] = [("efficientnet-lite0", zoo.efficientnet_lite0(), zoo.DEFAULT_PREPROCESS)]
    if (SHARED / "models/mobilenet_v2_1.0_224.onnx").exists() and not quick:
        todo.append(("mobilenet_v2_1.0_224", modelio.load_model(SHARED / "models/mobilenet_v2_1.0_224.onnx"),
                     "resize=256,crop=224,order=rgb,mean=128,std=128"))
    if (SHARED / "models/squeezenet1.1.onnx").exists() and not quick:
        todo.append(("squeezenet1.1", modelio.load_model(SHARED / "models/squeezenet1.1.onnx"),
                     "resize=256,crop=224,order=bgr,mean=104/117/123,std=1"))
    out = []
    for name, model, pre in todo:
        model = modelio.prepare(model)
        calib: Any = SHARED / "data/imagenet-calib-200"
        if not calib.exists():
            calib = ImageReader(zoo.sample_images(), Preprocess.parse(pre), input_spec(model), None, role="calibration")
        result = api.compress(model, calib, preprocess=pre if not isinstance(calib, ImageReader) else None,
                              limit=16, quality=OutputSnr(20.0))
        out.append((name, model, result.model, pre))
    return out


def kernels(threads: int) -> list[dict[str, Any]]:
    from featcomp.runtime_ops.tvm import build, kernels, schedules

    target = build.make_target("host")
    rule = schedules.rule_for(target)
    rng = np.random.default_rng(0)
    rows = []
    for c, h, w, g in KERNEL_SHAPES:
        k, p = c // g, h * w
        x = rng.normal(size=(1, c, h, w)).astype(np.float32)
        view = (1, c, h, w) if g == 1 else (1, k, g, p)
        side = [np.full((k, g), v, np.float32) for v in (0.05, -127, 127)]
        tail = [np.eye(g, dtype=np.float32)[None].repeat(k, 0) * 64, *[np.full((k, g), v, np.float32) for v in (4, -500, 500)]]
        y = np.zeros(view, np.int16)
        enc = kernels.encode_kernel("DctCmEncode", 1, c, h, w, g)
        dec = kernels.decode_kernel("DctCmDecode", 1, c, h, w, g)
        if g > 1:
            enc, dec = schedules.schedule_encode(enc, rule), schedules.schedule_decode(dec, rule)
        t_enc = build.time_kernel(enc, target, [x.reshape(view), *side, *tail, y])
        t_dec = build.time_kernel(dec, target, [y, np.eye(g, dtype=np.float32)[None].repeat(k, 0), x.reshape(view).copy()])
        dst = np.empty_like(x)
        copies = []
        for _ in range(7):
            t0 = time.perf_counter()
            for _ in range(20):
                np.copyto(dst, x)
            copies.append((time.perf_counter() - t0) / 20)
        t_copy = min(copies)
        rows.append({"shape": f"{c}x{h}x{w}", "G": g, "copy_us": t_copy * 1e6, "encode_us": t_enc * 1e6,
                     "decode_us": t_dec * 1e6, "copy_GBps": x.nbytes / t_copy / 1e9,
                     "encode_x_copy": t_enc / t_copy, "decode_x_copy": t_dec / t_copy})
    return rows


def ort_ms(model: Any, x: np.ndarray, threads: int, runs: int = 30) -> float:
    from featcomp.runtime_ops import ort

    sess = ort.session(model, threads=threads)
    name = sess.get_inputs()[0].name
    for _ in range(5):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def end_to_end(cases: list[tuple[str, Any, Any, str]], threads: int, tune: int, rounds: int) -> list[dict[str, Any]]:
    """Per model and variant: ORT, TVM with the default (tiled) schedules and TVM with the generic
    schedule only (the previous default), timed interleaved call by call in `rounds` rounds; medians."""
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import build

    from featcomp.deploy.runtime import cache_dir
    from featcomp.modelio import input_spec

    target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]), "num-cores": threads})
    rows = []
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    for name, original, compressed, _ in cases:
        for variant, model in (("original", original), ("compressed", compressed)):
            spec = input_spec(model)
            tune_dir = cache_dir() / "tuning" / f"{name}-{variant}" if tune else None  # per machine: not in the repo
            t0 = time.perf_counter()
            compiled = build.compile_model(model, target, shape_dict={spec.name: [1, 3, 224, 224]},
                                           tune_trials=tune, tune_dir=tune_dir)
            compile_s = time.perf_counter() - t0
            generic = build.compile_model(model, target, shape_dict={spec.name: [1, 3, 224, 224]}, tiled=False)
            sess = ort.session(model, threads=threads, spinning=False)  # a spinning ORT slows the next TVM call (docs/tvm.md "Traps")
            runs = {"ort": lambda: sess.run(None, {spec.name: x}), "tvm": build.runner(compiled, [x]),
                    "generic": build.runner(generic, [x])}
            times = _interleaved(runs, rounds)
            out = build.run_local(compiled, [x])[0]
            ref = np.asarray(next(iter(ort.run(sess, {spec.name: x}).values())))
            o_ms, tvm_ms, g_ms = (statistics.median(times[k]) * 1e3 for k in ("ort", "tvm", "generic"))
            rows.append({"model": name, "variant": variant, "ort_ms": o_ms, "tvm_ms": tvm_ms, "tvm_over_ort": tvm_ms / o_ms,
                         "generic_ms": g_ms, "generic_over_ort": g_ms / o_ms, "rounds": rounds,
                         "compile_s": compile_s, "seconds": compiled.seconds, "stats": compiled.stats,
                         "max_abs_diff_vs_ort": float(np.abs(out - ref).max()), "same_top1": bool(out.argmax() == ref.argmax())})
            print(f"{name} {variant}: ORT {o_ms:.1f} ms, TVM {tvm_ms:.1f} ms ({tvm_ms / o_ms:.2f}x), generic schedule "
                  f"{g_ms:.1f} ms ({g_ms / o_ms:.2f}x), compile {compile_s:.1f} s", flush=True)
    return rows


FUSE_VARIANTS = (("original", False, True), ("compressed, decode kernels", True, False), ("compressed", True, True))


def stored_codes(cases: list[tuple[str, Any, Any, str]], threads: int, rounds: int = 9,
                 target_name: str = "x86_64") -> list[dict[str, Any]]:
    """Issue 12: the compressed model whose consumers read the stored 8-bit symbols (fuse_decode) next
    to the original and to the compressed model with separate decode kernels (the fp32 decoded tensor
    in memory): planned activation memory, and latency interleaved round by round (each round: every
    variant once, 10 runs each; median over rounds)."""
    import tvm
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import build
    from tvm import relax

    from featcomp.modelio import input_spec

    if target_name == "host":  # this CPU's widest vectors (AVX-512 here: one instruction widens int8 -> float32)
        target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]), "num-cores": threads})
    else:  # featcomp's x86_64 target (x86-64-v2: SSE4.2)
        from featcomp.deploy import targets

        target = build.make_target({**targets.tvm_spec("x86_64"), "num-cores": threads})
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    rows = []
    for name, original, compressed, _ in cases:
        built = []
        for variant, use_compressed, fuse in FUSE_VARIANTS:
            model = compressed if use_compressed else original
            spec = input_spec(model)
            compiled = build.compile_model(model, target, shape_dict={spec.name: [1, 3, 224, 224]}, fuse=fuse)
            out = build.run_local(compiled, [x])[0]
            ref = np.asarray(next(iter(ort.run(ort.session(model, threads=threads), {spec.name: x}).values())))
            vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
            timer = vm.time_evaluator("main", tvm.cpu(), number=10, repeat=1, min_repeat_ms=0)
            built.append((variant, compiled, timer, out, ref))
        args = [tvm.runtime.tensor(x)]
        times: dict[str, list[float]] = {v: [] for v, *_ in built}
        for _ in range(rounds):
            for variant, _, timer, _, _ in built:
                times[variant].append(float(timer(*args).results[0]))
        base_ms = statistics.median(times["original"]) * 1e3
        base_mb = built[0][1].stats["memory"]["activation_bytes"] / 1e6
        for variant, compiled, _, out, ref in built:
            ms = statistics.median(times[variant]) * 1e3
            mb = compiled.stats["memory"]["activation_bytes"] / 1e6
            sites = compiled.stats.get("sites", [])
            rows.append({"model": name, "variant": variant, "tvm_ms": ms, "ms_x_original": ms / base_ms,
                         "planned_MB": mb, "planned_x_original": mb / base_mb,
                         "storages": compiled.stats["memory"]["storages"],
                         "sites_in_consumers": sum(1 for r in sites if r["decode"] == "in consumers"),
                         "sites": len(sites), "stored_MB": sum(r["stored"]["bytes"] for r in sites) / 1e6,
                         "max_abs_diff_vs_ort": float(np.abs(out - ref).max()), "same_top1": bool(out.argmax() == ref.argmax())})
            print(f"{name} {variant}: {ms:.1f} ms ({ms / base_ms:.2f}x), planned {mb:.2f} MB ({mb / base_mb:.2f}x)", flush=True)
    return rows


def stored_codes_markdown(rows: list[dict[str, Any]], threads: int, target_name: str = "x86_64") -> str:
    lines = [f"{target_name} target, batch 1, {threads} threads, latency interleaved (median of rounds)", "",
             "| model | variant | TVM ms | x original | planned activations MB | x original | sites read in consumers | "
             "top-1 = ORT | max abs diff |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        sites = f"{r['sites_in_consumers']} / {r['sites']}" if r["sites"] else "-"
        lines.append(f"| {r['model']} | {r['variant']} | {r['tvm_ms']:.1f} | {r['ms_x_original']:.2f} | {r['planned_MB']:.2f} | "
                     f"{r['planned_x_original']:.2f} | {sites} | {r['same_top1']} | {r['max_abs_diff_vs_ort']:.2g} |")
    return "\n".join(lines) + "\n"


def _interleaved(runs: dict[str, Any], rounds: int) -> dict[str, list[float]]:
    """Seconds per call of each engine, one call each per round in turn (after 3 warm-up rounds)."""
    times: dict[str, list[float]] = {k: [] for k in runs}
    for r in range(rounds + 3):
        for key, run in runs.items():
            t0 = time.perf_counter()
            run()
            if r >= 3:
                times[key].append(time.perf_counter() - t0)
    return times


def layer_breakdown(case: tuple[str, Any, Any, str], threads: int, rounds: int = 20, top: int = 10) -> dict[str, Any]:
    """Where one model's time goes: median ms per call of each compiled function (TVM's VM instrument
    hook around every call), times calls per inference, the `top` largest."""
    from featcomp.runtime_ops.tvm import build

    from featcomp.modelio import input_spec

    name, model, _, _ = case
    spec = input_spec(model)
    target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]), "num-cores": threads})
    compiled = build.compile_model(model, target, shape_dict={spec.name: [1, 3, 224, 224]})
    x = np.random.default_rng(1).normal(size=(1, 3, 224, 224)).astype(np.float32)
    per_call = build.profile_calls(compiled, [x], rounds)
    rows = sorted(({"function": k, "calls": len(v) // rounds, "ms": statistics.median(v) * 1e3 * (len(v) // rounds)}
                   for k, v in per_call.items()), key=lambda r: -r["ms"])
    total = sum(r["ms"] for r in rows)
    return {"model": name, "total_ms": total, "top": [{**r, "share": r["ms"] / total} for r in rows[:top]]}


def bundles(cases: list[tuple[str, Any, Any, str]]) -> list[dict[str, Any]]:
    from featcomp.deploy.compile import compile_bundle
    from featcomp.modelio import save_model

    rows = []
    name, _, compressed, pre = cases[0]
    with tempfile.TemporaryDirectory() as tmp:
        path = save_model(compressed, Path(tmp) / f"{name}.fc.onnx")
        for target in ("rasp4b64", "x86_64"):
            manifest = compile_bundle(path, target, Path(tmp) / target, preprocess=pre)
            files = manifest["files"]
            rows.append({"model": f"{name} (compressed)", "target": target, "bytes": manifest["bytes"],
                         "model_so": files["model.so"], "runtime": files["lib/libtvm_runtime.so"] + files["lib/libtvm_ffi.so"],
                         "runner": files["runner"], "compile_s": manifest["compile"]["seconds"]["total"]})
    return rows


def markdown(result: dict[str, Any]) -> str:
    lines = [f"threads: {result['threads']} (kernel rows: 1), host: {result['host']}, load average (1/5/15 min) before and "
             f"after the end-to-end rows: {result.get('load_average', '-')} on 2 cores shared by 8 engineers", "",
             "| site shape | G | copy GB/s | encode µs | decode µs | encode / copy | decode / copy |", "|---|---|---|---|---|---|---|"]
    for r in result["kernels"]:
        lines.append(f"| {r['shape']} | {r['G']} | {r['copy_GBps']:.1f} | {r['encode_us']:.0f} | {r['decode_us']:.0f} | "
                     f"{r['encode_x_copy']:.1f}x | {r['decode_x_copy']:.1f}x |")
    lines += ["", "| model | variant | ORT ms | TVM ms | TVM / ORT | generic schedule ms | generic / ORT | convs tiled | compile s | "
              "planned activations MB | encode fused / alone | top-1 = ORT | max abs diff |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["end_to_end"]:
        f = r["stats"]["fusion"]
        lines.append(f"| {r['model']} | {r['variant']} | {r['ort_ms']:.1f} | {r['tvm_ms']:.1f} | {r['tvm_over_ort']:.2f} | "
                     f"{r.get('generic_ms', float('nan')):.1f} | {r.get('generic_over_ort', float('nan')):.2f} | "
                     f"{r['stats'].get('conv_tiled', '-')} | {r['compile_s']:.1f} | {r['stats']['memory']['activation_bytes'] / 1e6:.2f} | "
                     f"{f['encode_fused']} / {f['encode_alone']} | {r['same_top1']} | {r['max_abs_diff_vs_ort']:.2g} |")
    if result.get("layers"):
        b = result["layers"]
        lines += ["", f"Top {len(b['top'])} functions of {b['model']} (original, TVM default schedules, {result['threads']} threads; "
                  f"sum of all calls {b['total_ms']:.1f} ms):", "",
                  "| function | calls | ms per inference | share |", "|---|---|---|---|"]
        lines += [f"| {r['function']} | {r['calls']} | {r['ms']:.2f} | {100 * r['share']:.1f}% |" for r in b["top"]]
    lines += ["", "| bundle | target | total MB | model.so MB | TVM runtime MB | runner kB | compile s |", "|---|---|---|---|---|---|---|"]
    for r in result["bundles"]:
        lines.append(f"| {r['model']} | {r['target']} | {r['bytes'] / 1e6:.1f} | {r['model_so'] / 1e6:.1f} | "
                     f"{r['runtime'] / 1e6:.1f} | {r['runner'] / 1e3:.0f} | {r['compile_s']:.1f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="EfficientNet-Lite0 only")
    parser.add_argument("--tune", type=int, default=0, metavar="N", help="MetaSchedule trials per model (0: default schedules)")
    parser.add_argument("--stored-codes", action="store_true",
                        help="only the issue-12 comparison: original vs compressed with decode kernels vs compressed "
                             "reading the stored codes (results-stored-codes.{json,md})")
    parser.add_argument("--stored-codes-target", choices=("x86_64", "host"), default="x86_64",
                        help="target of --stored-codes (host: results-stored-codes-host.{json,md})")
    parser.add_argument("--rounds", type=int, default=30, help="interleaved timing rounds per model and variant")
    parser.add_argument("--no-bundles", action="store_true", help="skip the bundle-size rows")
    parser.add_argument("--kernels-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.kernels_only:
        print(json.dumps(kernels(1)))
        return 0
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    os.environ.setdefault("TVM_BIND_THREADS", "0")  # unpinned workers, as ORT's (docs/tvm.md "Traps")
    if args.stored_codes:
        where = args.stored_codes_target
        rows = stored_codes(models(args.quick), args.threads, target_name=where)
        OUT.mkdir(parents=True, exist_ok=True)
        stem = "results-stored-codes" + ("-host" if where == "host" else "")
        (OUT / f"{stem}.json").write_text(json.dumps({"threads": args.threads, "target": where, "rows": rows}, indent=2) + "\n")
        text = stored_codes_markdown(rows, args.threads, where)
        (OUT / f"{stem}.md").write_text(text)
        sys.stdout.write(text)
        return 0
    import platform
    import subprocess

    result: dict[str, Any] = {"threads": args.threads, "host": platform.processor() or platform.machine(), "tune": args.tune}
    child = subprocess.run([sys.executable, __file__, "--kernels-only"], env={**os.environ, "TVM_NUM_THREADS": "1"},
                           capture_output=True, text=True, check=True)
    result["kernels"] = json.loads(child.stdout.strip().splitlines()[-1])
    print(markdown({**result, "end_to_end": [], "bundles": []}), flush=True)
    cases = models(args.quick)
    load = os.getloadavg()
    result["end_to_end"] = end_to_end(cases, args.threads, args.tune, args.rounds)
    mobilenet = [c for c in cases if c[0].startswith("mobilenet")] or cases[:1]
    result["layers"] = layer_breakdown(mobilenet[0], args.threads)
    result["load_average"] = [round(v, 1) for v in (*load, *os.getloadavg())]  # 1/5/15 min, before and after
    result["bundles"] = [] if args.no_bundles else bundles(cases)
    OUT.mkdir(parents=True, exist_ok=True)
    suffix = (f"-tune{args.tune}" if args.tune else "") + (f"-t{args.threads}" if args.threads != 2 else "")
    (OUT / f"results{suffix}.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (OUT / f"results{suffix}.md").write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
