# mypy: disable-error-code="valid-type,name-defined,no-redef,operator,misc"
# (TVMScript macros: their bodies name the calling kernel's variables.)
"""What the TIR coders of both codecs share: the v2 bitstream container (header, slice table, slices)
and MSB-first bit I/O.

Both coders work slice by slice (bitstream.py: bands of rows, each coded on its own), one parallel
iteration per (sample, slice), so one stream keeps every core busy. Pack writes slice k into its own
region out[b, room[k]:room[k + 1]] (room: worst-case offsets from coder.py), records its length and
CRC-32 in the slice table, and a second, per-sample pass (`seal`) moves the slices down behind the
table and writes the header. Unpack checks the container in every slice's iteration (a few dozen
bytes), finds its slice from the table, checks its CRC and decodes it; a per-sample pass combines the
slices' verdicts.

These are unhygienic TVMScript macros, expanded into the calling kernel, which provides the names
they use: `b` (the sample), `nsl` (slices per stream), `out` or `data` (streams uint8 [n, M]),
`head` [16] u8 and `crc` [8, 256] u32 (container header up to its length field, slicing-by-8 CRC-32 tables), and
one-slot-per-writer registers `acc` u64, `nb` i32, `pos` i32 (pending bits, their count, next byte);
readers add `bit` i64, `val` i64, `tot` i64, `st` i32 (position in bits, value read, a sum, status)
and `sbeg`/`send` i64 (the slice's bytes); `sum_` u32 is the CRC register; pack's `seal` uses
`room`, `at_` i32 and `bad` i32. (Registers are constant-size `global` buffers: those stay on the
stack, `local` ones go to the heap; see docs/tvm.md, traps.) TVMScript resolves a macro's names
where it is expanded, so a kernel file imports the macros and constants that the macros it uses name
in turn (seal, check_container and find_slice expand crc32 and u32_at, and use HEADER, HEAD_FIXED,
ENTRY, ST_CONTAINER; read_uint uses ST_PLANE).
"""

from __future__ import annotations

from tvm.script import tirx as T

HEADER, HEAD_FIXED, ENTRY = 24, 16, 8  # container header bytes; the part fixed by the site; slice table entry
ST_CONTAINER, ST_PLANE, ST_COUNT, ST_RANGE, ST_TRAILING = 1, 2, 3, 4, 5  # unpack status (0: decoded)
BAD_SLICE = 0xFFFFFFFF  # pack's table length of a slice with a symbol it cannot code


