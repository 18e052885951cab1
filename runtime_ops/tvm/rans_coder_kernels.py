# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript: T.Buffer(shape, dtype) annotations are not Python types, and macro bodies name the
# caller's variables.)
"""The context-modelled rANS coder (featcomp.codecs.rans) as hand-written TIR: pack and unpack of the
slices of a site of either codec (dct-cm and transform-vlc code their rANS slices alike: the coder takes
the site's symbols and the channels' ranges).

Bit for bit the numpy reference (RansCoder.payloads / read inside bitstream.write / decode_all),
header, slice table and CRC-32 included. One parallel task per (sample, slice) (stream_tir.py): a
site's slices are independent, so one stream keeps every core busy at batch 1; each task holds its
L interleaved lanes' states in a local array and runs them in the reference's order. Pack first computes
every cell's table entry (context row * K + token) channel by channel in raster order (no dependency
between cells: the loop vectorises), so the serial encoder loop only loads an entry, its frequency,
reciprocal (recip_table: no division) and cumulative frequency. Unpack's cells are branch-free: the
context row, slot lookup, token and state update are selects and arithmetic, the renormalisation word is
merged by arithmetic (a select of a loaded word compiles to a mispredicting branch), a step whose words
all lie inside the slice skips the per-cell clamp and bounds check, and the lane's last class is kept in
a register for the left context. The words are the serial part (the bitstream
interleaves them step by step, lane by lane): pack writes each lane's word below the lowest one so far
*whether or not* the lane renormalises and keeps it (moves the cursor) only when it does; unpack reads a
word at the cursor for every cell and moves the cursor only when the lane takes it (a cursor past the
slice is a truncated stream, reported after the loop). Pack runs the encoder backwards (last step first,
lanes last first), so the words land in the decoder's order (step, then lane); then the final states,
the words moved down behind them, and the raw-bit plane. Unpack keeps each decoded token in the output
(the previous channel's context reads it back from there) and lists, without a branch, the cells whose
tokens carry raw bits; then turns every token into its symbol in a vectorisable raster pass, and reads
the listed cells' raw bits in the decoder's order from a 4-byte window (no branch per cell, no bit loop).

Site arrays (coder.py builds them from a RansCoder and the site's ranges): lo/hi [C] i32 (channel
ranges), rc [C] i32 (the coder's centre), mode [C] i32 (0: u = v, 1: u = -v, 2: zigzag of the centred
value v), gbase [C] i32 (first table row of the channel's group), live [Cl] i32 (coded channels in
order), par [4] i32 (D, K, context mode, Cl), freq/cum [rows*K] i32, rcp [rows*K] i64 (encode only),
lookup [rows*4096] u8 (decode only),
band/room/head/crc as the other coders. unpack's status: 0 decoded, 1 container, 2 truncated or
corrupt states/words/raw bits, 4 a value out of range, 5 trailing bytes; a refused stream's symbols are 0.
pack returns length -1 for symbols of coded channels outside their range.
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
    ST_PLANE,
    ST_RANGE,
    ST_TRAILING,
    align,
    check_container,
    crc32,
    find_slice,
    put,
    put_u32,
    seal,
    table_entry,
    u32_at,
)
from tvm import tirx
from tvm.script import tirx as T

from featcomp.codecs.rans import LOWER, MAX_LANES, MIN_CHUNK, PRECISION, TOTAL

PACK, UNPACK = "rans-pack", "rans-unpack"
RCP_SHIFT = 32 + PRECISION  # the encoder's reciprocals (recip_table): the one shift that is exact and fits 64 bits


def recip_table(freq: np.ndarray) -> np.ndarray:
    """floor(2**RCP_SHIFT / f) per table entry (int64): the encoder's quotient x // f as a multiply, as ryg_rans'
    RansEncSymbol does, but exact for every 12-bit f with its 32-bit state. The state to divide is renormalised,
    x < f * 2**(32 - PRECISION), so x * rcp < 2**64 and x * rcp >> RCP_SHIFT >= x/f - x/2**RCP_SHIFT > x/f - 1/f:
    it is x // f or one less, and one compare of the remainder with f fixes it."""
    return (np.int64(1) << RCP_SHIFT) // np.asarray(freq, np.int64)


