"""Which TIR rounding op is half-to-even in LLVM codegen, and does float division stay a division?"""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import numpy as np, tvm
from tvm.script import tirx as T

def make(op):
    @T.prim_func(s_tir=True)
    def f(A: T.Buffer((16,), "float32"), S: T.Buffer((), "float32"), B: T.Buffer((16,), "float32")):
        T.func_attr({"global_symbol": "f", "tir.noalias": True})
        for i in range(16):
            with T.sblock("b"):
                vi = T.axis.remap("S", [i])
                B[vi] = op(A[vi] / S[()])
    return f

a = np.array([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 3.5, 0.49999997, 1, 2, -3, 4.5, 5.5, -4.5, 7.5, 8.5], np.float32)
for name, op in [("T.round", T.round), ("T.nearbyint", T.nearbyint)]:
    for tgt in [{"kind": "llvm"}, {"kind": "llvm", "mcpu": "skylake-avx512"}]:
        lib = tvm.compile(make(op), target=tvm.target.Target(tgt))
        b = tvm.runtime.tensor(np.zeros(16, np.float32))
        lib["f"](tvm.runtime.tensor(a), tvm.runtime.tensor(np.array(1.0, np.float32)), b)
        ok = np.array_equal(b.numpy(), np.rint(a))
        ll = lib.mod.inspect_source("ll") if hasattr(lib, "mod") else lib.inspect_source("ll")
        intr = sorted(set(w.split("(")[0] for w in ll.split() if w.startswith("@llvm.") and ("round" in w or "rint" in w or "nearby" in w)))
        fdiv = [l.strip() for l in ll.splitlines() if "fdiv" in l or "fmul" in l][:3]
        print(f"{name:12s} {str(tgt):50s} half-even={ok} intrinsics={intr} {b.numpy()[:6]}\n    {fdiv}")
