# mypy: disable-error-code="valid-type"
# (TVMScript buffer annotations T.Buffer(shape, dtype) are not Python types.)
"""Hand-written TIR kernels for the ai.featcomp encode/decode ops.

The kernels work on the grouped view [N, K, G, H*W] of an NCHW tensor, K = C/G groups (the converter
reshapes around the call, a view of a contiguous tensor). Every side array arrives in one general
form, whatever the op stored: scale/qmin/qmax/step/cmin/cmax as float [K, G], the transform and the
decode matrix as float [K, G, G]. The converter broadcasts scalars, per-channel [C,1,1] arrays,
one [G,G] matrix for all groups (DctCm) or one per group (TVLC, int16), so one kernel serves every
op of the domain. Side arrays stay runtime buffers, never folded into TIR constants, so no
simplifier turns the division by `step` into a multiplication by a reciprocal.

Two shapes of kernel:
- G > 1: a reduction over the group (transform @ q), kept opaque (op_pattern 8) and scheduled by
  hand in schedules.py.
- G = 1: the transform is one product, so the op is elementwise on NCHW (no reshapes). The encode
  has no pattern attribute: AnnotateTIROpPattern marks it elementwise and FuseOps fuses it into the
  producer's output stage (conv + bias + activation + encode), so the producer's fp32 output is never
  written, only the symbols (in the site's storage type: int8/uint8 where its range fits, else int16).
  The decode stays opaque: left elementwise, FuseOps would fuse it into the *producer's* group too
  (encode -> decode is an elementwise chain), which writes the fp32 reconstruction instead of the
  symbols; fuse_decode.py places it in the consumers instead (folded into conv weights, or fused).

The dead zone (TvlcEncode's centre/deadzone inputs, codecs.tvlc.dead_zone_round) has kernels of its own,
with two more [K, G] buffers: max(rint(u - theta), min(rint(u + theta), centre)), u = ACC / step. A site
without a dead zone (theta a constant 0, or a model written before it) keeps the plain kernels.

Exactness (TVM 0.27.0.post1 and its LLVM): T.nearbyint lowers to llvm.nearbyint and _rint (the G = 1
encode) to llvm.roundeven, both round half to even (numpy.rint); fdiv stays a division (no fast-math
flags); transform @ q sums products of integers below 2**24, exact in float32 in any order, with or
without FMA contraction.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from tvm import tirx
from tvm.script import tirx as T

OP_ATTR = "featcomp.op"  # which featcomp op a PrimFunc implements (schedules.py finds kernels by it)
SITE_ATTR = "featcomp.site"  # the site (tensor name) an encode/decode PrimFunc serves: one PrimFunc per site
OFFSET_ATTR = "featcomp.offset"  # stored = symbol - offset (uint8-range sites kept as int8: one 8-bit pool)
SCHEDULED = "tirx.is_scheduled"  # a PrimFunc the schedule rules leave alone
ENCODE, DECODE = "encode", "decode"
DIVIDE, MULTIPLY, SKIP = "divide", "multiply", "skip"  # the G = 1 encode's second stage (encode_kernel)


@functools.lru_cache(maxsize=None)  # TVMScript parsing costs ~30 ms; PrimFuncs are immutable
def encode_kernel(op: str, n: int, c: int, h: int, w: int, g: int, dtype: str = "int16",
                  offset: int = 0, second: str = DIVIDE, deadzone: bool = False) -> tirx.PrimFunc:
    """X f32 [n, K, g, h*w] -> symbols [n, K, g, h*w] (K = c/g); for g = 1, [n, c, h, w] in and out.
    dtype: the site's storage type (int8/uint8 when its clip range fits, see codecs.base.storage_dtype);
    the final clip keeps every symbol inside it, so the cast is exact. offset: the kernel stores
    symbol - offset (an integer-valued float minus an integer: exact), e.g. 128 for a [0, 255] site
    kept as int8 so that it shares TVM's int8 storage pool. second (g = 1 only): how the kernel computes
    nearbyint(transform * q / step) of the integer q: DIVIDE as written; MULTIPLY nearbyint(transform * q)
    with the caller passing transform / step as `transform` (convert.py checks, for every integer q of the
    site's range, that this gives the same symbols); SKIP: q itself (transform = step = 1). Both save a
    division per value in the producer's output stage, where the encode is fused. deadzone: the kernel
    takes centre and theta [K, g] after cmax and rounds with the dead zone (DIVIDE only; the plain
    kernels' signature is unchanged)."""
    if deadzone:
        if second != DIVIDE:
            raise ValueError("the dead-zone encode divides by the step itself: second must be DIVIDE")
        func = (_encode_g1_dz(op, n, c, h, w, dtype, offset) if g == 1
                else _encode_grouped_dz(op, n, c, h * w, g, dtype, offset))
    else:
        func = (_encode_g1(op, n, c, h, w, dtype, offset, second) if g == 1
                else _encode_grouped(op, n, c, h * w, g, dtype, offset))
    return func.with_attr(OFFSET_ATTR, offset) if offset else func


@functools.lru_cache(maxsize=None)
def decode_kernel(op: str, n: int, c: int, h: int, w: int, g: int, dtype: str = "int16",
                  offset: int = 0) -> tirx.PrimFunc:
    """symbols [n, K, g, h*w] (of the storage dtype) -> X f32 [n, K, g, h*w]; for g = 1, [n, c, h, w] in and out.
    offset: the stored values are symbol - offset; float(stored) + offset is the symbol exactly, so the
    result is bit-identical to decoding the unshifted symbols."""
    func = (_decode_g1(op, n, c, h, w, dtype, offset) if g == 1
            else _decode_grouped(op, n, c, h * w, g, dtype, offset))
    return func.with_attr(OFFSET_ATTR, offset) if offset else func


def _shifted(offset: int) -> Callable[[Any], Any]:
    """value - offset as a TIR expression (the value itself for 0, so offset-free kernels are unchanged)."""
    return lambda v: v if offset == 0 else v - T.float32(offset)


def _widened(offset: int) -> Callable[[Any], Any]:
    """float32(stored) + offset: the symbol (exact: both are integers below 2**24)."""
    return lambda v: T.Cast("float32", v) if offset == 0 else T.Cast("float32", v) + T.float32(offset)


def _i64(*dims: int) -> tuple[tirx.IntImm, ...]:
    """Shapes as int64, as Relax legalization writes them (FuseTIR requires equal buffer types)."""
    return tuple(tirx.IntImm("int64", d) for d in dims)


def _encode_grouped(op: str, n_: int, c_: int, p_: int, g_: int, dtype: str, offset: int) -> tirx.PrimFunc:
    n, cg, p, g = _i64(n_, c_ // g_, p_, g_)
    shift = _shifted(offset)

    @T.prim_func(private=True, s_tir=True)
    def fc_encode(
        X: T.Buffer((n, cg, g, p), "float32"),
        scale: T.Buffer((cg, g), "float32"),
        qmin: T.Buffer((cg, g), "float32"),
        qmax: T.Buffer((cg, g), "float32"),
        transform: T.Buffer((cg, g, g), "float32"),
        step: T.Buffer((cg, g), "float32"),
        cmin: T.Buffer((cg, g), "float32"),
        cmax: T.Buffer((cg, g), "float32"),
        Y: T.Buffer((n, cg, g, p), dtype),
    ):
        T.func_attr({"tirx.noalias": True, OP_ATTR: op, "op_pattern": 8})
        Q = T.sblock_alloc_buffer((n, cg, g, p), "float32")
        ACC = T.sblock_alloc_buffer((n, cg, g, p), "float32")
        for b, k, j, s in T.grid(n, cg, g, p):
            with T.sblock("quantize"):
                vb, vk, vj, vs = T.axis.remap("SSSS", [b, k, j, s])
                Q[vb, vk, vj, vs] = T.min(T.max(T.nearbyint(X[vb, vk, vj, vs] / scale[vk, vj]), qmin[vk, vj]),
                                          qmax[vk, vj])
        for b, k, i, s, j in T.grid(n, cg, g, p, g):
            with T.sblock("transform"):
                vb, vk, vi, vs, vj = T.axis.remap("SSSSR", [b, k, i, s, j])
                with T.init():
                    ACC[vb, vk, vi, vs] = T.float32(0)
                ACC[vb, vk, vi, vs] = ACC[vb, vk, vi, vs] + transform[vk, vi, vj] * Q[vb, vk, vj, vs]
        for b, k, i, s in T.grid(n, cg, g, p):
            with T.sblock("symbols"):
                vb, vk, vi, vs = T.axis.remap("SSSS", [b, k, i, s])
                Y[vb, vk, vi, vs] = T.Cast(dtype, shift(
                    T.min(T.max(T.nearbyint(ACC[vb, vk, vi, vs] / step[vk, vi]), cmin[vk, vi]), cmax[vk, vi])))

    return fc_encode


def _rint(x: Any) -> Any:
    """Round half to even, as T.nearbyint, but through llvm.roundeven: in the producer's vectorized output
    stage (8 lanes on SSE) T.nearbyint comes out as scalar roundss and drags the divisions along (divss),
    llvm.roundeven as roundps/divps (x86-64-v2; frintn on NEON)."""
    return T.call_llvm_pure_intrin("float32", "llvm.roundeven", x)


def _encode_g1(op: str, n_: int, c_: int, h_: int, w_: int, dtype: str, offset: int, mode: str) -> tirx.PrimFunc:
    n, c, h, w = _i64(n_, c_, h_, w_)
    shift = _shifted(offset)
    z = T.int64(0)

    def second(q: Any, t: Any, s: Any) -> Any:
        """nearbyint(t * q / s) of the integer q, or what the caller proved equal to it (encode_kernel)."""
        return q if mode == SKIP else _rint(t * q) if mode == MULTIPLY else _rint(t * q / s)

    @T.prim_func(private=True, s_tir=True)
    def fc_encode(
        X: T.Buffer((n, c, h, w), "float32"),
        scale: T.Buffer((c, T.int64(1)), "float32"),
        qmin: T.Buffer((c, T.int64(1)), "float32"),
        qmax: T.Buffer((c, T.int64(1)), "float32"),
        transform: T.Buffer((c, T.int64(1), T.int64(1)), "float32"),
        step: T.Buffer((c, T.int64(1)), "float32"),
        cmin: T.Buffer((c, T.int64(1)), "float32"),
        cmax: T.Buffer((c, T.int64(1)), "float32"),
        Y: T.Buffer((n, c, h, w), dtype),
    ):
        T.func_attr({"tirx.noalias": True, OP_ATTR: op})
        for b, k, j, s in T.grid(n, c, h, w):
            with T.sblock("symbols"):
                vb, vk, vj, vs = T.axis.remap("SSSS", [b, k, j, s])
                Y[vb, vk, vj, vs] = T.Cast(dtype, shift(T.min(T.max(second(
                    T.min(T.max(_rint(X[vb, vk, vj, vs] / scale[vk, z]), qmin[vk, z]), qmax[vk, z]),
                    transform[vk, z, z], step[vk, z]), cmin[vk, z]), cmax[vk, z])))

    return fc_encode


def _dead_zone(u: Any, theta: Any, centre: Any) -> Any:
    """max(rint(u - theta), min(rint(u + theta), centre)): codecs.tvlc.dead_zone_round as a TIR expression."""
    return T.max(T.nearbyint(u - theta), T.min(T.nearbyint(u + theta), centre))


def _encode_grouped_dz(op: str, n_: int, c_: int, p_: int, g_: int, dtype: str, offset: int) -> tirx.PrimFunc:
    """_encode_grouped with the dead zone in its "symbols" block (same blocks: schedules.py tiles it alike)."""
    n, cg, p, g = _i64(n_, c_ // g_, p_, g_)
    shift = _shifted(offset)

    @T.prim_func(private=True, s_tir=True)
    def fc_encode(
        X: T.Buffer((n, cg, g, p), "float32"),
        scale: T.Buffer((cg, g), "float32"),
        qmin: T.Buffer((cg, g), "float32"),
        qmax: T.Buffer((cg, g), "float32"),
        transform: T.Buffer((cg, g, g), "float32"),
        step: T.Buffer((cg, g), "float32"),
        cmin: T.Buffer((cg, g), "float32"),
        cmax: T.Buffer((cg, g), "float32"),
        centre: T.Buffer((cg, g), "float32"),
        theta: T.Buffer((cg, g), "float32"),
        Y: T.Buffer((n, cg, g, p), dtype),
    ):
        T.func_attr({"tirx.noalias": True, OP_ATTR: op, "op_pattern": 8})
        Q = T.sblock_alloc_buffer((n, cg, g, p), "float32")
        ACC = T.sblock_alloc_buffer((n, cg, g, p), "float32")
        for b, k, j, s in T.grid(n, cg, g, p):
            with T.sblock("quantize"):
                vb, vk, vj, vs = T.axis.remap("SSSS", [b, k, j, s])
                Q[vb, vk, vj, vs] = T.min(T.max(T.nearbyint(X[vb, vk, vj, vs] / scale[vk, vj]), qmin[vk, vj]),
                                          qmax[vk, vj])
        for b, k, i, s, j in T.grid(n, cg, g, p, g):
            with T.sblock("transform"):
                vb, vk, vi, vs, vj = T.axis.remap("SSSSR", [b, k, i, s, j])
                with T.init():
                    ACC[vb, vk, vi, vs] = T.float32(0)
                ACC[vb, vk, vi, vs] = ACC[vb, vk, vi, vs] + transform[vk, vi, vj] * Q[vb, vk, vj, vs]
        for b, k, i, s in T.grid(n, cg, g, p):
            with T.sblock("symbols"):
                vb, vk, vi, vs = T.axis.remap("SSSS", [b, k, i, s])
                Y[vb, vk, vi, vs] = T.Cast(dtype, shift(T.min(T.max(_dead_zone(
                    ACC[vb, vk, vi, vs] / step[vk, vi], theta[vk, vi], centre[vk, vi]), cmin[vk, vi]), cmax[vk, vi])))

    return fc_encode


def _encode_g1_dz(op: str, n_: int, c_: int, h_: int, w_: int, dtype: str, offset: int) -> tirx.PrimFunc:
    """_encode_g1 with the dead zone: elementwise still, so FuseOps fuses it into the producer alike."""
    n, c, h, w = _i64(n_, c_, h_, w_)
    shift = _shifted(offset)
    @T.prim_func(private=True, s_tir=True)
    def fc_encode(
        X: T.Buffer((n, c, h, w), "float32"),
        scale: T.Buffer((c, T.int64(1)), "float32"),
        qmin: T.Buffer((c, T.int64(1)), "float32"),
        qmax: T.Buffer((c, T.int64(1)), "float32"),
        transform: T.Buffer((c, T.int64(1), T.int64(1)), "float32"),
        step: T.Buffer((c, T.int64(1)), "float32"),
        cmin: T.Buffer((c, T.int64(1)), "float32"),
        cmax: T.Buffer((c, T.int64(1)), "float32"),
        centre: T.Buffer((c, T.int64(1)), "float32"),
        theta: T.Buffer((c, T.int64(1)), "float32"),
        Y: T.Buffer((n, c, h, w), dtype),
    ):
        T.func_attr({"tirx.noalias": True, OP_ATTR: op})
        for b, k, j, s in T.grid(n, c, h, w):
            with T.sblock("symbols"):
                vb, vk, vj, vs = T.axis.remap("SSSS", [b, k, j, s])
                Y[vb, vk, vj, vs] = T.Cast(dtype, shift(T.min(T.max(_dead_zone(
                    transform[vk, T.int64(0), T.int64(0)] * T.min(T.max(T.nearbyint(X[vb, vk, vj, vs] / scale[vk, T.int64(0)]), qmin[vk, T.int64(0)]),
                                                qmax[vk, T.int64(0)]) / step[vk, T.int64(0)],
                    theta[vk, T.int64(0)], centre[vk, T.int64(0)]), cmin[vk, T.int64(0)]), cmax[vk, T.int64(0)])))

    return fc_encode


def _decode_grouped(op: str, n_: int, c_: int, p_: int, g_: int, dtype: str, offset: int) -> tirx.PrimFunc:
    n, cg, p, g = _i64(n_, c_ // g_, p_, g_)
    widen = _widened(offset)

    @T.prim_func(private=True, s_tir=True)
    def fc_decode(
        Y: T.Buffer((n, cg, g, p), dtype),
        decode: T.Buffer((cg, g, g), "float32"),
        X: T.Buffer((n, cg, g, p), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, OP_ATTR: op, "op_pattern": 8})
        for b, k, i, s, j in T.grid(n, cg, g, p, g):
            with T.sblock("decode"):
                vb, vk, vi, vs, vj = T.axis.remap("SSSSR", [b, k, i, s, j])
                with T.init():
                    X[vb, vk, vi, vs] = T.float32(0)
                X[vb, vk, vi, vs] = X[vb, vk, vi, vs] + decode[vk, vi, vj] * widen(Y[vb, vk, vj, vs])

    return fc_decode


def _decode_g1(op: str, n_: int, c_: int, h_: int, w_: int, dtype: str, offset: int) -> tirx.PrimFunc:
    n, c, h, w = _i64(n_, c_, h_, w_)
    widen = _widened(offset)
    @T.prim_func(private=True, s_tir=True)
    def fc_decode(
        Y: T.Buffer((n, c, h, w), dtype),
        decode: T.Buffer((c, T.int64(1), T.int64(1)), "float32"),
        X: T.Buffer((n, c, h, w), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, OP_ATTR: op, "op_pattern": 8})
        for b, k, j, s in T.grid(n, c, h, w):
            with T.sblock("decode"):
                vb, vk, vj, vs = T.axis.remap("SSSS", [b, k, j, s])
                X[vb, vk, vj, vs] = decode[vk, T.int64(0), T.int64(0)] * widen(Y[vb, vk, vj, vs])

    return fc_decode