def task_scratch(pack: dict[str, np.ndarray]) -> tuple[int, int]:
    """Bytes one parallel task of (pack, unpack) takes from TVM's workspace pool on the site's largest slice
    (StaticPlanBlockMemory plans main's tensors only, so this is outside the planned activation memory):
    pack's `ent` i32 and `wid` u8 per coded value and `anyraw` i32 per coded channel, unpack's `rpos` i32
    and `rtok` u8 per coded value; nothing for a site without coded channels. `pack`: its kernel arrays."""
    ncoded = int(pack["par"][3])
    if ncoded == 0:
        return 0, 0
    values = ncoded * int(np.diff(pack["band"].astype(np.int64)).max())
    return 5 * values + 4 * ncoded, 5 * values


def _sizes() -> tuple[tirx.Var, ...]:
    return tuple(tirx.Var(v, "int64") for v in ("n", "c", "hw", "max_bytes", "coded", "cells", "slots"))


def _mag(v, md, r):  # the magnitude u of symbol v of a channel with this mode and centre (no branch)
    return T.Select(md == 0, v - r, T.Select(md == 1, r - v, T.Select(v >= r, 2 * (v - r), 2 * (r - v) - 1)))


def _cls(u):  # magnitude class of a magnitude or a token: 0, 1..2, >= 3 (tokens >= D >= 3 keep class 2); casts,
    # not if_then_else, which LLVM gets as branches: on these data-dependent classes they mispredict
    return T.Cast("int32", u > 0) + T.Cast("int32", u > 2)


@T.macro(hygienic=False)
def entry(s, onl):  # pack: ent[ci, s] = the table entry of the cell at position s of coded channel ci (bad if out of range)
    v = T.Bind(T.Cast("int32", sym[b, ch, a0 + s]))
    ok = T.Bind(v >= clo and v <= chi)
    bad[0] = bad[0] | T.Select(ok, 0, 1)
    ri[0] = T.Select(ok, _mag(v, cm, cr), 0)  # registers: the cell's magnitude,
    ri[1] = _cls(_mag(T.Cast("int32", sym[b, ch, a0 + T.max(s - 1, T.int64(0))]), cm, cr))  # left class,
    ri[2] = _cls(_mag(T.Cast("int32", sym[b, pc, a0 + s]), pm, pr))  # previous channel's class,
    ri[3] = 31 - T.clz(T.max(ri[0], 1))  # top bit
    ri[1] = rbase + onl * ri[1] + onp * ri[2]  # (now the table row)
    ri[2] = T.Select(ri[0] < direct, ri[0], direct + ((ri[3] - 4) << 2) + ((ri[0] >> (ri[3] - 2)) & 3))
    ent[ci * nk + s] = ri[1] * kk + ri[2]
    ri[3] = T.Select(ri[0] >= direct, ri[3] - 2, 0)  # raw bits of the cell (none in a bad slice)
    wid[ci * nk + s] = T.Cast("uint8", ri[3])
    anyraw[ci] = anyraw[ci] | ri[3]


