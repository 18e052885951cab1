# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript: T.Buffer(shape, dtype) annotations are not Python types, and macro bodies name the
# caller's variables.)
"""The transform-VLC bitstream coder as hand-written TIR: pack (symbols -> bitstream) and unpack.

Bit for bit the numpy reference (featcomp.codecs.tvlc.TvlcSite.pack / unpack), header and CRC-32
included, so a stream either side writes the other reads. Variable-length coding is sequential
within a slice of the stream (where a codeword goes depends on every codeword before it), so these
are imperative kernels, serial within a slice, with the slices of every sample in parallel (see
stream_tir.py: bitstream v2 cuts each stream into bands of rows coded independently); they are
marked scheduled, so no schedule rule touches them, and opaque, so FuseOps leaves them alone.

Every site array arrives as a runtime buffer (coder.py builds them from a TvlcSite):
  centre [C] i32, order [L] i32 (the live planes, by class then channel), first [J+1] i32 (class
  j's planes are order[first[j]:first[j+1]]), hi/lo/size [J] i32 (highest level, table's lowest
  token, its token count), width [slices+1, J] i32 (bit width of each slice's token counts; the last
  row unused), code [J,S] u64 and length [J,S] i32 (the bits sent per token index, escape and offset
  included; length 0: no codeword), band [slices+1] i32 (each slice's first value in a plane), room
  [slices+1] i32 (pack only: where each slice is written before the slices are moved together), head
  [16] u8 (the container header up to its length field), crc [8, 256] u32 (the slicing-by-8 CRC-32 tables).
The unpacker also takes the canonical-code tables dfirst/dcount/dindex [J,17] i32 (per codeword
length: first code, how many, where they start in dsym), dsym [J,S+1] i32 (token index per
canonical rank, size[j] standing for the escape), fast [J, 2^FAST_BITS] i32 (per leading byte: token
index << 5 | length of a codeword of up to FAST_BITS bits, 0 if longer), escbits [J] i32, cmin/cmax [C] i32.

unpack never reads or writes out of bounds whatever the bytes: every read is checked against the
slice's end (the slice table is checked to tile the stream first), every write against its plane. status[b] is 0 for a stream numpy decodes, else why
it does not (1 container, 2 plane truncated or no codeword, 3 token counts, 4 value out of range,
5 trailing bytes); the symbols of a refused stream are zero.
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

from featcomp.codecs.tvlc import RUN_MAX

PACK, UNPACK = "tvlc-pack", "tvlc-unpack"
MAX_CODE = 16                # longest codeword (escape offset excluded)
FAST_BITS = 8                # codewords up to this long decode with one table lookup


def task_scratch(pack: dict[str, np.ndarray]) -> tuple[int, int]:
    """Bytes one parallel task of (pack, unpack) allocates outside the planned activation memory: a `local`
    counter per token class (pack's `ntok` i32, unpack's `cnt` i64). `pack`: its kernel arrays."""
    classes = len(pack["hi"])
    return 4 * classes, 8 * classes


def _i64(*dims: int) -> tuple[tirx.IntImm, ...]:
    return tuple(tirx.IntImm("int64", max(1, d)) for d in dims)  # empty arrays still get one (unused) slot


@functools.lru_cache(maxsize=None)
def pack_kernel() -> tirx.PrimFunc:
    """symbols int16 [n, c, hw] -> streams uint8 [n, max_bytes], lengths int32 [n] (-1: a token without codeword).

    One parallel iteration per (sample, slice); every size is symbolic (bound from the buffers at the
    call), so one compiled kernel serves every site."""
    N, Cn, P, L, J, S, M = (tirx.Var(v, "int64") for v in ("n", "c", "hw", "live", "classes", "tokens", "max_bytes"))
    J1, S1 = tirx.Var("classes_1", "int64"), tirx.Var("slices_1", "int64")

    @T.macro(hygienic=False)
    def emit(j, token):
        idx = T.Bind(token - lo[j])
        if idx < 0 or idx >= size[j]:
            bad[0] = 1
        elif length[j, idx] == 0:
            bad[0] = 1
        else:
            if length[j, idx] > 32:  # an escape with a wide offset: put takes at most 32 bits
                put(0, code[j, idx] >> T.uint64(16), length[j, idx] - 16)
                put(0, code[j, idx] & T.uint64(65535), 16)
            else:
                put(0, code[j, idx], length[j, idx])
        ntok[j] = ntok[j] + 1

    @T.macro(hygienic=False)
    def flush(j):
        if run[0] == 1:
            emit(j, 0)
        elif run[0] > 1:
            emit(j, hi[j] + run[0] - 1)
        run[0] = 0

    @T.prim_func(private=True)
    def fc_tvlc_pack(sym: T.Buffer((N, Cn, P), "int16"), centre: T.Buffer((Cn,), "int32"),
                     order: T.Buffer((L,), "int32"), first: T.Buffer((J1,), "int32"),
                     hi: T.Buffer((J,), "int32"), lo: T.Buffer((J,), "int32"), size: T.Buffer((J,), "int32"),
                     width: T.Buffer((S1, J), "int32"), code: T.Buffer((J, S), "uint64"),
                     length: T.Buffer((J, S), "int32"), band: T.Buffer((S1,), "int32"), room: T.Buffer((S1,), "int32"),
                     head: T.Buffer((HEAD_FIXED,), "uint8"), crc: T.Buffer((8, 256), "uint32"),
                     out: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: PACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        for i in T.parallel(N * nsl):  # every slice of every sample at once, each into its own region
            b = T.Bind(i // nsl)
            k = T.Bind(i % nsl)
            acc = T.alloc_buffer((1,), "uint64", scope="global")   # bits not yet written (low nb bits)
            nb = T.alloc_buffer((1,), "int32", scope="global")
            pos = T.alloc_buffer((1,), "int32", scope="global")    # next byte
            stop = T.alloc_buffer((1,), "int32", scope="global")   # the slice's end
            run = T.alloc_buffer((1,), "int32", scope="global")    # values equal to the centre, pending
            bad = T.alloc_buffer((1,), "int32", scope="global")
            ntok = T.alloc_buffer((J,), "int32", scope="local")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            pos[0] = 0
            for j in range(J):
                pos[0] = pos[0] + width[k, j]
            pos[0] = room[k] + (pos[0] + 7) // 8  # the token counts go first; their width is fixed
            bad[0] = 0

            for j in range(J):
                ntok[j] = 0
                acc[0] = T.uint64(0)
                nb[0] = 0
                for q in range(first[j], first[j + 1]):
                    ch = T.Bind(order[q])
                    run[0] = 0
                    for s in range(band[k], band[k + 1]):  # the plane's rows in this band: runs end with it
                        v = T.Bind(T.Cast("int32", sym[b, ch, s]) - centre[ch])
                        if v == 0:
                            run[0] = run[0] + 1
                            if run[0] == RUN_MAX:
                                emit(j, hi[j] + RUN_MAX - 1)
                                run[0] = 0
                        else:
                            flush(j)
                            emit(j, v)
                    flush(j)
                align(0)
            # the token counts, in front of the planes (their width is fixed, so their room was known)
            stop[0] = pos[0]  # a register, not a let of pos[0]: pos moves on below
            pos[0] = room[k]
            for j in range(J):
                put(0, T.Cast("uint64", ntok[j]), width[k, j])
            align(0)
            table_entry(k, room[k], stop[0], bad[0] == 0)
        for b in T.parallel(N):  # per sample: the slices behind the table, then the header
            val = T.alloc_buffer((1,), "int64", scope="global")
            at_ = T.alloc_buffer((1,), "int32", scope="global")
            bad = T.alloc_buffer((1,), "int32", scope="global")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            seal()

    return fc_tvlc_pack


@functools.lru_cache(maxsize=None)
def unpack_kernel() -> tirx.PrimFunc:
    """streams uint8 [n, max_bytes], lengths int32 [n] -> symbols int16 [n, c, hw], status int32 [n] (sizes symbolic).

    One parallel iteration per (sample, slice), then one per sample to combine their verdicts."""
    N, Cn, P, L, J, S, M = (tirx.Var(v, "int64") for v in ("n", "c", "hw", "live", "classes", "tokens", "max_bytes"))
    J1, S1, T1 = tirx.Var("classes_1", "int64"), tirx.Var("slices_1", "int64"), tirx.Var("tokens_1", "int64")

    @T.prim_func(private=True)
    def fc_tvlc_unpack(data: T.Buffer((N, M), "uint8"), nbytes: T.Buffer((N,), "int32"),
                       centre: T.Buffer((Cn,), "int32"), order: T.Buffer((L,), "int32"),
                       first: T.Buffer((J1,), "int32"), hi: T.Buffer((J,), "int32"), lo: T.Buffer((J,), "int32"),
                       size: T.Buffer((J,), "int32"), width: T.Buffer((S1, J), "int32"),
                       dfirst: T.Buffer((J, 17), "int32"), dcount: T.Buffer((J, 17), "int32"),
                       dindex: T.Buffer((J, 17), "int32"), dsym: T.Buffer((J, T1), "int32"), fast: T.Buffer((J, 1 << FAST_BITS), "int32"),
                       escbits: T.Buffer((J,), "int32"), cmin: T.Buffer((Cn,), "int32"),
                       cmax: T.Buffer((Cn,), "int32"), band: T.Buffer((S1,), "int32"), head: T.Buffer((HEAD_FIXED,), "uint8"),
                       crc: T.Buffer((8, 256), "uint32"), sym: T.Buffer((N, Cn, P), "int16"),
                       status: T.Buffer((N,), "int32")):
        T.func_attr({"tirx.noalias": True, OP_ATTR: UNPACK, "op_pattern": 8, SCHEDULED: True})
        nsl = T.Bind(S1 - 1)
        verdict = T.alloc_buffer((N * nsl,), "int32", scope="global")  # each slice's status
        for i in T.parallel(N * nsl):
            b = T.Bind(i // nsl)
            k = T.Bind(i % nsl)
            st = T.alloc_buffer((1,), "int32", scope="global")
            bit = T.alloc_buffer((1,), "int64", scope="global")    # read position, in bits from the stream start
            val = T.alloc_buffer((1,), "int64", scope="global")
            tot = T.alloc_buffer((1,), "int64", scope="global")
            sbeg = T.alloc_buffer((1,), "int64", scope="global")   # the slice's bytes: sbeg .. send - 1
            send = T.alloc_buffer((1,), "int64", scope="global")
            cnt = T.alloc_buffer((J,), "int64", scope="local")
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            tok = T.alloc_buffer((1,), "int32", scope="global")
            got = T.alloc_buffer((1,), "int32", scope="global")    # codeword length found, 0 while searching
            fill = T.alloc_buffer((1,), "int32", scope="global")   # values of the class written so far
            cw_k = T.alloc_buffer((1,), "int64", scope="global")
            lv = T.alloc_buffer((1,), "int32", scope="global")     # codeword length being tried
            row = T.alloc_buffer((1,), "int32", scope="global")    # where the next value goes: plane of the class,
            col = T.alloc_buffer((1,), "int64", scope="global")    # and position in its band
            total = T.Bind(nbytes[b])
            a0 = T.Bind(T.Cast("int64", band[k]))
            nk = T.Bind(T.Cast("int64", band[k + 1]) - T.Cast("int64", band[k]))  # values per plane in the slice
            st[0] = 0
            sbeg[0] = T.int64(0)
            send[0] = T.int64(0)

            # --- the container, and this slice's bytes
            check_container(total, M)
            if st[0] == 0:
                find_slice(k)
            end = T.Bind(send[0] * 8)
            # --- constant planes (and every plane, overwritten below): cmin
            for ch, s in T.grid(Cn, nk):
                sym[b, ch, a0 + s] = T.Cast("int16", cmin[ch])
            # --- token counts
            bit[0] = sbeg[0] * 8
            for j in range(J):
                if st[0] == 0:
                    read_uint(width[k, j], end)
                    cnt[j] = val[0]
                    if cnt[j] > T.Cast("int64", first[j + 1] - first[j]) * nk:
                        st[0] = ST_COUNT
            bit[0] = (bit[0] + 7) // 8 * 8
            # --- one Huffman plane per class
            for j in range(J):
                fill[0] = 0
                row[0] = 0
                col[0] = T.int64(0)
                cw_k[0] = T.int64(0)
                while st[0] == 0 and cw_k[0] < cnt[j]:
                    # the next 24 bits (zeros past the slice's end), then the shortest length whose code is valid
                    at = T.Bind(bit[0] // 8)
                    b0 = T.Bind(T.if_then_else(at < send[0], T.Cast("int64", data[b, T.min(at, M - 1)]), T.int64(0)))
                    b1 = T.Bind(T.if_then_else(at + 1 < send[0], T.Cast("int64", data[b, T.min(at + 1, M - 1)]), T.int64(0)))
                    b2 = T.Bind(T.if_then_else(at + 2 < send[0], T.Cast("int64", data[b, T.min(at + 2, M - 1)]), T.int64(0)))
                    window = T.Bind(((b0 << T.int64(16)) | (b1 << T.int64(8)) | b2) >> (T.int64(8) - bit[0] % 8) & T.int64(65535))
                    # codewords of up to FAST_BITS bits (nearly all): one lookup; longer ones: search by length
                    hit = T.Bind(fast[j, T.Cast("int32", window >> T.int64(16 - FAST_BITS))])
                    got[0] = hit & 31
                    tok[0] = hit >> 5
                    lv[0] = FAST_BITS + 1
                    while got[0] == 0 and lv[0] <= MAX_CODE:
                        cw = T.Bind(T.Cast("int32", window >> T.Cast("int64", 16 - lv[0])))
                        if cw >= dfirst[j, lv[0]] and cw - dfirst[j, lv[0]] < dcount[j, lv[0]]:
                            got[0] = lv[0]
                            tok[0] = dsym[j, dindex[j, lv[0]] + cw - dfirst[j, lv[0]]]
                        lv[0] = lv[0] + 1
                    if got[0] == 0 or bit[0] + T.Cast("int64", got[0]) > end:
                        st[0] = ST_PLANE
                    else:
                        bit[0] = bit[0] + T.Cast("int64", got[0])
                        if tok[0] == size[j]:  # the escape: the token index follows in escbits bits
                            read_uint(escbits[j], end)
                            tok[0] = T.Cast("int32", T.min(val[0], T.int64(1 << 30)))
                            if st[0] == 0 and tok[0] >= size[j]:
                                st[0] = ST_PLANE
                    if st[0] == 0:
                        token = T.Bind(tok[0] + lo[j])
                        count = T.Bind(T.if_then_else(token > hi[j], token - hi[j] + 1, 1))
                        value = T.Bind(T.if_then_else(token > hi[j], 0, token))
                        if T.Cast("int64", fill[0] + count) > T.Cast("int64", first[j + 1] - first[j]) * nk:
                            st[0] = ST_COUNT
                        else:
                            for r in range(count):
                                plane = T.Bind(order[first[j] + row[0]])
                                v = T.Bind(value + centre[plane])
                                if v < cmin[plane] or v > cmax[plane]:
                                    st[0] = ST_RANGE
                                else:
                                    sym[b, plane, a0 + col[0]] = T.Cast("int16", v)
                                col[0] = col[0] + T.int64(1)
                                if col[0] == nk:
                                    col[0] = T.int64(0)
                                    row[0] = row[0] + 1
                            fill[0] = fill[0] + count
                    cw_k[0] = cw_k[0] + T.int64(1)
                if st[0] == 0 and T.Cast("int64", fill[0]) != T.Cast("int64", first[j + 1] - first[j]) * nk:
                    st[0] = ST_COUNT
                bit[0] = (bit[0] + 7) // 8 * 8
            if st[0] == 0 and bit[0] != end:
                st[0] = ST_TRAILING
            verdict[i] = st[0]
        for b in T.parallel(N):  # a stream is decoded when all its slices are; a refused one's symbols are zero
            status[b] = 0
            for k in range(nsl):
                if status[b] == 0:
                    status[b] = verdict[b * nsl + k]
            if status[b] != 0:
                for ch, s in T.grid(Cn, P):
                    sym[b, ch, s] = T.int16(0)

    return fc_tvlc_unpack
