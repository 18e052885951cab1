# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript: T.Buffer(shape, dtype) annotations are not Python types, and macro bodies name the
# caller's variables.)
"""The DCT-CM bitstream coder as hand-written TIR: pack (symbols -> bitstream) and unpack.

Bit for bit the numpy reference (featcomp.codecs.dctcm.DctCmSite.pack / unpack), header and CRC-32
included. The five planes (channel flags, nonzero bitmaps, sign bits, Rice remainders, unary
quotients) each start on a byte boundary; pack sizes them, then writes all five at once, and unpack finds
where each starts from the flags and bitmaps, then reads all four cursors in one pass. All of this
per slice of the stream (bitstream v2: bands of rows, coded independently), the slices of every
sample in parallel (see stream_tir.py); marked scheduled and opaque, like the transform-VLC coder.

Site arrays (coder.py builds them from a DctCmSite), all [C] i32: kind (DROP/DENSE/MASK), k (Rice
parameter), lo/hi (the channel's coefficient range); and band [slices+1] i32 (each slice's first
value in a channel), room [slices+1] i32 (pack only: where each slice is written before the slices
are moved together), head [16] u8, crc [8, 256] u32.

unpack never reads or writes out of bounds; status[b] is 0 where numpy decodes the stream, else
1 container, 2 a plane truncated, 3 a flagged channel that codes only zeros, 4 a value out of its
channel's range, 5 trailing bytes. A refused stream's symbols are zero. pack returns length -1 for
symbols of live channels outside their range (the encoder never makes them); like numpy, it ignores
the symbols of dropped channels.
"""

from __future__ import annotations

import functools

import numpy as np

from featcomp.runtime_ops.tvm.kernels import OP_ATTR, SCHEDULED
from featcomp.runtime_ops.tvm.stream_tir import (  # noqa: F401  (names the macros use)
    BAD_SLICE,
    ENTRY,
    HEAD_FIXED,
    HEADER,
    ST_CONTAINER,
    ST_COUNT,
    ST_PLANE,
    ST_RANGE,
    ST_TRAILING,
    align,
    check_container,
    crc32,
    find_slice,
    put,
    put_u32,
    read_uint,
    seal,
    table_entry,
    u32_at,
)
from tvm import tirx
from tvm.script import tirx as T

from featcomp.codecs.dctcm import DENSE, DROP, MASK

PACK, UNPACK = "dctcm-pack", "dctcm-unpack"


def task_scratch(pack: dict[str, np.ndarray]) -> tuple[int, int]:
    """Bytes one parallel task of (pack, unpack) allocates outside the planned activation memory: a `local`
    flag i32 per channel in both. `pack`: its kernel arrays."""
    channels = len(pack["lo"])
    return 4 * channels, 4 * channels


def _sizes() -> tuple[tirx.Var, ...]:
    return tuple(tirx.Var(v, "int64") for v in ("n", "c", "hw", "max_bytes"))


# pack's macro: it names pack's buffers and registers

@T.macro(hygienic=False)
def rice_input(ch, v):  # u[0] = what the Rice code carries for value v of channel ch (0 if out of range)
    if v < lo[ch] or v > hi[ch]:
        u[0] = 0
    elif kind[ch] == MASK:
        u[0] = T.if_then_else(v < 0, -v, v) - 1
    elif lo[ch] < 0:
        u[0] = T.if_then_else(v >= 0, 2 * v, -2 * v - 1)
    else:
        u[0] = v - lo[ch]


