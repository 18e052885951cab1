"""The learned-JPEG input node through TVM: its standard-op body is inlined and lowered with the network,
and the compiled model computes what ONNX Runtime computes."""

from __future__ import annotations

import numpy as np
import pytest

import models
import needs
from conftest import PREPROCESS
from featcomp import api
from featcomp.jpeg.tables import standard
from featcomp.passes.jpeg_input import insert_jpeg
from featcomp.preprocess import Preprocess
from featcomp.runtime_ops import ort

convert = needs.module("featcomp.runtime_ops.tvm.convert", "pip install 'featcomp[tvm]'")


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_jpeg_node_lowers_and_matches_onnx_runtime(subsampling: str) -> None:
    import tvm
    from tvm import relax

    model = insert_jpeg(api._model(models.two_convs()), standard(30, subsampling), Preprocess.parse(PREPROCESS)).model
    assert convert.unsupported_ops(model) == []
    flat = convert.inline_bodies(model)
    assert not any(n.domain == "ai.featcomp" for n in flat.graph.node)
    vm = relax.VirtualMachine(tvm.compile(convert.import_model(model), target="llvm"), tvm.cpu())
    x = np.random.default_rng(0).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = next(iter(ort.run(ort.session(model), {models.INPUT: x}).values()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * float(np.abs(want).max()))