@T.macro(hygienic=False)
def decode_cell(l, at, check):  # unpack: lane l's cell at this step (token to sym, state, word at byte `at`)
    p = T.Bind(a0 + l * chunk + j)
    rl[0] = T.Cast("int64", rbase + onl * lc[l] + onp * _cls(T.Cast("int32", sym[b, pc, p])))  # row
    rl[1] = xs[l] & T.int64(TOTAL - 1)  # slot
    ri[0] = T.Cast("int32", lookup[rl[0] * T.int64(TOTAL) + rl[1]])  # token
    rl[0] = rl[0] * T.Cast("int64", kk) + T.Cast("int64", ri[0])  # table entry
    rl[1] = T.Cast("int64", freq[rl[0]]) * (xs[l] >> T.int64(PRECISION)) + rl[1] - T.Cast("int64", cum[rl[0]])
    ri[1] = T.Cast("int32", rl[1] < T.int64(LOWER))  # renormalise
    rl[2] = T.Cast("int64", data[b, at]) | (T.Cast("int64", data[b, at + 1]) << T.int64(8))
    # the word taken or not by arithmetic: a select of a loaded value becomes a branch, which mispredicts on
    # every renormalisation (about one cell in five)
    xs[l] = (rl[1] << T.Cast("int64", 16 * ri[1])) | (rl[2] & -T.Cast("int64", ri[1]))
    if check == 1:
        over[0] = over[0] | (ri[1] & T.Cast("int32", wc[0] + 2 > send[0]))
    wc[0] = wc[0] + T.Cast("int64", 2 * ri[1])
    lc[l] = _cls(ri[0])
    sym[b, ch, p] = T.Cast("int16", ri[0])
    rpos[nr[0]] = T.Cast("int32", ci * nk + l * chunk + j)  # a token with raw bits joins the list (no branch:
    rtok[nr[0]] = T.Cast("uint8", ri[0])  # the slot is written every time and kept when the count moves)
    nr[0] = nr[0] + T.Cast("int64", ri[0] >= direct)


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
                     cum: T.Buffer((RK,), "int32"), rcp: T.Buffer((RK,), "int64"), band: T.Buffer((S1,), "int32"),
                     room: T.Buffer((S1,), "int32"),
                     head: T.Buffer((HEAD_FIXED,), "uint8"), crc: T.Buffer((8, 256), "uint32"),
                     out: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: PACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        direct = T.Bind(par[0])
        kk = T.Bind(par[1])
        cmode = T.Bind(par[2])
        wl = T.Bind(T.Select(cmode == 1, 1, T.Select(cmode == 3, 3, 0)))  # row = gbase + wl * left + wq * prev
        wq = T.Bind(T.Select(cmode >= 2, 1, 0))
        ncoded = T.Bind(T.Cast("int64", par[3]))
        for i in T.parallel(N * nsl):
            b = T.Bind(i // nsl)
            sl = T.Bind(i % nsl)
            xs = T.alloc_buffer((MAX_LANES,), "int64", scope="global")  # the lanes' states
            ri = T.alloc_buffer((4,), "int32", scope="global")  # per-cell registers (buffers, not lets: a let
            rl = T.alloc_buffer((4,), "int64", scope="global")  # used twice is inlined twice, nested ones blow up)
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
                last = T.Bind(nk - (lanes - 1) * chunk)  # positions of the last lane (>= 1)
                ent = T.alloc_buffer((ncoded * (T.Cast("int64", band[i % nsl + 1]) - T.Cast("int64", band[i % nsl])),),
                                     "int32", scope="global")  # the cells' table entries ([ncoded, nk])
                wid = T.alloc_buffer((ncoded * (T.Cast("int64", band[i % nsl + 1]) - T.Cast("int64", band[i % nsl])),),
                                     "uint8", scope="global")  # and their raw-bit counts
                anyraw = T.alloc_buffer((CL,), "int32", scope="global")  # per coded channel: raw bits at all?
                # 1. the table entry of every cell (row * K + token), channel by channel in raster order: no
                # dependency between cells, so the loops vectorise; the lane's first cell has no left neighbour
                for ci in range(ncoded):
                    ch = T.Bind(live[ci])
                    pc = T.Bind(live[T.max(ci - 1, T.int64(0))])
                    clo = T.Bind(lo[ch])
                    chi = T.Bind(hi[ch])
                    cr = T.Bind(rc[ch])
                    cm = T.Bind(mode[ch])
                    pr = T.Bind(rc[pc])
                    pm = T.Bind(mode[pc])
                    rbase = T.Bind(gbase[ch])
                    onp = T.Bind(T.Select(ci > 0, wq, 0))
                    anyraw[ci] = 0
                    for l in range(lanes):
                        q0 = T.Bind(l * chunk)
                        entry(q0, 0)
                        for j1 in range(T.Select(l < lanes - 1, chunk, last) - 1):
                            entry(q0 + j1 + 1, wl)
                # 2. the encoder: steps last first, lanes last first; words written backwards. Per cell no branch:
                # a word is always written below the lowest one so far and kept (wp moves) only when the lane
                # renormalises.
                for tt in range(ncoded * chunk):
                    t = T.Bind(ncoded * chunk - 1 - tt)
                    ci = T.Bind(t // chunk)
                    j = T.Bind(t % chunk)
                    nv = T.Bind(lanes - 1 + T.Select(j < last, T.int64(1), T.int64(0)))
                    for ll in range(nv):
                        l = T.Bind(nv - 1 - ll)
                        rl[0] = T.Cast("int64", ent[ci * nk + l * chunk + j])  # table entry
                        rl[1] = T.Cast("int64", freq[rl[0]])  # f
                        rl[2] = xs[l]
                        out[b, wp[0] - 2] = T.Cast("uint8", rl[2] & T.int64(255))
                        out[b, wp[0] - 1] = T.Cast("uint8", (rl[2] >> T.int64(8)) & T.int64(255))
                        ri[3] = T.Cast("int32", rl[2] >= (rl[1] << T.int64(32 - PRECISION)))  # renormalise
                        wp[0] = wp[0] - 2 * ri[3]
                        rl[2] = rl[2] >> T.Cast("int64", 16 * ri[3])
                        rl[3] = T.Cast("int64", (T.Cast("uint64", rl[2]) * T.Cast("uint64", rcp[rl[0]])) >> T.uint64(RCP_SHIFT))
                        rl[2] = rl[2] - rl[3] * rl[1]  # (the remainder, or the remainder + f)
                        ri[3] = T.Cast("int32", rl[2] >= rl[1])
                        xs[l] = ((rl[3] + T.Cast("int64", ri[3])) << T.int64(PRECISION)) + rl[2] \
                            - T.Cast("int64", ri[3]) * rl[1] + T.Cast("int64", cum[rl[0]])
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
                # (step then lane, from the counts of pass 1: the channels and cells without raw bits cost a test)
                for ci in range(ncoded):
                    if anyraw[ci] != 0:
                        ch = T.Bind(live[ci])
                        cr = T.Bind(rc[ch])
                        cm = T.Bind(mode[ch])
                        for j in range(chunk):
                            nv = T.Bind(lanes - 1 + T.Select(j < last, T.int64(1), T.int64(0)))
                            for l in range(nv):  # (no branch on the count: about a third of the cells of a
                                ri[1] = T.Cast("int32", wid[ci * nk + l * chunk + j])  # wide channel have raw bits)
                                ri[0] = _mag(T.Cast("int32", sym[b, ch, a0 + l * chunk + j]), cm, cr)
                                put(0, T.Cast("uint64", ri[0] & ((1 << ri[1]) - 1)), ri[1])
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
                       crc: T.Buffer((8, 256), "uint32"), sym: T.Buffer((N, Cn, P), "int16"),
                       status: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: UNPACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        direct = T.Bind(par[0])
        kk = T.Bind(par[1])
        cmode = T.Bind(par[2])
        wl = T.Bind(T.Select(cmode == 1, 1, T.Select(cmode == 3, 3, 0)))  # row = gbase + wl * left + wq * prev
        wq = T.Bind(T.Select(cmode >= 2, 1, 0))
        ncoded = T.Bind(T.Cast("int64", par[3]))
        direct64 = T.Bind(T.Cast("int64", direct))
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
            lc = T.alloc_buffer((MAX_LANES,), "int32", scope="global")  # class of each lane's last token
            ri = T.alloc_buffer((2,), "int32", scope="global")  # per-cell registers (buffers, not lets: a let
            rl = T.alloc_buffer((3,), "int64", scope="global")  # used twice is inlined twice, nested ones blow up)
            over = T.alloc_buffer((1,), "int32", scope="global")        # a word or value past its bounds
            geo = T.alloc_buffer((2,), "int64", scope="global")
            wc = T.alloc_buffer((1,), "int64", scope="global")  # next word's byte
            u = T.alloc_buffer((1,), "int64", scope="global")
            cut = T.alloc_buffer((1,), "int32", scope="global")  # a raw-bit read past the slice
            nr = T.alloc_buffer((1,), "int64", scope="global")  # tokens with raw bits so far
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
                # tokens, step then lane, kept in sym (the previous channel's context reads them back; the left
                # one is the lane's last token, kept in lc). Per cell no branch: a word is read whether or not the
                # lane renormalises, and the cursor moves only when it does (reads clamped into the buffer;
                # running past the slice sets `over`, and the slice is refused after the loop).
                last = T.Bind(nk - (lanes - 1) * chunk)  # positions of the last lane (>= 1)
                rpos = T.alloc_buffer((ncoded * (T.Cast("int64", band[i % nsl + 1]) - T.Cast("int64", band[i % nsl])),),
                                      "int32", scope="global")  # the cells whose tokens have raw bits, in order,
                rtok = T.alloc_buffer((ncoded * (T.Cast("int64", band[i % nsl + 1]) - T.Cast("int64", band[i % nsl])),),
                                      "uint8", scope="global")  # and those tokens
                nr[0] = T.int64(0)
                if st[0] == 0:  # (valid lane states: every table row below stays in range)
                    over[0] = 0
                    for t in range(ncoded * chunk):
                        ci = T.Bind(t // chunk)
                        j = T.Bind(t % chunk)
                        ch = T.Bind(live[ci])
                        pc = T.Bind(live[T.max(ci - 1, T.int64(0))])
                        rbase = T.Bind(gbase[ch])
                        onl = T.Bind(T.Select(j > 0, wl, 0))
                        onp = T.Bind(T.Select(ci > 0, wq, 0))
                        nv = T.Bind(lanes - 1 + T.Select(j < last, T.int64(1), T.int64(0)))
                        if wc[0] + 2 * nv <= send[0]:  # every word this step may take is in the slice: no clamp
                            for l in range(nv):
                                decode_cell(l, wc[0], 0)
                        else:
                            for l in range(nv):
                                decode_cell(l, T.min(wc[0], T.Cast("int64", M) - 2), 1)
                    if over[0] != 0:
                        st[0] = ST_PLANE
                    for l in range(lanes):
                        if xs[l] != T.int64(LOWER):
                            st[0] = ST_PLANE
                # tokens -> symbols: first every cell channel by channel in raster order (no dependency between
                # cells: the loop vectorises; a token with raw bits gets a placeholder), then the listed tokens with
                # raw bits in the decoder's order (step then lane), without a branch per cell: their raw bits from
                # a 4-byte window at the bit cursor (counts up to 25: a larger one is a value out of any int16 range)
                if st[0] == 0:
                    bit[0] = wc[0] * 8
                    over[0] = 0
                    cut[0] = 0
                    for ci in range(ncoded):
                        ch = T.Bind(live[ci])
                        clo = T.Bind(lo[ch])
                        chi = T.Bind(hi[ch])
                        cr = T.Bind(rc[ch])
                        cm = T.Bind(mode[ch])
                        for s in range(nk):
                            ri[0] = T.Cast("int32", sym[b, ch, a0 + s])
                            ri[1] = cr + T.Select(cm == 0, ri[0], T.Select(cm == 1, -ri[0], T.Select(
                                (ri[0] & 1) == 0, ri[0] >> 1, -((ri[0] + 1) >> 1))))  # (the symbol; shifts, u >= 0)
                            over[0] = over[0] | T.Cast("int32", (ri[1] < clo or ri[1] > chi) and ri[0] < direct)
                            sym[b, ch, a0 + s] = T.Cast("int16", ri[1])
                    for r in range(nr[0]):
                        ci = T.Bind(T.Cast("int64", rpos[r]) // nk)
                        p = T.Bind(a0 + T.Cast("int64", rpos[r]) - ci * nk)
                        ch = T.Bind(live[ci])
                        tok = T.Bind(T.Cast("int64", rtok[r]))
                        rl[0] = ((tok - direct64) >> T.int64(2)) + T.int64(2)
                        ri[0] = T.Cast("int32", bit[0] + rl[0] > end)  # past the slice: truncated
                        ri[1] = T.Cast("int32", rl[0] > T.int64(25))
                        cut[0] = cut[0] | ri[0]
                        over[0] = over[0] | ri[1]
                        rl[0] = T.Select(ri[0] + ri[1] > 0, T.int64(0), rl[0])
                        rl[2] = bit[0] >> T.int64(3)
                        rl[1] = (T.Cast("int64", data[b, T.min(rl[2], T.Cast("int64", M) - 1)]) << T.int64(24)) \
                            | (T.Cast("int64", data[b, T.min(rl[2] + 1, T.Cast("int64", M) - 1)]) << T.int64(16)) \
                            | (T.Cast("int64", data[b, T.min(rl[2] + 2, T.Cast("int64", M) - 1)]) << T.int64(8)) \
                            | T.Cast("int64", data[b, T.min(rl[2] + 3, T.Cast("int64", M) - 1)])
                        rl[1] = (rl[1] >> (T.int64(32) - (bit[0] & T.int64(7)) - rl[0])) & ((T.int64(1) << rl[0]) - T.int64(1))
                        bit[0] = bit[0] + rl[0]
                        u[0] = ((T.int64(4) + ((tok - direct64) & T.int64(3))) << rl[0]) | rl[1]
                        cm = T.Bind(mode[ch])
                        u[0] = T.Cast("int64", rc[ch]) + T.Select(cm == 0, u[0], T.Select(cm == 1, -u[0], T.Select(
                            (u[0] & T.int64(1)) == 0, u[0] >> T.int64(1), -((u[0] + 1) >> T.int64(1)))))
                        over[0] = over[0] | T.Cast("int32", u[0] < T.Cast("int64", lo[ch]) or u[0] > T.Cast("int64", hi[ch]))
                        sym[b, ch, p] = T.Cast("int16", u[0])
                    if cut[0] != 0:
                        st[0] = ST_PLANE
                    if st[0] == 0 and over[0] != 0:
                        st[0] = ST_RANGE
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
