"""CPU schedules: hand rules for the featcomp kernels, keyed by target, and a default schedule for
everything else TVM legalizes (convs, pools, epilogues), so nothing is left as a naive loop nest.

Featcomp kernels (grouped view [n, c/g, g, p], p = H*W, V = vector factor):

    parallel for outer in n * c/g * p/V:           # fused b, k, p_outer (serial for small tensors)
        for j in g: vectorized for si in V: Q[j, si] = clip(rint(X / scale))     (encode only)
        for i in g:
            vectorized for si in V: ACC[i, si] = 0
            for j in g: vectorized for si in V: ACC[i, si] += M[i, j] * Q[j, si]
        for i in g: vectorized for si in V: Y[i, si] = int16(clip(rint(ACC / step)))  (encode only)

Q and ACC are allocated at the root but touched only under `outer`, so TVM's lowering shrinks them
to per-iteration [g, V] scratch. The rule for a target says how wide its vectors are and below how
many elements threading costs more than it saves (measured in the prototype: 7x7 and 1x1 maps are
slower in parallel).

Default schedule (every other PrimFunc without `tirx.is_scheduled`, e.g. after FuseOps/FuseTIR):
inline what can be inlined (pads, elementwise producers such as a fused G=1 decode, so the consumer
reads the symbols directly), then for each remaining block: fuse the outer spatial loops and run
them in parallel, move the innermost spatial loop inside the reduction loops and vectorize it,
and compute elementwise consumers (a fused G=1 encode) inside the producer's parallel loop.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import tvm
from featcomp.runtime_ops.tvm import conv_schedules, pool_schedules
from featcomp.runtime_ops.tvm.kernels import DECODE, ENCODE, OP_ATTR, SCHEDULED
from tvm import s_tir, tirx


@dataclass(frozen=True)
class Rule:
    """How to schedule for one CPU family."""

    name: str
    lanes: int            # float32 lanes of the vector unit
    parallel_min: int     # fewer elements than this: one thread (start-up costs more than it saves)
    registers: int = 16   # vector registers: bounds the conv tile (accumulators + weights + a broadcast)
    fma: bool = False     # fused multiply-add: one instruction per accumulator update (the conv tile's cost model)


RULES = {
    "aarch64": Rule("aarch64 NEON + parallel", 4, 16384, 32, True),
    "x86_64-avx512": Rule("x86 AVX-512 + parallel", 16, 16384, 32, True),
    "x86_64-avx2": Rule("x86 AVX2 + parallel", 8, 16384, 16, True),
    "x86_64": Rule("x86 SSE + parallel", 4, 16384, 16),
    "generic": Rule("generic CPU + parallel", 4, 16384, 16),
}
_AVX512 = ("skylake-avx512", "cascadelake", "icelake-server", "sapphirerapids", "znver4", "znver5")
_AVX2 = ("haswell", "broadwell", "skylake", "znver1", "znver2", "znver3", "alderlake", "x86-64-v3")


def _attr(target: tvm.target.Target, key: str) -> str:
    return str(target.attrs[key]) if key in target.attrs else ""


def _llvm_has(target: tvm.target.Target, feature: str) -> bool:
    """Does LLVM's model of the target's mcpu have a feature (mcpu names the short lists above miss,
    e.g. `host` on this machine is "rocketlake": AVX-512, which read as SSE before)?"""
    if not _attr(target, "mcpu"):
        return False
    from tvm.target import codegen

    try:
        return bool(codegen.llvm_cpu_has_features([feature], target))
    except Exception:  # noqa: BLE001 - an LLVM without that query: the lists above decide
        return False


def rule_for(target: tvm.target.Target) -> Rule:
    """The schedule rule of a target, from its triple, mcpu and mattr."""
    triple, mcpu = _attr(target, "mtriple"), _attr(target, "mcpu")
    mattr = [str(a) for a in target.attrs["mattr"]] if "mattr" in target.attrs else []
    if triple.startswith(("aarch64", "arm64")) or any("neon" in a for a in mattr):
        return RULES["aarch64"]
    if triple == "" or triple.startswith("x86_64"):
        if mcpu in _AVX512 or any("avx512" in a for a in mattr) or _llvm_has(target, "avx512f"):
            return RULES["x86_64-avx512"]
        if mcpu in _AVX2 or any("avx2" in a for a in mattr) or _llvm_has(target, "avx2"):
            return RULES["x86_64-avx2"]
        return RULES["x86_64"]
    return RULES["generic"]


def vector_factor(p: int, lanes: int) -> int:
    """The inner (vectorized) extent: a divisor of p (no predicated tail), up to 2 * lanes."""
    for f in (2 * lanes, lanes):
        if p % f == 0:
            return f
    for f in range(lanes, 1, -1):
        if p % f == 0:
            return f
    return 1


# ------------------------------------------------------------------------------------ featcomp kernels


def _parallel(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, rule: Rule) -> bool:
    """Is the tensor (the spatial loops b, k, i, s of a b, k, i, s, j nest) big enough for threads?"""
    total = 1
    for loop in sch.get_loops(block)[:-1]:
        total *= int(sch.get(loop).extent)
    return total >= rule.parallel_min


def _tile(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, rule: Rule, parallel: bool) -> tuple[Any, ...]:
    """b, k, i, s, j -> outer(b*k*so), i, j, vector si."""
    b, k, i, s, j = sch.get_loops(block)
    v = vector_factor(int(sch.get(s).extent), rule.lanes)
    so, si = sch.split(s, factors=[None, v])
    sch.reorder(b, k, so, i, j, si)
    outer = sch.fuse(b, k, so)
    if parallel:
        sch.parallel(outer)
    return outer, j, si, v


def _vectorize_last(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV) -> None:
    loop = sch.get_loops(block)[-1]
    if sch.get(loop).kind != tirx.ForKind.VECTORIZED:
        sch.vectorize(loop)


def schedule_encode(func: tirx.PrimFunc, rule: Rule) -> tirx.PrimFunc:
    sch = s_tir.Schedule(func)
    transform = sch.get_sblock("transform")
    if vector_factor(int(sch.get(sch.get_loops(transform)[3]).extent), rule.lanes) < rule.lanes:
        # no full-width vector divides H*W (14x14, 7x7 maps): the tiled nest runs partial vectors
        # through a memory accumulator and measured up to 8x slower than the plain nest, whose
        # innermost reduction LLVM keeps in a register (benchmarks/tvm_bench.py, docs/tvm.md)
        return func.with_attr(SCHEDULED, True)
    outer, j, si, v = _tile(sch, transform, rule, _parallel(sch, transform, rule))
    sch.compute_at(sch.get_sblock("quantize"), outer)
    sch.reverse_compute_at(sch.get_sblock("symbols"), outer)
    if v > 1:
        sch.vectorize(si)  # before decompose_reduction: the update block alone is not a complete block
    init = sch.decompose_reduction(transform, j)
    if v > 1:
        for block in (init, sch.get_sblock("quantize"), sch.get_sblock("symbols")):
            _vectorize_last(sch, block)
    return sch.mod["main"].with_attr(SCHEDULED, True)


def schedule_decode(func: tirx.PrimFunc, rule: Rule) -> tirx.PrimFunc:
    sch = s_tir.Schedule(func)
    block = sch.get_sblock("decode")
    outer, j, si, v = _tile(sch, block, rule, _parallel(sch, block, rule))
    if v > 1:
        sch.vectorize(si)
    init = sch.decompose_reduction(block, j)
    if v > 1:
        _vectorize_last(sch, init)
    return sch.mod["main"].with_attr(SCHEDULED, True)


def _role(func: tirx.PrimFunc) -> str | None:
    """ENCODE/DECODE for a grouped (G > 1) featcomp kernel, None for anything else (G = 1 kernels are
    elementwise: the default schedule handles them, fused or alone)."""
    attrs = func.attrs
    if attrs is None or OP_ATTR not in attrs or SCHEDULED in attrs or "op_pattern" not in attrs:
        return None
    text = func.script()
    if 'T.sblock("transform")' in text:
        return ENCODE
    return DECODE if 'T.sblock("decode")' in text and "T.init()" in text else None


def block_names(func: tirx.PrimFunc) -> list[str]:
    """Names of the blocks of a PrimFunc (0.27 has no Python TIR visitor: read the printed script)."""
    return re.findall(r'T\.sblock\("([^"]+)"', func.script())


def schedule_kernels(mod: tvm.IRModule, target: tvm.target.Target) -> tvm.IRModule:
    """Schedule every grouped featcomp kernel of a module (found by its featcomp.op attribute)."""
    rule = rule_for(target)
    updates = {}
    for gv, func in mod.functions_items():
        if isinstance(func, tirx.PrimFunc):
            role = _role(func)
            if role is not None:
                updates[gv] = (schedule_encode if role == ENCODE else schedule_decode)(func, rule)
    for gv, func in updates.items():
        mod[gv] = func
    return mod


# ------------------------------------------------------------------------------------ default schedule


def _try(action: object, *args: object) -> bool:
    """Apply one schedule primitive if TVM allows it here (ScheduleError, InternalError, ... all derive
    from Exception only: 0.27 has no common TVMError base)."""
    try:
        action(*args)  # type: ignore[operator]
        return True
    except Exception:
        return False


def _schedule_block(sch: s_tir.Schedule, info: object, rule: Rule) -> object:
    """Parallel outer spatial loops, innermost spatial loop vectorized under the reductions.
    Returns the parallel (or outermost) loop, or None when the block has no spatial loop."""
    iters = info.iters  # type: ignore[attr-defined]
    spatial = [it.loop_rv for it in iters if it.kind == "S"]
    reduce = [it.loop_rv for it in iters if it.kind == "R"]
    if not spatial or len(spatial) + len(reduce) != len(iters):
        return None
    v = vector_factor(int(sch.get(spatial[-1]).extent), rule.lanes)
    vec = None
    if v > 1:
        io, vec = sch.split(spatial[-1], factors=[None, v])
        spatial = [*spatial[:-1], io]
    sch.reorder(*spatial, *reduce, *([vec] if vec is not None else []))
    total = v
    for lp in spatial:
        total *= int(sch.get(lp).extent)
    outer = sch.fuse(*spatial[:-1]) if len(spatial) > 2 else spatial[0]
    if total >= rule.parallel_min:
        sch.parallel(outer)
    if vec is not None:
        sch.vectorize(vec)
    if reduce:
        _try(sch.decompose_reduction, info.block_rv, reduce[0])  # type: ignore[attr-defined]
    return outer


def _same_shape(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, other: s_tir.schedule.SBlockRV) -> bool:
    """Do two blocks write tensors of the same shape (an elementwise epilogue of `other`)?"""
    mine, theirs = sch.get(block).writes, sch.get(other).writes
    return (len(mine) == len(theirs) == 1
            and [int(d) for d in mine[0].source.shape] == [int(d) for d in theirs[0].source.shape])


def _vectorize_inner(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, rule: Rule) -> None:
    """Vectorize the innermost loop of an epilogue placed under the producer's loop (split to a divisor)."""
    loop = sch.get_loops(block)[-1]
    v = vector_factor(int(sch.get(loop).extent), rule.lanes)
    if v > 1:
        if v < int(sch.get(loop).extent):
            loop = sch.split(loop, factors=[None, v])[1]
        _try(sch.vectorize, loop)


