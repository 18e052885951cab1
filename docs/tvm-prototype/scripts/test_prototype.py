"""Self-contained checks of the prototype (pytest-style; also runs as a script).

- the importer patch is scoped (stock importer rejects our ops before and after the context);
- the guard fails loudly if TVM internals move (simulated);
- a tiny model (DctCmEncode -> DctCmDecode, G = 1 and 16, ties included) compiles and is bit-exact
  against the numpy reference, scheduled, on x86;
- the scheduled TIR has parallel and vectorized loops.
"""
import os, sys
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the fctvm package
WORK = os.environ.get("FCTVM_WORK", "/tmp/fctvm")  # models and outputs go here
os.makedirs(f"{WORK}/arm", exist_ok=True)
SHARED = str(Path(__file__).resolve().parents[4] / "shared")
import sys

import numpy as np
import onnx
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as fe

from featcomp.codecs import dctcm
from fctvm import bundle, convert, kernels, schedules


def _site(c, h, w, g, signed, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, c, h, w)).astype(np.float32) * 2
    if not signed:
        x = np.maximum(x, 0)
    sample = x.transpose(0, 2, 3, 1).reshape(-1, c)
    qmax = 127.0 if signed else 255.0
    scale = dctcm._clip_scale(sample, float(np.abs(sample).max()), signed)
    q = np.clip(np.rint(sample / scale), -qmax if signed else 0.0, qmax).astype(np.float32)
    delta = None if g == 1 and seed % 2 else 2.0
    site = dctcm._fit((c, h, w), scale, signed, q, sample, g, delta).site
    # plant exact ties x / scale = k + 0.5
    x.reshape(-1)[:64] = ((np.arange(64, dtype=np.float32) - 32 + np.float32(0.5)) * site.scale).astype(np.float32)
    return site, x[:1]


def _model(sites):
    nodes, inits, ins, outs = [], [], [], []
    for i, (s, x) in enumerate(sites):
        ins.append(helper.make_tensor_value_info(f"x{i}", TensorProto.FLOAT, list(x.shape)))
        for k, v in s.side_arrays().items():
            inits.append(numpy_helper.from_array(np.asarray(v, np.float32), f"s{i}_{k}"))
        nodes.append(helper.make_node("DctCmEncode", [f"x{i}"] + [f"s{i}_{k}" for k in
                                      ("scale", "qmin", "qmax", "transform", "step", "cmin", "cmax")],
                                      [f"y{i}"], domain="ai.featcomp", **s.attributes()))
        nodes.append(helper.make_node("DctCmDecode", [f"y{i}", f"s{i}_decode"], [f"d{i}"], domain="ai.featcomp"))
        outs += [helper.make_tensor_value_info(f"y{i}", TensorProto.INT16, list(x.shape)),
                 helper.make_tensor_value_info(f"d{i}", TensorProto.FLOAT, list(x.shape))]
    g = helper.make_graph(nodes, "k", ins, outs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid("ai.featcomp", 1)],
                             ir_version=8)


def test_patch_is_scoped():
    m = _model([_site(16, 4, 4, 1, False, 0)])
    for _ in range(2):
        try:
            fe.from_onnx(m)
        except tvm.error.OpNotImplemented as e:
            assert "DctCmEncode" in str(e)
        else:
            raise AssertionError("stock importer accepted DctCmEncode")
        with convert.featcomp_ops():
            fe.from_onnx(m)


def test_guard_fails_loudly():
    saved = fe._get_convert_map
    try:
        del fe._get_convert_map
        try:
            convert.check_importer()
        except RuntimeError as e:
            assert "_get_convert_map" in str(e)
        else:
            raise AssertionError("guard did not fire")
    finally:
        fe._get_convert_map = saved


def test_bit_exact_x86():
    sites = [_site(32, 7, 9, 1, False, 1), _site(32, 7, 9, 1, True, 2), _site(64, 5, 5, 16, True, 3),
             _site(48, 6, 6, 8, False, 4)]
    ex, _ = bundle.build(_model(sites), bundle.X86)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    outs = vm["main"](*[tvm.runtime.tensor(x) for _, x in sites])
    for i, (s, x) in enumerate(sites):
        assert np.array_equal(outs[2 * i].numpy(), s.symbols(x)), f"site {i}: symbols differ"
        np.testing.assert_allclose(outs[2 * i + 1].numpy(), s.dequantize(s.symbols(x)), rtol=1e-6, atol=1e-6)


def test_schedule_shape():
    tgt = tvm.target.Target(bundle.AARCH64)
    for f in (schedules.schedule_encode(kernels.encode_kernel(1, 64, 14, 14, 16), tgt),
              schedules.schedule_decode(kernels.decode_kernel(1, 64, 14, 14, 16), tgt)):
        text = f.script()
        assert "T.parallel(" in text and "T.vectorized(" in text and f.attrs["tirx.is_scheduled"]


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_"):
            fn()
            print("PASS", name)