@functools.lru_cache(maxsize=None)
def pack_kernel() -> tirx.PrimFunc:
    """symbols int16 [n, c, hw] -> streams uint8 [n, max_bytes], lengths int32 [n] (sizes symbolic).

    One parallel iteration per (sample, slice), in two passes: the first sizes the slice's five planes,
    so the second writes all of them at once, one bit writer per plane, reading each symbol once."""
    N, Cn, P, M = _sizes()
    S1 = tirx.Var("slices_1", "int64")

    @T.prim_func(private=True)
    def fc_dctcm_pack(sym: T.Buffer((N, Cn, P), "int16"), kind: T.Buffer((Cn,), "int32"), k: T.Buffer((Cn,), "int32"),
                      lo: T.Buffer((Cn,), "int32"), hi: T.Buffer((Cn,), "int32"), band: T.Buffer((S1,), "int32"),
                      room: T.Buffer((S1,), "int32"), head: T.Buffer((HEAD_FIXED,), "uint8"),
                      crc: T.Buffer((8, 256), "uint32"), out: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: PACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        for i in T.parallel(N * nsl):  # every slice of every sample at once, each into its own region
            b = T.Bind(i // nsl)
            sl = T.Bind(i % nsl)
            acc = T.alloc_buffer((5,), "uint64", scope="global")  # one writer per plane
            nb = T.alloc_buffer((5,), "int32", scope="global")
            pos = T.alloc_buffer((5,), "int32", scope="global")
            size = T.alloc_buffer((5,), "int64", scope="global")  # bits per plane
            stop = T.alloc_buffer((1,), "int32", scope="global")
            bad = T.alloc_buffer((1,), "int32", scope="global")
            u = T.alloc_buffer((1,), "int32", scope="global")
            q = T.alloc_buffer((1,), "int32", scope="global")
            nnz = T.alloc_buffer((1,), "int64", scope="global")
            qsum = T.alloc_buffer((1,), "int64", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            flag = T.alloc_buffer((Cn,), "int32", scope="local")
            nk = T.Bind(T.Cast("int64", band[sl + 1]) - T.Cast("int64", band[sl]))  # values per channel in the slice
            for j in range(5):
                size[j] = T.int64(0)
                acc[j] = T.uint64(0)
                nb[j] = 0
            bad[0] = 0
            # sizes: flags of live channels; bitmaps (flagged MASK), signs (their nonzeros, signed range),
            # Rice remainders and unary quotients of the coded values (a DENSE channel's all, a MASK one's nonzeros)
            for ch in range(Cn):
                flag[ch] = 0
                if kind[ch] != DROP:
                    nnz[0] = T.int64(0)
                    qsum[0] = T.int64(0)
                    for s in range(band[sl], band[sl + 1]):
                        v = T.Bind(T.Cast("int32", sym[b, ch, s]))
                        if v != 0:
                            nnz[0] = nnz[0] + T.int64(1)
                        if kind[ch] == DENSE or v != 0:
                            rice_input(ch, v)
                            qsum[0] = qsum[0] + T.Cast("int64", u[0] >> k[ch])
                    size[0] = size[0] + T.int64(1)
                    if nnz[0] > T.int64(0):
                        flag[ch] = 1
                        if kind[ch] == MASK:
                            size[1] = size[1] + nk
                            if lo[ch] < 0:
                                size[2] = size[2] + nnz[0]
                        else:
                            nnz[0] = nk  # every value of a DENSE channel is coded
                        size[3] = size[3] + nnz[0] * T.Cast("int64", k[ch])
                        size[4] = size[4] + nnz[0] + qsum[0]
            pos[0] = room[sl]
            for j in range(4):
                pos[j + 1] = pos[j] + T.Cast("int32", (size[j] + T.int64(7)) // T.int64(8))
            stop[0] = pos[4] + T.Cast("int32", (size[4] + T.int64(7)) // T.int64(8))
            # every plane at once
            for ch in range(Cn):
                if kind[ch] != DROP:
                    put(0, T.Cast("uint64", flag[ch]), 1)
                if flag[ch] == 1:
                    for s in range(band[sl], band[sl + 1]):
                        v = T.Bind(T.Cast("int32", sym[b, ch, s]))
                        if kind[ch] == MASK:
                            put(1, T.if_then_else(v != 0, T.uint64(1), T.uint64(0)), 1)
                        if kind[ch] == DENSE or v != 0:
                            if v < lo[ch] or v > hi[ch]:
                                bad[0] = 1
                            rice_input(ch, v)
                            if kind[ch] == MASK and lo[ch] < 0:
                                put(2, T.if_then_else(v < 0, T.uint64(1), T.uint64(0)), 1)
                            put(3, T.Cast("uint64", u[0] & ((1 << k[ch]) - 1)), k[ch])
                            q[0] = u[0] >> k[ch]
                            while q[0] > 31:
                                put(4, T.uint64(0), 31)
                                q[0] = q[0] - 31
                            put(4, T.uint64(1), q[0] + 1)
            for j in range(5):
                align(j)
            table_entry(sl, room[sl], stop[0], bad[0] == 0)
        for b in T.parallel(N):  # per sample: the slices behind the table, then the header
            val = T.alloc_buffer((1,), "int64", scope="global")
            at_ = T.alloc_buffer((1,), "int32", scope="global")
            bad = T.alloc_buffer((1,), "int32", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            seal()

    return fc_dctcm_pack


@functools.lru_cache(maxsize=None)
def unpack_kernel() -> tirx.PrimFunc:
    """streams uint8 [n, max_bytes], lengths int32 [n] -> symbols int16 [n, c, hw], status int32 [n] (sizes symbolic).

    One parallel iteration per (sample, slice), then one per sample to combine their verdicts."""
    N, Cn, P, M = _sizes()
    S1 = tirx.Var("slices_1", "int64")

    @T.prim_func(private=True)
    def fc_dctcm_unpack(data: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32"),
                        kind: T.Buffer((Cn,), "int32"), k: T.Buffer((Cn,), "int32"), lo: T.Buffer((Cn,), "int32"),
                        hi: T.Buffer((Cn,), "int32"), band: T.Buffer((S1,), "int32"), head: T.Buffer((HEAD_FIXED,), "uint8"),
                        crc: T.Buffer((8, 256), "uint32"), sym: T.Buffer((N, Cn, P), "int16"),
                        status: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: UNPACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        verdict = T.alloc_buffer((N * nsl,), "int32", scope="global")  # each slice's status
        for i in T.parallel(N * nsl):
            b = T.Bind(i // nsl)
            sl = T.Bind(i % nsl)
            st = T.alloc_buffer((1,), "int32", scope="global")
            bit = T.alloc_buffer((1,), "int64", scope="global")   # the unary plane's cursor (flags' first)
            val = T.alloc_buffer((1,), "int64", scope="global")
            tot = T.alloc_buffer((1,), "int64", scope="global")
            sbeg = T.alloc_buffer((1,), "int64", scope="global")  # the slice's bytes: sbeg .. send - 1
            send = T.alloc_buffer((1,), "int64", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            flag = T.alloc_buffer((Cn,), "int32", scope="local")
            at = T.alloc_buffer((4,), "int64", scope="global")    # plane starts: bitmaps, signs, remainders, unary
            cur = T.alloc_buffer((3,), "int64", scope="global")   # cursors in bitmaps, signs, remainders
            nsign = T.alloc_buffer((1,), "int64", scope="global")
            nrem = T.alloc_buffer((1,), "int64", scope="global")
            u = T.alloc_buffer((1,), "int64", scope="global")
            x = T.alloc_buffer((1,), "int64", scope="global")     # the decoded value
            neg = T.alloc_buffer((1,), "int32", scope="global")
            coded = T.alloc_buffer((1,), "int32", scope="global")
            nz = T.alloc_buffer((1,), "int32", scope="global")
            look = T.alloc_buffer((1,), "int32", scope="global")
            total = T.Bind(nbytes[b])
            a0 = T.Bind(T.Cast("int64", band[sl]))
            nk = T.Bind(T.Cast("int64", band[sl + 1]) - T.Cast("int64", band[sl]))  # values per channel in the slice
            st[0] = 0
            sbeg[0] = T.int64(0)
            send[0] = T.int64(0)
            check_container(total, M)
            if st[0] == 0:
                find_slice(sl)
            end = T.Bind(send[0] * 8)
            for ch, s in T.grid(Cn, nk):
                sym[b, ch, a0 + s] = T.int16(0)
            # 1. flags
            bit[0] = sbeg[0] * 8
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
                    val[0] = val[0] + nk
            if at[0] + val[0] > end:
                st[0] = ST_PLANE
            at[1] = (at[0] + val[0] + 7) // 8 * 8
            nsign[0] = T.int64(0)
            nrem[0] = T.int64(0)
            cur[0] = at[0]
            if st[0] == 0:
                for ch in range(Cn):
                    if flag[ch] == 1 and kind[ch] == MASK:
                        for s in range(nk):
                            if (data[b, (cur[0] + s) // 8] >> T.Cast("uint8", 7 - (cur[0] + s) % 8)) & T.uint8(1) == T.uint8(1):
                                nrem[0] = nrem[0] + T.Cast("int64", k[ch])
                                if lo[ch] < 0:
                                    nsign[0] = nsign[0] + T.int64(1)
                        cur[0] = cur[0] + nk
                    elif flag[ch] == 1:
                        nrem[0] = nrem[0] + nk * T.Cast("int64", k[ch])
            if at[1] + nsign[0] > end:
                st[0] = ST_PLANE
            at[2] = (at[1] + nsign[0] + 7) // 8 * 8
            if at[2] + nrem[0] > end:
                st[0] = ST_PLANE
            at[3] = (at[2] + nrem[0] + 7) // 8 * 8
            # 5. one pass over the values with a cursor per plane
            for j in range(3):
                cur[j] = at[j]
            bit[0] = at[3]
            for ch in range(Cn):
                if st[0] == 0 and flag[ch] == 1:
                    nz[0] = 0
                    for s in range(nk):
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
                                # the remainder: k <= 15 bits from a 24-bit window (zeros past the slice's end)
                                byte = T.Bind(cur[2] // 8)
                                b0 = T.Bind(T.if_then_else(byte < send[0], T.Cast("int64", data[b, T.min(byte, M - 1)]), T.int64(0)))
                                b1 = T.Bind(T.if_then_else(byte + 1 < send[0], T.Cast("int64", data[b, T.min(byte + 1, M - 1)]), T.int64(0)))
                                b2 = T.Bind(T.if_then_else(byte + 2 < send[0], T.Cast("int64", data[b, T.min(byte + 2, M - 1)]), T.int64(0)))
                                u[0] = (((b0 << T.int64(16)) | (b1 << T.int64(8)) | b2) >> (T.int64(24) - cur[2] % 8 - T.Cast("int64", k[ch]))) & ((T.int64(1) << T.Cast("int64", k[ch])) - T.int64(1))
                                cur[2] = cur[2] + T.Cast("int64", k[ch])
                                # the quotient: zeros up to the next one, a byte at a time (never read past the end)
                                val[0] = T.int64(0)
                                look[0] = 1
                                while look[0] == 1:
                                    if bit[0] >= end:
                                        look[0] = 0
                                    else:
                                        rest = T.Bind((T.Cast("int32", data[b, bit[0] // 8]) << T.Cast("int32", bit[0] % 8)) & 255)
                                        if rest == 0:
                                            val[0] = val[0] + (T.int64(8) - bit[0] % 8)
                                            bit[0] = bit[0] + (T.int64(8) - bit[0] % 8)
                                        else:
                                            zeros = T.Bind(T.Cast("int64", T.clz(rest) - 24))
                                            val[0] = val[0] + zeros
                                            bit[0] = bit[0] + zeros
                                            look[0] = 0
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
                                        sym[b, ch, a0 + s] = T.Cast("int16", x[0])
                                        if x[0] != T.int64(0):
                                            nz[0] = 1
                    if st[0] == 0 and nz[0] == 0:
                        st[0] = ST_COUNT
            if st[0] == 0 and (bit[0] + 7) // 8 * 8 != end:
                st[0] = ST_TRAILING
            verdict[i] = st[0]
        for b in T.parallel(N):  # a stream is decoded when all its slices are; a refused one's symbols are zero
            status[b] = 0
            for j in range(nsl):
                if status[b] == 0:
                    status[b] = verdict[b * nsl + j]
            if status[b] != 0:
                for ch, s in T.grid(Cn, P):
                    sym[b, ch, s] = T.int16(0)

    return fc_dctcm_unpack