def _elementwise(sch: s_tir.Schedule, block: s_tir.schedule.SBlockRV, rule: Rule) -> None:
    """A spatial block left after the conv rule (a pad writing a bigger tensor): outer loops fused and
    parallel, the innermost split to a vector divisor and vectorized."""
    loops = sch.get_loops(block)
    total = 1
    for lp in loops:
        total *= int(sch.get(lp).extent)
    if len(loops) > 1:
        outer = sch.fuse(*loops[:-1])
        if total >= rule.parallel_min:
            sch.parallel(outer)
    _vectorize_inner(sch, block, rule)


def conv_schedule(func: tirx.PrimFunc, rule: Rule, constants: frozenset[int] = frozenset()) -> tirx.PrimFunc | None:
    """The register-tiled conv rule (conv_schedules) for a PrimFunc holding a conv, the row-band rule
    (pool_schedules) for a max pool; None otherwise. constants: parameters passed as constants (a
    conv weight among them may come back repacked: see packed_params)."""
    sch = s_tir.Schedule(func)
    names = block_names(func)
    if pool_schedules.POOL_MAX in names and not any(n in names for n in (conv_schedules.DENSE, conv_schedules.DEPTHWISE)):
        left = pool_schedules.schedule_pool(sch, sch.get_sblock(pool_schedules.POOL_MAX), rule)
    else:
        left = conv_schedules.schedule_conv(sch, names, rule, constants)
    if left is None:
        return None
    for block in left:
        _elementwise(sch, block, rule)
    func = conv_schedules.drop_recast(sch.mod["main"])
    if conv_schedules.DEPTHWISE not in names:
        func = conv_schedules.stack_scratch(func)
    return func.with_attr(SCHEDULED, True)


