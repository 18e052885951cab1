# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript: T.Buffer(shape, dtype) annotations are not Python types, and macro bodies name the
# caller's variables.)
"""The DCT-CM bitstream coder as hand-written TIR: pack (symbols -> bitstream) and unpack.

Bit for bit the numpy reference (featcomp.codecs.dctcm.DctCmSite.pack / unpack), header and CRC-32
included. The five planes (channel flags, nonzero bitmaps, sign bits, Rice remainders, unary
quotients) each start on a byte boundary; pack writes them one after the other, and unpack finds
where each starts from the flags and bitmaps, then reads all four cursors in one pass. One stream
per sample, samples in parallel; marked scheduled and opaque, like the transform-VLC coder.

Site arrays (coder.py builds them from a DctCmSite), all [C] i32: kind (DROP/DENSE/MASK), k (Rice
parameter), lo/hi (the channel's coefficient range); and head [14] u8, crc [256] u32.

unpack never reads or writes out of bounds; status[b] is 0 where numpy decodes the stream, else
1 container, 2 a plane truncated, 3 a flagged channel that codes only zeros, 4 a value out of its
channel's range, 5 trailing bytes. A refused stream's symbols are zero. pack returns length -1 for
symbols outside their channel's range (the encoder never makes them).
"""

from __future__ import annotations

import functools

from tvm import tirx  # type: ignore[import-untyped]
from tvm.script import tirx as T  # type: ignore[import-untyped]

from featcomp.codecs.dctcm import DENSE, DROP, MASK
from featcomp.runtime_ops.tvm.kernels import OP_ATTR
from featcomp.runtime_ops.tvm.stream_tir import (  # noqa: F401  (crc32 and ST_CONTAINER: named by the macros)
    HEAD_FIXED, HEADER, ST_CONTAINER, ST_COUNT, ST_PLANE, ST_RANGE, ST_TRAILING, align, check_container, crc32, put,
    read_uint, seal)

PACK, UNPACK = "dctcm-pack", "dctcm-unpack"
SCHEDULED = "tirx.is_scheduled"


def _sizes() -> tuple[tirx.Var, ...]:
    return tuple(tirx.Var(v, "int64") for v in ("n", "c", "hw", "max_bytes"))


# pack's macros: they name pack's buffers and registers

@T.macro(hygienic=False)
def rice_input(ch, v):  # u[0] = what the Rice code carries for value v of channel ch (0 if out of range)
    if v < lo[ch] or v > hi[ch]:
        bad[0] = 1
        u[0] = 0
    elif kind[ch] == MASK:
        u[0] = T.if_then_else(v < 0, -v, v) - 1
    elif lo[ch] < 0:
        u[0] = T.if_then_else(v >= 0, 2 * v, -2 * v - 1)
    else:
        u[0] = v - lo[ch]


@T.macro(hygienic=False)
def rice_plane(quotients):  # one of the two Rice planes of every coded value, then byte alignment
    for ch in range(Cn):
        if flag[ch] == 1:
            for s in range(P):
                v = T.Cast("int32", sym[b, ch, s])
                if kind[ch] == DENSE or v != 0:
                    rice_input(ch, v)
                    if quotients:
                        q[0] = u[0] >> k[ch]
                        while q[0] > 32:
                            put(T.uint64(0), 32)
                            q[0] = q[0] - 32
                        put(T.uint64(1), q[0] + 1)
                    else:
                        put(T.Cast("uint64", u[0] & ((1 << k[ch]) - 1)), k[ch])
    align()


