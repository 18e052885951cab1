"""Where the compressed model's extra work goes, in instructions: valgrind cachegrind's instruction
counts (Ir) per compiled function of the x86_64 bundles of the original and the compressed model.
Instruction counts do not depend on the machine's load, so before/after comparisons of a schedule
change hold on a shared machine where wall-clock ratios move by ±20%.

    .venv/bin/python benchmarks/tvm_instructions.py [--all] [--top 15]

Models as in tvm_bench (EfficientNet-Lite0; --all adds MobileNetV2 and SqueezeNet from ../shared),
batch 1, input: the first zoo sample photo. The bundles are built with parallel loops turned off
(every function then runs in its own symbol; TVM's parallel lambdas have none), one thread; Ir per
inference = (Ir of 3 inferences - Ir of 1) / 2. Functions are grouped by their conv (the name
without the fused encode/decode suffix); TVM numbers the fused functions of each model on its own, so
the last few convs can appear under different numbers (a row with 0 on one side). Writes benchmarks/results/tvm/instructions.{json,md}.
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tvm_bench import models  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "tvm"


def per_function(cachegrind_out: Path) -> collections.Counter[str]:
    """Ir by function name ('fn=' blocks of a cachegrind output file)."""
    counts: collections.Counter[str] = collections.Counter()
    name = None
    for line in cachegrind_out.read_text().splitlines():
        if line.startswith("fn="):
            name = line[3:].strip()
        elif name and line[:1].isdigit():
            fields = line.split()
            if len(fields) >= 2:
                counts[name] += int(fields[1])
    return counts


def measure(folder: Path, x: Any, work: Path) -> dict[str, float]:
    """Ir per inference by function of one bundle."""
    from featcomp.deploy import bundle

    manifest = bundle.load_manifest(folder)
    runner, env = bundle.command(folder, manifest, emulate=False)
    env = {**env, "TVM_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    x.tofile(work / "input.bin")
    dims = "x".join(map(str, x.shape))
    runs = {}
    for n in (1, 3):
        out = work / f"{folder.name}.{n}.cg"
        subprocess.run(["valgrind", "--tool=cachegrind", "--cache-sim=no", f"--cachegrind-out-file={out}", *runner,
                        str(folder / "model.so"), str(work / "out"), str(n - 1), f"{work / 'input.bin'}:{dims}"],
                       env=env, check=True, capture_output=True)
        runs[n] = per_function(out)
    return {k: (runs[3][k] - runs[1].get(k, 0)) / 2 for k in runs[3]}


def group(counts: dict[str, float]) -> dict[str, float]:
    grouped: collections.Counter[str] = collections.Counter()
    for name, ir in counts.items():
        grouped[re.sub(r"_fc_(encode|decode).*", "", name.removesuffix("_compute_"))] += ir
    return dict(grouped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--all", action="store_true", help="MobileNetV2 and SqueezeNet too")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    from featcomp import zoo
    from featcomp.deploy.compile import compile_bundle
    from featcomp.modelio import save_model
    from featcomp.preprocess import Preprocess
    from featcomp.runtime_ops.tvm import schedules

    schedules.RULES["x86_64"] = dataclasses.replace(schedules.RULES["x86_64"], parallel_min=1 << 62)
    lines = ["x86_64 bundles, parallel loops off, one thread, batch 1; cachegrind Ir per inference (3 minus 1, "
             "halved); command: `python benchmarks/tvm_instructions.py" + (" --all`" if args.all else "`"), ""]
    result: dict[str, Any] = {"rows": []}
    with tempfile.TemporaryDirectory(prefix="featcomp-ir-") as tmp:
        work = Path(tmp)
        for name, original, compressed, pre in models(not args.all):
            x = Preprocess.parse(pre).load(zoo.sample_images()[0])[None]
            ir = {}
            for variant, model in (("original", original), ("compressed", compressed)):
                path = save_model(model, work / f"{name}.{variant}.onnx")
                compile_bundle(path, "x86_64", work / f"{name}.{variant}", preprocess=pre)
                ir[variant] = measure(work / f"{name}.{variant}", x, work)
            total = {v: sum(c.values()) for v, c in ir.items()}
            by = {v: group(c) for v, c in ir.items()}
            rows = sorted(((by["compressed"].get(k, 0.0) - by["original"].get(k, 0.0), k) for k in set(by["original"]) | set(by["compressed"])),
                          reverse=True)
            result["rows"].append({"model": name, "total": total, "functions": ir})
            lines += [f"{name}: original {total['original'] / 1e6:.1f} M, compressed {total['compressed'] / 1e6:.1f} M "
                      f"instructions per inference ({total['compressed'] / total['original']:.3f}x)", "",
                      "| function (grouped) | original M | compressed M | extra M |", "|---|---|---|---|"]
            lines += [f"| {k} | {by['original'].get(k, 0) / 1e6:.2f} | {by['compressed'].get(k, 0) / 1e6:.2f} | {d / 1e6:+.2f} |"
                      for d, k in rows[:args.top]]
            lines.append("")
            print("\n".join(lines[-args.top - 5:]), flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "instructions.json").write_text(json.dumps(result, indent=1) + "\n")
    (OUT / "instructions.md").write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
