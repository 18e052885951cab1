# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript: T.Buffer(shape, dtype) annotations are not Python types, and macro bodies name the
# caller's variables.)
"""The context-modelled rANS coder (featcomp.codecs.rans) as hand-written TIR: pack and unpack of the
slices of a site of either codec (dct-cm and transform-vlc code their rANS slices alike: the coder takes
the site's symbols and the channels' ranges).

Bit for bit the numpy reference (RansCoder.payloads / read inside bitstream.write / decode_all),
header, slice table and CRC-32 included. One parallel iteration per (sample, slice) (stream_tir.py);
within a slice the L interleaved lanes run in the reference's order. Pack runs the encoder backwards
(last step first, lanes last first) and writes each emitted 16-bit word *backwards* from the end of the
slice's room, which leaves them in the decoder's order (step, then lane); then the final states, the
words moved down behind them, and the raw-bit plane. Unpack keeps each decoded token in the output
(the neighbours' contexts read it back from there), then reads the raw bits in the same order and turns
tokens into symbols in place.

Site arrays (coder.py builds them from a RansCoder and the site's ranges): lo/hi [C] i32 (channel
ranges), rc [C] i32 (the coder's centre), mode [C] i32 (0: u = v, 1: u = -v, 2: zigzag of the centred
value v), gbase [C] i32 (first table row of the channel's group), live [Cl] i32 (coded channels in
order), par [4] i32 (D, K, context mode, Cl), freq/cum [rows*K] i32, lookup [rows*4096] u8 (decode only),
band/room/head/crc as the other coders. unpack's status: 0 decoded, 1 container, 2 truncated or
corrupt states/words/raw bits, 4 a value out of range, 5 trailing bytes; a refused stream's symbols are 0.
pack returns length -1 for symbols of coded channels outside their range.
"""

from __future__ import annotations

import functools