@functools.lru_cache(maxsize=None)
def pack_kernel() -> tirx.PrimFunc:
    """symbols int16 [n, c, hw] -> streams uint8 [n, max_bytes], lengths int32 [n] (sizes symbolic)."""
    N, Cn, P, M = _sizes()

    @T.prim_func(private=True)
    def fc_dctcm_pack(sym: T.Buffer((N, Cn, P), "int16"), kind: T.Buffer((Cn,), "int32"), k: T.Buffer((Cn,), "int32"),
                      lo: T.Buffer((Cn,), "int32"), hi: T.Buffer((Cn,), "int32"),
                      head: T.Buffer((HEAD_FIXED,), "uint8"), crc: T.Buffer((256,), "uint32"),
                      out: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: PACK, "op_pattern": 8, SCHEDULED: True})
        for b in T.parallel(N):
            acc = T.alloc_buffer((1,), "uint64", scope="local")
            nb = T.alloc_buffer((1,), "int32", scope="local")
            pos = T.alloc_buffer((1,), "int32", scope="local")
            bad = T.alloc_buffer((1,), "int32", scope="local")
            u = T.alloc_buffer((1,), "int32", scope="local")
            q = T.alloc_buffer((1,), "int32", scope="local")
            sum_ = T.alloc_buffer((1,), "uint32", scope="local")
            flag = T.alloc_buffer((Cn,), "int32", scope="local")
            acc[0] = T.uint64(0)
            nb[0] = 0
            pos[0] = HEADER
            bad[0] = 0
            # 1. a flag per live channel: does it hold any nonzero
            for ch in range(Cn):
                flag[ch] = 0
                if kind[ch] != DROP:
                    for s in range(P):
                        if sym[b, ch, s] != T.int16(0):
                            flag[ch] = 1
                    put(T.Cast("uint64", flag[ch]), 1)
            align()
            # 2. nonzero bitmaps of flagged MASK channels
            for ch in range(Cn):
                if flag[ch] == 1 and kind[ch] == MASK:
                    for s in range(P):
                        put(T.if_then_else(sym[b, ch, s] != T.int16(0), T.uint64(1), T.uint64(0)), 1)
            align()
            # 3. signs of their nonzeros, where the range is signed
            for ch in range(Cn):
                if flag[ch] == 1 and kind[ch] == MASK and lo[ch] < 0:
                    for s in range(P):
                        if sym[b, ch, s] != T.int16(0):
                            put(T.if_then_else(sym[b, ch, s] < T.int16(0), T.uint64(1), T.uint64(0)), 1)
            align()
            # 4. Rice remainders of every coded value (all of a DENSE channel, a MASK channel's nonzeros)
            rice_plane(False)
            # 5. their quotients in unary: q zeros, then a one
            rice_plane(True)
            seal(pos[0])
            nbytes[b] = T.if_then_else(bad[0] != 0, -1, pos[0])

    return fc_dctcm_pack


