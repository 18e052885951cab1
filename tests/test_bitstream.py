"""Bit planes and Golomb-Rice codes: exact round trips, byte-aligned planes, strict end-of-stream checks,
and a Rice size model / parameter choice checked against brute force and a bit-by-bit decoder; the v2
container: slice bands, the slice table (overlaps, gaps, lengths past the end), version 1 refused."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featcomp.codecs import rice
from featcomp.codecs.bitstream import BitReader, BitWriter
from featcomp.errors import CodecError


FUZZ_TABLE = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                      suppress_health_check=[HealthCheck.too_slow])


def reader(data: bytes) -> BitReader:
    return BitReader(memoryview(data))


def bits_of(data: bytes) -> list[int]:
    """MSB-first bits of a byte string, in pure Python."""
    return [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]


def geometric(rng: np.random.Generator, n: int, mean: float) -> np.ndarray:
    return rng.geometric(1.0 / (1.0 + mean), size=n).astype(np.int64) - 1


# --- bit planes --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("width", range(17))
def test_uint_roundtrip_every_width(width: int) -> None:
    rng = np.random.default_rng(width)
    for count in (0, 1, 7, 8, 9, 100):
        values = rng.integers(0, 1 << width, size=count, dtype=np.int64)
        if count and width:
            values[0] = (1 << width) - 1  # the extremes
            values[-1] = 0
        w = BitWriter()
        w.uint(values, width)
        data = w.tobytes()
        assert len(data) == (count * width + 7) // 8
        r = reader(data)
        np.testing.assert_array_equal(r.uint(count, width), values)
        r.finish()


def test_variable_width_uint_roundtrip() -> None:
    rng = np.random.default_rng(17)
    for count in (0, 1, 5, 64, 333):
        widths = rng.integers(0, 17, count)
        if count:
            widths[0] = 0  # zero-width entries read back as 0
        values = rng.integers(0, 1 << widths) if count else np.zeros(0, np.int64)
        w = BitWriter()
        w.uint_var(values, widths)
        data = w.tobytes()
        assert len(data) == (int(widths.sum()) + 7) // 8
        r = reader(data)
        np.testing.assert_array_equal(r.uint_var(widths), values)
        r.finish()
    # equal widths: the same plane as the fixed-width writer
    values = rng.integers(0, 1 << 11, 50)
    a, b = BitWriter(), BitWriter()
    a.uint_var(values, np.full(50, 11))
    b.uint(values, 11)
    assert a.tobytes() == b.tobytes()
    with pytest.raises(CodecError):
        reader(b.tobytes()).uint_var(np.full(51, 11))


def test_uint_is_msb_first() -> None:
    w = BitWriter()
    w.uint(np.array([0b101, 0b011]), 3)
    assert bits_of(w.tobytes()) == [1, 0, 1, 0, 1, 1, 0, 0]


@pytest.mark.parametrize("quotients", [
    [0], [0, 0, 0, 0, 0, 0, 0, 0, 0], [1], [7], [8], [9], [5000], [0, 5000, 0], [3, 0, 0, 12, 1, 0, 64],
    list(range(40)), [0] * 1000,
], ids=lambda q: f"{len(q)}x(max {max(q)})")
def test_unary_roundtrip(quotients: list[int]) -> None:
    q = np.asarray(quotients, np.int64)
    w = BitWriter()
    w.unary(q)
    data = w.tobytes()
    total = int(q.sum() + len(q))
    assert len(data) == (total + 7) // 8
    bits = bits_of(data)
    assert sum(bits) == len(q)  # one stop bit per value, zeros everywhere else (padding included)
    r = reader(data)
    np.testing.assert_array_equal(r.unary(len(q)), q)
    r.finish()


def test_unary_random_geometric() -> None:
    rng = np.random.default_rng(3)
    for mean in (0.1, 1.0, 20.0):
        q = geometric(rng, 777, mean)
        w = BitWriter()
        w.unary(q)
        r = reader(w.tobytes())
        np.testing.assert_array_equal(r.unary(len(q)), q)
        r.finish()


def test_mixed_planes_roundtrip_and_alignment() -> None:
    rng = np.random.default_rng(9)
    for trial in range(30):
        plan = []
        w = BitWriter()
        expected_bytes = 0
        for _ in range(int(rng.integers(1, 12))):
            kind = int(rng.integers(3))
            count = int(rng.integers(0, 40))
            if kind == 0:
                flags = rng.integers(0, 2, count).astype(np.uint8)
                w.bits(flags)
                plan.append(("bits", count, flags))
                expected_bytes += (count + 7) // 8
            elif kind == 1:
                width = int(rng.integers(0, 17))
                values = rng.integers(0, 1 << width, count, dtype=np.int64)
                w.uint(values, width)
                plan.append(("uint", (count, width), values))
                expected_bytes += (count * width + 7) // 8
            else:
                q = geometric(rng, count, float(rng.choice([0.2, 3.0, 50.0])))
                w.unary(q)
                plan.append(("unary", count, q))
                expected_bytes += (int(q.sum()) + count + 7) // 8
        data = w.tobytes()
        assert len(data) == expected_bytes  # every plane starts on a byte boundary, nothing else is added
        r = reader(data)
        for kind, arg, values in plan:
            got = r.uint(*arg) if kind == "uint" else getattr(r, kind)(arg)
            np.testing.assert_array_equal(np.asarray(got, np.int64), np.asarray(values, np.int64), err_msg=kind)
        r.finish()


def test_empty_writer_and_reader() -> None:
    w = BitWriter()
    w.uint(np.zeros(0, np.int64), 5)
    w.unary(np.zeros(0, np.int64))
    w.uint(np.arange(4), 0)
    assert w.tobytes() == b""
    r = reader(b"")
    assert len(r.bits(0)) == 0 and len(r.uint(0, 7)) == 0 and len(r.unary(0)) == 0
    np.testing.assert_array_equal(r.uint(4, 0), np.zeros(4))
    r.finish()


def test_reading_past_the_end_is_a_codec_error() -> None:
    w = BitWriter()
    w.uint(np.array([1, 2, 3]), 4)  # 12 bits -> 2 bytes
    data = w.tobytes()
    with pytest.raises(CodecError):
        reader(data).bits(17)
    with pytest.raises(CodecError):
        reader(data).uint(5, 4)
    r = reader(data)
    r.uint(3, 4)
    with pytest.raises(CodecError):
        r.bits(1)
    with pytest.raises(CodecError):
        reader(b"").bits(1)
    with pytest.raises(CodecError):
        reader(b"").unary(1)


def test_unary_running_out_of_stop_bits_is_a_codec_error() -> None:
    w = BitWriter()
    w.unary(np.array([2, 0, 30]))
    data = w.tobytes()
    with pytest.raises(CodecError):
        reader(data).unary(4)
    with pytest.raises(CodecError):
        reader(b"\x00\x00\x00").unary(1)
    # a unary read starts at the current plane, not at ones of earlier planes
    w = BitWriter()
    w.bits(np.ones(8, np.uint8))
    w.unary(np.array([3]))
    r = reader(w.tobytes())
    r.bits(8)
    np.testing.assert_array_equal(r.unary(1), [3])
    with pytest.raises(CodecError):
        r.unary(1)


def test_trailing_bytes_are_a_codec_error() -> None:
    w = BitWriter()
    w.uint(np.array([5, 6]), 3)
    data = w.tobytes()
    r = reader(data + b"\x00")
    np.testing.assert_array_equal(r.uint(2, 3), [5, 6])
    with pytest.raises(CodecError):
        r.finish()
    r = reader(data)
    with pytest.raises(CodecError):  # nothing read at all
        r.finish()


# --- Golomb-Rice -------------------------------------------------------------------------------------------

def rice_decode_bitwise(data: bytes, count: int, k) -> tuple[np.ndarray, int]:
    """A slow decoder straight from the definition (remainder plane, then quotient plane, each byte
    aligned; k is one parameter or one per value); returns the values and the number of code bits it
    consumed (padding excluded)."""
    bits = bits_of(data)
    ks = [int(v) for v in np.broadcast_to(np.asarray(k), (count,))]
    pos, used = 0, 0
    remainders = []
    for i in range(count):
        r = 0
        for _ in range(ks[i]):
            r = (r << 1) | bits[pos]
            pos += 1
        remainders.append(r)
    used += pos
    pos = (pos + 7) // 8 * 8
    quotients = []
    start = pos
    for _ in range(count):
        q = 0
        while bits[pos] == 0:
            q += 1
            pos += 1
        pos += 1
        quotients.append(q)
    used += pos - start
    assert (pos + 7) // 8 * 8 == len(bits), "trailing bits after the quotient plane"
    return np.array([(q << kk) + r for q, r, kk in zip(quotients, remainders, ks)], np.int64), used


@pytest.mark.parametrize("k", range(rice.MAX_K + 1))
def test_rice_roundtrip_and_size(k: int) -> None:
    rng = np.random.default_rng(k)
    for values in (geometric(rng, 300, 2.0 ** k), geometric(rng, 50, 0.3), np.zeros(17, np.int64),
                   np.array([0, 1, (1 << k) - 1 if k else 0, 1 << k, 5 << k, 1000], np.int64)):
        w = BitWriter()
        rice.write(w, values, k)
        data = w.tobytes()
        r = reader(data)
        np.testing.assert_array_equal(rice.read(r, len(values), k), values)
        r.finish()
        decoded, used = rice_decode_bitwise(data, len(values), k)
        np.testing.assert_array_equal(decoded, values)
        assert rice.size_bits(values, k) == used


def test_rice_with_a_parameter_per_value() -> None:
    rng = np.random.default_rng(40)
    for n in (1, 9, 200):
        ks = rng.integers(0, rice.MAX_K + 1, n)
        values = (geometric(rng, n, 2.0) << ks) + rng.integers(0, 1 << ks)  # remainders use all k bits
        w = BitWriter()
        rice.write(w, values, ks)
        data = w.tobytes()
        r = reader(data)
        np.testing.assert_array_equal(rice.read(r, n, ks), values)
        r.finish()
        decoded, used = rice_decode_bitwise(data, n, ks)
        np.testing.assert_array_equal(decoded, values)
        assert rice.size_bits(values, ks) == used == int(np.sum(ks + 1 + (values >> ks)))
        # a single k given as an array of equal values codes exactly like the scalar form
        same = BitWriter()
        rice.write(same, values, np.full(n, 5))
        scalar = BitWriter()
        rice.write(scalar, values, 5)
        assert same.tobytes() == scalar.tobytes()


def test_rice_empty() -> None:
    w = BitWriter()
    rice.write(w, np.zeros(0, np.int64), 3)
    assert w.tobytes() == b"" and rice.size_bits(np.zeros(0, np.int64), 3) == 0
    np.testing.assert_array_equal(rice.read(reader(b""), 0, 3), np.zeros(0))


def _exact_sizes(column: np.ndarray) -> np.ndarray:
    return np.array([rice.size_bits(column, k) for k in range(rice.MAX_K + 1)])


def test_best_k_minimises_the_exact_size() -> None:
    rng = np.random.default_rng(21)
    columns = [geometric(rng, 400, m) for m in (0.0, 0.2, 1.0, 3.0, 10.0, 100.0, 3000.0)]
    columns.append(np.r_[np.zeros(399, np.int64), 70000])  # one outlier
    columns.append(rng.integers(0, 256, 400))             # uniform 8-bit
    values = np.stack(columns, axis=1)
    ks, means = rice.best_k(values)
    assert ks.shape == (values.shape[1],) and means.shape == (values.shape[1],)
    for f in range(values.shape[1]):
        sizes = _exact_sizes(values[:, f])
        assert rice.size_bits(values[:, f], int(ks[f])) == sizes.min(), (f, ks[f], sizes)
        assert means[f] == pytest.approx(sizes.min() / len(values), rel=1e-12)


def test_best_k_with_valid_mask() -> None:
    rng = np.random.default_rng(22)
    values = np.stack([geometric(rng, 500, m) for m in (0.5, 8.0, 60.0, 2.0)], axis=1)
    valid = rng.random(values.shape) < 0.3
    valid[:, 3] = False  # a column without valid entries
    values[~valid] += 10_000  # invalid entries must not influence the choice
    ks, means = rice.best_k(values, valid)
    for f in range(3):
        column = values[valid[:, f], f]
        sizes = _exact_sizes(column)
        assert rice.size_bits(column, int(ks[f])) == sizes.min()
        assert means[f] == pytest.approx(sizes.min() / len(column), rel=1e-12)
    assert ks[3] == 0 and means[3] == 0.0


# --- the v2 container: slices, table, version ----------------------------------------------------------------

HEADER_V2 = struct.Struct("<2sBBIHHHHII")  # the layout documented in bitstream.py, restated independently
ENTRY = struct.Struct("<II")


def split_slices(stream: bytes) -> list[bytes]:
    """The slices of a well-formed v2 stream, by its table."""
    count = HEADER_V2.unpack_from(stream)[7]
    at = HEADER_V2.size + ENTRY.size * count
    out = []
    for k in range(count):
        length, _ = ENTRY.unpack_from(stream, HEADER_V2.size + ENTRY.size * k)
        out.append(stream[at:at + length])
        at += length
    return out


def seal(stream: bytes, slices: list[bytes], lengths: list[int] | None = None) -> bytes:
    """The header of `stream` (slice count kept) around new slices; table, lengths and CRCs recomputed
    (lengths: table lengths to write instead of the true ones, for damaged tables)."""
    magic, version, codec, param, c, h, w, count, _, _ = HEADER_V2.unpack_from(stream)
    sizes = [len(s) for s in slices] if lengths is None else lengths
    table = b"".join(ENTRY.pack(n & 0xFFFFFFFF, zlib.crc32(s)) for n, s in zip(sizes, slices))
    body = table + b"".join(slices)
    return HEADER_V2.pack(magic, version, codec, param, c, h, w, count, len(body), zlib.crc32(table)) + body


def with_slice(stream: bytes, payload: bytes, k: int = 0) -> bytes:
    """`stream` with slice k replaced by payload, resealed so that damage reaches the slice decoder."""
    parts = split_slices(stream)
    parts[k] = payload
    return seal(stream, parts)


@pytest.mark.parametrize("shape", [(1, 1, 1), (16, 8, 8), (8, 3, 3), (16, 32, 32), (24, 56, 56), (32, 112, 112),
                                   (1280, 7, 7), (40, 28, 28), (3, 5, 10000), (8, 12, 256)])
def test_bands_cover_the_rows_in_equal_bands(shape: tuple[int, int, int]) -> None:
    from featcomp.codecs import bitstream

    rows = bitstream.bands(shape)
    c, h, w = shape
    assert rows[0] == 0 and rows[-1] == h and np.all(np.diff(rows) > 0)
    count = len(rows) - 1
    assert 1 <= count <= bitstream.MAX_SLICES
    sizes = np.diff(rows)
    assert np.all(sizes[:-1] == sizes[0]) and sizes[-1] <= sizes[0]  # equal bands, the last may be shorter
    if count > 1:
        assert c * int(sizes[0]) * w >= bitstream.SLICE_VALUES  # no slice is cut smaller than needed
    wanted = min(bitstream.MAX_SLICES, h, c * h * w // bitstream.SLICE_VALUES)
    assert count == max(1, -(-h // -(-h // max(1, wanted))))
    assert bitstream.overhead_bytes(shape) == HEADER_V2.size + ENTRY.size * count
    np.testing.assert_array_equal(bitstream.bands(shape), rows)  # a function of the shape alone


def test_container_round_trip_and_every_field_checked() -> None:
    from featcomp.codecs import bitstream

    shape = (8, 12, 256)
    count = len(bitstream.bands(shape)) - 1
    assert count == 3
    slices = [bytes([k]) * (5 + k) for k in range(count)]
    data = bitstream.write(2, 0xDEADBEEF, shape, slices)
    magic, version, codec, param, c, h, w, n, plen, crc = HEADER_V2.unpack_from(data)
    assert (magic, version, codec, param, (c, h, w), n) == (b"FC", 2, 2, 0xDEADBEEF, shape, count)
    assert plen == len(data) - HEADER_V2.size and split_slices(data) == slices
    assert crc == zlib.crc32(data[HEADER_V2.size:HEADER_V2.size + ENTRY.size * count])
    box = bitstream.open_stream(data, 2, 0xDEADBEEF, shape)
    assert [bytes(box.slice(k)) for k in range(count)] == slices
    with pytest.raises(ValueError):
        bitstream.write(2, 0, shape, slices[:-1])
    for wrong in ((1, 0xDEADBEEF, shape), (2, 1, shape), (2, 0xDEADBEEF, (8, 12, 255))):
        with pytest.raises(CodecError):
            bitstream.open_stream(data, *wrong)
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            box = bitstream.open_stream(data[:cut], 2, 0xDEADBEEF, shape)
    with pytest.raises(CodecError, match="slice 1 is corrupted"):
        broken = bytearray(data)
        broken[-8] ^= 1  # the last byte of slice 1 (slice 2 is the last 7 bytes)
        bitstream.open_stream(bytes(broken), 2, 0xDEADBEEF, shape).slice(1)
    assert bytes(bitstream.open_stream(bytes(broken), 2, 0xDEADBEEF, shape).slice(0)) == slices[0]


@pytest.mark.parametrize("lengths", [[0, 0, 18], [18, 0, 0], [6, 7, 6], [5, 6, 8], [5, 6, 6], [2**32 - 1, 7, 6],
                                     [2**31, 2**31 + 5, 13], [6, 5, 7]])
def test_tables_that_overlap_or_leave_the_stream_are_refused(lengths: list[int]) -> None:
    """Lengths that do not add up to the payload, or that split it elsewhere (then a slice CRC fails)."""
    from featcomp.codecs import bitstream

    shape = (8, 12, 256)
    slices = [bytes([k + 1]) * (5 + k) for k in range(3)]
    good = bitstream.write(2, 7, shape, slices)
    bad = seal(good, slices, lengths)
    with pytest.raises(CodecError):
        box = bitstream.open_stream(bad, 2, 7, shape)
        for k in range(box.count):
            box.slice(k)


def test_version_1_streams_are_refused_with_the_version() -> None:
    from featcomp.codecs import bitstream

    v1 = struct.Struct("<2sBBIHHHII").pack(b"FC", 1, 1, 7, 8, 3, 3, 2, zlib.crc32(b"ab")) + b"ab"
    with pytest.raises(CodecError, match="format version 1 is not supported: this featcomp reads version 2"):
        bitstream.open_stream(v1, 1, 7, (8, 3, 3))
    with pytest.raises(CodecError, match="format version 1"):
        bitstream.open_stream(v1[:3], 1, 7, (8, 3, 3))  # even when too short for any header


@FUZZ_TABLE
@given(blob=st.binary(max_size=64), data=st.data())
def test_fuzz_slice_tables(blob: bytes, data: st.DataObject) -> None:
    """Any table under a valid table CRC: a CodecError, or slices that tile the payload exactly."""
    from featcomp.codecs import bitstream

    shape = (8, 12, 256)
    lengths = data.draw(st.lists(st.integers(0, 2**32 - 1) | st.integers(0, 80), min_size=3, max_size=3))
    stream = seal(bitstream.write(2, 7, shape, [b"", b"", b""]), [blob[:20], blob[20:40], blob[40:]], lengths)
    try:
        box = bitstream.open_stream(stream, 2, 7, shape)
        parts = [bytes(box.slice(k)) for k in range(box.count)]
    except CodecError:
        return
    assert b"".join(parts) == blob and [len(p) for p in parts] == lengths
