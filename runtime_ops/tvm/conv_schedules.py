"""Register-tiled CPU schedules for the convolutions of a legalized network (NCHW activations; dense
convs take their weights as [I, KH, KW, O], set once at the graph level by `layout.weights_o_last`).

Dense conv (1x1 and kxk), stride 1 on rows that split into vectors (112, 56 on AVX-512): one tile =
FT output channels (unrolled) x PV pixels of a row (vectorized, contiguous loads and writes).
Other rows (28, 14, 7, odd widths), one tile = PT pixels of one output row x FI output channels:

    parallel for (fo, n, y):                      # channel block x row: a block's weights stay cached
                                                  # (n, y, fo) for a projection (rows_outer), not
                                                  # when the input is staged (8-bit codes)
        pad / input stage computed here           # a separate block (a decode fused into the conv joins it)
        for xo:
            ACC[PT, FI] = 0                       # registers: PT x FI/lanes vectors
            for rc, ry, rx:                       # reduction innermost-but-one
                unrolled for xi in PT:
                    vectorized for fi in FI: ACC[xi, fi] += X[rc, y*s+ry, x*s+rx] * W[rc, ry, rx, fo*FI+fi]
            output stage (bias, clip, residual, a fused encode) from ACC, written once

Depthwise conv, a row band per (n, channel, row), pixels of the row vectorized:

    parallel for (n, c, band of up to 8 rows):
        pad stage computed here (a per-thread scratch; stride 2: even/odd columns)
        for xo: vectorized for xi in V: acc = sum over ry, rx of X[c, y*s+ry, x*s+rx] * W[c, ry, rx]
        output stage

PT and FI follow the register file of the target (`Rule.registers`): PT x FI/lanes accumulators
plus FI/lanes weight vectors and one broadcast must fit. The tiling choices follow TVM's own x86
conv2d_avx_1x1 (reg_n pixels x oc_bn channels, ic innermost-but-one) and arm_cpu spatial pack.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from tvm import s_tir, tirx

DENSE, DEPTHWISE = "conv2d_nchw", "group_conv2d_nchw"
MATVEC = "matvec_packed"  # layout.MATVEC (layout imports relax: not imported here)


def buffer_shape(buffer: Any) -> list[int]:
    return [int(d) for d in buffer.shape]


def _channel_block(oc: int, lanes: int) -> int:
    """FI: two vectors of output channels when they divide OC, else one, else half a vector; 0 = none."""
    for f in (2 * lanes, lanes, lanes // 2):
        if f >= 2 and oc % f == 0:
            return f
    return 0


def _channel_tile(oc: int, ow: int, rule: Any, cast: bool) -> tuple[int, int]:
    """(FI, PT) of the pixels x channel-vectors tile, by a small cost model of one reduction step:
    PT broadcasts of an input value (a load and a shuffle; a widening int8 -> float32 conversion too
    when the conv reads stored 8-bit codes), V = FI/lanes weight vectors, PT x V accumulator updates
    (one FMA, or a multiply and an add), at most 4 instructions and 2 loads per cycle, and no faster
    than one add latency (~4 cycles) per step since every accumulator is updated once. The tile must
    fit the registers (PT x V accumulators + V weights + a broadcast). The cheapest step per
    accumulator wins: few, long channel vectors where rows are short (7 x 7 maps: one broadcast
    feeds up to 8 vectors instead of 2). (0, 0) when no channel vector divides OC."""
    broadcast, update = (3 if cast else 2), (1 if rule.fma else 2)
    best: tuple[float, int, int, int] | None = None
    for v in (1, 2, 4, 8):  # powers of two: LLVM legalizes a <24 x float> loop body badly (measured 6x slower)
        fi = v * rule.lanes
        if oc % fi:
            continue
        for pt in range(min(14, ow), 0, -1):
            if ow % pt or pt * v + v + 1 > rule.registers:
                continue
            step = max((pt * broadcast + v + update * pt * v) / 4, (pt + v) / 2, 4.0)
            key = (step / (pt * v), pt * v + v, -pt, fi)  # cheapest, then fewest registers, then longer rows
            if best is None or key < best[:3] + (best[3],):
                best = (key[0], key[1], key[2], fi)
    if best is None:
        fi = _channel_block(oc, rule.lanes)
        if fi == 0:
            return 0, 0
        vectors = fi // rule.lanes or 1
        return fi, _pixel_tile(ow, max(1, min(14, (rule.registers - vectors - 1) // vectors)))
    return best[3], -best[2]


def worth_threads(outputs: int, reduction: int, rule: Any) -> bool:
    """Threads for a dense conv when its multiply-adds (not its outputs) are many: a 1x1 conv
    projecting 960 channels of a 7x7 map to 160 has only 7840 outputs but 7.5 M multiply-adds (0.17
    ms on one core), and stayed on one thread under the element-count rule of the other ops."""
    return outputs * reduction >= 16 * rule.parallel_min


def rows_outer(sch: s_tir.Schedule, conv: Any) -> bool:
    """Order the parallel band as (row, channel block) when the input is the biggest operand (a
    projection: more input than weights and than output): threads then split the rows, each reading
    half the input. As (channel block, row), a conv with few channel blocks (MobileNetV2's 56x56
    projections: 2 blocks of 12 channels) gave each of 2 threads one block, so both read the whole
    input (1.8 MB) and the second core bought nothing. Big weights (7x7 maps, 960 -> 320) keep
    blocks outermost, so a block's weights stay cached over its rows; so do expansions (16 -> 96 at
    112x112): rows outermost there wrote 96 channel planes per row step and measured 1.3x slower."""
    data_shape, out_shape = buffer_shape(sch.get(conv).reads[0].source), buffer_shape(sch.get(conv).writes[0].source)
    weight = int(np.prod(buffer_shape(sch.get(conv).reads[1].source)))
    data, out = int(np.prod(data_shape)), int(np.prod(out_shape))
    # fewer output than input channels too: `data` is the padded input, so a padded k x k conv C -> C (never
    # measured this way) would otherwise count as a projection because of its border alone
    return weight <= data and out <= data and out_shape[1] < data_shape[1]


LL_BYTES = 1024 * 1024  # a last-level cache (a Cortex-A72's shared L2; cachegrind's --LL in traffic.py)
BAND_BYTES = 32 * 1024  # input rows that all channel blocks of a row band read: an L1's worth


def band_rows(sch: s_tir.Schedule, conv: Any) -> int:
    """Output rows per band read by all channel blocks in turn, (n, row band, channel block, row),
    when the input is too big for a channel block to find it still cached: 0 when it is not (the
    band stays (channel block, n, row)). With blocks outermost each block streams the whole input:
    MobileNetV2's 16 -> 96 expansion at 112x112 reads 0.8 MB per block of 6 channels, and the block's
    0.3 MB of output pushes it out of a 1 MiB cache before the next block, so it read 8.2 MB instead
    of 0.8 (cachegrind, x86_64). A band of R rows keeps R x s + KH - s input rows (at most
    BAND_BYTES) cached while every block uses them; each block writes R rows of its planes."""
    data_shape = buffer_shape(sch.get(conv).reads[0].source)  # the padded input
    out_shape = buffer_shape(sch.get(conv).writes[0].source)
    if 4 * int(np.prod(data_shape)) * 2 <= LL_BYTES:
        return 0
    oh, ih = out_shape[2], data_shape[2]
    row = 4 * data_shape[0] * data_shape[1] * data_shape[3]
    stride = max(1, (ih - 1) // max(1, oh - 1)) if oh > 1 else 1
    kh = ih - (oh - 1) * stride
    fits = [r for r in range(1, oh + 1) if oh % r == 0 and ((r - 1) * stride + kh) * row <= BAND_BYTES]
    return max(fits, default=1)


def order_band(sch: s_tir.Schedule, conv: Any, outer: tuple[Any, Any, Any, Any], inner: tuple[Any, ...]) -> Any:
    """The dense conv's parallel band from its (n, channel block, row, pixel tile) loops, ordered by the
    rules above: rows first for a projection (rows_outer), row bands around the channel blocks for a big
    input (band_rows), else channel blocks outermost (a block's weights stay in cache over its rows)."""
    b, fo, y, xo = outer
    rows = band_rows(sch, conv)
    if rows_outer(sch, conv):
        sch.reorder(b, y, fo, xo, *inner)
        return sch.fuse(b, y, fo)
    if rows:
        yo, yi = sch.split(y, factors=[None, rows])
        sch.reorder(b, yo, fo, yi, xo, *inner)
        return sch.fuse(b, yo, fo)
    sch.reorder(fo, b, y, xo, *inner)
    return sch.fuse(fo, b, y)


def _pixel_tile(ow: int, cap: int) -> int:
    """PT: the largest divisor of the output row that fits the registers (a guarded tail measured
    several times slower: the guard sits inside the reduction)."""
    return next(f for f in range(min(cap, ow), 0, -1) if ow % f == 0)


def _same(sch: s_tir.Schedule, a: Any, b: Any) -> bool:
    return bool(sch.get(a).same_as(sch.get(b)))


def _chain(sch: s_tir.Schedule, block: Any, step: str) -> list[Any]:
    """Blocks before (get_producers) or after (get_consumers) a block, nearest first."""
    out: list[Any] = []
    todo = [block]
    while todo:
        for other in getattr(sch, step)(todo.pop()):
            if not any(_same(sch, other, b) for b in out):
                out.append(other)
                todo.append(other)
    return out


def _has_branch(sch: s_tir.Schedule, block: Any) -> bool:
    return "if_then_else" in str(sch.get(block).body)


GROUP_BYTES = 256 * 1024  # weights of the channel blocks that share one converted input band (an L2's worth)


def _float_input(sch: s_tir.Schedule, conv: Any) -> Any:
    """A conv that reads stored 8-bit codes (its decode folded into the weights) casts each input on
    load; in the pixels x channel-vectors tile that load is a scalar broadcast, so the widening costs
    several instructions per input per channel block. Instead the band's input is converted once, in
    vectors, into a float32 scratch: the padding stage when there is one (it becomes float32), else a
    cached copy of the codes. Returns that block (kept out of inlining), or None (float inputs, or a
    chain of several producers)."""
    producers = sch.get_producers(conv)
    if str(sch.get(conv).reads[0].source.dtype) == "float32":
        # a site stored as symbol - offset reaches the conv through a widening (a fused decode block,
        # fuse_decode._widened_input): keep the stage that reads it, so it is widened once per band too
        if len(producers) == 1 and _reads_codes(sch, conv):
            return producers[0]
        return None
    if len(producers) > 1:
        return None
    # TOPI's pad_temp (a plain copy for 1x1 convs, a padding for kxk) becomes the float32 stage
    stage = producers[0] if producers else sch.cache_read(conv, 0, "global")
    sch.unsafe_set_dtype(stage, 0, "float32")
    return stage


def _reads_codes(sch: s_tir.Schedule, conv: Any) -> bool:
    """Does the conv's input come from stored codes: read directly, or through a fused decode block?"""
    if str(sch.get(conv).reads[0].source.dtype) != "float32":
        return True
    return any(sch.get(b).name_hint == "decode" for b in _chain(sch, conv, "get_producers"))


_RECAST = re.compile(r'T\.Cast\("float32", T\.Cast\("u?int8", (pad_temp\w*\[[^\[\]]*\])\)\)')


def drop_recast(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """unsafe_set_dtype (see _float_input) keeps the readers' types: the conv reads the float32 stage
    as float32(int8(x)). x holds integers of the codes' range, so that is x; no schedule primitive
    rewrites an expression, so the script is edited and parsed back (only when the pattern is there)."""
    text = func.script()
    if _RECAST.search(text) is None:
        return func
    from tvm.script import from_source

    return from_source(_RECAST.sub(r"\1", text))


def stack_scratch(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """A dense conv's accumulator tile (and staged input band) in `global` scope instead of `local`:
    allocated inside the parallel loop either way, but `local` lowers to a TVMBackendAllocWorkspace
    call per iteration, a constant `global` buffer under 1 KB to a stack alloca that LLVM keeps in
    registers. Measured (tvm_model_ab.py --base HEAD, 1 thread, load ~12): SqueezeNet 1.11x,
    MobileNetV2 1.06x faster; with the depthwise scratch too MobileNetV2 was 0.97x, so depthwise
    functions stay local. Every local buffer of the function at once: the script is edited and
    parsed back, as in drop_recast."""
    text = func.script()
    if 'scope="local")' not in text:
        return func
    from tvm.script import from_source

    return from_source(text.replace(', scope="local")', ")"))


def _even_odd_index(n: Any, c: Any, h: Any, w: Any) -> tuple[Any, ...]:
    """Column w of a padded input row -> (parity, w // 2): the even/odd storage of a stride-2 stage."""
    return (n, c, h, w % 2, w // 2)


def _even_odd(sch: s_tir.Schedule, block: Any) -> None:
    """Store a stride-2 conv's padded input as even/odd columns and iterate the stage in that storage
    order (parity, then half), before compute_at: the band's region then spans whole even and odd
    halves, so the inner loop writes contiguous vectors with no guard, where a loop over columns
    scattered every second one as scalar stores (MobileNetV2's 96x112x112 stride-2 depthwise layer:
    0.67 -> 0.41 ms, with the parity loop unrolled by the caller; benchmarks/tvm_schedule_ab.py)."""
    sch.transform_layout(block, ("write", 0), _even_odd_index)
    sch.transform_block_layout(block, _even_odd_index)


def input_stage(sch: s_tir.Schedule, conv: Any, loop: Any, local: bool = False, stride: int = 1,
                 keep: Any = None) -> None:
    """Producers of the conv: plain copies are inlined; a padding stage (and what feeds it, e.g. a
    fused decode) is computed per row band, a separate block the tile reads from. local: the band's
    scratch is per thread (depthwise: one channel, a few rows); stride 2 stores it as even/odd
    columns, so the tile's loads of every second pixel are contiguous vectors."""
    for block in _chain(sch, conv, "get_producers"):
        if not _has_branch(sch, block) and not (keep is not None and _same(sch, block, keep)):
            try:
                sch.compute_inline(block)
            except Exception:  # noqa: BLE001 - 0.27 schedule errors share no base but Exception
                pass
    for block in _chain(sch, conv, "get_producers"):  # nearest first: compute_at needs its consumer placed
        split = (local and stride == 2 and buffer_shape(sch.get(block).writes[0].source)[-1] % 2 == 0
                 and _same(sch, sch.get_consumers(block)[0], conv))  # odd widths would need a padding column
        if split:
            _even_odd(sch, block)
        sch.compute_at(block, loop, preserve_unit_loops=True)
        if local:
            sch.set_scope(block, 0, "local")
        inner = sch.get_loops(block)[-1]
        if split:  # both parities of a row in one body: LLVM merges their stride-2 scalar loads
            sch.unroll(sch.get_loops(block)[-2])
        extent = sch.get(inner).extent
        if isinstance(extent, tirx.IntImm) and int(extent) >= 4:
            sch.vectorize(inner)


def output_stage(sch: s_tir.Schedule, writer: Any, loop: Any) -> list[Any]:
    """Fold the elementwise epilogue chain (bias, clip, residual add, a fused encode) into the block
    that writes the conv's result, computed at the tile. Another input of the chain computed in the
    function (the decode of a residual's stored codes) is inlined first: left as a block, it blocks
    the chain, which then runs as naive loops over a full decoded tensor. Returns the consumers left outside (a pad
    that writes a bigger tensor, say)."""
    sliced = None
    while True:
        nxt = sch.get_consumers(writer)
        if len(nxt) != 1:
            break
        if _narrower(sch, nxt[0], writer):  # reverse_compute_inline would write past the smaller output
            sliced = nxt[0]
            break
        for other in sch.get_producers(nxt[0]):  # a decode fused for a residual Add: inlined into the Add
            if not _same(sch, other, writer) and not _has_branch(sch, other):
                try:
                    sch.compute_inline(other)
                except Exception:  # noqa: BLE001
                    pass
        try:
            sch.reverse_compute_inline(nxt[0])
        except Exception:  # noqa: BLE001
            break
    sch.reverse_compute_at(writer, loop, preserve_unit_loops=True)
    if sliced is None:
        return sch.get_consumers(writer)
    # output channels padded to whole vectors (layout.padded_channels): the slice back to OC, with the
    # epilogue after it folded in, computed per tile from the tile's (cached) result
    output_stage(sch, sliced, loop)
    return sch.get_consumers(sliced)


def _narrower(sch: s_tir.Schedule, block: Any, writer: Any) -> bool:
    """Does the block write a tensor of the writer's rank that is smaller (a slice of it)?"""
    mine, theirs = buffer_shape(sch.get(block).writes[0].source), buffer_shape(sch.get(writer).writes[0].source)
    return len(mine) == len(theirs) and mine != theirs and all(a <= b for a, b in zip(mine, theirs))


def schedule_dense(sch: s_tir.Schedule, conv: Any, rule: Any, constants: frozenset[int] = frozenset()) -> list[Any] | None:
    """Tile a dense conv (weights [I, KH, KW, O]); None when its shape does not fit the tile.
    constants: the function's parameters that are constants (a weight among them is repacked per
    channel block for the channel-vector tile, _pack_weight)."""
    out = sch.get(conv).writes[0].source
    n, oc, oh, ow = buffer_shape(out)
    weight = sch.get(conv).reads[1].source  # topi.nn.conv reads (padded input, weight)
    cast = _reads_codes(sch, conv)  # a folded conv reading stored codes (or their widening)
    fi, pt = _channel_tile(oc, ow, rule, cast)
    if fi == 0 or buffer_shape(weight)[-1] != oc:
        return None
    pv = _pixel_vector(ow, rule.lanes)
    if pv and _stride(sch, conv) == 1:
        return _dense_pixel_vectors(sch, conv, rule, pv, n * oh * oc * ow * int(np.prod(buffer_shape(weight)[:-1])))
    _pack_weight(sch, conv, weight, fi, constants)
    staged = _float_input(sch, conv) if cast else None
    acc = sch.cache_write(conv, 0, "local")
    sch.transform_layout(conv, ("write", 0), lambda a, c, y, x: (a, y, x, c))
    b, f, y, x, rc, ry, rx = sch.get_loops(conv)
    fo, fin = sch.split(f, factors=[None, fi])
    xo, xi = sch.split(x, factors=[None, pt])
    if staged is None:
        band = order_band(sch, conv, (b, fo, y, xo), (rc, ry, rx, xi, fin))
    else:  # the band's float32 input serves a group of channel blocks whose weights fit a cache
        per_block = fi * int(np.prod(buffer_shape(weight)[:-1])) * 4
        blocks = oc // fi
        group = max(g for g in range(1, blocks + 1) if blocks % g == 0 and (g == 1 or g * per_block <= GROUP_BYTES))
        fog, fob = sch.split(fo, factors=[None, group])
        sch.reorder(fog, b, y, fob, xo, rc, ry, rx, xi, fin)
        band = sch.fuse(fog, b, y)
    if worth_threads(n * oh * oc * ow, int(np.prod(buffer_shape(weight)[:-1])), rule):
        sch.parallel(band)
    sch.unroll(xi)
    sch.vectorize(fin)
    input_stage(sch, conv, band, local=staged is not None, keep=staged)
    left = output_stage(sch, acc, xo)
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    _, c, y, x = sch.get_loops(acc)[-4:]
    sch.reorder(y, x, c)  # writer: pixels unrolled, channels vectorized (the registers' order)
    sch.unroll(x)
    sch.vectorize(c)
    return left


def _pack_weight(sch: s_tir.Schedule, conv: Any, weight: Any, fi: int, constants: frozenset[int]) -> None:
    """A constant weight [I, KH, KW, O] read by the channel-vector tile -> [O/FI, I, KH, KW, FI]: each
    channel block's weights one contiguous stream. In [I, KH, KW, O] a block's rows are O floats
    apart: 4 KB for SqueezeNet's 1024-channel conv, so every row falls in the same cache sets and
    the block's 64 KB never stays cached over its 13 rows. The caller repacks the constant
    (layout.pack_weight_args, found from the changed parameter shape)."""
    func = sch.mod["main"]
    index = next((i for i, p in enumerate(func.params) if p.same_as(weight)), None)
    if index is None or index not in constants:
        return
    sch.transform_layout(conv, ("read", 1), lambda i, h, w, o: (o // fi, i, h, w, o % fi))


def _pixel_vector(ow: int, lanes: int) -> int:
    """Pixels per vector when a row splits into at least half-width vectors (112, 56 on AVX-512;
    112, 56, 28 on NEON), else 0: the channel-vector tile, whose write scatters over channel planes."""
    return next((v for v in (2 * lanes, lanes, lanes // 2) if v >= 4 and ow % v == 0), 0)


def _dense_pixel_vectors(sch: s_tir.Schedule, conv: Any, rule: Any, pv: int, macs: int) -> list[Any]:
    """Big maps, stride 1: FT output channels (unrolled) x PV pixels of a row (vectorized) in
    registers; inputs are contiguous vector loads, weights scalar broadcasts, the write contiguous."""
    oc = buffer_shape(sch.get(conv).writes[0].source)[1]
    vectors = max(1, pv // rule.lanes)
    cap = max(1, min(12, (rule.registers - vectors - 1) // vectors))
    ft = next(f for f in range(min(cap, oc), 0, -1) if oc % f == 0)
    acc = sch.cache_write(conv, 0, "local")
    b, f, y, x, rc, ry, rx = sch.get_loops(conv)
    fo, fin = sch.split(f, factors=[None, ft])
    xo, xi = sch.split(x, factors=[None, pv])
    band = order_band(sch, conv, (b, fo, y, xo), (rc, ry, rx, fin, xi))
    if worth_threads(macs, 1, rule):
        sch.parallel(band)
    sch.unroll(fin)
    sch.vectorize(xi)
    input_stage(sch, conv, band)
    left = output_stage(sch, acc, xo)
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    _, c, _, x = sch.get_loops(acc)[-4:]
    sch.unroll(c)
    sch.vectorize(x)
    return left


def schedule_depthwise(sch: s_tir.Schedule, conv: Any, rule: Any) -> list[Any] | None:
    """Row-band depthwise conv (one input channel per output channel); None for other grouped convs."""
    reduce = [lp for lp, it in zip(sch.get_loops(conv), sch.get(conv).iter_vars) if it.iter_type == tirx.IterVar.CommReduce]
    if int(sch.get(reduce[0]).extent) != 1:
        return None
    n, c, oh, ow = buffer_shape(sch.get(conv).writes[0].source)
    stride = _stride(sch, conv)
    b, f, y, x, rc, ry, rx = sch.get_loops(conv)
    v = depthwise_vector(ow, rule.lanes)
    xo, xi = sch.split(x, factors=[None, v])
    rows = next(r for r in (8, 7, 6, 5, 4, 3, 2, 1) if oh % r == 0)  # a band's padded input is computed once
    yo, yi = sch.split(y, factors=[None, rows])
    sch.reorder(b, f, yo, yi, xo, rc, ry, rx, xi)
    band = sch.fuse(b, f, yo)
    if n * c * oh * ow >= rule.parallel_min:
        sch.parallel(band)
    staged = _float_input(sch, conv)  # 8-bit codes: the band's padded input widened once, not per tap
    acc = sch.cache_write(conv, 0, "local")
    input_stage(sch, conv, band, local=True, stride=stride, keep=staged)
    left = output_stage(sch, acc, xo)
    sch.vectorize(xi)
    init = sch.decompose_reduction(conv, rc)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])
    return left


def _stride(sch: s_tir.Schedule, conv: Any) -> int:
    """The conv's horizontal stride, read from its input index (x * 2 + rx for stride 2)."""
    return 2 if "v_xx * T.int64(2)" in str(sch.get(conv).body) else 1


def depthwise_vector(ow: int, lanes: int) -> int:
    """Pixels per vector: a divisor of the row up to two vectors, or the whole row when it is short
    (LLVM splits a 7- or 14-wide vector into 8/4/2/1-lane parts: still far better than scalar)."""
    if ow <= 2 * lanes:
        return ow
    for f in range(2 * lanes, lanes // 2, -1):
        if ow % f == 0:
            return f
    return 2 * lanes  # guarded tail


MATVEC_UNROLL = 4  # packed blocks per tile: independent accumulator vectors (one FMA chain each)


def schedule_matvec(sch: s_tir.Schedule, block: Any, rule: Any) -> list[Any]:
    """The packed GEMV (layout.pack_matvec, weights [N/16, K, 16]): a tile of U blocks x 16 outputs
    in registers (16 lanes vectorized, U blocks unrolled: U independent FMA chains), K in between,
    each block's weights read as one sequential stream; parallel over tiles. The copy to the
    unpadded output is inlined into its consumer (the bias add), which stays a separate loop."""
    (j, k) = sch.get_loops(block)
    blocks = int(sch.get(j).extent) // 16
    unroll = next(u for u in range(MATVEC_UNROLL, 0, -1) if blocks % u == 0)
    tile, u, lane = sch.split(j, factors=[None, unroll, 16])
    sch.reorder(tile, k, u, lane)
    if int(sch.get(k).extent) * blocks * 16 >= 16 * rule.parallel_min:  # multiply-adds, not outputs, decide
        sch.parallel(tile)
    acc = sch.cache_write(block, 0, "local")
    sch.reverse_compute_at(acc, tile, preserve_unit_loops=True)
    sch.unroll(u)
    sch.vectorize(lane)
    init = sch.decompose_reduction(block, k)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])
    copy = sch.get_consumers(acc)[0]
    if not sch.get_consumers(copy):  # the GEMV is the function's output: the copy stays a loop
        return [copy]
    readers = sch.get_consumers(copy)
    sch.compute_inline(copy)
    return readers


def schedule_conv(sch: s_tir.Schedule, names: list[str], rule: Any, constants: frozenset[int] = frozenset()) -> list[Any] | None:
    """The conv rule of a fused PrimFunc holding one conv2d block; returns the blocks it left
    unscheduled (for the generic rule), or None when the function is not a conv it handles.
    constants: parameters the caller passes as constants (weights that may be repacked)."""
    if MATVEC in names:
        return schedule_matvec(sch, sch.get_sblock(MATVEC), rule)
    if DENSE in names:
        return schedule_dense(sch, sch.get_sblock(DENSE), rule, constants)
    if DEPTHWISE in names:
        return schedule_depthwise(sch, sch.get_sblock(DEPTHWISE), rule)
    return None