@functools.lru_cache(maxsize=None)
def unpack_kernel() -> tirx.PrimFunc:
    """streams uint8 [n, max_bytes], lengths int32 [n] -> symbols int16 [n, c, hw], status int32 [n] (sizes symbolic)."""
    N, Cn, P, M = _sizes()

    @T.prim_func(private=True)
    def fc_dctcm_unpack(data: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32"),
                        kind: T.Buffer((Cn,), "int32"), k: T.Buffer((Cn,), "int32"), lo: T.Buffer((Cn,), "int32"),
                        hi: T.Buffer((Cn,), "int32"), head: T.Buffer((HEAD_FIXED,), "uint8"),
                        crc: T.Buffer((256,), "uint32"), sym: T.Buffer((N, Cn, P), "int16"),
                        status: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: UNPACK, "op_pattern": 8, SCHEDULED: True})
        for b in T.parallel(N):
            st = T.alloc_buffer((1,), "int32", scope="local")
            bit = T.alloc_buffer((1,), "int64", scope="local")   # the unary plane's cursor (flags' first)
            val = T.alloc_buffer((1,), "int64", scope="local")
            sum_ = T.alloc_buffer((1,), "uint32", scope="local")
            flag = T.alloc_buffer((Cn,), "int32", scope="local")
            at = T.alloc_buffer((4,), "int64", scope="local")    # plane starts: bitmaps, signs, remainders, unary
            cur = T.alloc_buffer((3,), "int64", scope="local")   # cursors in bitmaps, signs, remainders
            nsign = T.alloc_buffer((1,), "int64", scope="local")
            nrem = T.alloc_buffer((1,), "int64", scope="local")
            u = T.alloc_buffer((1,), "int64", scope="local")
            x = T.alloc_buffer((1,), "int64", scope="local")     # the decoded value
            neg = T.alloc_buffer((1,), "int32", scope="local")
            coded = T.alloc_buffer((1,), "int32", scope="local")
            nz = T.alloc_buffer((1,), "int32", scope="local")
            look = T.alloc_buffer((1,), "int32", scope="local")
            total = nbytes[b]
            end = T.Cast("int64", total) * 8
            st[0] = 0
            check_container(total, M)
            for ch, s in T.grid(Cn, P):
                sym[b, ch, s] = T.int16(0)
            # 1. flags
            bit[0] = T.int64(HEADER * 8)
            for ch in range(Cn):
                flag[ch] = 0
                if st[0] == 0 and kind[ch] != DROP:
                    read_uint(1, end)
                    flag[ch] = T.Cast("int32", val[0])
            # 2.-4. where each plane starts: the bitmaps' size is known from the flags, the signs' and the
            # remainders' from the bitmaps
            at[0] = (bit[0] + 7) // 8 * 8
            val[0] = T.int64(0)
            for ch in range(Cn):
                if flag[ch] == 1 and kind[ch] == MASK:
                    val[0] = val[0] + P
            if at[0] + val[0] > end:
                st[0] = ST_PLANE
            at[1] = (at[0] + val[0] + 7) // 8 * 8
            nsign[0] = T.int64(0)
            nrem[0] = T.int64(0)
            cur[0] = at[0]
            if st[0] == 0:
                for ch in range(Cn):
                    if flag[ch] == 1 and kind[ch] == MASK:
                        for s in range(P):
                            if (data[b, (cur[0] + s) // 8] >> T.Cast("uint8", 7 - (cur[0] + s) % 8)) & T.uint8(1) == T.uint8(1):
                                nrem[0] = nrem[0] + T.Cast("int64", k[ch])
                                if lo[ch] < 0:
                                    nsign[0] = nsign[0] + T.int64(1)
                        cur[0] = cur[0] + P
                    elif flag[ch] == 1:
                        nrem[0] = nrem[0] + P * T.Cast("int64", k[ch])
            if at[1] + nsign[0] > end:
                st[0] = ST_PLANE
            at[2] = (at[1] + nsign[0] + 7) // 8 * 8
            if at[2] + nrem[0] > end:
                st[0] = ST_PLANE
            at[3] = (at[2] + nrem[0] + 7) // 8 * 8
            # 5. one pass over the values with a cursor per plane
            for i in range(3):
                cur[i] = at[i]
            bit[0] = at[3]
            for ch in range(Cn):
                if st[0] == 0 and flag[ch] == 1:
                    nz[0] = 0
                    for s in range(P):
                        if st[0] == 0:
                            coded[0] = 1
                            if kind[ch] == MASK:
                                coded[0] = T.Cast("int32", (data[b, cur[0] // 8] >> T.Cast("uint8", 7 - cur[0] % 8)) & T.uint8(1))
                                cur[0] = cur[0] + T.int64(1)
                            if coded[0] == 1:
                                neg[0] = 0
                                if kind[ch] == MASK and lo[ch] < 0:
                                    neg[0] = T.Cast("int32", (data[b, cur[1] // 8] >> T.Cast("uint8", 7 - cur[1] % 8)) & T.uint8(1))
                                    cur[1] = cur[1] + T.int64(1)
                                u[0] = T.int64(0)
                                for i in range(k[ch]):
                                    u[0] = u[0] * 2 + T.Cast("int64", (data[b, (cur[2] + i) // 8] >> T.Cast("uint8", 7 - (cur[2] + i) % 8)) & T.uint8(1))
                                cur[2] = cur[2] + T.Cast("int64", k[ch])
                                val[0] = T.int64(0)  # the quotient: zeros up to the next one (never read past the end)
                                look[0] = 1
                                while look[0] == 1:
                                    if bit[0] >= end:
                                        look[0] = 0
                                    elif (data[b, bit[0] // 8] >> T.Cast("uint8", 7 - bit[0] % 8)) & T.uint8(1) == T.uint8(1):
                                        look[0] = 0
                                    else:
                                        val[0] = val[0] + T.int64(1)
                                        bit[0] = bit[0] + T.int64(1)
                                if bit[0] >= end:
                                    st[0] = ST_PLANE
                                else:
                                    bit[0] = bit[0] + T.int64(1)
                                    u[0] = (val[0] << T.Cast("int64", k[ch])) + u[0]
                                    if kind[ch] == MASK:
                                        x[0] = T.if_then_else(neg[0] == 1, -(u[0] + 1), u[0] + 1)
                                    elif lo[ch] < 0:
                                        x[0] = T.if_then_else(u[0] % 2 == 0, u[0] // 2, -((u[0] + 1) // 2))
                                    else:
                                        x[0] = u[0] + T.Cast("int64", lo[ch])
                                    if x[0] < T.Cast("int64", lo[ch]) or x[0] > T.Cast("int64", hi[ch]):
                                        st[0] = ST_RANGE
                                    else:
                                        sym[b, ch, s] = T.Cast("int16", x[0])
                                        if x[0] != T.int64(0):
                                            nz[0] = 1
                    if st[0] == 0 and nz[0] == 0:
                        st[0] = ST_COUNT
            if st[0] == 0 and (bit[0] + 7) // 8 * 8 != end:
                st[0] = ST_TRAILING
            if st[0] != 0:
                for ch, s in T.grid(Cn, P):
                    sym[b, ch, s] = T.int16(0)
            status[b] = st[0]

    return fc_dctcm_unpack