@T.macro(hygienic=False)
def crc32(buf, lo, hi):  # sum_[0] = zlib.crc32 of buf[b, lo:hi]: slicing-by-8 (crc [8, 256]), then byte at a time
    sum_[0] = T.uint32(0xFFFFFFFF)
    for j in range((hi - lo) // 8):
        at = T.Bind(lo + 8 * j)
        one = T.Bind(sum_[0] ^ (T.Cast("uint32", buf[b, at]) | (T.Cast("uint32", buf[b, at + 1]) << T.uint32(8))
                                | (T.Cast("uint32", buf[b, at + 2]) << T.uint32(16))
                                | (T.Cast("uint32", buf[b, at + 3]) << T.uint32(24))))
        two = T.Bind(T.Cast("uint32", buf[b, at + 4]) | (T.Cast("uint32", buf[b, at + 5]) << T.uint32(8))
                     | (T.Cast("uint32", buf[b, at + 6]) << T.uint32(16)) | (T.Cast("uint32", buf[b, at + 7]) << T.uint32(24)))
        sum_[0] = (crc[7, T.Cast("int32", one & T.uint32(255))] ^ crc[6, T.Cast("int32", (one >> T.uint32(8)) & T.uint32(255))]
                   ^ crc[5, T.Cast("int32", (one >> T.uint32(16)) & T.uint32(255))] ^ crc[4, T.Cast("int32", one >> T.uint32(24))]
                   ^ crc[3, T.Cast("int32", two & T.uint32(255))] ^ crc[2, T.Cast("int32", (two >> T.uint32(8)) & T.uint32(255))]
                   ^ crc[1, T.Cast("int32", (two >> T.uint32(16)) & T.uint32(255))] ^ crc[0, T.Cast("int32", two >> T.uint32(24))])
    for i in range(lo + (hi - lo) // 8 * 8, hi):
        sum_[0] = crc[0, T.Cast("int32", (sum_[0] ^ T.Cast("uint32", buf[b, i])) & T.uint32(255))] ^ (sum_[0] >> T.uint32(8))
    sum_[0] = sum_[0] ^ T.uint32(0xFFFFFFFF)


@T.macro(hygienic=False)
def u32_at(buf, at):  # val[0] = the little-endian u32 at buf[b, at:at + 4], as int64
    val[0] = T.int64(0)
    for i in range(4):
        val[0] = val[0] | (T.Cast("int64", buf[b, at + i]) << T.Cast("int64", 8 * i))


@T.macro(hygienic=False)
def put_u32(at, value):  # out[b, at:at + 4] = value (uint32), little-endian
    for i in range(4):
        out[b, at + i] = T.Cast("uint8", (value >> T.Cast("uint32", 8 * i)) & T.uint32(255))


@T.macro(hygienic=False)
def table_entry(k, start, stop, ok):  # slice k was written to out[b, start:stop]: its table entry (length, CRC)
    crc32(out, start, stop)
    put_u32(HEADER + ENTRY * k, T.if_then_else(ok, T.Cast("uint32", stop - start), T.uint32(BAD_SLICE)))
    put_u32(HEADER + ENTRY * k + 4, sum_[0])


@T.macro(hygienic=False)
def seal():  # slices moved down behind the table, then the header; nbytes[b] = the length (-1: a bad slice)
    at_[0] = T.Cast("int32", HEADER + ENTRY * nsl)
    bad[0] = 0
    for k in range(nsl):
        u32_at(out, HEADER + ENTRY * k)
        if val[0] == T.int64(BAD_SLICE):
            bad[0] = 1
        elif bad[0] == 0:
            # forward byte copy: the destination never passes the source (at_ <= room[k])
            for i in range(T.Cast("int32", val[0])):
                out[b, at_[0] + i] = out[b, room[k] + i]
            at_[0] = at_[0] + T.Cast("int32", val[0])
    crc32(out, HEADER, HEADER + ENTRY * nsl)
    for i in range(HEAD_FIXED):
        out[b, i] = head[i]
    put_u32(HEAD_FIXED, T.Cast("uint32", at_[0] - HEADER))
    put_u32(HEAD_FIXED + 4, sum_[0])
    nbytes[b] = T.if_then_else(bad[0] != 0, -1, at_[0])


@T.macro(hygienic=False)
def check_container(total, room):  # st[0] = ST_CONTAINER unless data[b, :total] has this site's header and a table
    if T.Cast("int64", total) < HEADER + ENTRY * nsl or T.Cast("int64", total) > room:  # that tiles it
        st[0] = ST_CONTAINER
    else:
        for i in range(HEAD_FIXED):
            if data[b, i] != head[i]:
                st[0] = ST_CONTAINER
        u32_at(data, HEAD_FIXED)
        if val[0] != T.Cast("int64", total - HEADER):
            st[0] = ST_CONTAINER
        crc32(data, HEADER, HEADER + ENTRY * nsl)
        u32_at(data, HEAD_FIXED + 4)
        if val[0] != T.Cast("int64", sum_[0]):
            st[0] = ST_CONTAINER
        tot[0] = T.int64(0)
        for q in range(nsl):
            u32_at(data, HEADER + ENTRY * q)
            tot[0] = tot[0] + val[0]
        if tot[0] != T.Cast("int64", total) - HEADER - ENTRY * nsl:
            st[0] = ST_CONTAINER


@T.macro(hygienic=False)
def find_slice(k):  # (after check_container passed) sbeg/send = slice k's bytes; st[0] = ST_CONTAINER on a bad CRC
    tot[0] = T.Cast("int64", HEADER + ENTRY * nsl)
    for q in range(k):
        u32_at(data, HEADER + ENTRY * q)
        tot[0] = tot[0] + val[0]
    sbeg[0] = tot[0]
    u32_at(data, HEADER + ENTRY * k)
    send[0] = tot[0] + val[0]
    crc32(data, sbeg[0], send[0])
    u32_at(data, HEADER + ENTRY * k + 4)
    if val[0] != T.Cast("int64", sum_[0]):
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
def read_uint(count, end):  # count bits MSB first into val[0], or st[0] = ST_PLANE past bit `end`
    val[0] = T.int64(0)
    if bit[0] + T.Cast("int64", count) > end:
        st[0] = ST_PLANE
    else:
        for i in range(count):
            at = T.Bind(bit[0] + T.Cast("int64", i))
            val[0] = val[0] * 2 + T.Cast("int64", (data[b, at // 8] >> T.Cast("uint8", 7 - at % 8)) & T.uint8(1))
        bit[0] = bit[0] + T.Cast("int64", count)
