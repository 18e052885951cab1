"""One compiled function at a time: the tiled conv rule against the generic schedule, timed
interleaved in one process (the machine is shared, so runs minutes apart are not comparable).

    .venv/bin/python benchmarks/tvm_schedule_ab.py --model efficientnet-lite0 [FUNCTION ...]

Model: squeezenet1.1 or mobilenet_v2_1.0_224 from ../shared, or efficientnet-lite0 (featcomp.zoo);
batch 1, host target with 2 cores, TVM_NUM_THREADS=1 unless set. Without FUNCTION names it lists the
model's conv and pool functions. Prints the best of 7 rounds of 10 calls of each build, with random inputs.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="efficientnet-lite0")
    parser.add_argument("functions", nargs="*")
    args = parser.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    import tvm

    from featcomp import modelio, zoo
    from featcomp.runtime_ops.tvm import build, convert, schedules

    model = (zoo.efficientnet_lite0() if args.model == "efficientnet-lite0"
             else modelio.load_model(SHARED / "models" / f"{args.model}.onnx"))
    model = modelio.prepare(model)
    target = build.make_target({"kind": "llvm", "mcpu": str(build.make_target("host").attrs["mcpu"]), "num-cores": 2})
    mod = build.legalize(convert.import_model(model, {model.graph.input[0].name: [1, 3, 224, 224]}), target)
    rule = schedules.rule_for(target)
    funcs = {gv.name_hint: f for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}
    if not args.functions:
        print("\n".join(sorted(n for n in funcs if "conv2d" in n or "pool" in n)))
        return 0
    rng = np.random.default_rng(0)
    for name in args.functions:
        func = funcs[name]
        shapes = [[int(d) for d in p.shape] for p in func.params]
        arrays = [np.asarray(rng.normal(size=s)).astype(p.dtype).reshape(s) for s, p in zip(shapes, func.params)]
        timers = []
        for scheduled in (schedules.default_schedule(func, rule), schedules.generic_schedule(func, rule)):
            lib = tvm.compile(tvm.IRModule({"main": scheduled.with_attr("global_symbol", "main")}), target)
            tensors = [tvm.runtime.tensor(np.array(a, copy=True, order="C")) for a in arrays]
            timers.append((lib.mod.time_evaluator("main", tvm.cpu(), number=10, repeat=1, min_repeat_ms=0), tensors,
                           schedules.is_tiled(scheduled)))
        rounds: list[list[float]] = [[], []]
        for _ in range(7):  # interleaved: one round of each build in turn
            for i, (timer, tensors, _) in enumerate(timers):
                rounds[i].append(timer(*tensors).mean)
        best = [min(r) for r in rounds]
        print(f"{name}: tiled {best[0] * 1e3:.3f} ms (conv rule applied: {timers[0][2]}), generic {best[1] * 1e3:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