from featcomp.runtime_ops.tvm.kernels import OP_ATTR, SCHEDULED
from featcomp.runtime_ops.tvm.stream_tir import (  # noqa: F401  (names the macros use)
    BAD_SLICE,
    ENTRY,
    HEAD_FIXED,
    HEADER,
    ST_CONTAINER,
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

from featcomp.codecs.rans import LOWER, MAX_LANES, MIN_CHUNK, PRECISION, TOTAL

PACK, UNPACK = "rans-pack", "rans-unpack"


def _sizes() -> tuple[tirx.Var, ...]:
    return tuple(tirx.Var(v, "int64") for v in ("n", "c", "hw", "max_bytes", "coded", "cells", "slots"))


@T.macro(hygienic=False)
def magnitude(ch, v, r):  # m[r] = the magnitude u of symbol v of channel ch; bad[0] = 1 outside the range
    if v < lo[ch] or v > hi[ch]:
        bad[0] = 1
        m[r] = 0
    elif mode[ch] == 0:
        m[r] = v - rc[ch]
    elif mode[ch] == 1:
        m[r] = rc[ch] - v
    else:
        m[r] = T.if_then_else(v >= rc[ch], 2 * (v - rc[ch]), 2 * (rc[ch] - v) - 1)


@T.macro(hygienic=False)
def context_row(ch, left, prev):  # row[0] = the table row of a cell with these neighbour classes
    if cmode == 0:
        row[0] = gbase[ch]
    elif cmode == 1:
        row[0] = gbase[ch] + left
    elif cmode == 2:
        row[0] = gbase[ch] + prev
    else:
        row[0] = gbase[ch] + 3 * left + prev


def _cls(u):  # magnitude class of a magnitude or a token: 0, 1..2, >= 3 (tokens >= D >= 3 keep class 2)
    return T.if_then_else(u > 0, 1, 0) + T.if_then_else(u > 2, 1, 0)


@T.macro(hygienic=False)
def lanes_of(nk):  # chunk and lanes of a slice with nk positions per channel (rans.lanes_of)
    geo[0] = T.max(T.int64(MIN_CHUNK), (nk + T.int64(MAX_LANES - 1)) // T.int64(MAX_LANES))
    geo[1] = T.max(T.int64(1), (nk + geo[0] - 1) // geo[0])


@functools.lru_cache(maxsize=None)
def pack_kernel() -> tirx.PrimFunc:
    """symbols int16 [n, c, hw] -> streams uint8 [n, max_bytes], lengths int32 [n] (sizes symbolic)."""
    N, Cn, P, M, CL, RK, _ = _sizes()
    S1 = tirx.Var("slices_1", "int64")

    @T.prim_func(private=True)
    def fc_rans_pack(sym: T.Buffer((N, Cn, P), "int16"), lo: T.Buffer((Cn,), "int32"), hi: T.Buffer((Cn,), "int32"),
                     rc: T.Buffer((Cn,), "int32"), mode: T.Buffer((Cn,), "int32"), gbase: T.Buffer((Cn,), "int32"),
                     live: T.Buffer((CL,), "int32"), par: T.Buffer((4,), "int32"), freq: T.Buffer((RK,), "int32"),
                     cum: T.Buffer((RK,), "int32"), band: T.Buffer((S1,), "int32"), room: T.Buffer((S1,), "int32"),
                     head: T.Buffer((HEAD_FIXED,), "uint8"), crc: T.Buffer((256,), "uint32"),
                     out: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: PACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        direct = T.Bind(par[0])
        kk = T.Bind(par[1])
        cmode = T.Bind(par[2])
        ncoded = T.Bind(T.Cast("int64", par[3]))
        for i in T.parallel(N * nsl):
            b = T.Bind(i // nsl)
            sl = T.Bind(i % nsl)
            xs = T.alloc_buffer((MAX_LANES,), "int64", scope="global")  # the lanes' states
            m = T.alloc_buffer((3,), "int32", scope="global")            # magnitudes: the cell, left, previous channel
            row = T.alloc_buffer((1,), "int32", scope="global")
            tk = T.alloc_buffer((2,), "int32", scope="global")           # token, raw-bit width
            geo = T.alloc_buffer((2,), "int64", scope="global")          # chunk, lanes
            wp = T.alloc_buffer((1,), "int32", scope="global")
            stop = T.alloc_buffer((1,), "int32", scope="global")
            bad = T.alloc_buffer((1,), "int32", scope="global")
            acc = T.alloc_buffer((1,), "uint64", scope="global")
            nb = T.alloc_buffer((1,), "int32", scope="global")
            pos = T.alloc_buffer((1,), "int32", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            a0 = T.Bind(band[sl])
            nk = T.Bind(T.Cast("int64", band[sl + 1]) - T.Cast("int64", band[sl]))
            bad[0] = 0
            stop[0] = room[sl]
            if ncoded > 0:
                lanes_of(nk)
                chunk = T.Bind(geo[0])
                lanes = T.Bind(geo[1])
                for l in range(lanes):
                    xs[l] = T.int64(LOWER)
                wp[0] = room[sl + 1]
                # the encoder: steps last first, lanes last first; words written backwards
                for tt, ll in T.grid(ncoded * chunk, lanes):
                    t = T.Bind(ncoded * chunk - 1 - tt)
                    l = T.Bind(lanes - 1 - ll)
                    ci = T.Bind(t // chunk)
                    j = T.Bind(t % chunk)
                    p = T.Bind(l * chunk + j)
                    if p < nk:
                        ch = T.Bind(live[ci])
                        magnitude(ch, T.Cast("int32", sym[b, ch, a0 + p]), 0)
                        m[1] = 0
                        m[2] = 0
                        if j > 0:
                            magnitude(ch, T.Cast("int32", sym[b, ch, a0 + p - 1]), 1)
                        if ci > 0:
                            magnitude(live[ci - 1], T.Cast("int32", sym[b, live[ci - 1], a0 + p]), 2)
                        context_row(ch, _cls(m[1]), _cls(m[2]))
                        if m[0] < direct:
                            tk[0] = m[0]
                        else:
                            e = T.Bind(31 - T.clz(m[0]))
                            tk[0] = direct + ((e - 4) << 2) + ((m[0] >> (e - 2)) & 3)
                        at = T.Bind(T.Cast("int64", row[0]) * T.Cast("int64", kk) + T.Cast("int64", tk[0]))
                        f = T.Bind(T.Cast("int64", freq[at]))
                        if xs[l] >= (f << T.int64(32 - PRECISION)):
                            wp[0] = wp[0] - 2
                            out[b, wp[0]] = T.Cast("uint8", xs[l] & T.int64(255))
                            out[b, wp[0] + 1] = T.Cast("uint8", (xs[l] >> T.int64(8)) & T.int64(255))
                            xs[l] = xs[l] >> T.int64(16)
                        q = T.Bind(xs[l] // f)
                        xs[l] = (q << T.int64(PRECISION)) + (xs[l] - q * f) + T.Cast("int64", cum[at])
                # the final states, then the words moved down behind them (forward copy: never past the source)
                for l in range(lanes):
                    put_u32(room[sl] + 4 * T.Cast("int32", l), T.Cast("uint32", xs[l]))
                base = T.Bind(room[sl] + 4 * T.Cast("int32", lanes))
                for k in range(room[sl + 1] - wp[0]):
                    out[b, base + k] = out[b, wp[0] + k]
                # the raw bits of tokens >= D, step then lane
                pos[0] = base + room[sl + 1] - wp[0]
                acc[0] = T.uint64(0)
                nb[0] = 0
                for t, l in T.grid(ncoded * chunk, lanes):
                    p = T.Bind(l * chunk + t % chunk)
                    if p < nk:
                        ch = T.Bind(live[t // chunk])
                        magnitude(ch, T.Cast("int32", sym[b, ch, a0 + p]), 0)
                        if m[0] >= direct:
                            width = T.Bind(29 - T.clz(m[0]))
                            put(0, T.Cast("uint64", m[0] & ((1 << width) - 1)), width)
                align(0)
                stop[0] = pos[0]
            table_entry(sl, room[sl], stop[0], bad[0] == 0)
        for b in T.parallel(N):
            val = T.alloc_buffer((1,), "int64", scope="global")
            at_ = T.alloc_buffer((1,), "int32", scope="global")
            bad = T.alloc_buffer((1,), "int32", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            seal()

    return fc_rans_pack


@functools.lru_cache(maxsize=None)
def unpack_kernel() -> tirx.PrimFunc:
    """streams uint8 [n, max_bytes], lengths int32 [n] -> symbols int16 [n, c, hw], status int32 [n]."""
    N, Cn, P, M, CL, RK, LS = _sizes()
    S1 = tirx.Var("slices_1", "int64")

    @T.prim_func(private=True)
    def fc_rans_unpack(data: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32"), lo: T.Buffer((Cn,), "int32"),
                       hi: T.Buffer((Cn,), "int32"), rc: T.Buffer((Cn,), "int32"), mode: T.Buffer((Cn,), "int32"),
                       gbase: T.Buffer((Cn,), "int32"), live: T.Buffer((CL,), "int32"), par: T.Buffer((4,), "int32"),
                       freq: T.Buffer((RK,), "int32"), cum: T.Buffer((RK,), "int32"), lookup: T.Buffer((LS,), "uint8"),
                       band: T.Buffer((S1,), "int32"), head: T.Buffer((HEAD_FIXED,), "uint8"),
                       crc: T.Buffer((256,), "uint32"), sym: T.Buffer((N, Cn, P), "int16"),
                       status: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: UNPACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        direct = T.Bind(par[0])
        kk = T.Bind(par[1])
        cmode = T.Bind(par[2])
        ncoded = T.Bind(T.Cast("int64", par[3]))
        verdict = T.alloc_buffer((N * nsl,), "int32", scope="global")
        for i in T.parallel(N * nsl):
            b = T.Bind(i // nsl)
            sl = T.Bind(i % nsl)
            st = T.alloc_buffer((1,), "int32", scope="global")
            bit = T.alloc_buffer((1,), "int64", scope="global")
            val = T.alloc_buffer((1,), "int64", scope="global")
            tot = T.alloc_buffer((1,), "int64", scope="global")
            sbeg = T.alloc_buffer((1,), "int64", scope="global")
            send = T.alloc_buffer((1,), "int64", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            xs = T.alloc_buffer((MAX_LANES,), "int64", scope="global")
            row = T.alloc_buffer((1,), "int32", scope="global")
            geo = T.alloc_buffer((2,), "int64", scope="global")
            wc = T.alloc_buffer((1,), "int64", scope="global")  # next word's byte
            u = T.alloc_buffer((1,), "int64", scope="global")
            v = T.alloc_buffer((1,), "int64", scope="global")
            total = T.Bind(nbytes[b])
            a0 = T.Bind(band[sl])
            nk = T.Bind(T.Cast("int64", band[sl + 1]) - T.Cast("int64", band[sl]))
            st[0] = 0
            sbeg[0] = T.int64(0)
            send[0] = T.int64(0)
            check_container(total, M)
            if st[0] == 0:
                find_slice(sl)
            end = T.Bind(send[0] * 8)
            for ch, s in T.grid(Cn, nk):  # channels the coder does not code decode to their low end
                sym[b, ch, a0 + s] = T.Cast("int16", lo[ch])
            lanes_of(nk)
            chunk = T.Bind(geo[0])
            lanes = T.Bind(geo[1])
            if st[0] == 0 and ncoded == 0 and send[0] != sbeg[0]:
                st[0] = ST_TRAILING
            if st[0] == 0 and ncoded > 0:
                if send[0] - sbeg[0] < 4 * lanes:
                    st[0] = ST_PLANE
                else:
                    for l in range(lanes):
                        u32_at(data, sbeg[0] + 4 * l)
                        xs[l] = val[0]
                        if val[0] < T.int64(LOWER):
                            st[0] = ST_PLANE
                wc[0] = sbeg[0] + 4 * lanes
                # tokens, step then lane, kept in sym (the contexts read the neighbours' tokens back)
                for t, l in T.grid(ncoded * chunk, lanes):
                    p = T.Bind(l * chunk + t % chunk)
                    if st[0] == 0 and p < nk:
                        ci = T.Bind(t // chunk)
                        j = T.Bind(t % chunk)
                        ch = T.Bind(live[ci])
                        left = T.Bind(T.if_then_else(j > 0, _cls(T.Cast("int32", sym[b, ch, T.max(a0 + p - 1, 0)])), 0))
                        prev = T.Bind(T.if_then_else(ci > 0, _cls(T.Cast("int32", sym[b, live[T.max(ci - 1, 0)], a0 + p])), 0))
                        context_row(ch, left, prev)
                        slot = T.Bind(xs[l] & T.int64(TOTAL - 1))
                        tok = T.Bind(T.Cast("int32", lookup[T.Cast("int64", row[0]) * T.int64(TOTAL) + slot]))
                        at = T.Bind(T.Cast("int64", row[0]) * T.Cast("int64", kk) + T.Cast("int64", tok))
                        xs[l] = T.Cast("int64", freq[at]) * (xs[l] >> T.int64(PRECISION)) + slot - T.Cast("int64", cum[at])
                        if xs[l] < T.int64(LOWER):
                            if wc[0] + 2 > send[0]:
                                st[0] = ST_PLANE
                            else:
                                xs[l] = (xs[l] << T.int64(16)) | T.Cast("int64", data[b, wc[0]]) | (T.Cast("int64", data[b, wc[0] + 1]) << T.int64(8))
                                wc[0] = wc[0] + 2
                        sym[b, ch, a0 + p] = T.Cast("int16", tok)
                for l in range(lanes):
                    if xs[l] != T.int64(LOWER):
                        st[0] = ST_PLANE
                # raw bits, same order; tokens -> symbols in place
                bit[0] = wc[0] * 8
                for t, l in T.grid(ncoded * chunk, lanes):
                    p = T.Bind(l * chunk + t % chunk)
                    if st[0] == 0 and p < nk:
                        ch = T.Bind(live[t // chunk])
                        tok = T.Bind(T.Cast("int64", sym[b, ch, a0 + p]))
                        if tok >= T.Cast("int64", direct):
                            k = T.Bind(tok - T.Cast("int64", direct))
                            width = T.Bind((k >> T.int64(2)) + T.int64(2))
                            read_uint(width, end)
                            u[0] = ((T.int64(4) + (k & T.int64(3))) << width) | val[0]
                        else:
                            u[0] = tok
                        if mode[ch] == 0:
                            v[0] = u[0]
                        elif mode[ch] == 1:
                            v[0] = -u[0]
                        else:
                            v[0] = T.if_then_else(u[0] % 2 == 0, u[0] // 2, -((u[0] + 1) // 2))
                        v[0] = v[0] + T.Cast("int64", rc[ch])
                        if v[0] < T.Cast("int64", lo[ch]) or v[0] > T.Cast("int64", hi[ch]):
                            st[0] = ST_RANGE
                        else:
                            sym[b, ch, a0 + p] = T.Cast("int16", v[0])
                if st[0] == 0 and (bit[0] + 7) // 8 * 8 != end:
                    st[0] = ST_TRAILING
            verdict[i] = st[0]
        for b in T.parallel(N):
            status[b] = 0
            for j in range(nsl):
                if status[b] == 0:
                    status[b] = verdict[b * nsl + j]
            if status[b] != 0:
                for ch, s in T.grid(Cn, P):
                    sym[b, ch, s] = T.int16(0)

    return fc_rans_unpack
