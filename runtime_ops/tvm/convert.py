"""Relax ONNX importer converters for the ai.featcomp ops, and the one scoped importer patch.

TVM 0.27's importer has no public hook for custom converters. It looks up the module-level
function `onnx_frontend._get_convert_map()` on every call (in `_check_for_unsupported_ops` and
`_convert_operator`), so `featcomp_ops()` swaps that function for one that adds our converters,
only inside the block and under a lock. This is the only place that touches importer internals;
`check_importer()` fails loudly when a TVM upgrade moves them (tests call it).

The importer dispatches on node.op_type alone (the domain is ignored) and ignores model-local
functions, so `unsupported_ops()` checks domains itself and lists everything it cannot lower at once.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import onnx
import tvm
from featcomp.runtime_ops.tvm import kernels
from featcomp.runtime_ops.tvm.same_pads import explicit_same_pads
from tvm import relax
from tvm.relax.frontend.onnx import onnx_frontend as _fe

from featcomp.codecs.base import storage_dtype
from featcomp.ops import schemas

DOMAIN = schemas.DOMAIN
STANDARD_DOMAINS = ("", "ai.onnx")
_lock = threading.Lock()


def _static_shape(expr: relax.Expr, what: str) -> tuple[int, ...]:
    ty = expr.ty
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        raise NotImplementedError(f"{what}: input has no known shape ({ty})")
    dims = []
    for d in ty.shape.values:
        if not isinstance(d, tvm.tirx.IntImm):
            raise NotImplementedError(f"{what}: dynamic dimension {d}; compile with a static input shape")
        dims.append(int(d))
    return tuple(dims)


def _nchw(expr: relax.Expr, what: str) -> tuple[int, int, int, int]:
    shape = _static_shape(expr, what)
    if len(shape) != 4:
        raise NotImplementedError(f"{what}: expected an NCHW tensor, got shape {shape}")
    return shape[0], shape[1], shape[2], shape[3]


def _normalized(bb: relax.BlockBuilder, inputs: list[relax.Expr]) -> list[relax.Expr]:
    """The importer hands over un-normalized calls (e.g. R.add(a, b) for an Add output): give them types."""
    return [bb.normalize(x) if x is not None else x for x in inputs]


def _size(expr: relax.Expr, what: str) -> int:
    size = 1
    for d in _static_shape(expr, what):
        size *= d
    return size


def _const(value: relax.Expr) -> np.ndarray | None:
    return value.value.numpy() if isinstance(value, tvm.ir.expr.Constant) and hasattr(value.value, "numpy") else None


def _per_channel(value: relax.Expr, c: int) -> np.ndarray | None:
    """A constant side array as one float32 value per channel (scalar or [C,...] of one value per channel)."""
    array = _const(value)
    if array is None or array.size not in (1, c):
        return None
    return np.broadcast_to(array.astype(np.float32).reshape(-1), (c,))


MULTIPLY_CHECK_LEVELS = 1 << 12  # the exhaustive check is [C, levels] floats: 8-bit sites have 256, int16 sites divide


def second_stage(transform: relax.Expr, step: relax.Expr, qmin: relax.Expr, qmax: relax.Expr,
                 c: int) -> tuple[str, np.ndarray | None]:
    """How a G = 1 encode may compute nearbyint(transform * q / step) of the integer q (kernels.encode_kernel):
    SKIP when transform = step = 1; MULTIPLY by m = float32(transform / step) per channel when
    nearbyint(q * m) equals it for every integer q in [qmin, qmax] (checked here, in float32 as the
    kernel computes it: a division costs several times a product in the producer's output stage);
    else DIVIDE. Returns the mode and m (MULTIPLY only)."""
    t, s, lo, hi = (_per_channel(v, c) for v in (transform, step, qmin, qmax))
    if t is None or s is None or lo is None or hi is None:
        return kernels.DIVIDE, None
    if np.all(t == 1) and np.all(s == 1):
        return kernels.SKIP, None
    if float(hi.max()) - float(lo.min()) > MULTIPLY_CHECK_LEVELS or not (np.all(np.isfinite(t)) and np.all(s != 0)):
        return kernels.DIVIDE, None
    q = np.arange(float(lo.min()), float(hi.max()) + 1, dtype=np.float32)[None, :]
    m = (t / s).astype(np.float32)
    if not np.array_equal(np.rint(q * m[:, None]), np.rint((t[:, None] * q) / s[:, None])):
        return kernels.DIVIDE, None
    return kernels.MULTIPLY, m


def _as_kg(bb: relax.BlockBuilder, value: relax.Expr, k: int, g: int, what: str) -> relax.Expr:
    """A side array (scalar, per channel [C,1,1], per coefficient [G,1], per group coefficient [K,G,1];
    float or int16) as the float [K, G] buffer the kernels read. Constants (initializers) are reshaped
    here in numpy: folding hundreds of tiny broadcasts with FoldConstant costs a TIR build each."""
    size = _size(value, what)
    array = _const(value)
    if array is not None and size in (1, g, k * g):
        return relax.const(np.ascontiguousarray(np.broadcast_to(
            array.astype(np.float32).reshape((1, 1) if size == 1 else (1, g) if size == g else (k, g)), (k, g))))
    value = relax.op.astype(value, "float32")
    if size == 1:
        return bb.emit(relax.op.broadcast_to(relax.op.reshape(value, (1, 1)), (k, g)))
    if size == g and k > 1:
        return bb.emit(relax.op.broadcast_to(relax.op.reshape(value, (1, g)), (k, g)))
    if size == k * g:
        return bb.emit(relax.op.reshape(value, (k, g)))
    raise ValueError(f"{what}: expected 1, {g} or {k * g} values, got {size}")


def _as_kgg(bb: relax.BlockBuilder, matrix: relax.Expr, k: int, g: int, what: str) -> relax.Expr:
    """One [G,G] matrix for every group, or one per group [K,G,G] (float or int16) -> float [K,G,G]."""
    size = _size(matrix, what)
    array = _const(matrix)
    if array is not None and size in (g * g, k * g * g):
        return relax.const(np.ascontiguousarray(np.broadcast_to(array.astype(np.float32).reshape(-1, g, g), (k, g, g))))
    matrix = relax.op.astype(matrix, "float32")
    if size == g * g:
        return bb.emit(relax.op.broadcast_to(relax.op.reshape(matrix, (1, g, g)), (k, g, g)))
    if size == k * g * g:
        return bb.emit(relax.op.reshape(matrix, (k, g, g)))
    raise ValueError(f"{what}: expected a [{g},{g}] or [{k},{g},{g}] matrix")


def _groups(x: relax.Expr, matrix: relax.Expr, name: str) -> tuple[int, int, int, int, int]:
    """(n, c, h, w, g) of an op whose matrix input is [G,G] or [K,G,G]."""
    n, c, h, w = _nchw(x, name)
    g = _static_shape(matrix, f"{name} matrix")[-1]
    if c % g:
        raise ValueError(f"{name}: group {g} does not divide {c} channels")
    return n, c, h, w, g


def site_name(attr: dict[str, Any]) -> str:
    """The site (tensor) an encode/decode node serves, from the node name the importer passes along
    (passes/insert.py names them fc/<site>/encode and fc/<site>/decode)."""
    node = str(attr.get("tvm_custom", {}).get("name", "") or "")
    for suffix in ("/encode", "/decode"):
        if node.startswith("fc/") and node.endswith(suffix):
            return node[3:-len(suffix)]
    return node


def stored_form(dtype: str) -> tuple[str, int]:
    """(the type a compiled model keeps a site's symbols in, the offset subtracted) for the codec's
    storage type: uint8 sites are kept as int8, symbol - 128, because TVM's memory planner pools
    storages per dtype and a uint8 pool never shares with the int8 one (MobileNetV2: 14 uint8 sites
    beside 39 int8 ones). The decode adds the 128 back to an integer-valued float: exact."""
    return ("int8", 128) if dtype == "uint8" else (dtype, 0)


def _storage(cmin: relax.Expr, cmax: relax.Expr) -> str:
    """The site's symbol storage type from its constant clip range (int16 when the range is not a constant)."""
    lo, hi = _const(cmin), _const(cmax)
    if lo is None or hi is None:
        return "int16"
    return str(storage_dtype(lo, hi))


# site name -> offset of its stored symbols, filled by the encode converters during one import
# (featcomp_ops() resets it under the import lock) and read by the decode converters of the same site
_offsets: dict[str, int] = {}


def _encode_converter(name: str) -> type:
    def impl(cls: type, bb: relax.BlockBuilder, inputs: list[relax.Expr], attr: dict[str, Any], params: Any) -> relax.Expr:
        inputs = _normalized(bb, inputs)
        x, scale, qmin, qmax, transform, step, cmin, cmax = inputs[:8]
        n, c, h, w, g = _groups(x, transform, name)
        k = c // g
        if "shape" in attr and tuple(attr["shape"]) != (c, h, w):
            raise ValueError(f"{name}: attribute shape {tuple(attr['shape'])} != input {(c, h, w)}")
        site = site_name(attr)
        dtype, offset = stored_form(_storage(cmin, cmax))
        if offset and not site:  # an unnamed encode cannot tell its decode the offset: keep the codec's type
            dtype, offset = "uint8", 0
        _offsets[site] = offset
        side = [_as_kg(bb, v, k, g, f"{name} {label}") for v, label in
                ((scale, "scale"), (qmin, "qmin"), (qmax, "qmax"))]
        tail = [_as_kg(bb, v, k, g, f"{name} {label}") for v, label in ((step, "step"), (cmin, "cmin"), (cmax, "cmax"))]
        theta = _const(inputs[9]) if len(inputs) > 9 and inputs[9] is not None else np.zeros(())
        deadzone = theta is None or bool(np.any(theta))  # a constant 0 (or no input): the plain kernel
        if deadzone:  # TvlcEncode's centre and rounding offset (schemas.TVLC_ENCODE)
            tail += [_as_kg(bb, v, k, g, f"{name} {label}") for v, label in ((inputs[8], "centre"), (inputs[9], "deadzone"))]
        # the dead-zone kernels divide by the step themselves: the second-stage shortcut is for plain sites
        mode, product = (second_stage(transform, step, qmin, qmax, c) if g == 1 and not deadzone
                         else (kernels.DIVIDE, None))
        if product is not None:  # the kernel multiplies by transform / step (exact for this site's q)
            transform = relax.const(product.reshape(c, 1, 1))
        kernel = kernels.encode_kernel(name, n, c, h, w, g, dtype, offset, mode,
                                       deadzone).with_attr(kernels.SITE_ATTR, site)
        gv = bb.add_func(kernel, f"fc_encode_{n}x{c}x{h}x{w}_g{g}")
        args = [*side, _as_kgg(bb, transform, k, g, f"{name} transform"), *tail]
        if g == 1:  # elementwise on NCHW: no reshapes, so FuseOps can fuse it into the producer
            return relax.call_tir(gv, [x, *args], out_ty=relax.TensorType((n, c, h, w), dtype))
        grouped = bb.emit(relax.op.reshape(x, (n, k, g, h * w)))
        out = bb.emit(relax.call_tir(gv, [grouped, *args], out_ty=relax.TensorType((n, k, g, h * w), dtype)))
        return relax.op.reshape(out, (n, c, h, w))

    return type(name, (_fe.OnnxOpConverter,), {"__doc__": f"{name}: float NCHW -> symbols (int8/uint8/int16 per site)",
                                               "_impl_v1": classmethod(impl)})


def _decode_call(bb: relax.BlockBuilder, name: str, y: relax.Expr, matrix: relax.Expr,
                 n: int, c: int, h: int, w: int, g: int, site: str) -> relax.Expr:
    k = c // g
    dtype = str(y.ty.dtype)  # the storage type the encode chose
    offset = _offsets.get(site, 0) if site else 0
    kernel = kernels.decode_kernel(name, n, c, h, w, g, dtype, offset).with_attr(kernels.SITE_ATTR, site)
    gv = bb.add_func(kernel, f"fc_decode_{n}x{c}x{h}x{w}_g{g}")
    if g == 1:
        return relax.call_tir(gv, [y, matrix], out_ty=relax.TensorType((n, c, h, w), "float32"))
    grouped = bb.emit(relax.op.reshape(y, (n, k, g, h * w)))
    out = bb.emit(relax.call_tir(gv, [grouped, matrix], out_ty=relax.TensorType((n, k, g, h * w), "float32")))
    return relax.op.reshape(out, (n, c, h, w))


def _decode_matrix_converter(name: str) -> type:
    """Y, decode [G,G] or [K,G,G] (DctCmDecode)."""

    def impl(cls: type, bb: relax.BlockBuilder, inputs: list[relax.Expr], attr: dict[str, Any], params: Any) -> relax.Expr:
        inputs = _normalized(bb, inputs)
        y, decode = inputs[:2]
        n, c, h, w, g = _groups(y, decode, name)
        return _decode_call(bb, name, y, _as_kgg(bb, decode, c // g, g, f"{name} decode"), n, c, h, w, g,
                            site_name(attr))

    return type(name, (_fe.OnnxOpConverter,), {"__doc__": f"{name}: int16 symbols -> float NCHW",
                                               "_impl_v1": classmethod(impl)})


def _decode_transpose_converter(name: str) -> type:
    """Y, transform [K,G,G] int16, gain: decode matrix = transpose(float(transform)) * gain (TvlcDecode)."""

    def impl(cls: type, bb: relax.BlockBuilder, inputs: list[relax.Expr], attr: dict[str, Any], params: Any) -> relax.Expr:
        inputs = _normalized(bb, inputs)
        y, transform, gain = inputs[:3]
        n, c, h, w, g = _groups(y, transform, name)
        k = c // g
        matrix = _as_kgg(bb, transform, k, g, f"{name} transform")
        t, gain_value = _const(matrix), _const(gain)
        if t is not None and gain_value is not None:  # as the numpy reference computes it, in float32
            decoded = np.swapaxes(t, 1, 2) * gain_value.astype(np.float32).reshape(())
            return _decode_call(bb, name, y, relax.const(np.ascontiguousarray(decoded)), n, c, h, w, g, site_name(attr))
        scaled = bb.emit(relax.op.multiply(relax.op.permute_dims(matrix, [0, 2, 1]),
                                           relax.op.reshape(relax.op.astype(gain, "float32"), (1, 1, 1))))
        return _decode_call(bb, name, y, scaled, n, c, h, w, g, site_name(attr))

    return type(name, (_fe.OnnxOpConverter,), {"__doc__": f"{name}: int16 symbols -> float NCHW",
                                               "_impl_v1": classmethod(impl)})


# Which converter maker serves an op, by the op's input names (the op contract in schemas.py).
_ROLES: dict[tuple[str, ...], Callable[[str], type]] = {
    ("X", "scale", "qmin", "qmax", "transform", "step", "cmin", "cmax"): _encode_converter,
    ("X", "scale", "qmin", "qmax", "transform", "step", "cmin", "cmax", "centre", "deadzone"): _encode_converter,
    ("Y", "decode"): _decode_matrix_converter,
    ("Y", "transform", "gain"): _decode_transpose_converter,
}


def _converters() -> dict[str, type]:
    table = {}
    for name, op in schemas.OPS.items():
        make = _ROLES.get(tuple(op.input_names))
        if make is not None:
            table[name] = make(name)
    return table


CONVERTERS: dict[str, type] = _converters()


def check_importer() -> None:
    """Fail loudly if the importer internals this adapter relies on have changed."""
    problems = []
    if not callable(getattr(_fe, "_get_convert_map", None)):
        problems.append("onnx_frontend._get_convert_map is gone")
    elif not isinstance(_fe._get_convert_map(), dict):
        problems.append("onnx_frontend._get_convert_map() no longer returns a dict")
    if not hasattr(_fe, "OnnxOpConverter") or not hasattr(_fe.OnnxOpConverter, "get_converter"):
        problems.append("onnx_frontend.OnnxOpConverter.get_converter is gone")
    if not problems:
        clash = set(CONVERTERS) & set(_fe._get_convert_map())
        if clash:
            problems.append(f"TVM now has its own converters named {sorted(clash)}")
        import inspect

        source = inspect.getsource(_fe)
        if source.count("_get_convert_map()") < 2:
            problems.append("the importer no longer looks up _get_convert_map() at call time")
    if problems:
        raise RuntimeError(f"TVM {tvm.__version__} importer changed, featcomp's converter patch "
                           f"(runtime_ops/tvm/convert.py) needs updating: " + "; ".join(problems))


@contextlib.contextmanager
def featcomp_ops(extra: dict[str, type] | None = None) -> Iterator[None]:
    """Within this block, the Relax ONNX importer knows the ai.featcomp ops (and `extra` converters)."""
    check_importer()
    with _lock:  # the patch is process-global: serialize imports that use it
        original = _fe._get_convert_map

        def extended() -> dict[str, Any]:
            table: dict[str, Any] = original()
            table.update(CONVERTERS)
            table.update(extra or {})
            return table

        _fe._get_convert_map = extended
        _offsets.clear()
        try:
            yield
        finally:
            _fe._get_convert_map = original
            _offsets.clear()


def inline_bodies(model: onnx.ModelProto) -> onnx.ModelProto:
    """The featcomp ops without a TVM kernel of their own (the learned-JPEG input node), inlined into their
    standard-op function bodies, which TVM lowers like the rest of the network."""
    from onnx import inliner

    bodies = [(f.domain, f.name) for f in model.functions if f.domain == DOMAIN and f.name not in CONVERTERS]
    if not bodies:
        return model
    return inliner.inline_selected_functions(model, bodies, exclude=False)


def unsupported_ops(model: onnx.ModelProto) -> list[str]:
    """Every op of the model TVM cannot lower, as 'domain.Op' (or 'Op'), each once, in graph order."""
    model = inline_bodies(model)
    known = set(_fe._get_convert_map()) | {"If", "Constant"}
    local = {(f.domain, f.name) for f in model.functions}
    found: dict[str, None] = {}
    for node in model.graph.node:
        if node.domain == DOMAIN:
            if node.op_type not in CONVERTERS:
                found[f"{DOMAIN}.{node.op_type} (no TVM kernel for this featcomp op)"] = None
        elif node.domain not in STANDARD_DOMAINS:
            kind = "model-local function" if (node.domain, node.op_type) in local else "custom op"
            found[f"{node.domain}.{node.op_type} ({kind}, no TVM lowering)"] = None
        elif node.op_type not in known:
            found[node.op_type] = None
    return list(found)


def import_model(model: onnx.ModelProto, shape_dict: dict[str, list[int]] | None = None, *,
                 coder: bool = False) -> tvm.IRModule:
    """A (compressed) model -> Relax IRModule with the featcomp kernels as call_tir'd PrimFuncs.

    coder: the sites' bitstream coder (DCT-CM or transform-VLC) runs between each encode and decode (TIR pack -> unpack,
    coder.py), and each site's stream lengths are extra outputs after the model's own."""
    extra: dict[str, type] = {}
    if coder:
        from featcomp.runtime_ops.tvm import coder as tir_coder

        model, sites = tir_coder.with_tir_coder(model)
        extra[tir_coder.CODER_OP] = tir_coder.converter(sites)
    with featcomp_ops(extra):
        return _fe.from_onnx(explicit_same_pads(inline_bodies(model)), shape_dict=shape_dict)
