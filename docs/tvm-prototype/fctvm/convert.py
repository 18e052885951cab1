"""Relax ONNX importer adapter for the featcomp ops (prototype of runtime_ops/tvm/convert.py).

TVM 0.27's importer has no public hook for custom converters. It looks up the module-level
function `onnx_frontend._get_convert_map()` on every call (in `_check_for_unsupported_ops` and in
`_convert_operator`), so we swap that function for one that adds our two converters, only inside
the `featcomp_ops()` context manager. This is the one place that touches TVM internals; see
`check_importer()` for the loud failure when TVM changes.

The importer dispatches on node.op_type alone (the domain is ignored) and ignores model-local
functions, so `import_model()` checks domains itself before importing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import onnx
import tvm
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _fe

from . import kernels

DOMAIN = "ai.featcomp"
_lock = threading.Lock()


def _static_shape(expr: relax.Expr, what: str) -> tuple[int, ...]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise NotImplementedError(f"{what}: input has no known shape ({ty})")
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, tvm.tirx.IntImm):
            raise NotImplementedError(f"{what}: dynamic dimension {d}; pass shape_dict with a static batch")
        dims.append(int(d))
    return tuple(dims)


def _grouped(bb: relax.BlockBuilder, x: relax.Expr, shape: tuple[int, int, int, int], g: int) -> relax.Expr:
    n, c, h, w = shape
    return bb.emit(relax.op.reshape(x, (n, c // g, g, h * w)))


class DctCmEncode(_fe.OnnxOpConverter):
    """X, scale, qmin, qmax, transform, step, cmin, cmax -> int16 symbols (see schemas.DCTCM_ENCODE)."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        x = inputs[0]
        shape = _static_shape(x, "DctCmEncode")
        if len(shape) != 4:
            raise NotImplementedError(f"DctCmEncode: expected NCHW input, got shape {shape}")
        g = _static_shape(inputs[4], "DctCmEncode transform")[0]
        n, c, h, w = shape
        if c % g:
            raise ValueError(f"DctCmEncode: group {g} does not divide {c} channels")
        if "shape" in attr and tuple(attr["shape"]) != (c, h, w):
            raise ValueError(f"DctCmEncode: attribute shape {attr['shape']} != input {(c, h, w)}")
        gv = bb.add_func(kernels.encode_kernel(n, c, h, w, g), f"dctcm_encode_{n}x{c}x{h}x{w}_g{g}")
        out = bb.emit(relax.call_tir(gv, [_grouped(bb, x, shape, g), *inputs[1:8]],
                                     out_ty=relax.TensorType((n, c // g, g, h * w), "int16")))
        return relax.op.reshape(out, shape)


class DctCmDecode(_fe.OnnxOpConverter):
    """int16 symbols, decode [G, G] -> float activation (see schemas.DCTCM_DECODE)."""

    @classmethod
    def _impl_v1(cls, bb, inputs, attr, params):
        y = inputs[0]
        shape = _static_shape(y, "DctCmDecode")
        g = _static_shape(inputs[1], "DctCmDecode decode")[0]
        n, c, h, w = shape
        gv = bb.add_func(kernels.decode_kernel(n, c, h, w, g), f"dctcm_decode_{n}x{c}x{h}x{w}_g{g}")
        out = bb.emit(relax.call_tir(gv, [_grouped(bb, y, shape, g), inputs[1]],
                                     out_ty=relax.TensorType((n, c // g, g, h * w), "float32")))
        return relax.op.reshape(out, shape)


CONVERTERS = {"DctCmEncode": DctCmEncode, "DctCmDecode": DctCmDecode}


def check_importer() -> None:
    """Fail loudly if the importer internals this adapter relies on have changed."""
    problems = []
    if not callable(getattr(_fe, "_get_convert_map", None)):
        problems.append("onnx_frontend._get_convert_map is gone")
    elif not isinstance(_fe._get_convert_map(), dict):
        problems.append("onnx_frontend._get_convert_map() no longer returns a dict")
    if not hasattr(_fe, "OnnxOpConverter") or not hasattr(_fe.OnnxOpConverter, "get_converter"):
        problems.append("onnx_frontend.OnnxOpConverter.get_converter is gone")
    clash = set(CONVERTERS) & set(_fe._get_convert_map()) if not problems else set()
    if clash:
        problems.append(f"TVM now has its own converters named {sorted(clash)}")
    if problems:
        raise RuntimeError(f"TVM {tvm.__version__} importer changed: " + "; ".join(problems))


@contextlib.contextmanager
def featcomp_ops() -> Iterator[None]:
    """Within this block, the Relax ONNX importer knows DctCmEncode and DctCmDecode."""
    check_importer()
    with _lock:  # the patch is process-global: serialize imports that use it
        original = _fe._get_convert_map

        def extended():
            table = original()
            table.update(CONVERTERS)
            return table

        _fe._get_convert_map = extended
        try:
            yield
        finally:
            _fe._get_convert_map = original


def check_domains(model: onnx.ModelProto) -> None:
    """The importer ignores node domains: make sure our op names only come from our domain."""
    for node in model.graph.node:
        if node.op_type in CONVERTERS and node.domain != DOMAIN:
            raise ValueError(f"node {node.name}: op {node.op_type} in domain {node.domain!r}, expected {DOMAIN}")
        if node.domain == DOMAIN and node.op_type not in CONVERTERS:
            raise NotImplementedError(f"node {node.name}: no TVM converter for {DOMAIN}.{node.op_type}")
        if node.domain not in ("", "ai.onnx", DOMAIN):
            raise NotImplementedError(f"node {node.name}: domain {node.domain!r} is not supported")


def import_model(model: onnx.ModelProto, shape_dict: dict[str, list[int]] | None = None) -> tvm.IRModule:
    """A compressed model -> Relax IRModule with the featcomp kernels as call_tir'd PrimFuncs."""
    check_domains(model)
    with featcomp_ops():
        return _fe.from_onnx(model, shape_dict=shape_dict)
