"""TvlcEncode/TvlcDecode as ONNX functions in a plain onnxruntime.InferenceSession against the numpy
reference: symbols bit for bit (rounding ties and clipping included), decoded values to float precision,
for PCA, DCT and identity sites, with and without a dead zone, at every default-domain opset featcomp emits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import DATA_KINDS
from featcomp.codecs.base import ActivationStats
from featcomp.codecs.tvlc import TransformVlc, TvlcSite
from featcomp.ops.functions import function_for
from featcomp.ops.schemas import DOMAIN, PAIRS, VERSION

OPSETS = (11, 13, 17, 21)
SHAPE = (16, 6, 10)
DEADZONE = np.float32(np.float16(1 / 3))  # as TransformVlc stores it


def pair_model(site: TvlcSite, opset: int) -> onnx.ModelProto:
    enc_op, dec_op = PAIRS["transform-vlc"]
    inits = [numpy_helper.from_array(np.asarray(v), f"p/{k}") for k, v in site.side_arrays().items()]
    enc = helper.make_node(enc_op.name, ["X"] + [f"p/{p.name}" for p in enc_op.inputs[1:]], ["Y"], name="enc",
                           domain=DOMAIN, **site.attributes())
    dec = helper.make_node(dec_op.name, ["Y"] + [f"p/{p.name}" for p in dec_op.inputs[1:]], ["Z"], name="dec",
                           domain=DOMAIN)
    dims = ["N", *site.shape]
    graph = helper.make_graph(
        [enc, dec], "pair", [helper.make_tensor_value_info("X", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("Y", TensorProto.INT16, dims), helper.make_tensor_value_info("Z", TensorProto.FLOAT, dims)],
        inits)
    model = helper.make_model(graph, ir_version=8,
                              opset_imports=[helper.make_opsetid("", opset), helper.make_opsetid(DOMAIN, VERSION)],
                              functions=[function_for(enc_op.name, opset), function_for(dec_op.name, opset)])
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def sites() -> list[tuple[str, TvlcSite, np.ndarray]]:
    out = []
    for seed, (kind, make) in enumerate(DATA_KINDS.items()):
        rng = np.random.default_rng(700 + seed)
        calib, fresh = make(rng, 6, SHAPE), make(rng, 3, SHAPE)
        stats = ActivationStats(kind, SHAPE, covariance=True, spatial_values=1 << 14)
        for x in calib:
            stats.update(x[None])
        for transform in ("pca", "dct", "none"):
            front = TransformVlc(transform=transform, groups=(4, 16)).candidates(stats)
            for cand in (front[1], front[len(front) // 2], front[-1]):
                out.append((f"{kind}-{transform}-{cand.site.mode}", cand.site, fresh))
            if transform != "dct":  # the dead zone rounds toward the coder's centres, signed and not
                site = replace(front[len(front) // 2].site, deadzone=DEADZONE)
                out.append((f"{kind}-{transform}-{site.mode}-deadzone", site, fresh))
    return out


@pytest.mark.parametrize("opset", OPSETS)
def test_ort_symbols_bit_exact_and_decoded_close(sites, opset: int) -> None:
    modes, moved = set(), 0
    for name, site, fresh in sites:
        sess = onnxruntime.InferenceSession(pair_model(site, opset).SerializeToString(), providers=["CPUExecutionProvider"])
        # planted rounding ties of the 8-bit stage, values beyond the clip range, zeros
        x = fresh.copy()
        x[0, :, 0, :] = (np.arange(SHAPE[2]) + 0.5) * site.scale
        x[1, :, 1, :] = 1e4 * site.scale
        x[2, :, 2, :] = 0
        y, z = sess.run(["Y", "Z"], {"X": x})
        np.testing.assert_array_equal(y, site.symbols(x), err_msg=name)
        np.testing.assert_array_equal(y.astype(site.storage_dtype).astype(np.int16), y, err_msg=name)  # 8-bit storage exact
        ref = site.dequantize(y)
        np.testing.assert_allclose(z, ref, rtol=1e-5, atol=1e-5 * float(np.abs(ref).max() + 1e-30), err_msg=name)
        for i in range(len(x)):  # and the symbols survive the bitstream
            np.testing.assert_array_equal(site.unpack(site.pack(y[i])), y[i])
        modes.add(site.mode[:3])
        if site.deadzone:  # not vacuous: the dead zone changes symbols here
            moved += int(np.sum(y != replace(site, deadzone=np.float32(0)).symbols(x)))
    assert {"pca", "dct", "non"} <= modes
    assert moved > 0
