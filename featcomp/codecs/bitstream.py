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


def pack_uint(values: np.ndarray, bits: int) -> bytes:
    """Pack non-negative integers < 2**bits, MSB first, into ceil(n*bits/8) bytes."""
    if bits == 0 or values.size == 0:
        return b""
    if bits == 8:
        return values.astype(np.uint8).tobytes()
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint32)
    planes = (values.astype(np.uint32)[:, None] >> shifts) & 1
    return np.packbits(planes.astype(np.uint8).reshape(-1)).tobytes()


def unpack_uint(buf: memoryview, count: int, bits: int) -> np.ndarray:
    """Inverse of pack_uint; the caller has checked that buf holds packed_size(count, bits) bytes."""
    if bits == 0 or count == 0:
        return np.zeros(count, dtype=np.int64)
    raw = np.frombuffer(buf, dtype=np.uint8, count=packed_size(count, bits))
    if bits == 8:
        return raw.astype(np.int64)
    planes = np.unpackbits(raw, count=count * bits).reshape(count, bits)
    weights = (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return planes.astype(np.int64) @ weights


def packed_size(count: int, bits: int) -> int:
    return (count * bits + 7) // 8


class Reader:
    """A cursor over a payload that refuses to read past its end."""

    def __init__(self, payload: memoryview) -> None:
        self._buf = payload
        self._pos = 0

    def take(self, n: int) -> memoryview:
        if n < 0 or self._pos + n > len(self._buf):
            raise CodecError(f"bitstream payload truncated: needs {n} more bytes at offset {self._pos}, has {len(self._buf) - self._pos}")
        out = self._buf[self._pos:self._pos + n]
        self._pos += n
        return out

    def finish(self) -> None:
        if self._pos != len(self._buf):
            raise CodecError(f"bitstream payload has {len(self._buf) - self._pos} unexpected trailing bytes")
