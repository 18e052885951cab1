"""runtime_ops.ort.session: the benchmarks' non-spinning session is a real config change and
computes the same outputs as the default one."""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

from featcomp.runtime_ops import ort

SPIN = "session.intra_op.allow_spinning"


def _model() -> bytes:
    node = helper.make_node("Relu", ["x"], ["y"])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    return model.SerializeToString()


def test_spinning_off_is_set_and_keeps_results() -> None:
    x = np.array([[-1.0, 0.5, 2.0], [3.0, -4.0, 0.0]], dtype=np.float32)
    default = ort.session(_model(), threads=2)
    quiet = ort.session(_model(), threads=2, spinning=False)
    assert quiet.get_session_options().get_session_config_entry(SPIN) == "0"
    try:
        default_value = default.get_session_options().get_session_config_entry(SPIN)
    except RuntimeError:  # not set: ORT's default, spinning
        default_value = None
    assert default_value != "0"
    np.testing.assert_array_equal(quiet.run(None, {"x": x})[0], default.run(None, {"x": x})[0])
