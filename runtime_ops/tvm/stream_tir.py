# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript macros: their bodies name the calling kernel's variables.)
"""What the TIR coders of both codecs share: the bitstream container and MSB-first bit I/O.

These are unhygienic TVMScript macros, expanded into the calling kernel, which provides the names
they use: `b` (the sample), `out` or `data` (streams uint8 [n, M]), `head` [14] u8 and `crc` [256]
u32 (container header up to its length field, CRC-32 table), and one-slot-per-writer registers
`acc` u64, `nb` i32, `pos` i32 (pending bits, their count, next byte); readers add `bit` i64,
`val` i64, `st` i32 (position in bits, value read, status) and `end` (the stream's length in bits),
and `finish` writes `sym` [n, Cn, P] and `status` [n]; `sum_` u32 is the CRC register. (Registers
are constant-size `global` buffers: those stay on the stack, `local` ones go to the heap; see
docs/tvm.md, traps.) TVMScript resolves a
macro's names where it is expanded, so a kernel file imports the macros and constants that the
macros it uses name in turn (seal and check_container expand crc32 and use HEADER, HEAD_FIXED,
ST_CONTAINER; read_uint uses ST_PLANE; finish uses ST_TRAILING).
"""

from __future__ import annotations

from tvm.script import tirx as T  # type: ignore[import-untyped]

HEADER, HEAD_FIXED = 22, 14  # container bytes; the part of them fixed by the site (before the length field)
ST_CONTAINER, ST_PLANE, ST_COUNT, ST_RANGE, ST_TRAILING = 1, 2, 3, 4, 5  # unpack status (0: decoded)


@T.macro(hygienic=False)
def crc32(buf, lo, hi):  # sum_[0] = zlib.crc32 of buf[b, lo:hi]
    sum_[0] = T.uint32(0xFFFFFFFF)
    for i in range(lo, hi):
        sum_[0] = crc[T.Cast("int32", (sum_[0] ^ T.Cast("uint32", buf[b, i])) & T.uint32(255))] ^ (sum_[0] >> T.uint32(8))
    sum_[0] = sum_[0] ^ T.uint32(0xFFFFFFFF)


@T.macro(hygienic=False)
def seal(stop):  # the container in front of out[b, HEADER:stop]: fixed head, payload length, payload CRC-32
    crc32(out, HEADER, stop)
    for i in range(HEAD_FIXED):
        out[b, i] = head[i]
    for i in range(4):
        out[b, HEAD_FIXED + i] = T.Cast("uint8", ((stop - HEADER) >> (8 * i)) & 255)
        out[b, HEAD_FIXED + 4 + i] = T.Cast("uint8", (sum_[0] >> T.Cast("uint32", 8 * i)) & T.uint32(255))


@T.macro(hygienic=False)
def check_container(total, room):  # st[0] = ST_CONTAINER unless data[b, :total] is a sealed stream of this site
    if total < HEADER or T.Cast("int64", total) > room:
        st[0] = ST_CONTAINER
    else:
        for i in range(HEAD_FIXED):
            if data[b, i] != head[i]:
                st[0] = ST_CONTAINER
        val[0] = T.int64(0)
        for i in range(4):
            val[0] = val[0] | (T.Cast("int64", data[b, HEAD_FIXED + i]) << T.Cast("int64", 8 * i))
        if val[0] != T.Cast("int64", total - HEADER):
            st[0] = ST_CONTAINER
        crc32(data, HEADER, total)
        for i in range(4):
            if T.Cast("uint32", data[b, HEAD_FIXED + 4 + i]) != ((sum_[0] >> T.Cast("uint32", 8 * i)) & T.uint32(255)):
                st[0] = ST_CONTAINER


@T.macro(hygienic=False)
def put(w, value, count):  # append value (u64, < 2**count, count <= 32) to writer w, MSB first
    acc[w] = (acc[w] << T.Cast("uint64", count)) | value
    nb[w] = nb[w] + count
    if nb[w] >= 32:  # four bytes at a time: a branch that is rarely taken predicts well
        for i in T.unroll(4):
            out[b, pos[w] + i] = T.Cast("uint8", (acc[w] >> T.Cast("uint64", nb[w] - 8 * (i + 1))) & T.uint64(255))
        pos[w] = pos[w] + 4
        nb[w] = nb[w] - 32


@T.macro(hygienic=False)
def align(w):  # write writer w's pending bits, the last byte padded with zeros
    while nb[w] >= 8:
        out[b, pos[w]] = T.Cast("uint8", (acc[w] >> T.Cast("uint64", nb[w] - 8)) & T.uint64(255))
        pos[w] = pos[w] + 1
        nb[w] = nb[w] - 8
    if nb[w] > 0:
        out[b, pos[w]] = T.Cast("uint8", (acc[w] << T.Cast("uint64", 8 - nb[w])) & T.uint64(255))
        pos[w] = pos[w] + 1
    acc[w] = T.uint64(0)
    nb[w] = 0


@T.macro(hygienic=False)
def finish(stop):  # status[b] from st[0] and where reading stopped (in bits, aligned); refused: zero symbols
    if st[0] == 0 and stop != end:
        st[0] = ST_TRAILING
    if st[0] != 0:
        for ch, s in T.grid(Cn, P):
            sym[b, ch, s] = T.int16(0)
    status[b] = st[0]


@T.macro(hygienic=False)
def read_uint(count, end):  # count bits MSB first into val[0], or st[0] = ST_PLANE past bit `end`
    val[0] = T.int64(0)
    if bit[0] + T.Cast("int64", count) > end:
        st[0] = ST_PLANE
    else:
        for i in range(count):
            at = T.Bind(bit[0] + T.Cast("int64", i))
            val[0] = val[0] * 2 + T.Cast("int64", (data[b, at // 8] >> T.Cast("uint8", 7 - at % 8)) & T.uint8(1))
        bit[0] = bit[0] + T.Cast("int64", count)
