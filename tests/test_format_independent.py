"""An independent decoder of bitstream v2, written from the format description (README "Bitstream",
the docstrings of featcomp/codecs/bitstream.py, dctcm.py, tvlc.py, huffman.py, rice.py), not from the
code: a deliberately naive pure-Python reader, one bit at a time, no featcomp decoding code.

featcomp is used only to *produce* streams (the reference packer) and for the side information that is
not in a stream (the site's public parameters: shape, per-channel kinds and Rice parameters, ranges,
centres, table classes and Huffman code lengths). Every header and table field is checked against what
the description says, and the decoded symbols against the symbols that were packed, slice by slice.
A writer built from the same description must reproduce the packer's bytes exactly.
"""

from __future__ import annotations

import itertools
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from conftest import DATA_KINDS, activation_stats
from test_codec_dctcm import HAND_SITES, lcg_symbols
from test_codec_tvlc import _golden_symbols, _hand_site, stats_of

from featcomp.codecs.dctcm import DctCm, DctCmSite
from featcomp.codecs.tvlc import TransformVlc, TvlcSite

# --- the numbers the description gives --------------------------------------------------------------------

HEADER_BYTES = 24
ENTRY_BYTES = 8
MAX_SLICES = 8
SLICE_VALUES = 8192
RUN_MAX = 64          # longest run one transform-VLC token stands for
NO_TABLE = 255        # table class of a constant transform-VLC plane
DROP, DENSE, MASK = 0, 1, 2
CALIB_SHAPE = (16, 24, 64)  # 24576 values: three bands of 8 rows
ESCAPES = [0]         # escaped Huffman symbols the reader has decoded (to show the tests reach them)


# --- the container ------------------------------------------------------------------------------------------

