"""The ONNX Runtime adapter: the only module that imports onnxruntime.

Compressed models carry their ops as model-local functions, so a plain InferenceSession runs them;
`session()` is the one public call that also applies featcomp's defaults (CPU provider, threads).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper

from featcomp.errors import FeatcompError

try:
    import onnxruntime as ort
except ImportError as exc:  # pragma: no cover - onnxruntime is a hard dependency
    raise FeatcompError("featcomp needs onnxruntime: pip install onnxruntime==1.31.1") from exc


def session(model: onnx.ModelProto | bytes | str, threads: int | None = None,
            spinning: bool = True) -> "ort.InferenceSession":
    """An InferenceSession for a (possibly compressed) model.

    spinning False: the intra-op threads sleep as soon as a run ends instead of spinning; a benchmark
    that runs TVM right after ORT on few cores needs it (a spinning ORT thread slows TVM's next
    parallel launch several times, docs/tvm.md "Traps").
    """
    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises several unrelated types for a model it refuses
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatcompError(f"ONNX Runtime cannot load the model: {first}") from None


def with_outputs(model: onnx.ModelProto, names: Sequence[str], dtypes: Sequence[int] | None = None) -> onnx.ModelProto:
    """A copy of the model that also returns the given intermediate tensors."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    present = {o.name for o in out.graph.output}
    for i, name in enumerate(names):
        if name not in present:
            dtype = dtypes[i] if dtypes is not None else TensorProto.FLOAT
            out.graph.output.append(helper.make_tensor_value_info(name, dtype, None))
    return out


def run(sess: "ort.InferenceSession", feeds: dict[str, np.ndarray], names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    wanted = list(names) if names is not None else [o.name for o in sess.get_outputs()]
    try:
        values = sess.run(wanted, feeds)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatcompError(f"ONNX Runtime failed to run the model: {first}") from None
    return dict(zip(wanted, values))


def iterate(sess: "ort.InferenceSession", batches: Iterator[dict[str, np.ndarray]],
            names: Sequence[str] | None = None) -> Iterator[dict[str, np.ndarray]]:
    for feeds in batches:
        yield run(sess, feeds, names)
