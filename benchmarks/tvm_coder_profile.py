"""Where a model's real bitstreams (`compile --coder`) spend their time: every call the compiled model's VM
makes, stored codes vs coder, in CPU time of one thread.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/tvm_coder_profile.py --model OUT.onnx [--rounds 5]

With TVM_NUM_THREADS=1 TVM runs every parallel task on the calling thread, so time.thread_time counts all the
work of a call and none of the time lost to other jobs on a shared machine (the wall-clock profile at two
threads mostly measures thread scheduling under load). Callees are grouped: the coder kernels (fc_*_pack,
fc_*_unpack), the coder's glue (reshape/cast/subtract kernels of their own), VM builtins (allocation, shape
checks), and the layers. The input is seeded noise at the model's input shape, batch 1 (the coders' speed
depends on the symbols: use benchmarks/tvm_rans_bench.py for photos). Results: benchmarks/results/tvm/
coder_profile.json (one entry per --label) and coder_profile.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "tvm"


def group(callee: str) -> str:
    """The part of the model a VM callee belongs to."""
    if callee.endswith("_pack"):
        return "pack"
    if callee.endswith("_unpack"):
        return "unpack"
    if callee.startswith("vm."):
        return "vm builtins"
    if callee.startswith(("fused_reshape", "reshape", "cast", "subtract")):
        return "coder glue"
    return "layers"


def profile(compiled: Any, x: np.ndarray, rounds: int) -> dict[str, Any]:
    """CPU ms per run: the whole run uninstrumented, and per group with the VM's instrument hook."""
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(compiled.executable, tvm.cpu())
    args = [tvm.runtime.tensor(np.ascontiguousarray(x))]
    vm["main"](*args)
    t0 = time.thread_time()
    for _ in range(rounds):
        vm["main"](*args)
    whole = (time.thread_time() - t0) / rounds * 1e3
    calls: dict[str, float] = {}
    counts: dict[str, int] = {}
    started: list[float] = []

    def hook(_func: Any, name: str, before: bool, _ret: Any, *_args: Any) -> int:
        if before:
            started.append(time.thread_time())
        else:
            calls[str(name)] = calls.get(str(name), 0.0) + time.thread_time() - started.pop()
            counts[str(name)] = counts.get(str(name), 0) + 1
        return 0

    vm.set_instrument(hook)
    for _ in range(rounds):
        vm["main"](*args)
    groups: dict[str, float] = {}
    calls_per_group: dict[str, int] = {}
    for k, v in calls.items():
        groups[group(k)] = groups.get(group(k), 0.0) + v * 1e3 / rounds
        calls_per_group[group(k)] = calls_per_group.get(group(k), 0) + counts[k] // rounds
    return {"whole_ms": whole, "groups_ms": groups, "calls": calls_per_group}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="a compressed model whose sites the TIR coders code")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--label", default="latest")
    args = parser.parse_args()
    if os.environ.get("TVM_NUM_THREADS") != "1":
        sys.exit("tvm_coder_profile: run with TVM_NUM_THREADS=1 (CPU time of the calling thread counts all the work only then)")
    from featcomp.runtime_ops.tvm import build

    from featcomp.modelio import input_spec, load_model

    model = load_model(args.model)
    spec = input_spec(model)
    shape = [1 if not isinstance(d, int) else d for d in spec.shape]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    target = build.make_target("host")
    runs = {name: profile(build.compile_model(model, target, shape_dict={spec.name: shape}, coder=coder), x, args.rounds)
            for name, coder in (("stored_codes", False), ("coder", True))}
    extra = runs["coder"]["whole_ms"] - runs["stored_codes"]["whole_ms"]
    command = "TVM_NUM_THREADS=1 .venv/bin/python benchmarks/tvm_coder_profile.py " + shlex.join(sys.argv[1:])
    entry = {"command": command, "model": Path(args.model).name, "load": os.getloadavg()[0], "runs": runs,
             "coder_minus_stored_ms": extra}
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / "coder_profile.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[args.label] = entry
    path.write_text(json.dumps(saved, indent=1))
    lines = ["# CPU time of one thread per run, stored codes vs coder (benchmarks/tvm_coder_profile.py)", ""]
    for label, e in saved.items():
        lines += [f"## {label}", "", f"`{e['command']}`; model {e['model']}, batch 1, load {e['load']:.1f}.", "",
                  "| | whole run (ms) | " + " | ".join(sorted({g for r in e['runs'].values() for g in r['groups_ms']})) + " |",
                  "|---|---|" + "---|" * len({g for r in e['runs'].values() for g in r['groups_ms']})]
        names = sorted({g for r in e["runs"].values() for g in r["groups_ms"]})
        for run, r in e["runs"].items():
            cells = [f"{r['groups_ms'].get(g, 0.0):.2f} ({r['calls'].get(g, 0)} calls)" for g in names]
            lines.append(f"| {run} | {r['whole_ms']:.2f} | " + " | ".join(cells) + " |")
        lines += ["", f"coder - stored codes: {e['coder_minus_stored_ms']:.2f} ms per run.", ""]
    (OUT / "coder_profile.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