def default_schedule(func: tirx.PrimFunc, rule: Rule, constants: frozenset[int] = frozenset()) -> tirx.PrimFunc | None:
    """The conv rule for a conv, else generic_schedule; None when neither applies."""
    try:
        tiled = conv_schedule(func, rule, constants)
    except Exception:  # noqa: BLE001 - a conv shape the tile rule cannot express: the generic schedule
        tiled = None
    return tiled if tiled is not None else generic_schedule(func, rule)


def generic_schedule(func: tirx.PrimFunc, rule: Rule) -> tirx.PrimFunc | None:
    """A parallel, vectorized schedule for a legalized (fused) PrimFunc; None when it does not apply."""
    from tvm.s_tir.dlight.analysis import normalize_prim_func
    from tvm.s_tir.dlight.base.common_schedules import try_inline

    sch = s_tir.Schedule(func)
    infos = normalize_prim_func(sch)
    if not infos:
        return None
    remaining = try_inline(sch, list(infos))
    if not remaining:
        return None
    main = next((b for b in remaining if b.is_reduction()), remaining[0])
    outer = _schedule_block(sch, main, rule)
    for info in remaining:
        if info is main:
            continue
        # reverse_compute_at covers only the region the producer writes: a consumer writing a bigger
        # (padded) or differently shaped tensor would leave part of its output unwritten
        placed = outer is not None and ((_same_shape(sch, info.block_rv, main.block_rv)
                                         and _try(sch.reverse_compute_at, info.block_rv, outer))
                                        or _try(sch.compute_at, info.block_rv, outer))
        if not placed:
            _schedule_block(sch, info, rule)
        else:
            _vectorize_inner(sch, info.block_rv, rule)
    return sch.mod["main"].with_attr(SCHEDULED, True)


