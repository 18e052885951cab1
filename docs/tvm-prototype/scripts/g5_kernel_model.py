"""Goal 5: are the encode symbols bit-exact on aarch64 too? A kernels-only ONNX model (real activations
as inputs, DctCmEncode -> DctCmDecode per site, G = 1 unsigned/signed, 8, 16), cross-compiled; the
qemu run is compared with numpy by g5_check.py."""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import sys, json
import numpy as np, onnx
from onnx import helper, numpy_helper, TensorProto
from featcomp.codecs import dctcm
from fctvm import bundle, realdata as rd

model = onnx.load(f"{WORK}/mb.dct.fc.onnx")
sites = rd.sites(model)
acts = rd.activations(model, rd.inputs(model, 1)[0])
chosen = []
for name, s in sites.items():
    if s.group == 16: chosen.append((name, s))
chosen.append(("t56_pre_act", sites["t56_pre_act"]))   # G=1 uint8
chosen.append(("t60_pre", sites["t60_pre"]))           # G=1 int8
x = acts["t99_pre"]; n, c, h, w = x.shape; sample = x.transpose(0, 2, 3, 1).reshape(-1, c)
scale = dctcm._clip_scale(sample, float(np.abs(sample).max()), True)
q = np.clip(np.rint(sample / scale), -127, 127).astype(np.float32)
chosen.append(("t99_pre", dctcm._fit((c, h, w), scale, True, q, sample, 8, 2.0).site))  # G=8 signed, synthetic
nodes, inits, inputs, outputs, meta = [], [], [], [], []
for i, (name, s) in enumerate(chosen):
    xi = acts[name]
    inputs.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(xi.shape)))
    a = s.side_arrays()
    for k, v in a.items():
        inits.append(numpy_helper.from_array(np.asarray(v, np.float32), f"s{i}_{k}"))
    nodes.append(helper.make_node("DctCmEncode", [f"x{i}"] + [f"s{i}_{k}" for k in ("scale", "qmin", "qmax", "transform", "step", "cmin", "cmax")],
                                  [f"y{i}"], domain="ai.featcomp", **s.attributes()))
    nodes.append(helper.make_node("DctCmDecode", [f"y{i}", f"s{i}_decode"], [f"d{i}"], domain="ai.featcomp"))
    outputs.append(helper.make_tensor_value_info(f"y{i}", TensorProto.INT16, list(xi.shape)))
    outputs.append(helper.make_tensor_value_info(f"d{i}", TensorProto.FLOAT, list(xi.shape)))
    xi.astype(np.float32).tofile(f"{WORK}/arm/k_x{i}.bin")
    np.asarray(s.symbols(xi)).tofile(f"{WORK}/arm/k_ref_y{i}.bin")
    np.asarray(s.dequantize(s.symbols(xi))).tofile(f"{WORK}/arm/k_ref_d{i}.bin")
    meta.append({"site": name, "group": s.group, "shape": list(xi.shape)})
g = helper.make_graph(nodes, "kernels", inputs, outputs, inits)
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.featcomp", 1)], ir_version=8)
onnx.save(m, f"{WORK}/arm/kernels.onnx")
ex, secs = bundle.build(m, bundle.AARCH64)
bundle.export(ex, f"{WORK}/arm/kernels.aarch64.so", "aarch64-linux-gnu-g++")
json.dump(meta, open(f"{WORK}/arm/kernels.json", "w"))
print(meta, secs)
print("args:", " ".join(f"k_x{i}.bin:" + "x".join(map(str, mm["shape"])) for i, mm in enumerate(meta)))
