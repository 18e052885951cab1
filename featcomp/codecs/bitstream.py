"""The container every featcomp bitstream shares, and vectorised bit packing.

One bitstream holds one tensor of one sample. Layout (little-endian):

    offset size field
    0      2    magic b"FC"
    2      1    format version (1)
    3      1    codec id (1 = dct-cm, 2 = transform-vlc)
    4      4    parameter id: CRC-32 of the frozen site parameters the stream was coded with
    8      2    channels C
    10     2    height H
    12     2    width W
    14     4    payload length in bytes
    18     4    CRC-32 of the payload
    22     ...  payload (codec specific)

The decoder checks every field before it reads the payload, so a truncated, corrupted or foreign
stream is refused with a CodecError instead of being misread.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from featcomp.errors import CodecError

MAGIC = b"FC"
FORMAT_VERSION = 1
_HEADER = struct.Struct("<2sBBIHHHII")
HEADER_BYTES = _HEADER.size


@dataclass(frozen=True)
class Header:
    codec_id: int
    param_id: int
    shape: tuple[int, int, int]
    payload_len: int
    payload_crc: int


def write(codec_id: int, param_id: int, shape: tuple[int, int, int], payload: bytes) -> bytes:
    c, h, w = shape
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, codec_id, param_id, c, h, w, len(payload), zlib.crc32(payload))
    return head + payload


def read(data: bytes, codec_id: int, param_id: int, shape: tuple[int, int, int]) -> memoryview:
    """Validate the container and return the payload."""
    if len(data) < HEADER_BYTES:
        raise CodecError(f"bitstream truncated: {len(data)} bytes is shorter than the {HEADER_BYTES}-byte header")
    magic, version, cid, pid, c, h, w, plen, crc = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CodecError("not a featcomp bitstream (bad magic bytes)")
    if version != FORMAT_VERSION:
        raise CodecError(f"bitstream format version {version} is not supported (this featcomp reads {FORMAT_VERSION})")
    if cid != codec_id:
        raise CodecError(f"bitstream was made by codec id {cid}, not {codec_id}")
    if pid != param_id:
        raise CodecError("bitstream was coded with other site parameters (parameter id mismatch)")
    if (c, h, w) != tuple(shape):
        raise CodecError(f"bitstream holds a tensor of shape {(c, h, w)}, the site expects {tuple(shape)}")
    if plen != len(data) - HEADER_BYTES:
        raise CodecError(f"bitstream payload is {len(data) - HEADER_BYTES} bytes, the header says {plen}")
    payload = memoryview(data)[HEADER_BYTES:]
    if zlib.crc32(payload) != crc:
        raise CodecError("bitstream payload is corrupted (CRC mismatch)")
    return payload


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
