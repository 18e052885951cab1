"""The TIR rANS coder on a real model: pack/unpack per site against TIR Rice and the numpy reference, and what
real rANS bitstreams (`compile --coder`) cost the whole compiled model against its stored codes.

    .venv/bin/python benchmarks/tvm_rans_bench.py [--model OUT.onnx] [--base COMMIT] [--label NAME]
        [--threads 2] [--images 2] [--sites 3] [--rounds 7] [--no-model] [--clock wall|thread]

Model: MobileNetV2 (../shared) compressed with dct-cm at 20 dB logit SNR, every site rANS coded
(`--entropy-coder rans`; calibrated on 16 images of imagenet-calib-200), or --model, an already compressed
model. Symbols: ONNX Runtime's, on the first --images photos of imagenet-val-100; batch 1. All variants of a
measurement run interleaved in one process, one call of each per round, --rounds rounds; the tables give
medians. Kernels: buffers allocated once, no Python conversions in the timed call; every TIR stream is
checked equal to the numpy reference's first. Rice: the same site and symbols with its rANS model removed
(the site's own Rice planes). --base COMMIT adds that commit's rANS kernels (runtime_ops/tvm/rans_coder_kernels.py
and its stream_tir.py macros, given the site arrays its parameters name) as "before", interleaved with the working tree's, per site and in the
whole model. --clock thread (with --threads 1) times the calling thread's CPU time: steadier on a loaded machine.
Results: benchmarks/results/tvm/rans.json (one entry per --label, kept across runs) and rans.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.quality import OutputSnr

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
OUT = ROOT / "benchmarks" / "results" / "tvm"
PRE = "resize=256,crop=224,order=rgb,mean=128,std=128"
Call = Callable[[], None]


def compressed_model(path: str | None) -> Any:
    from featcomp import api, modelio

    if path:
        return modelio.load_model(path)
    model = modelio.prepare(modelio.load_model(SHARED / "models/mobilenet_v2_1.0_224.onnx"))
    return api.compress(model, SHARED / "data/imagenet-calib-200", codec="dct-cm", preprocess=PRE, limit=16,
                        quality=OutputSnr(20.0), codec_options={"coder": "rans"}).model


def site_symbols(model: Any, images: int) -> tuple[list[Any], dict[str, list[np.ndarray]], np.ndarray, str]:
    """(pairs, symbols per site [one int16 [1, C, H, W] per photo], photos, input name)."""
    from featcomp.passes.pairs import find_pairs
    from featcomp.runtime_ops import ort
    from onnx import TensorProto

    from featcomp.modelio import input_spec
    from featcomp.preprocess import Preprocess

    spec = input_spec(model)
    files = sorted((SHARED / "data/imagenet-val-100/images").iterdir())[:images]
    x = np.stack([Preprocess.parse(PRE).load(f) for f in files])
    pairs = find_pairs(model)
    probe = ort.session(ort.with_outputs(model, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs)))
    symbols: dict[str, list[np.ndarray]] = {p.symbols: [] for p in pairs}
    for one in x:
        outs = ort.run(probe, {spec.name: one[None]})
        for p in pairs:
            symbols[p.symbols].append(outs[p.symbols])
    return pairs, symbols, x, spec.name


def base_kernels(commit: str, into: Path) -> Any:
    """runtime_ops/tvm/rans_coder_kernels.py as it was at `commit`, as a private module, with that commit's
    stream_tir.py macros (container, CRC-32, bit I/O) when it has them, so the base times its own CRC too."""
    def show(path: str) -> str | None:
        done = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, text=True)
        return done.stdout if done.returncode == 0 else None

    text = show("runtime_ops/tvm/rans_coder_kernels.py")
    if text is None:
        sys.exit(f"tvm_rans_bench: {commit} has no runtime_ops/tvm/rans_coder_kernels.py: pick a later commit")
    macros = show("runtime_ops/tvm/stream_tir.py")
    if macros is not None:
        (into / "base_stream_tir.py").write_text(macros)
        text = text.replace("from featcomp.runtime_ops.tvm.stream_tir import", "from base_stream_tir import")
    (into / "base_rans_kernels.py").write_text(text)
    sys.path.insert(0, str(into))
    return importlib.import_module("base_rans_kernels")


def arrays_for(module: Any, site: Any, make: Callable[[Any], Any] | None = None) -> Any:
    """The site arrays a version of the rANS kernels takes, by parameter name: the working tree's coder_arrays
    (or `make`), plus the per-table arrays older kernels read that it no longer builds."""
    from featcomp.runtime_ops.tvm.coder import coder_arrays

    a = (make or coder_arrays)(site)
    coder = site.rans if getattr(site, "rans", None) is not None else site.coder
    i32 = lambda x: np.ascontiguousarray(np.asarray(x, np.int64).reshape(-1), np.int32)  # noqa: E731
    legacy = {k: i32(v) if v.size else np.zeros(1, np.int32) for k, v in (("freq", coder.freq), ("cum", coder.cum))}
    funcs = {op: getattr(module, f"{op}_kernel")() for op in ("pack", "unpack")}
    names = {op: [str(p.name) for p in f.params] for op, f in funcs.items()}
    ranks = {op: {str(p.name): len(p.shape) for p in f.params} for op, f in funcs.items()}

    def take(have: dict[str, np.ndarray], want: list[str], op: str) -> dict[str, np.ndarray]:
        got = {k: have[k] if k in have else legacy[k] for k in want}
        if "crc" in got and ranks[op]["crc"] == 1 and got["crc"].ndim == 2:  # byte-at-a-time kernels: row 0
            got["crc"] = np.ascontiguousarray(got["crc"][0])
        return got

    return replace(a, pack=take(a.pack, names["pack"][1:-2], "pack"), unpack=take(a.unpack, names["unpack"][2:-2], "unpack"))


class Kernels:
    """One version's rANS pack/unpack (and the Rice ones) built for the host, called on one site's symbols."""

    def __init__(self, modules: dict[str, Any], target: Any) -> None:
        import tvm

        self.modules = {k: m for k, m in modules.items() if k != "rice"}
        funcs = {f"{name}_{op}": getattr(mod, f"{op}_kernel")().with_attr("global_symbol", f"{name}_{op}")
                 for name, mod in modules.items() for op in ("pack", "unpack")}
        self.params = {k: [str(p.name) for p in f.params] for k, f in funcs.items()}
        self.lib = tvm.compile(tvm.IRModule(funcs), target=target)

    def calls(self, name: str, site: Any, symbols: np.ndarray) -> tuple[Call, Call, bytes]:
        """(pack, unpack, the packed stream) for one sample; the site arrays are matched to the kernels'
        parameters by name, so kernels with fewer arrays run on the same site."""
        import tvm

        from featcomp.runtime_ops.tvm.coder import coder_arrays

        arrays = arrays_for(self.modules[name], site) if name in self.modules and getattr(site, "rans", None) is not None \
            else coder_arrays(site)
        dev = tvm.cpu()
        c, h, w = site.shape
        t = lambda a: tvm.runtime.tensor(np.ascontiguousarray(a), dev)  # noqa: E731
        sym = t(symbols.astype(np.int16).reshape(1, c, h * w))
        out, lengths = t(np.zeros((1, arrays.max_bytes), np.uint8)), t(np.zeros(1, np.int32))
        back, status = t(np.zeros((1, c, h * w), np.int16)), t(np.zeros(1, np.int32))
        pack, unpack = self.lib[f"{name}_pack"], self.lib[f"{name}_unpack"]
        pargs = [sym, *[t(a) for a in arrays.pack.values()], out, lengths]
        uargs = [out, lengths, *[t(a) for a in arrays.unpack.values()], back, status]
        pack(*pargs)
        stream = out.numpy()[0, :int(lengths.numpy()[0])].tobytes()
        unpack(*uargs)
        if int(status.numpy()[0]) or not np.array_equal(back.numpy().reshape(symbols.shape[1:]), symbols[0]):
            sys.exit(f"tvm_rans_bench: {name} kernels do not unpack their own stream")
        return (lambda: pack(*pargs)), (lambda: unpack(*uargs)), stream


CLOCK: Callable[[], float] = time.perf_counter  # --clock thread: time.thread_time (one thread only)


def interleaved(calls: dict[str, Call], rounds: int, number: int) -> dict[str, float]:
    """Median seconds per call of each, one batch of `number` calls of each per round."""
    times: dict[str, list[float]] = {k: [] for k in calls}
    for fn in calls.values():
        fn()  # warm
    for _ in range(rounds):
        for k, fn in calls.items():
            t0 = CLOCK()
            for _ in range(number):
                fn()
            times[k].append((CLOCK() - t0) / number)
    return {k: statistics.median(v) for k, v in times.items()}


def site_rows(pairs: list[Any], symbols: dict[str, list[np.ndarray]], kernels: Kernels, versions: list[str],
              named: int, rounds: int) -> dict[str, Any]:
    """Per site (the `named` largest with numpy too) and summed over all sites, per photo, ms."""
    total: dict[str, float] = {}
    rows = []
    order = sorted(range(len(pairs)), key=lambda i: -int(np.prod(pairs[i].codec.shape)))
    for rank, i in enumerate(order):
        p = pairs[i]
        site = p.codec
        if getattr(site, "rans", None) is None:
            continue
        rice = replace(site, rans=None)
        acc: dict[str, float] = {}
        sizes = {"rans": 0, "rice": 0}
        for s in symbols[p.symbols]:
            calls: dict[str, Call] = {}
            for v in versions:
                pk, up, stream = kernels.calls(v, site, s)
                if stream != site.pack(s[0]):
                    sys.exit(f"tvm_rans_bench: {p.site}: TIR ({v}) and numpy rANS streams differ")
                calls[f"{v}_pack"], calls[f"{v}_unpack"] = pk, up
                if v == versions[-1]:  # the working tree's stream (the base writes the same bytes)
                    sizes["rans"] += len(stream)
            pk, up, stream = kernels.calls("rice", rice, s)
            if stream != rice.pack(s[0]):
                sys.exit(f"tvm_rans_bench: {p.site}: TIR and numpy Rice streams differ")
            sizes["rice"] += len(stream)
            calls["rice_pack"], calls["rice_unpack"] = pk, up
            if rank < named:
                ref = site.pack(s[0])
                calls["numpy_pack"] = lambda s=s: site.pack(s[0])  # type: ignore[misc]
                calls["numpy_unpack"] = lambda ref=ref: site.unpack(ref)  # type: ignore[misc]
            measured = interleaved(calls, rounds if rank < named else max(3, rounds // 2), 5 if rank >= named else 3)
            if "numpy_pack" in measured:
                numpy_calls = {k: calls[k] for k in ("numpy_pack", "numpy_unpack")}
                measured.update(interleaved(numpy_calls, 3, 1))
            for k, v in measured.items():
                acc[k] = acc.get(k, 0.0) + v * 1e3 / len(symbols[p.symbols])
        for k, v in acc.items():
            if not k.startswith("numpy"):
                total[k] = total.get(k, 0.0) + v
        if rank < named:
            rows.append({"site": p.site, "shape": list(site.shape), "slices": len(coder_bands(site)) - 1,
                         "rans_bytes": sizes["rans"] / len(symbols[p.symbols]),
                         "rice_bytes": sizes["rice"] / len(symbols[p.symbols]), "ms": acc})
        print(f"{p.site} {site.shape}: " + ", ".join(f"{k} {v:.2f}" for k, v in acc.items()), flush=True)
    values = [int(np.prod(p.codec.shape)) for p in pairs]
    slices = [len(coder_bands(p.codec)) - 1 for p in pairs]
    return {"sites": rows, "all_sites_ms": total, "rans_sites": sum(getattr(p.codec, "rans", None) is not None for p in pairs),
            "values": sum(values), "slices_per_site": slices,
            "values_in_sites_with_4_slices_or_more": sum(v for v, k in zip(values, slices) if k >= 4)}


def coder_bands(site: Any) -> np.ndarray:
    from featcomp.codecs import bitstream

    return bitstream.bands(site.shape)


def model_rows(model: Any, input_name: str, x: np.ndarray, target: Any, base: Any, rounds: int) -> dict[str, float]:
    """Whole model at batch 1: stored codes vs real rANS bitstreams (and the base kernels' bitstreams), ms."""
    from featcomp.runtime_ops.tvm import build, coder

    one = x[:1]
    shape = {input_name: list(one.shape)}
    compiled = {"stored_codes": build.compile_model(model, target, shape_dict=shape),
                "coder": build.compile_model(model, target, shape_dict=shape, coder=True)}
    if base is not None:
        new, arrays = coder.RANS_KERNELS, coder.coder_arrays
        coder.RANS_KERNELS = ("rans", base)
        coder.coder_arrays = lambda site: arrays_for(base, site, arrays) if coder._rans_of(site) is not None \
            else arrays(site)
        try:
            compiled["coder_base"] = build.compile_model(model, target, shape_dict=shape, coder=True)
        finally:
            coder.RANS_KERNELS, coder.coder_arrays = new, arrays
    times: dict[str, list[float]] = {k: [] for k in compiled}
    for _ in range(rounds):
        for k, c in compiled.items():
            times[k] += build.time_local(c, [one], number=5, repeat=1)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def markdown(runs: dict[str, Any]) -> str:
    lines = ["# TIR rANS coder: MobileNetV2 (dct-cm, every site rANS coded), batch 1", "",
             "Command and conditions per run below; all variants of a table row were timed interleaved in one process "
             "(medians). Rice: the same site and symbols with its rANS model removed.", ""]
    for label, r in runs.items():
        lines += [f"## {label}", "", f"`{r['command']}`; commit {r['commit']}; {r['threads']} threads "
                  f"(TVM_NUM_THREADS), {r.get('clock', 'wall')} clock, host {r['host']}, {r['photos']} photo(s), load average {r['load_start']} -> "
                  f"{r['load_end']}.", ""]
        versions = r["versions"]
        head = [f"{v} {op}" for op in ("pack", "unpack") for v in versions]
        lines += ["Per site, ms per photo (TIR kernels; numpy = the reference codec's pack/unpack):", "",
                  "| site | shape | slices | rANS bytes | Rice bytes | " + " | ".join(head) +
                  " | Rice pack | Rice unpack | numpy pack | numpy unpack |",
                  "|---|---|---|---|---|" + "---|" * (len(head) + 4)]
        for s in r["site"]["sites"]:
            ms = s["ms"]
            cells = [f"{ms[f'{v}_{op}']:.2f}" for op in ("pack", "unpack") for v in versions]
            lines.append(f"| {s['site']} | {'x'.join(map(str, s['shape']))} | {s['slices']} | {s['rans_bytes']:,.0f} | "
                         f"{s['rice_bytes']:,.0f} | " + " | ".join(cells) + f" | {ms['rice_pack']:.2f} | "
                         f"{ms['rice_unpack']:.2f} | {ms['numpy_pack']:.1f} | {ms['numpy_unpack']:.1f} |")
        tot = r["site"]["all_sites_ms"]
        lines += ["", f"All {r['site']['rans_sites']} rANS sites summed, ms per photo: " + ", ".join(
            f"{k.replace('_', ' ')} {v:.2f}" for k, v in tot.items()) + ".", ""]
        if "values_in_sites_with_4_slices_or_more" in r["site"]:
            sl = r["site"]
            lines += [f"Slices per site (bitstream.bands): {sorted(sl['slices_per_site'], reverse=True)}; sites with >= 4 slices "
                      f"(2 x 2 threads) hold {sl['values_in_sites_with_4_slices_or_more'] / sl['values']:.1%} of the "
                      f"{sl['values']:,} values.", ""]
        m = r["model"]
        if not m:  # --no-model
            continue
        lines += ["Whole model, ms per inference: " + ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in m.items())
                  + "; rANS coder / stored codes = " + ", ".join(
                      f"{m[k] / m['stored_codes']:.2f}x ({k.replace('_', ' ')})" for k in m if k != "stored_codes") + ".", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a compressed model (default: compress MobileNetV2 with dct-cm + rANS)")
    parser.add_argument("--base", help="a commit whose rANS kernels are timed as 'before'")
    parser.add_argument("--label", default="current")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--sites", type=int, default=3, help="the largest sites shown one by one, with numpy")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--no-model", action="store_true", help="skip the whole-model rows")
    parser.add_argument("--clock", choices=["wall", "thread"], default="wall",
                        help="per-site times: wall clock, or the calling thread's CPU time (--threads 1 only: TVM then "
                             "runs every task on the calling thread; time lost to other jobs on a loaded machine drops out)")
    args = parser.parse_args()
    if args.clock == "thread" and args.threads != 1:
        sys.exit("tvm_rans_bench: --clock thread needs --threads 1 (other threads' work is not counted)")
    global CLOCK
    CLOCK = time.thread_time if args.clock == "thread" else time.perf_counter
    if not (SHARED / "models/mobilenet_v2_1.0_224.onnx").exists():
        sys.exit("tvm_rans_bench: needs ../shared (MobileNetV2 and imagenet-val-100)")
    os.environ["TVM_NUM_THREADS"] = str(args.threads)  # read when TVM's thread pool starts
    from featcomp.runtime_ops.tvm import build
    from featcomp.runtime_ops.tvm import dctcm_coder_kernels as dk
    from featcomp.runtime_ops.tvm import rans_coder_kernels as rk

    load_start = round(os.getloadavg()[0], 1)
    model = compressed_model(args.model)
    pairs, symbols, x, input_name = site_symbols(model, args.images)
    target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]),
                                "num-cores": args.threads})
    with tempfile.TemporaryDirectory() as tmp:
        base = base_kernels(args.base, Path(tmp)) if args.base else None
        modules = {"rans": rk, "rice": dk, **({"base": base} if base is not None else {})}
        versions = (["base"] if base is not None else []) + ["rans"]
        kernels = Kernels(modules, target)
        site = site_rows(pairs, symbols, kernels, versions, args.sites, args.rounds)
        model_ms = {} if args.no_model else model_rows(model, input_name, x, target, base, args.rounds)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "runtime_ops"], cwd=ROOT, capture_output=True, text=True).stdout
    result = {"command": "TVM_NUM_THREADS={} .venv/bin/python benchmarks/tvm_rans_bench.py {}".format(
        args.threads, shlex.join(sys.argv[1:])), "commit": commit + ("+dirty" if dirty else ""),
        "host": platform.processor() or platform.machine(), "threads": args.threads, "clock": args.clock, "photos": args.images,
        "versions": versions, "load_start": load_start, "load_end": round(os.getloadavg()[0], 1), "site": site,
        "model": model_ms}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "rans.json"
    runs = json.loads(path.read_text()) if path.exists() else {}
    runs[args.label] = result
    path.write_text(json.dumps(runs, indent=1))
    (OUT / "rans.md").write_text(markdown(runs))
    print(markdown({args.label: result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
