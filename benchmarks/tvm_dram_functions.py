"""DRAM bytes per inference of each compiled function of an original model, next to what it would move
ideally (every parameter buffer once: input + weights + output): where the compiled model's LL misses go.

    .venv/bin/python benchmarks/tvm_dram_functions.py --model mobilenet_v2_1.0_224 [--target x86_64] [--top 15] [--json OUT]

The bundle's runner runs under valgrind callgrind with the cache simulator of featcomp.deploy.traffic
(1 MiB 16-way 64 B last level, one thread), once with 1 inference and once with 2; a function's DRAM
bytes are 64 x (DLmr + DLmw) of its `<name>_compute_` symbol, inclusive (its parallel lambda runs
through TVMBackendParallelLaunch, so the lambda has no symbol of its own), run of 2 minus run of 1.
cachegrind's own per-function counts cannot be used: they land on the unnamed lambdas ("???").
The ideal is read from the scheduled module of the same compile: a function that reads a tensor
another one just wrote (still cached) can move less than its ideal.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tvm_dram_ab import PREPROCESS  # noqa: E402
from tvm_model_ab import load_model  # noqa: E402

COMPUTE = re.compile(r"\s*([\d,]+) \([^)]*\)\s+([\d,]+) \([^)]*\)\s+\S*?:(\w+)_compute_\b")
BUFFER = re.compile(r"T\.Buffer\(\((.*?)\), \"(\w+)\"\)")


def ideal_bytes(func: Any) -> int:
    """Bytes of the PrimFunc's parameter buffers, each once (read from its signature)."""
    head = func.script().split("T.func_attr")[0]
    total = 0
    for shape, dtype in BUFFER.findall(head):
        dims = [int(d) for d in re.findall(r"T\.int64\((\d+)\)", shape)]
        total += int(np.prod(dims or [1])) * int(re.sub(r"\D", "", dtype) or 8) // 8
    return total


def misses(out_file: Path) -> dict[str, int]:
    """LL data misses (DLmr + DLmw) per compiled function, inclusive, from a callgrind output file."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--show=DLmr,DLmw", "--threshold=100", str(out_file)],
                          capture_output=True, text=True, check=True).stdout
    found: dict[str, int] = {}
    for line in text.splitlines():
        m = COMPUTE.match(line)
        if m and m.group(3) not in found:  # the first line of a function is its total
            found[m.group(3)] = int(m.group(1).replace(",", "")) + int(m.group(2).replace(",", ""))
    return found


def measure(folder: Path, x: np.ndarray, work: Path) -> dict[str, float]:
    """Per-function DRAM bytes of one inference (callgrind, run of 2 minus run of 1)."""
    from featcomp.deploy import bundle, traffic

    manifest = bundle.load_manifest(folder)
    runner, env = bundle.command(folder, manifest, emulate=False)
    env = {**env, "TVM_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    x.astype(np.float32).tofile(work / "input.bin")
    dims = "x".join(map(str, x.shape))
    counts = []
    for n in (1, 2):
        out = work / f"callgrind.{n}"
        cmd = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--LL={},{},{}".format(*traffic.LL),
               f"--callgrind-out-file={out}", *runner, str(folder / "model.so"), str(work / "out"), str(n - 1),
               f"{work / 'input.bin'}:{dims}"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"tvm_dram_functions: the runner under callgrind failed: {done.stderr.strip().splitlines()[-1:]}")
        counts.append(misses(out))
    return {name: traffic.LINE * (counts[1][name] - counts[0].get(name, 0)) for name in counts[1]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="mobilenet_v2_1.0_224")
    parser.add_argument("--target", default="x86_64")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", type=Path, help="write every function's row here")
    args = parser.parse_args()

    from featcomp import modelio, zoo
    from featcomp.deploy import targets
    from featcomp.deploy.compile import compile_bundle
    from featcomp.preprocess import Preprocess
    from featcomp.runtime_ops.tvm import build

    pre = PREPROCESS.get(args.model, zoo.DEFAULT_PREPROCESS)
    with tempfile.TemporaryDirectory(prefix="tvm-dram-fn-") as tmp:
        work = Path(tmp)
        model = load_model(args.model)
        path = modelio.save_model(model, work / f"{args.model}.onnx")
        compile_bundle(path, args.target, work / "bundle", preprocess=pre)
        spec = modelio.input_spec(model)
        compiled = build.compile_model(model, build.make_target(targets.tvm_spec(args.target)),
                                       shape_dict={spec.name: [1, 3, 224, 224]})
        ideal = {gv.name_hint: ideal_bytes(f) for gv, f in compiled.module.functions_items() if hasattr(f, "script")
                 and type(f).__name__ == "PrimFunc"}
        x = Preprocess.parse(pre).load(zoo.sample_images()[0])[None]
        measured = measure(work / "bundle", x, work)
    rows = sorted(({"function": k, "mb": v / 1e6, "ideal_mb": ideal.get(k, 0) / 1e6} for k, v in measured.items()),
                  key=lambda r: -r["mb"])
    total, total_ideal = sum(r["mb"] for r in rows), sum(r["ideal_mb"] for r in rows)
    print(f"{args.model} ({args.target}, 1 thread, callgrind 1 MiB LL): {total:.1f} MB per inference over the "
          f"compiled functions; ideal (each parameter once) {total_ideal:.1f} MB")
    print("| function | MB/inf | share | ideal MB | excess MB |\n|---|---|---|---|---|")
    for r in rows[:args.top]:
        print(f"| {r['function']} | {r['mb']:.2f} | {100 * r['mb'] / total:.1f}% | {r['ideal_mb']:.2f} | "
              f"{r['mb'] - r['ideal_mb']:+.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"model": args.model, "target": args.target, "rows": rows}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
