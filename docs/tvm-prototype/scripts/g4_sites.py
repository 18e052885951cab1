"""Where do end-to-end symbol differences TVM vs ORT start? Per site, first image."""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import sys
import numpy as np, onnx, onnxruntime as ort, tvm
from tvm import relax
from fctvm import bundle, realdata as rd
from featcomp.runtime_ops import ort as fort
model = onnx.load(sys.argv[1] if len(sys.argv) > 1 else f"{WORK}/mb.fc.onnx")
enc = rd.encode_nodes(model)
names = [n.input[0] for n in enc] + [n.output[0] for n in enc]
probe = fort.with_outputs(model, names, [onnx.TensorProto.FLOAT] * len(enc) + [onnx.TensorProto.INT16] * len(enc))
ex, _ = bundle.build(probe, bundle.X86, {"t0": [1, 3, 224, 224]})
vm = relax.VirtualMachine(ex, tvm.cpu())
sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
x = rd.inputs(model, 1)[0]["t0"]
outs = [o.numpy() for o in vm["main"](tvm.runtime.tensor(x))]
ref = sess.run(None, {"t0": x})
sites = rd.sites(model)
k = len(enc)
for idx, n in enumerate(enc):
    xa, xb = outs[1 + idx], ref[1 + idx]
    sa, sb = outs[1 + k + idx], ref[1 + k + idx]
    own = sites[n.input[0]].symbols(xa)  # numpy reference on TVM's own X
    print(f"{n.input[0]:14s} X maxdiff {np.abs(xa-xb).max():.2e} (rel {np.abs(xa-xb).max()/np.abs(xb).max():.1e})  "
          f"sym TVM!=ORT {np.count_nonzero(sa!=sb):6d}  TVM!=numpy(TVM X) {np.count_nonzero(sa!=own)}  scale {float(sites[n.input[0]].scale):.3g}")
