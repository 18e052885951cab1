"""Reference codec throughput next to a plain copy of the same tensor, measured in one run.

    .venv/bin/python benchmarks/codec_speed.py

Real MobileNetV2 activations (from ../shared) at three sites of different shapes; for each, the
numpy reference's quantize (the ONNX op's maths), pack, unpack and dequantize, and ONNX Runtime
running the encode -> decode pair, as MB/s of fp32 activation and as a multiple of np.copy's time.
The machine is shared and noisy: compare ratios within a row, not absolute speeds across runs.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from featcomp.runtime_ops import ort

from featcomp import api, modelio
from featcomp.data import ImageReader, image_files
from featcomp.preprocess import Preprocess
from featcomp.quality import OutputSnr

SHARED = Path(__file__).resolve().parents[2] / "shared"
PRE = "resize=256,crop=224,order=rgb,mean=128,std=128"


def best_of(fn: Callable[[], object], repeat: int = 7) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    model = modelio.prepare(modelio.load_model(SHARED / "models/mobilenet_v2_1.0_224.onnx"))
    result = api.compress(model, SHARED / "data/imagenet-calib-200", preprocess=PRE, limit=16, quality=OutputSnr(20))
    chosen = [result.sites[i] for i in (3, 20, 40)]
    probe = ort.session(ort.with_outputs(model, [s.name for s in chosen]))
    reader = ImageReader(image_files(SHARED / "data/imagenet-val-100"), Preprocess.parse(PRE), modelio.input_spec(model), 1)
    feed = reader.get_next()
    assert feed is not None
    acts = ort.run(probe, feed, [s.name for s in chosen])
    print("| site | shape | mode | copy MB/s | quantize | pack | unpack | dequantize | ORT pair | bits/value |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for site in chosen:
        codec = result.codecs[site.name]
        x = acts[site.name]
        sym = codec.symbols(x)[0]
        blob = codec.pack(sym)
        pair = ort.session(_pair_model(codec))
        t_copy = best_of(lambda: x.copy())
        cells = [best_of(f) / t_copy for f in (lambda: codec.symbols(x), lambda: codec.pack(sym),
                                                 lambda: codec.unpack(blob), lambda: codec.dequantize(sym[None]),
                                                 lambda: pair.run(None, {"x": x}))]
        mbps = x.nbytes / t_copy / 1e6
        print(f"| {site.name} | {'x'.join(map(str, site.shape))} | {codec.describe()['mode']} | {mbps:.0f} | "
              + " | ".join(f"{c:.0f}x copy" for c in cells) + f" | {8 * len(blob) / sym.size:.2f} |")
    return 0


def _pair_model(codec):  # type: ignore[no-untyped-def]
    """x -> DctCmEncode -> DctCmDecode -> y for one site's parameters."""
    from onnx import TensorProto, helper, numpy_helper

    from featcomp.ops.functions import function_for
    from featcomp.ops.schemas import DCTCM_DECODE, DCTCM_ENCODE, DOMAIN

    arrays = codec.side_arrays()
    inits = [numpy_helper.from_array(v, k) for k, v in arrays.items()]
    shape = [1, *codec.shape]
    enc = helper.make_node(DCTCM_ENCODE.name, ["x", *[p.name for p in DCTCM_ENCODE.inputs[1:]]], ["s"],
                           domain=DOMAIN, **codec.attributes())
    dec = helper.make_node(DCTCM_DECODE.name, ["s", "decode"], ["y"], domain=DOMAIN)
    graph = helper.make_graph([enc, dec], "pair", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13), helper.make_opsetid(DOMAIN, 1)],
                             functions=[function_for(DCTCM_ENCODE.name, 13), function_for(DCTCM_DECODE.name, 13)],
                             ir_version=8)


if __name__ == "__main__":
    sys.exit(main())
