"""Per-kernel timings (time_evaluator) for the encode/decode kernels, x86, several shapes."""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import sys
import numpy as np, tvm
from fctvm import kernels, schedules
tgt = tvm.target.Target({"kind": "llvm", "mcpu": sys.argv[1] if len(sys.argv) > 1 else "skylake-avx512"})
dev = tvm.cpu()
for shape, g in [((1, 32, 112, 112), 1), ((1, 144, 56, 56), 1), ((1, 144, 56, 56), 16), ((1, 960, 7, 7), 1), ((1, 1280, 1, 1), 1)]:
    n, c, h, w = shape
    grouped = (n, c // g, g, h * w)
    row = []
    for kind, make, sched in (("enc", kernels.encode_kernel, schedules.schedule_encode), ("dec", kernels.decode_kernel, schedules.schedule_decode)):
        for s in (False, True):
            f = make(*shape, g)
            if s:
                f = sched(f, tgt)
            lib = tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target=tgt)
            if kind == "enc":
                args = [np.random.randn(*grouped).astype(np.float32), np.array(0.02, np.float32), np.array(0, np.float32), np.array(255, np.float32),
                        np.eye(g, dtype=np.float32) * 128, np.full((g, 1), 3.0, np.float32), np.full((g, 1), -500.0, np.float32), np.full((g, 1), 500.0, np.float32), np.zeros(grouped, np.int16)]
            else:
                args = [np.random.randint(-9, 9, grouped).astype(np.int16), np.eye(g, dtype=np.float32), np.zeros(grouped, np.float32)]
            targs = [tvm.runtime.tensor(a) for a in args]
            t = lib.mod.time_evaluator("main", dev, number=20, repeat=3)(*targs).median
            row.append(f"{kind}{'-sched' if s else '-naive'} {t*1e6:8.1f} us ({t*1e9/np.prod(shape):.2f} ns/el)")
    print(shape, "G", g, " | ".join(row))
