"""CPU schedules for the featcomp kernels (prototype of runtime_ops/tvm/schedules.py).

Loop structure after scheduling (grouped view [n, c/g, g, p], p = H*W, V = vector factor):

    parallel for outer in n * c/g * p/V:          # fused b, k, p_outer
        for j in g: vectorized for si in V: Q[j, si] = clip(rint(X / scale))      (encode only)
        for i in g:
            vectorized for si in V: ACC[i, si] = 0
            for j in g: vectorized for si in V: ACC[i, si] += M[i, j] * Q[j, si]
        for i in g: vectorized for si in V: Y[i, si] = int16(clip(rint(ACC / step)))  (encode only)

Q and ACC are allocated at the root but only touched under `outer`, so TVM's lowering
(PlanAndUpdateBufferAllocationLocation + CompactBufferAllocation) shrinks them to per-iteration
[g, V] scratch inside the parallel loop.
"""

from __future__ import annotations

import tvm
from tvm import s_tir, tirx

SCHEDULED = "tirx.is_scheduled"


def vector_lanes(target: tvm.target.Target) -> int:
    """float32 lanes of the widest vector unit the target advertises (16 AVX-512, 8 AVX2, 4 NEON/SSE)."""
    attrs = target.attrs
    mcpu = str(attrs.get("mcpu", "")) if "mcpu" in attrs else ""
    mattr = [str(a) for a in attrs["mattr"]] if "mattr" in attrs else []
    if any("avx512" in a for a in mattr) or mcpu in ("skylake-avx512", "cascadelake", "icelake-server",
                                                     "sapphirerapids", "znver4"):
        return 16
    if any("avx2" in a for a in mattr) or mcpu in ("haswell", "broadwell", "skylake", "znver2", "znver3"):
        return 8
    return 4


def vector_factor(p: int, lanes: int) -> int:
    """The inner (vectorized) extent: a divisor of p (no predicated tail), up to 2 * lanes."""
    for f in (2 * lanes, lanes):
        if p % f == 0:
            return f
    for f in range(lanes, 1, -1):
        if p % f == 0:
            return f
    return 1


def _tile(sch: s_tir.Schedule, block, lanes: int):
    """b, k, i, s, j -> parallel(b*k*so), i, j, vector si. Returns (outer, i, j, si)."""
    b, k, i, s, j = sch.get_loops(block)
    p = int(sch.get(s).extent)
    v = vector_factor(p, lanes)
    so, si = sch.split(s, factors=[None, v])
    sch.reorder(b, k, so, i, j, si)
    outer = sch.fuse(b, k, so)
    sch.parallel(outer)
    return outer, i, j, si, v


def _vectorize_if_serial(sch: s_tir.Schedule, loop) -> None:
    if sch.get(loop).kind != tirx.ForKind.VECTORIZED:
        sch.vectorize(loop)


def schedule_encode(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc:
    sch = s_tir.Schedule(func)
    lanes = vector_lanes(target)
    transform = sch.get_sblock("transform")
    outer, i, j, si, v = _tile(sch, transform, lanes)
    sch.compute_at(sch.get_sblock("quantize"), outer)
    sch.reverse_compute_at(sch.get_sblock("symbols"), outer)
    if v > 1:
        sch.vectorize(si)  # before decompose_reduction: the update block alone is not a complete block
    init = sch.decompose_reduction(transform, j)
    if v > 1:
        _vectorize_if_serial(sch, sch.get_loops(init)[-1])
        sch.vectorize(sch.get_loops(sch.get_sblock("quantize"))[-1])
        sch.vectorize(sch.get_loops(sch.get_sblock("symbols"))[-1])
    return sch.mod["main"].with_attr(SCHEDULED, True)


def schedule_decode(func: tirx.PrimFunc, target: tvm.target.Target) -> tirx.PrimFunc:
    sch = s_tir.Schedule(func)
    lanes = vector_lanes(target)
    block = sch.get_sblock("decode")
    outer, i, j, si, v = _tile(sch, block, lanes)
    if v > 1:
        sch.vectorize(si)
    init = sch.decompose_reduction(block, j)
    if v > 1:
        _vectorize_if_serial(sch, sch.get_loops(init)[-1])
    return sch.mod["main"].with_attr(SCHEDULED, True)


SCHEDULES = {"DctCmEncode": schedule_encode, "DctCmDecode": schedule_decode}


def schedule_module(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Schedule every featcomp kernel of a Relax module (found by its "featcomp.op" attribute)."""
    mod = mod.shallow_copy() if hasattr(mod, "shallow_copy") else mod
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc) and func.attrs is not None and "featcomp.op" in func.attrs:
            if SCHEDULED in func.attrs:
                continue
            updates[gv] = SCHEDULES[str(func.attrs["featcomp.op"])](func, target)
    for gv, func in updates.items():
        mod[gv] = func
    return mod
