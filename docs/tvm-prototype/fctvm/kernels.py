"""Hand-written TIR kernels for the featcomp ops (prototype of runtime_ops/tvm/kernels.py).

Both kernels work on the grouped view [N, C/G, G, H*W] of an NCHW tensor (the converter reshapes
around the call; a Relax reshape of a contiguous tensor is a view, no copy). Side arrays are passed
as runtime buffers, never folded into the TIR as constants, so no simplifier can turn a division by
`step` into a multiplication by a reciprocal.

Exactness notes (checked on TVM 0.27.0.post1 / its bundled LLVM):
- T.round and T.nearbyint both lower to @llvm.nearbyint.f32 for target kind llvm: round-half-to-even
  under the default rounding mode, i.e. numpy.rint. We use T.nearbyint, whose name states the intent.
- fdiv is emitted without fast-math flags unless the target sets "fast-math*" attributes; the encode
  schedule keeps divisions as divisions (vdivps / fdiv v.4s).
- transform @ q is a sum of products of integers with |sum| < 2**24: exact in float32 in any
  order, with or without FMA contraction. The decode matmul is ordinary float math (not bit-exact
  against numpy for G > 1, ~1 ulp).
"""

from __future__ import annotations

import functools

from tvm import tirx
from tvm.script import tirx as T

# PrimFunc attributes: "featcomp.op" names the op (schedules.schedule_module finds kernels by it);
# "op_pattern": 8 (kOpaque) is kept by AnnotateTIROpPattern, so FuseOps never fuses a hand-scheduled
# kernel into a neighbour; "tirx.noalias" (not "tir.noalias" in 0.27).


@functools.lru_cache(maxsize=None)  # TVMScript parsing costs ~30 ms; PrimFuncs are immutable
def encode_kernel(n: int, c: int, h: int, w: int, g: int) -> tirx.PrimFunc:
    """DctCmEncode on the grouped view: X f32 [n, c/g, g, h*w] -> Y int16 [n, c/g, g, h*w]."""
    cg, p = c // g, h * w

    @T.prim_func(private=True, s_tir=True)
    def dctcm_encode(
        X: T.Buffer((n, cg, g, p), "float32"),
        scale: T.Buffer((), "float32"),
        qmin: T.Buffer((), "float32"),
        qmax: T.Buffer((), "float32"),
        transform: T.Buffer((g, g), "float32"),
        step: T.Buffer((g, 1), "float32"),
        cmin: T.Buffer((g, 1), "float32"),
        cmax: T.Buffer((g, 1), "float32"),
        Y: T.Buffer((n, cg, g, p), "int16"),
    ):
        T.func_attr({"tirx.noalias": True, "featcomp.op": "DctCmEncode", "op_pattern": 8})
        Q = T.sblock_alloc_buffer((n, cg, g, p), "float32")
        ACC = T.sblock_alloc_buffer((n, cg, g, p), "float32")
        for b, k, j, s in T.grid(n, cg, g, p):
            with T.sblock("quantize"):
                vb, vk, vj, vs = T.axis.remap("SSSS", [b, k, j, s])
                Q[vb, vk, vj, vs] = T.min(T.max(T.nearbyint(X[vb, vk, vj, vs] / scale[()]), qmin[()]), qmax[()])
        for b, k, i, s, j in T.grid(n, cg, g, p, g):
            with T.sblock("transform"):
                vb, vk, vi, vs, vj = T.axis.remap("SSSSR", [b, k, i, s, j])
                with T.init():
                    ACC[vb, vk, vi, vs] = T.float32(0)
                ACC[vb, vk, vi, vs] = ACC[vb, vk, vi, vs] + transform[vi, vj] * Q[vb, vk, vj, vs]
        for b, k, i, s in T.grid(n, cg, g, p):
            with T.sblock("symbols"):
                vb, vk, vi, vs = T.axis.remap("SSSS", [b, k, i, s])
                Y[vb, vk, vi, vs] = T.Cast(
                    "int16",
                    T.min(T.max(T.nearbyint(ACC[vb, vk, vi, vs] / step[vi, 0]), cmin[vi, 0]), cmax[vi, 0]),
                )

    return dctcm_encode


@functools.lru_cache(maxsize=None)
def decode_kernel(n: int, c: int, h: int, w: int, g: int) -> tirx.PrimFunc:
    """DctCmDecode on the grouped view: Y int16 [n, c/g, g, h*w] -> X f32 [n, c/g, g, h*w]."""
    cg, p = c // g, h * w

    @T.prim_func(private=True, s_tir=True)
    def dctcm_decode(
        Y: T.Buffer((n, cg, g, p), "int16"),
        decode: T.Buffer((g, g), "float32"),
        X: T.Buffer((n, cg, g, p), "float32"),
    ):
        T.func_attr({"tirx.noalias": True, "featcomp.op": "DctCmDecode", "op_pattern": 8})
        for b, k, i, s, j in T.grid(n, cg, g, p, g):
            with T.sblock("decode"):
                vb, vk, vi, vs, vj = T.axis.remap("SSSSR", [b, k, i, s, j])
                with T.init():
                    X[vb, vk, vi, vs] = T.float32(0)
                X[vb, vk, vi, vs] = X[vb, vk, vi, vs] + decode[vi, vj] * T.Cast("float32", Y[vb, vk, vj, vs])

    return dctcm_decode
