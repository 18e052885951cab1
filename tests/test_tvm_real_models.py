"""The three real models compiled with the default (tiled) schedules give ONNX Runtime's outputs:
SqueezeNet 1.1 and MobileNetV2 from ../shared, EfficientNet-Lite0 from featcomp.zoo. One compile
per model, host target, batch 1, one random input (same top-1, outputs within 1e-4 of the largest)."""

from __future__ import annotations

import numpy as np
import pytest

import needs
from tvm_tools import need_tvm

pytestmark = [pytest.mark.slow]


def _model(name: str):  # noqa: ANN202 - onnx.ModelProto
    from featcomp import modelio, zoo

    if name == "efficientnet-lite0":
        return modelio.prepare(zoo.efficientnet_lite0())
    path = needs.shared("models", f"{name}.onnx")
    return modelio.prepare(modelio.load_model(path))


@pytest.mark.parametrize("name", ["efficientnet-lite0",
                                  pytest.param("squeezenet1.1", marks=pytest.mark.shared),
                                  pytest.param("mobilenet_v2_1.0_224", marks=pytest.mark.shared)])
def test_tiled_build_matches_onnx_runtime(name: str) -> None:
    from featcomp.modelio import input_spec
    from featcomp.runtime_ops import ort

    build = need_tvm()
    model = _model(name)
    spec = input_spec(model)
    compiled = build.compile_model(model, build.make_target("host"), shape_dict={spec.name: [1, 3, 224, 224]})
    assert compiled.stats["naive"] == 0 and compiled.stats["conv_tiled"] >= 10, compiled.stats
    x = np.random.default_rng(0).normal(0, 50, size=(1, 3, 224, 224)).astype(np.float32)
    want = np.asarray(next(iter(ort.run(ort.session(model), {spec.name: x}).values())))
    got = build.run_local(compiled, [x])[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * float(np.abs(want).max()))
    assert got.argmax() == want.argmax()