def spec_bands(c: int, h: int, w: int) -> list[int]:
    """Row boundaries of the slices, as README "Bitstream" states the rule."""
    wanted = max(1, min(MAX_SLICES, h, c * h * w // SLICE_VALUES))
    rows = -(-h // wanted)
    return [min(k * rows, h) for k in range(-(-h // rows) + 1)]


def u(data: bytes, at: int, size: int) -> int:
    """Little-endian unsigned field."""
    return int.from_bytes(data[at:at + size], "little")


def open_container(data: bytes, codec_id: int, param_id: int, shape: tuple[int, int, int]) -> list[tuple[int, int, bytes]]:
    """Check every header and table field; return (first row, end row, bytes) per slice."""
    assert data[0:2] == b"FC"
    assert data[2] == 2  # format version
    assert data[3] == codec_id
    assert u(data, 4, 4) == param_id
    c, h, w = u(data, 8, 2), u(data, 10, 2), u(data, 12, 2)
    assert (c, h, w) == shape
    rows = spec_bands(c, h, w)
    count = u(data, 14, 2)
    assert count == len(rows) - 1 and 1 <= count <= MAX_SLICES
    assert u(data, 16, 4) == len(data) - HEADER_BYTES  # payload: the slice table and the slices
    table = data[HEADER_BYTES:HEADER_BYTES + ENTRY_BYTES * count]
    assert len(table) == ENTRY_BYTES * count
    assert u(data, 20, 4) == zlib.crc32(table)
    lengths = [u(table, ENTRY_BYTES * k, 4) for k in range(count)]
    crcs = [u(table, ENTRY_BYTES * k + 4, 4) for k in range(count)]
    assert HEADER_BYTES + len(table) + sum(lengths) == len(data)
    out, at = [], HEADER_BYTES + len(table)
    for k in range(count):
        part = data[at:at + lengths[k]]
        assert zlib.crc32(part) == crcs[k]
        out.append((rows[k], rows[k + 1], part))
        at += lengths[k]
    return out


class Bits:
    """MSB-first bits of one slice; planes start on byte boundaries, padded with zero bits."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def bit(self) -> int:
        assert self.pos < 8 * len(self.data), "read past the end of the slice"
        b = (self.data[self.pos // 8] >> (7 - self.pos % 8)) & 1
        self.pos += 1
        return b

    def uint(self, width: int) -> int:
        v = 0
        for _ in range(width):
            v = (v << 1) | self.bit()
        return v

    def end_plane(self) -> None:
        while self.pos % 8:
            assert self.bit() == 0, "plane padding must be zero bits"

    def end(self) -> None:
        assert self.pos == 8 * len(self.data), "the slice has bytes after its last plane"


# --- DCT-CM -------------------------------------------------------------------------------------------------

def dctcm_slice(part: bytes, site: DctCmSite, n: int) -> list[list[int]]:
    """Values [C][n] of one slice: five planes, flags, bitmaps, signs, Rice remainders, unary quotients."""
    c = site.shape[0]
    g = site.transform.shape[0]
    kinds = [int(k) for k in site.kinds]
    ks = [int(k) for k in site.rice_k]
    # per frequency (G entries) or, with per-channel steps, per channel (C entries)
    lo = [int(site.cmin[ch if len(site.cmin) == c else ch % g]) for ch in range(c)]
    r = Bits(part)
    flagged = [False] * c
    for ch in range(c):
        if kinds[ch] != DROP:
            flagged[ch] = bool(r.bit())
    r.end_plane()
    bitmap: dict[int, list[int]] = {}
    for ch in range(c):
        if flagged[ch] and kinds[ch] == MASK:
            bitmap[ch] = [r.bit() for _ in range(n)]
    r.end_plane()
    coded: list[tuple[int, int]] = []  # (channel, position) of every coded value, channel by channel
    for ch in range(c):
        if flagged[ch] and kinds[ch] == DENSE:
            coded += [(ch, i) for i in range(n)]
        elif ch in bitmap:
            coded += [(ch, i) for i in range(n) if bitmap[ch][i]]
    negative: dict[tuple[int, int], int] = {}
    for ch, i in coded:
        if kinds[ch] == MASK and lo[ch] < 0:
            negative[ch, i] = r.bit()
    r.end_plane()
    remainders = [r.uint(ks[ch]) for ch, _ in coded]
    r.end_plane()
    quotients = []
    for _ in coded:
        q = 0
        while r.bit() == 0:
            q += 1
        quotients.append(q)
    r.end_plane()
    r.end()
    out = [[0] * n for _ in range(c)]
    for (ch, i), rem, q in zip(coded, remainders, quotients):
        code = (q << ks[ch]) + rem
        if kinds[ch] == MASK:
            value = -(code + 1) if negative.get((ch, i)) else code + 1
        elif lo[ch] < 0:  # zigzag
            value = code // 2 if code % 2 == 0 else -(code + 1) // 2
        else:
            value = code + lo[ch]
        out[ch][i] = value
    for ch in range(c):  # the flag says whether the channel holds any nonzero in the band
        if kinds[ch] != DROP:
            assert flagged[ch] == any(out[ch])
    return out


def dctcm_param_id(site: DctCmSite) -> int:
    crc = zlib.crc32(struct.pack("<3H", *site.shape))
    for a in (site.scale, site.qmin, site.qmax, site.transform, site.step, site.cmin, site.cmax,
              site.decode_matrix, site.kinds, site.rice_k):
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return crc if site.rans is None else zlib.crc32(site.rans.to_bytes(), crc)


# --- transform-VLC ------------------------------------------------------------------------------------------

class Canonical:
    """A canonical Huffman code from (lo, lengths, escape length), as huffman.py describes it."""

    def __init__(self, lo: int, lengths: list[int], escape_length: int) -> None:
        self.lo, self.count = lo, len(lengths)
        entries = [(length, i) for i, length in enumerate(lengths) if length]
        if escape_length:
            entries.append((escape_length, len(lengths)))  # the escape sorts after every symbol of its length
        entries.sort()
        self.words: dict[tuple[int, int], int] = {}  # (length, codeword) -> symbol index (count = escape)
        code, prev = 0, entries[0][0]
        for length, i in entries:
            code <<= length - prev
            prev = length
            self.words[length, code] = i
            code += 1
        self.escape_bits = (len(lengths) - 1).bit_length() if escape_length else 0
        self.longest = max(length for length, _ in entries)

    def read(self, r: Bits) -> int:
        code = 0
        for length in range(1, self.longest + 1):
            code = (code << 1) | r.bit()
            if (length, code) in self.words:
                i = self.words[length, code]
                if i == self.count:
                    i = r.uint(self.escape_bits)
                    ESCAPES[0] += 1
                    assert i < self.count
                return self.lo + i
        raise AssertionError("no codeword matches")


def parse_coder(data: bytes) -> tuple[list[int], list[int], list[tuple[int, list[int], int]]]:
    """The coder description (docs/bitstream.md): centres, table classes, and (lo, lengths, escape length)
    per table."""
    assert data[0] == 1 and u(data, 4, 2) == RUN_MAX
    c, count = u(data, 1, 2), data[3]
    at = 6
    centre = [int.from_bytes(data[at + 2 * i:at + 2 * i + 2], "little", signed=True) for i in range(c)]
    at += 2 * c
    table_of = list(data[at:at + c])
    at += c
    tables = []
    for _ in range(count):
        size = u(data, at, 4)
        body = data[at + 4:at + 4 + size]
        at += 4 + size
        lo = int.from_bytes(body[0:4], "little", signed=True)
        symbols, escape_length, width = u(body, 4, 4), body[8], body[9]
        if width == 8:
            lengths = list(body[10:])
        else:
            assert width == 4
            nibbles = [v for byte in body[10:] for v in (byte >> 4, byte & 15)]
            assert len(nibbles) - symbols in (0, 1) and not any(nibbles[symbols:])
            lengths = nibbles[:symbols]
        assert len(lengths) == symbols
        tables.append((lo, lengths, escape_length))
    assert at == len(data)
    return centre, table_of, tables


def tvlc_slice(part: bytes, site: TvlcSite, n: int) -> list[list[int]]:
    """Values [C][n] of one slice: the token counts, then one Huffman plane per class with live planes."""
    c = site.shape[0]
    centre, table_of, tables = parse_coder(site.coder.to_bytes())
    cmin = [int(v) for v in site.cmin.reshape(c)]
    cmax = [int(v) for v in site.cmax.reshape(c)]
    classes = sorted({j for j in table_of if j != NO_TABLE})
    planes = {j: [ch for ch in range(c) if table_of[ch] == j] for j in classes}
    r = Bits(part)
    counts = [r.uint((len(planes[j]) * n).bit_length()) for j in classes]
    r.end_plane()
    out = [[cmin[ch]] * n for ch in range(c)]  # constant planes: cmin == cmax
    for j, count in zip(classes, counts):
        code = Canonical(*tables[j])
        hi = code.lo + code.count - RUN_MAX  # the class's highest level; hi + 1 .. hi + 63: runs of 2 .. 64
        values: list[int] = []
        starts = [0]
        for _ in range(count):
            token = code.read(r)
            if token > hi:
                values += [0] * (token - hi + 1)
            else:
                values.append(token)  # 0: a run of one
            starts.append(len(values))
        r.end_plane()
        assert len(values) == len(planes[j]) * n
        for k, ch in enumerate(planes[j]):
            out[ch] = [v + centre[ch] for v in values[k * n:(k + 1) * n]]
            assert all(cmin[ch] <= v <= cmax[ch] for v in out[ch])
        boundaries = set(starts)  # runs never cross planes: every plane boundary is a token boundary
        assert all(k * n in boundaries for k in range(len(planes[j])))
    r.end()
    return out


def tvlc_param_id(site: TvlcSite) -> int:
    crc = zlib.crc32(struct.pack("<3H", *site.shape))
    for a in (site.scale, site.qmin, site.qmax, site.transform, site.step, site.cmin, site.cmax, site.gain):
        crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
    return zlib.crc32(site.coder.to_bytes(), crc)


# --- rANS ----------------------------------------------------------------------------------------------------

RANS_CONTEXTS = {0: 1, 1: 3, 2: 3, 3: 9}


def parse_rans(data: bytes) -> dict[str, Any]:
    """The rANS coder description, field by field."""
    fmt, direct, k, groups, mode, c, flags = struct.unpack_from("<BBBBBHB", data)
    assert fmt == 1 and flags in (0, 1)
    at = 8
    centre = [int(v) for v in struct.unpack_from(f"<{c}h", data, at)] if flags else [0] * c
    at += 2 * c * flags
    nibbles = []
    for byte in data[at:at + (c + 1) // 2]:
        nibbles += [byte >> 4, byte & 15]
    if c % 2:
        assert nibbles[-1] == 0
    at += (c + 1) // 2
    tables = []
    for _ in range(groups * RANS_CONTEXTS[mode]):
        f = [v + 1 for v in struct.unpack_from(f"<{k}H", data, at)]
        assert sum(f) == 4096 and min(f) >= 1
        tables.append(f)
        at += 2 * k
    assert at == len(data)
    return {"D": direct, "K": k, "X": RANS_CONTEXTS[mode], "mode": mode, "centre": centre, "group": nibbles[:c],
            "tables": tables}


def rans_ranges(site: Any) -> tuple[list[int], list[int]]:
    """Each channel's symbol range, as the rANS section says the codec fixes it."""
    c = site.shape[0]
    if isinstance(site, DctCmSite):
        g = site.transform.shape[0]
        return [int(site.cmin[ch % g]) for ch in range(c)], [int(site.cmax[ch % g]) for ch in range(c)]
    return [int(v) for v in site.cmin.reshape(c)], [int(v) for v in site.cmax.reshape(c)]


def rans_lanes(n: int) -> tuple[int, int]:
    chunk = max(8, -(-n // 32))
    return -(-n // chunk), chunk


def rans_context(desc: dict[str, Any], left: int, prev: int) -> int:
    return [0, left, prev, 3 * left + prev][desc["mode"]]


def klass(t: int) -> int:
    return 0 if t == 0 else 1 if t <= 2 else 2


def rans_slice(part: bytes, site: Any, desc: dict[str, Any], n: int) -> list[list[int]]:
    """Values [C][n] of one rANS slice, one token at a time."""
    lo, hi = rans_ranges(site)
    c = len(lo)
    coded = [ch for ch in range(c) if desc["group"][ch] != 15]
    out = [[lo[ch]] * n for ch in range(c)]
    if not coded or n == 0:
        assert part == b""
        return out
    lanes, chunk = rans_lanes(n)
    x = [u(part, 4 * lane, 4) for lane in range(lanes)]
    assert all(v >= 1 << 16 for v in x)
    at = 4 * lanes
    tokens: dict[tuple[int, int], int] = {}
    order: list[tuple[int, int]] = []
    for i, ch in enumerate(coded):
        for j in range(chunk):
            for lane in range(lanes):
                p = lane * chunk + j
                if p >= n:
                    continue
                left = klass(tokens[(ch, p - 1)]) if j else 0
                prev = klass(tokens[(coded[i - 1], p)]) if i else 0
                f = desc["tables"][desc["group"][ch] * desc["X"] + rans_context(desc, left, prev)]
                slot = x[lane] % 4096
                s, base = 0, 0
                while not base <= slot < base + f[s]:
                    base += f[s]
                    s += 1
                x[lane] = f[s] * (x[lane] >> 12) + slot - base
                if x[lane] < 1 << 16:
                    x[lane] = (x[lane] << 16) | u(part, at, 2)
                    at += 2
                tokens[(ch, p)] = s
                order.append((ch, p))
    assert x == [1 << 16] * lanes
    r = Bits(part[at:])
    for ch, p in order:
        t = tokens[(ch, p)]
        if t >= desc["D"]:
            assert desc["D"] == 16
            k = t - 16
            e = 4 + k // 4
            mag = ((4 + k % 4) << (e - 2)) | r.uint(e - 2)
        else:
            mag = t
        v0, a, b = desc["centre"][ch], lo[ch] - desc["centre"][ch], hi[ch] - desc["centre"][ch]
        v = mag if a >= 0 else -mag if b <= 0 else (mag // 2 if mag % 2 == 0 else -(mag + 1) // 2)
        out[ch][p] = v + v0
        assert lo[ch] <= out[ch][p] <= hi[ch]
    r.end_plane()
    r.end()
    return out


def rans_slice_write(site: Any, desc: dict[str, Any], values: np.ndarray) -> bytes:
    """One slice [C, n] as the rANS section describes the encoder: backwards from states 2**16."""
    lo, hi = rans_ranges(site)
    c, n = values.shape
    coded = [ch for ch in range(c) if desc["group"][ch] != 15]
    if not coded or n == 0:
        return b""
    lanes, chunk = rans_lanes(n)
    steps = []  # (token, table, raw bits, raw width) in decoding order, per step a list over lanes
    tok: dict[tuple[int, int], int] = {}
    for i, ch in enumerate(coded):
        for j in range(chunk):
            row = []
            for lane in range(lanes):
                p = lane * chunk + j
                if p >= n:
                    row.append(None)
                    continue
                v = int(values[ch, p]) - desc["centre"][ch]
                a, b = lo[ch] - desc["centre"][ch], hi[ch] - desc["centre"][ch]
                mag = v if a >= 0 else -v if b <= 0 else (2 * v if v >= 0 else -2 * v - 1)
                if mag < desc["D"]:
                    t, raw, width = mag, 0, 0
                else:
                    e = mag.bit_length() - 1
                    width = e - 2
                    t, raw = 16 + 4 * (e - 4) + ((mag >> width) & 3), mag & ((1 << width) - 1)
                tok[(ch, p)] = t
                left = klass(tok[(ch, p - 1)]) if j else 0
                prev = klass(tok[(coded[i - 1], p)]) if i else 0
                row.append((t, desc["group"][ch] * desc["X"] + rans_context(desc, left, prev), raw, width))
            steps.append(row)
    x = [1 << 16] * lanes
    words: list[list[int]] = []
    for row in reversed(steps):
        emitted = []
        for lane, cell in enumerate(row):
            if cell is None:
                continue
            t, table, _, _ = cell
            f = desc["tables"][table]
            if x[lane] >= f[t] << 20:
                emitted.append(x[lane] & 0xFFFF)
                x[lane] >>= 16
            x[lane] = ((x[lane] // f[t]) << 12) + x[lane] % f[t] + sum(f[:t])
        words.append(emitted)
    p = Planes()
    for row in steps:
        for cell in row:
            if cell is not None:
                p.put(cell[2], cell[3])
    p.end_plane()
    body = b"".join(struct.pack("<H", w) for emitted in reversed(words) for w in emitted)
    return b"".join(struct.pack("<I", v) for v in x) + body + bytes(p.out)


def rans_write(site: Any, symbols: np.ndarray) -> bytes:
    c, h, w = site.shape
    desc = parse_rans(site.rans.to_bytes() if isinstance(site, DctCmSite) else site.coder.to_bytes())
    rows = spec_bands(c, h, w)
    flat = symbols.reshape(c, h * w)
    slices = [rans_slice_write(site, desc, flat[:, a * w:b * w]) for a, b in itertools.pairwise(rows)]
    return seal(site.codec_id, site.param_id, site.shape, slices)


def is_rans(site: Any) -> bool:
    return site.rans is not None if isinstance(site, DctCmSite) else site.describe()["coder"] == "rans"


# --- an independent writer: the description is enough to produce the reference bytes too ------------------

class Planes:
    """Bit planes as the description states them: MSB first, zero-padded to a byte, empty = no bytes."""

    def __init__(self) -> None:
        self.out = bytearray()
        self.cur: list[int] = []

    def put(self, value: int, width: int) -> None:
        self.cur += [(value >> (width - 1 - i)) & 1 for i in range(width)]

    def end_plane(self) -> None:
        self.cur += [0] * (-len(self.cur) % 8)
        self.out += bytes(int("".join(map(str, self.cur[i:i + 8])), 2) for i in range(0, len(self.cur), 8))
        self.cur = []


def seal(codec_id: int, param_id: int, shape: tuple[int, int, int], slices: list[bytes]) -> bytes:
    table = b"".join(struct.pack("<II", len(p), zlib.crc32(p)) for p in slices)
    head = struct.pack("<2sBBIHHHHII", b"FC", 2, codec_id, param_id, *shape, len(slices),
                       len(table) + sum(map(len, slices)), zlib.crc32(table))
    return head + table + b"".join(slices)


def dctcm_write(site: DctCmSite, symbols: np.ndarray) -> bytes:
    c, h, w = site.shape
    g = site.transform.shape[0]
    rows = spec_bands(c, h, w)
    slices = []
    for r0, r1 in itertools.pairwise(rows):
        band = [[int(v) for v in symbols[ch, r0:r1].reshape(-1)] for ch in range(c)]
        p = Planes()
        live = [ch for ch in range(c) if site.kinds[ch] != DROP]
        flagged = [ch for ch in live if any(band[ch])]
        for ch in live:
            p.put(int(ch in flagged), 1)
        p.end_plane()
        masked = [ch for ch in flagged if site.kinds[ch] == MASK]
        for ch in masked:
            for v in band[ch]:
                p.put(int(v != 0), 1)
        p.end_plane()
        coded = []  # (channel, Rice input)
        for ch in flagged:
            lo = int(site.cmin[ch if len(site.cmin) == site.shape[0] else ch % g])
            if site.kinds[ch] == MASK:
                for v in band[ch]:
                    if v:
                        if lo < 0:
                            p.put(int(v < 0), 1)
                        coded.append((ch, abs(v) - 1))
            else:
                coded += [(ch, (2 * v if v >= 0 else -2 * v - 1) if lo < 0 else v - lo) for v in band[ch]]
        p.end_plane()
        for ch, code in coded:
            p.put(code & ((1 << int(site.rice_k[ch])) - 1), int(site.rice_k[ch]))
        p.end_plane()
        for ch, code in coded:
            p.put(1, (code >> int(site.rice_k[ch])) + 1)
        p.end_plane()
        slices.append(bytes(p.out))
    return seal(1, site.param_id, site.shape, slices)


def tvlc_write(site: TvlcSite, symbols: np.ndarray) -> bytes:
    c, h, w = site.shape
    centre, table_of, tables = parse_coder(site.coder.to_bytes())
    classes = sorted({j for j in table_of if j != NO_TABLE})
    rows = spec_bands(c, h, w)
    slices = []
    for r0, r1 in itertools.pairwise(rows):
        n = (r1 - r0) * w
        tokens: dict[int, list[int]] = {}
        for j in classes:
            lo, lengths, _ = tables[j]
            hi = lo + len(lengths) - RUN_MAX
            out: list[int] = []
            for ch in (ch for ch in range(c) if table_of[ch] == j):
                run = 0
                for v in [int(x) - centre[ch] for x in symbols[ch, r0:r1].reshape(-1)] + [None]:
                    if v == 0:
                        run += 1
                        if run < RUN_MAX:
                            continue
                    while run:  # a run ends at a level, at RUN_MAX and at the plane's end
                        out.append(0 if run == 1 else hi + run - 1)
                        run = 0
                    if v:
                        out.append(v)
            tokens[j] = out
        p = Planes()
        for j in classes:
            p.put(len(tokens[j]), (table_of.count(j) * n).bit_length())
        p.end_plane()
        for j in classes:
            code = Canonical(*tables[j])
            word = {i: (length, cw) for (length, cw), i in code.words.items()}
            for t in tokens[j]:
                i = t - code.lo
                if i in word and i < code.count:
                    p.put(word[i][1], word[i][0])
                else:
                    p.put(word[code.count][1], word[code.count][0])
                    p.put(i, code.escape_bits)
            p.end_plane()
        slices.append(bytes(p.out))
    return seal(2, site.param_id, site.shape, slices)


# --- the sites ------------------------------------------------------------------------------------------------

def _calibrated() -> dict[str, tuple[Any, np.ndarray]]:
    """Calibrated sites of both codecs on CALIB_SHAPE (three slices), with held-out symbols."""
    out: dict[str, tuple[Any, np.ndarray]] = {}
    for seed, kind in enumerate(("sparse", "smooth", "gated")):
        rng = np.random.default_rng(700 + seed)
        calib, fresh = DATA_KINDS[kind](rng, 3, CALIB_SHAPE), DATA_KINDS[kind](rng, 1, CALIB_SHAPE)
        dct = DctCm(sqnr_db=24.0, groups=(1, 8), coder="rice").calibrate(activation_stats(kind, calib))
        out[f"dctcm-{kind}"] = (dct, dct.symbols(fresh[0]))
        lossless = DctCm(groups=(), coder="rice").calibrate(activation_stats(kind, calib))
        out[f"dctcm-{kind}-lossless"] = (lossless, lossless.symbols(fresh[0]))
        transform = "none" if kind == "sparse" else "pca"
        tv = _tvlc_site(calib, kind, transform)
        out[f"tvlc-{kind}-{transform}"] = (tv, tv.symbols(fresh[0]))
    return out


def _rans_calibrated() -> dict[str, tuple[Any, np.ndarray]]:
    """rANS-coded sites of both codecs on CALIB_SHAPE: DCT and mask dct-cm, lossless (wide magnitudes: raw
    bits), transform-VLC with centres and constant planes."""
    out: dict[str, tuple[Any, np.ndarray]] = {}
    for seed, kind in enumerate(("sparse", "smooth")):
        rng = np.random.default_rng(900 + seed)
        calib, fresh = DATA_KINDS[kind](rng, 3, CALIB_SHAPE), DATA_KINDS[kind](rng, 1, CALIB_SHAPE)
        stats = activation_stats(kind, calib, spatial_values=1 << 17)
        dct = DctCm(sqnr_db=24.0, groups=(1, 8), coder="rans").calibrate(stats)
        out[f"dctcm-{kind}"] = (dct, dct.symbols(fresh[0]))
        lossless = DctCm(groups=(), coder="rans").calibrate(stats)
        out[f"dctcm-{kind}-lossless"] = (lossless, lossless.symbols(fresh[0]))
        tv = _tvlc_site(calib, kind, "pca", "rans")
        out[f"tvlc-{kind}"] = (tv, tv.symbols(fresh[0]))
    return out


def _tvlc_site(calib: np.ndarray, kind: str, transform: str, coder: str = "huffman") -> TvlcSite:
    front = TransformVlc(transform=transform, groups=(8,), coder=coder).candidates(stats_of(calib, kind))
    site = front[len(front) // 2].site  # a mid-rate candidate: levels and runs in several classes
    assert isinstance(site, TvlcSite)
    return site


@pytest.fixture(scope="module")
def calibrated() -> dict[str, tuple[Any, np.ndarray]]:
    return _calibrated()


@pytest.fixture(scope="module")
def rans_calibrated() -> dict[str, tuple[Any, np.ndarray]]:
    return _rans_calibrated()


def decode(site: Any, data: bytes) -> np.ndarray:
    """The whole tensor, slice by slice, with the independent reader."""
    c, _, w = site.shape
    dct = isinstance(site, DctCmSite)
    param_id = dctcm_param_id(site) if dct else tvlc_param_id(site)
    assert param_id == site.param_id
    rans = is_rans(site)
    desc = parse_rans(site.rans.to_bytes() if dct else site.coder.to_bytes()) if rans else {}
    out = np.zeros(site.shape, np.int64)
    for r0, r1, part in open_container(data, (1 if dct else 2) + 128 * rans, param_id, site.shape):
        n = (r1 - r0) * w
        if rans:
            values = rans_slice(part, site, desc, n)
        else:
            values = dctcm_slice(part, site, n) if dct else tvlc_slice(part, site, n)
        out[:, r0:r1] = np.array(values, np.int64).reshape(c, r1 - r0, w)
    return out


# --- tests ----------------------------------------------------------------------------------------------------

def test_spec_bands_match_the_packer() -> None:
    """The slice rule as README states it gives the packer's bands, and the bands' sizes it promises."""
    from featcomp.codecs import bitstream
    for shape in [(1, 1, 1), (4, 11, 600), (16, 25, 64), (16, 24, 64), (3, 9, 1000), (512, 7, 7), (32, 112, 112),
                  (1, 1, 100000), (2, 10, 1640)]:
        rows = spec_bands(*shape)
        assert rows == list(bitstream.bands(shape)), shape
        heights = np.diff(rows)
        assert len(heights) <= MAX_SLICES and heights.min() >= 1
        assert np.all(heights[:-1] == heights[0]) and heights[-1] <= heights[0]
        if len(heights) > 1:  # every band but the last holds at least SLICE_VALUES values
            assert heights[0] * shape[0] * shape[2] >= SLICE_VALUES


@pytest.mark.parametrize("name", sorted(HAND_SITES))
def test_dctcm_hand_sites_decode_independently(name: str) -> None:
    site = HAND_SITES[name]
    for seed in (1, 2):
        symbols = lcg_symbols(site, seed)
        np.testing.assert_array_equal(decode(site, site.pack(symbols)), symbols)


def test_dctcm_per_channel_site_decodes_independently() -> None:
    """A zero-mask site with one step and range per channel (DctCm.channel_steps): channel c reads cmin[c]."""
    from conftest import activation_stats, signed_smooth
    from featcomp.codecs.dctcm import DctCm

    rng = np.random.default_rng(21)
    calib = signed_smooth(rng, 6)
    stats = activation_stats("pc", calib)
    stats.channel_weights = 10.0 ** rng.uniform(-1, 1, calib.shape[1])
    site = next(c.site for c in DctCm(channel_steps=0.5, groups=(1,)).candidates(stats) if c.site.per_channel)
    assert len(np.unique(site.cmin)) > 1 and site.cmin.min() < 0
    for x in calib[:2]:
        symbols = site.symbols(x)
        np.testing.assert_array_equal(decode(site, site.pack(symbols)), symbols)


def test_dctcm_all_zero_and_saturated_slices() -> None:
    """Empty planes take no bytes; extreme values use long unary quotients."""
    site = HAND_SITES["bands3"]
    zero = np.zeros(site.shape, np.int16)
    data = site.pack(zero)
    np.testing.assert_array_equal(decode(site, data), zero)
    g = site.transform.shape[0]
    top = np.broadcast_to(np.array([site.cmin[ch % g] for ch in range(site.shape[0])])[:, None, None],
                          site.shape).astype(np.int16)
    np.testing.assert_array_equal(decode(site, site.pack(top)), top)


@pytest.mark.parametrize("name", ["HAND", "BANDS"])
def test_tvlc_hand_sites_decode_independently(name: str) -> None:
    site = _hand_site() if name == "HAND" else _hand_site((16, 25, 64))
    for seed in (20240601, 5):
        symbols = _golden_symbols(site, seed)
        np.testing.assert_array_equal(decode(site, site.pack(symbols)), symbols)
    flat = np.broadcast_to(site.coder.centre[:, None, None], site.shape).astype(np.int16)
    flat = np.clip(flat, site.cmin.reshape(-1, 1, 1), site.cmax.reshape(-1, 1, 1)).astype(np.int16)
    np.testing.assert_array_equal(decode(site, site.pack(flat)), flat)  # runs only, split at RUN_MAX


def test_calibrated_sites_of_both_codecs_decode_independently(calibrated: dict[str, tuple[Any, np.ndarray]]) -> None:
    codecs = set()
    for name, (site, symbols) in calibrated.items():
        data = site.pack(symbols)
        assert u(data, 14, 2) == 3, name  # several slices
        np.testing.assert_array_equal(decode(site, data), symbols, err_msg=name)
        codecs.add(type(site))
    assert codecs == {DctCmSite, TvlcSite}


def test_calibrated_sites_exercise_the_format(calibrated: dict[str, tuple[Any, np.ndarray]]) -> None:
    """The calibrated cases reach every DCT-CM channel kind, signed and unsigned ranges, and transform-VLC
    sites with several classes, escape codewords and constant planes, so the reader above is tested on them."""
    dct = [s for s, _ in calibrated.values() if isinstance(s, DctCmSite)]
    tv = [s for s, _ in calibrated.values() if isinstance(s, TvlcSite)] + [_hand_site()]
    kinds = set(np.concatenate([s.kinds for s in dct]).tolist())
    assert kinds == {DROP, DENSE, MASK}
    assert {bool(s.cmin.min() < 0) for s in dct} == {True, False}
    assert any(len(s.coder.tables) > 1 for s in tv)
    assert any(np.any(s.coder.table_of == NO_TABLE) for s in tv)
    assert all(any(t.escape_length for t in s.coder.tables) for s in tv[:-1])


def test_tvlc_escaped_levels_decode_independently(calibrated: dict[str, tuple[Any, np.ndarray]]) -> None:
    """A level with no codeword of its own is sent as the escape codeword plus its index in the table."""
    before, tried = ESCAPES[0], 0
    for name, (site, symbols) in calibrated.items():
        if not isinstance(site, TvlcSite):
            continue
        c = site.shape[0]
        cmin, cmax = site.cmin.reshape(c), site.cmax.reshape(c)
        for ch in range(c):
            j = int(site.coder.table_of[ch])
            if j == NO_TABLE or not site.coder.tables[j].escape_length:
                continue
            t = site.coder.tables[j]
            hi = int(t.lo) + len(t.lengths) - RUN_MAX
            rare = [int(t.lo) + i for i in np.flatnonzero(t.lengths == 0)
                    if int(t.lo) + i <= hi and int(t.lo) + i != 0
                    and cmin[ch] <= int(site.coder.centre[ch]) + int(t.lo) + i <= cmax[ch]]
            if not rare:
                continue
            changed = symbols.copy()
            changed[ch, ::5, ::7] = int(site.coder.centre[ch]) + rare[0]
            np.testing.assert_array_equal(decode(site, site.pack(changed)), changed, err_msg=name)
            tried += 1
            break
    assert tried >= 1 and ESCAPES[0] > before


def test_coder_description_parses_as_documented(calibrated: dict[str, tuple[Any, np.ndarray]]) -> None:
    """The side information the transform-VLC reader takes from its bytes is the site's coder."""
    for site in [s for s, _ in calibrated.values() if isinstance(s, TvlcSite)] + [_hand_site()]:
        centre, table_of, tables = parse_coder(site.coder.to_bytes())
        assert centre == site.coder.centre.tolist() and table_of == site.coder.table_of.tolist()
        assert [(lo, lengths, e) for lo, lengths, e in tables] == [
            (t.lo, t.lengths.tolist(), t.escape_length) for t in site.coder.tables]


def test_independent_writer_reproduces_the_reference_bytes(calibrated: dict[str, tuple[Any, np.ndarray]]) -> None:
    """Streams written from the description alone are the packer's bytes, so the description is complete."""
    cases = [*calibrated.values(), *((HAND_SITES[k], lcg_symbols(HAND_SITES[k], 3)) for k in sorted(HAND_SITES)),
             (_hand_site((16, 25, 64)), _golden_symbols(_hand_site((16, 25, 64)), 9))]
    for site, symbols in cases:
        write = dctcm_write if isinstance(site, DctCmSite) else tvlc_write
        data = write(site, symbols)
        assert data == site.pack(symbols)
        np.testing.assert_array_equal(site.unpack(data), symbols)


def test_rans_sites_of_both_codecs_decode_independently(rans_calibrated: dict[str, tuple[Any, np.ndarray]]) -> None:
    """rANS streams (codec id + 128) decode with the reader written from the rANS section, and a writer
    from the same section reproduces their bytes."""
    seen = set()
    for name, (site, symbols) in rans_calibrated.items():
        assert is_rans(site), name
        data = site.pack(symbols)
        assert u(data, 14, 2) == 3 and data[3] & 128, name
        np.testing.assert_array_equal(decode(site, data), symbols, err_msg=name)
        assert rans_write(site, symbols) == data, name
        desc = parse_rans(site.rans.to_bytes() if isinstance(site, DctCmSite) else site.coder.to_bytes())
        seen |= {("mode", desc["mode"]), ("centres", any(desc["centre"])), ("raw bits", desc["K"] > desc["D"]),
                 ("skipped channels", 15 in desc["group"]), ("codec", type(site))}
    # the cases reach the format's branches: centres, raw bits, channels not coded, both codecs
    assert {("centres", True), ("raw bits", True), ("skipped channels", True), ("codec", DctCmSite),
            ("codec", TvlcSite)} <= seen
