"""Row-band schedule for max pools (NCHW), the depthwise conv's band with max for the sum:

    parallel for (n, c, band of up to 8 output rows):
        padded input rows of the band copied once into a per-thread scratch
        (stride 2: stored as even/odd columns, so every tap's load is a contiguous vector)
        for xo: vectorized for xi in V: acc = max over ry, rx of X[c, y*s+ry, x*s+rx]
        output stage (a fused epilogue, if any)

The generic schedule read every tap with stride-2 gathers and kept its maximum in memory:
SqueezeNet's three 3x3/2 pools took 1.07 of 10.6 ms (1 thread). A stride-2 pool whose padded
width is odd gets one more, never-read column at the graph level (`layout.even_pool_width`), as
the stride-2 depthwise convs do, so the even/odd halves have equal length and no guard.
"""

from __future__ import annotations

import re
from typing import Any

from featcomp.runtime_ops.tvm import conv_schedules as cs
from tvm import s_tir

POOL_MAX = "pool_max"
_STRIDE = re.compile(r"v_ax3 \* T\.int64\((\d+)\)")


def schedule_pool(sch: s_tir.Schedule, pool: Any, rule: Any) -> list[Any] | None:
    """Row bands of a 2-D max pool (loops n, c, y, x, ry, rx); None for another loop nest."""
    loops = sch.get_loops(pool)
    if len(loops) != 6:
        return None
    n, c, oh, ow = cs.buffer_shape(sch.get(pool).writes[0].source)
    found = _STRIDE.search(str(sch.get(pool).body))
    stride = int(found.group(1)) if found else 1
    b, f, y, x, ry, rx = loops
    v = cs.depthwise_vector(ow, rule.lanes)
    xo, xi = sch.split(x, factors=[None, v])
    rows = next(r for r in (8, 7, 6, 5, 4, 3, 2, 1) if oh % r == 0)
    yo, yi = sch.split(y, factors=[None, rows])
    sch.reorder(b, f, yo, yi, xo, ry, rx, xi)
    band = sch.fuse(b, f, yo)
    if n * c * oh * ow >= rule.parallel_min:
        sch.parallel(band)
    acc = sch.cache_write(pool, 0, "local")
    # no padding stage: the band's rows are still staged (a copy), for contiguous loads
    staged = None if sch.get_producers(pool) else sch.cache_read(pool, 0, "global")
    cs.input_stage(sch, pool, band, local=True, stride=stride, keep=staged)
    left = cs.output_stage(sch, acc, xo)
    sch.vectorize(xi)
    init = sch.decompose_reduction(pool, ry)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.vectorize(sch.get_loops(acc)[-1])
    for block in (acc, *sch.get_producers(pool)):
        sch.set_scope(block, 0, "global")
    return left
