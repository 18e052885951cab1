"""Goal 2: bit-exactness for G = 8 and 16 on every site's real activations (synthetic DCT sites
fitted with featcomp's own _fit), batch 2, scheduled kernels for x86 (AVX-512 lanes)."""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import sys, time
import numpy as np, onnx, tvm
from featcomp.codecs import dctcm
from fctvm import kernels, schedules, realdata as rd

TARGET = tvm.target.Target({"kind": "llvm", "mcpu": "skylake-avx512"})
model = onnx.load(f"{WORK}/mb.fc.onnx")
feeds = rd.inputs(model, 2)
acts = [rd.activations(model, f) for f in feeds]
cache = {}
def build(kind, shape, g):
    key = (kind, shape, g)
    if key not in cache:
        f = (kernels.encode_kernel if kind == "enc" else kernels.decode_kernel)(*shape, g)
        f = (schedules.schedule_encode if kind == "enc" else schedules.schedule_decode)(f, TARGET)
        cache[key] = tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target=TARGET)["main"]
    return cache[key]
total = bad = 0; worst = 0.0; nsites = 0; t0 = time.time()
for node in rd.encode_nodes(model):
    name = node.input[0]
    x = np.concatenate([a[name] for a in acts])           # [2, C, H, W]
    n, c, h, w = x.shape
    sample = x.transpose(0, 2, 3, 1).reshape(-1, c)
    signed = bool(sample.min() < 0)
    qmax = 127.0 if signed else 255.0
    scale = dctcm._clip_scale(sample, float(np.abs(sample).max()), signed)
    q = np.clip(np.rint(sample / scale), -qmax if signed else 0.0, qmax).astype(np.float32)
    for g in (8, 16):
        if c % g:
            continue
        for delta in (0.5, 4.0, 32.0):
            site = dctcm._fit((c, h, w), scale, signed, q, sample, g, delta).site
            nsites += 1
            ref = site.symbols(x)
            a = site.side_arrays()
            grouped = (n, c // g, g, h * w)
            y = tvm.runtime.tensor(np.zeros(grouped, np.int16))
            build("enc", (n, c, h, w), g)(tvm.runtime.tensor(x.reshape(grouped)), *[tvm.runtime.tensor(np.array(a[k], order="C")) for k in ("scale", "qmin", "qmax", "transform", "step", "cmin", "cmax")], y)
            sym = y.numpy().reshape(x.shape)
            bad += int(np.count_nonzero(sym != ref)); total += sym.size
            xo = tvm.runtime.tensor(np.zeros(grouped, np.float32))
            build("dec", (n, c, h, w), g)(tvm.runtime.tensor(ref.reshape(grouped)), tvm.runtime.tensor(a["decode"]), xo)
            dref = site.dequantize(ref)
            worst = max(worst, float(np.abs(xo.numpy().reshape(x.shape) - dref).max() / (np.abs(dref).max() + 1e-30)))
print(f"G in (8,16), 3 steps each: {nsites} sites, {total} symbols, mismatches={bad}; decode max rel err vs numpy={worst:.2e} ({time.time()-t0:.0f}s)")
