"""The container every featcomp bitstream shares, and vectorised bit packing.

One bitstream holds one tensor of one sample, cut into S independent slices: bands of whole rows,
each coded on its own (its own bit planes, its own byte alignment), so that a coder can pack and
unpack the slices of one sample on all cores at once, and a consumer can decode one slice at a time
(rows r0 .. r1 of every channel) as its bytes arrive. Format version 2; layout (little-endian):

    offset  size  field
    0       2     magic b"FC"
    2       1     format version (2)
    3       1     codec id (1 = dct-cm, 2 = transform-vlc); + 128 (RANS) when the payload is rANS coded
    4       4     parameter id: CRC-32 of the frozen site parameters the stream was coded with
    8       2     channels C
    10      2     height H
    12      2     width W
    14      2     slice count S (fixed by the shape: see `bands`)
    16      4     payload length in bytes (the slice table and the slices)
    20      4     CRC-32 of the slice table
    24      8*S   slice table: per slice, u32 length in bytes and u32 CRC-32 of its bytes
    24+8S   ...   the slices, back to back in band order (codec-specific payloads)

Slice k starts where slice k - 1 ends, so a table can neither overlap nor leave gaps; the lengths
must add up to the payload. The decoder checks every field before it reads a slice, and each slice's
CRC before it decodes it, so a truncated, corrupted or foreign stream is refused with a CodecError
instead of being misread. Version 1 (one slice, 22-byte header) is refused with a message naming it.

Bit planes (BitWriter): bits fill each byte from its most significant bit down; every plane starts on a
byte boundary and its last byte is padded with zero bits; an empty plane takes no bytes; multi-bit fields
are MSB first; a slice ends with its last plane. The whole format, bit by bit: docs/bitstream.md.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from featcomp.errors import CodecError

MAGIC = b"FC"
FORMAT_VERSION = 2
MAX_SLICES = 8          # slices per stream at most: enough for the cores of a board, few table entries
SLICE_VALUES = 8192     # values per slice at least: each slice costs its table entry and its planes' padding
RANS = 0x80             # codec id bit: the slices hold the rANS coder's payload (rans.py), not the codec's own
_HEADER = struct.Struct("<2sBBIHHHHII")
_ENTRY = struct.Struct("<II")
HEADER_BYTES = _HEADER.size
ENTRY_BYTES = _ENTRY.size


def bands(shape: tuple[int, int, int]) -> np.ndarray:
    """Row boundaries [S + 1] of the slices of a tensor of this shape: bands of ceil(H / wanted) whole rows
    (the last may be shorter), wanted = max(1, min(MAX_SLICES, H, C*H*W // SLICE_VALUES)); so every band but
    the last holds at least SLICE_VALUES values, and S = ceil(H / rows) may be less than wanted."""
    c, h, w = (int(v) for v in shape)
    wanted = max(1, min(MAX_SLICES, h, c * h * w // SLICE_VALUES))
    rows = -(-h // wanted)
    count = -(-h // rows)
    return np.minimum(np.arange(count + 1) * rows, h).astype(np.int64)


def overhead_bytes(shape: tuple[int, int, int]) -> int:
    """Container bytes of a stream of this shape: the header and the slice table."""
    return HEADER_BYTES + ENTRY_BYTES * (len(bands(shape)) - 1)


def write(codec_id: int, param_id: int, shape: tuple[int, int, int], slices: list[bytes]) -> bytes:
    """Seal one payload per band of `bands(shape)` into a stream."""
    count = len(bands(shape)) - 1
    if len(slices) != count:
        raise ValueError(f"a stream of shape {tuple(shape)} has {count} slices, not {len(slices)}")
    table = b"".join(_ENTRY.pack(len(s), zlib.crc32(s)) for s in slices)
    c, h, w = shape
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, codec_id, param_id, c, h, w, count,
                        len(table) + sum(map(len, slices)), zlib.crc32(table))
    return head + table + b"".join(slices)


@dataclass(frozen=True)
class Container:
    """A stream whose header and slice table are valid; its slices are checked as they are taken."""

    data: memoryview
    bands: np.ndarray      # row boundaries [S + 1]
    starts: np.ndarray     # byte offset of each slice [S + 1] (the last: the stream's end)
    crcs: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.bands) - 1

    def slice(self, k: int) -> memoryview:
        """Slice k's bytes, CRC checked."""
        if not 0 <= k < self.count:
            raise CodecError(f"the stream has slices 0..{self.count - 1}, not {k}")
        part = self.data[int(self.starts[k]):int(self.starts[k + 1])]
        if zlib.crc32(part) != self.crcs[k]:
            raise CodecError(f"bitstream slice {k} is corrupted (CRC mismatch)")
        return part


ReadPayload = Callable[[memoryview, int], np.ndarray]


def decode_band(box: Container, k: int, shape: tuple[int, int, int],
                read_payload: ReadPayload) -> tuple[int, int, np.ndarray]:
    """Slice k alone: (first row, end row, int16 symbols [C, rows, W]); the codec reads the payload."""
    c, _, w = shape
    part = box.slice(k)
    r0, r1 = int(box.bands[k]), int(box.bands[k + 1])
    return r0, r1, read_payload(part, (r1 - r0) * w).reshape(c, r1 - r0, w).astype(np.int16)


def decode_all(box: Container, shape: tuple[int, int, int], read_payload: ReadPayload) -> np.ndarray:
    """Every slice, rows joined back: int16 symbols [C, H, W]."""
    return np.concatenate([decode_band(box, k, shape, read_payload)[2] for k in range(box.count)], axis=1)


def open_stream(data: bytes, codec_id: int, param_id: int, shape: tuple[int, int, int]) -> Container:
    """Validate the header and the slice table (not the slices: Container.slice checks each)."""
    view = memoryview(data)
    if len(view) >= 3 and bytes(view[:2]) == MAGIC and view[2] != FORMAT_VERSION:
        raise CodecError(f"bitstream format version {view[2]} is not supported: this featcomp reads version "
                         f"{FORMAT_VERSION} (sliced) streams; re-encode the tensor with this featcomp")
    if len(view) < HEADER_BYTES:
        raise CodecError(f"bitstream truncated: {len(view)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, _, cid, pid, c, h, w, count, plen, table_crc = _HEADER.unpack_from(view)
    if magic != MAGIC:
        raise CodecError("not a featcomp bitstream (bad magic bytes)")
    if cid != codec_id:
        if cid & ~RANS == codec_id & ~RANS:
            coded, wanted = ("rans" if cid & RANS else "its own coder"), ("rans" if codec_id & RANS else "its own coder")
            raise CodecError(f"bitstream was entropy coded with {coded}, this site decodes {wanted}: "
                             "decode it with the model that wrote it")
        raise CodecError(f"bitstream was made by codec id {cid}, not {codec_id}")
    if pid != param_id:
        raise CodecError("bitstream was coded with other site parameters (parameter id mismatch)")
    if (c, h, w) != tuple(shape):
        raise CodecError(f"bitstream holds a tensor of shape {(c, h, w)}, the site expects {tuple(shape)}")
    rows = bands(shape)
    if count != len(rows) - 1:
        raise CodecError(f"bitstream has {count} slices, a tensor of shape {tuple(shape)} has {len(rows) - 1}")
    if plen != len(view) - HEADER_BYTES:
        raise CodecError(f"bitstream payload is {len(view) - HEADER_BYTES} bytes, the header says {plen}")
    table_end = HEADER_BYTES + ENTRY_BYTES * count
    if len(view) < table_end:
        raise CodecError(f"bitstream truncated: {len(view)} bytes cannot hold the {count}-slice table")
    if zlib.crc32(view[HEADER_BYTES:table_end]) != table_crc:
        raise CodecError("bitstream slice table is corrupted (CRC mismatch)")
    entries = [_ENTRY.unpack_from(view, HEADER_BYTES + ENTRY_BYTES * k) for k in range(count)]
    lengths = np.array([e[0] for e in entries], np.int64)
    if table_end + int(lengths.sum()) != len(view):
        raise CodecError(f"bitstream slices add up to {int(lengths.sum())} bytes, the payload holds "
                         f"{len(view) - table_end} after the table")
    starts = table_end + np.concatenate([[0], np.cumsum(lengths)])
    return Container(view, rows, starts, tuple(e[1] for e in entries))


class BitWriter:
    """Collects bit planes; each plane starts on a byte boundary so a reader can find it without a scan."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []

    def bits(self, flags: np.ndarray) -> None:
        flags = np.asarray(flags, dtype=np.uint8).reshape(-1)
        pad = (-len(flags)) % 8
        self._parts.append(flags if not pad else np.concatenate([flags, np.zeros(pad, np.uint8)]))

    def uint(self, values: np.ndarray, width: int) -> None:
        """Fixed-width unsigned values, MSB first."""
        if width == 0 or values.size == 0:
            return
        shifts = np.arange(width - 1, -1, -1, dtype=np.int64)
        self.bits(((values.astype(np.int64)[:, None] >> shifts) & 1).astype(np.uint8))

    def uint_var(self, values: np.ndarray, widths: np.ndarray) -> None:
        """Unsigned values, each in its own width (MSB first), as one plane."""
        widths = widths.astype(np.int64)
        total = int(widths.sum())
        if total == 0:
            return
        starts = np.cumsum(widths) - widths
        width_per_bit = np.repeat(widths, widths)
        offset = np.arange(total) - np.repeat(starts, widths)
        self.bits((np.repeat(values.astype(np.int64), widths) >> (width_per_bit - 1 - offset)) & 1)

    def unary(self, quotients: np.ndarray) -> None:
        """q zeros then a one, for each q."""
        if quotients.size == 0:
            return
        ends = np.cumsum(quotients.astype(np.int64) + 1) - 1
        plane = np.zeros(int(ends[-1]) + 1, np.uint8)
        plane[ends] = 1
        self.bits(plane)

    def tobytes(self) -> bytes:
        return np.packbits(np.concatenate(self._parts)).tobytes() if self._parts else b""


class BitReader:
    """Reads the planes BitWriter wrote; refuses to read past the end and reports trailing bytes."""

    def __init__(self, payload: memoryview) -> None:
        self._bits = np.unpackbits(np.frombuffer(payload, dtype=np.uint8))
        self._ones: np.ndarray | None = None
        self._pos = 0

    def _advance(self, end: int) -> None:
        self._pos = (end + 7) // 8 * 8

    def peek(self) -> np.ndarray:
        """The bits from the cursor to the end, not consumed (for decoders that must look ahead)."""
        return self._bits[self._pos:]

    def bits(self, count: int) -> np.ndarray:
        end = self._pos + count
        if end > len(self._bits):
            raise CodecError(f"bitstream payload truncated: needs {count} bits at bit {self._pos}, has {len(self._bits) - self._pos}")
        out = self._bits[self._pos:end]
        self._advance(end)
        return out

    def uint(self, count: int, width: int) -> np.ndarray:
        if width == 0 or count == 0:
            return np.zeros(count, dtype=np.int64)
        planes = self.bits(count * width).reshape(count, width).astype(np.int64)
        return planes @ (1 << np.arange(width - 1, -1, -1, dtype=np.int64))

    def uint_var(self, widths: np.ndarray) -> np.ndarray:
        widths = widths.astype(np.int64)
        total = int(widths.sum())
        out = np.zeros(len(widths), dtype=np.int64)
        if total == 0:
            return out
        bits = self.bits(total).astype(np.int64)
        starts = np.cumsum(widths) - widths
        offset = np.arange(total) - np.repeat(starts, widths)
        weighted = bits << (np.repeat(widths, widths) - 1 - offset)
        used = widths > 0
        out[used] = np.add.reduceat(weighted, starts[used])
        return out

    def unary(self, count: int) -> np.ndarray:
        if count == 0:
            return np.zeros(0, dtype=np.int64)
        if self._ones is None:
            self._ones = np.flatnonzero(self._bits)
        first = int(np.searchsorted(self._ones, self._pos))
        if first + count > len(self._ones):
            raise CodecError("bitstream payload truncated: a unary-coded plane ends early")
        ends = self._ones[first:first + count]
        quotients = np.diff(ends, prepend=self._pos - 1) - 1
        self._advance(int(ends[-1]) + 1)
        return quotients

    def finish(self) -> None:
        if self._pos != len(self._bits):
            raise CodecError(f"bitstream payload has {(len(self._bits) - self._pos) // 8} unexpected trailing bytes")
