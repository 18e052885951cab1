"""Latency, one runtime per process (TVM's spinning worker threads distort ORT timings in the same
process). usage: bench_e2e.py {ort|tvm} model.onnx [threads] [mcpu]"""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import sys, time, os
import numpy as np, onnx
which, path = sys.argv[1], sys.argv[2]
threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
x = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
def bench(fn, n=40):
    for _ in range(5): fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return 1e3 * float(np.median(ts))
if which == "ort":
    import onnxruntime as ort
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.log_severity_level = 3
    s = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    print(f"ORT  {os.path.basename(path):20s} threads={threads}: {bench(lambda: s.run(None, {'t0': x})):.2f} ms")
else:
    os.environ["TVM_NUM_THREADS"] = str(threads)
    import tvm
    from tvm import relax
    from fctvm import bundle
    target = {"kind": "llvm", "mcpu": sys.argv[4]} if len(sys.argv) > 4 else bundle.X86
    ex, secs = bundle.build(onnx.load(path), target, {"t0": [1, 3, 224, 224]})
    vm = relax.VirtualMachine(ex, tvm.cpu()); xt = tvm.runtime.tensor(x)
    print(f"TVM  {os.path.basename(path):20s} threads={threads}: {bench(lambda: vm['main'](xt)):.2f} ms  (compile {secs['compile']:.1f}s, target {target})")