def is_tiled(func: tirx.PrimFunc) -> bool:
    """Did the conv rule schedule this function (its accumulator tile is a cache_write buffer, *_local)?"""
    return (any(n in ("conv2d_nchw_init", "group_conv2d_nchw_init") for n in block_names(func))
            and re.search(r"\w+_local\w* = T\.sblock_alloc_buffer", func.script()) is not None)


def schedule_rest(mod: tvm.IRModule, target: tvm.target.Target, tiled: bool = True) -> tuple[tvm.IRModule, int, int]:
    """default_schedule (tiled=False: generic_schedule only, the baseline) for every unscheduled
    PrimFunc. Returns (module, scheduled, left naive)."""
    from featcomp.runtime_ops.tvm import layout

    rule = rule_for(target)
    constants = layout.constant_params(mod)
    done = naive = 0
    updates = {}
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or (func.attrs is not None and SCHEDULED in func.attrs):
            continue
        try:
            new = (default_schedule(func, rule, constants.get(gv.name_hint, frozenset())) if tiled
                   else generic_schedule(func, rule))
        except Exception:  # a primitive the analysis allowed failed: leave this function naive, count it
            new = None
        if new is None:
            naive += 1
        else:
            updates[gv] = new
            done += 1
    packed = {gv.name_hint: p for gv, func in updates.items() if (p := packed_params(mod[gv], func))}
    for gv, func in updates.items():
        mod[gv] = func
    return layout.pack_weight_args(mod, packed), done, naive


def packed_params(before: tirx.PrimFunc, after: tirx.PrimFunc) -> dict[int, int]:
    """{parameter: FI} of the weights a schedule repacked ([I, KH, KW, O] -> [O/FI, I, KH, KW, FI])."""
    out = {}
    for i, (old, new) in enumerate(zip(before.params, after.params)):  # 0.27: a parameter is its buffer
        if len(old.shape) == 4 and len(new.shape) == 5:
            out[i] = int(new.shape[4])
    return out
