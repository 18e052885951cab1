"""Canonical length-limited Huffman codes: exact round trips on many distributions, optimal lengths checked
against brute force, the canonical and Kraft properties, size and entropy bounds, validated side
information, and decoders that answer corrupt planes with a CodecError (the fast walker decoder is
checked against the exact one on valid and mutated planes)."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import struct
from collections.abc import Callable, Iterator

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from featcomp.codecs import huffman
from featcomp.codecs.bitstream import BitReader, BitWriter
from featcomp.codecs.huffman import HuffmanTable, entropy_bits, read, write
from featcomp.errors import CodecError


def encode(values: np.ndarray, table: HuffmanTable) -> bytes:
    w = BitWriter()
    write(w, values, table)
    return w.tobytes()


def decode(data: bytes, count: int, table: HuffmanTable) -> np.ndarray:
    r = BitReader(memoryview(data))
    out = read(r, count, table)
    r.finish()
    return out


def geometric(rng: np.random.Generator, n: int, p: float) -> np.ndarray:
    return rng.geometric(p, size=n).astype(np.int64) - 1


def distributions(seed: int) -> Iterator[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    yield "geometric", geometric(rng, 3000, float(rng.uniform(0.05, 0.9)))
    yield "two-sided", geometric(rng, 2000, 0.3) * rng.choice([-1, 1], 2000)
    yield "uniform", rng.integers(-3, int(rng.integers(-2, 70)), 1500)
    yield "uniform 8", rng.integers(0, 8, 800)  # one length for all: the fixed-length decoder
    yield "single", np.full(int(rng.integers(1, 500)), int(rng.integers(-9, 9)))
    yield "two", rng.choice([4, 5], 700, p=[0.9, 0.1])
    yield "gaps", rng.choice([-100, -3, 0, 1, 2, 57, 300], 1200, p=[0.01, 0.1, 0.5, 0.2, 0.1, 0.04, 0.05])
    yield "one", np.array([7])


# --- round trips -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("walkers", [False, True], ids=["default", "walkers"])
@pytest.mark.parametrize("max_length", [1, 2, 3, 8, 16])
@pytest.mark.parametrize("seed", range(4))
def test_roundtrip_many_distributions(monkeypatch: pytest.MonkeyPatch, seed: int, max_length: int, walkers: bool) -> None:
    if walkers:  # the fast decoder on any plane size (by default only planes of 2**18 bits and more)
        monkeypatch.setattr(huffman, "_WALK_FROM_BITS", 0)
    for name, values in distributions(seed):
        table = HuffmanTable.fit(values, max_length)
        data = encode(values, table)
        assert len(data) == (table.size_bits(values) + 7) // 8, name
        got = decode(data, len(values), table)
        assert got.dtype == np.int64
        np.testing.assert_array_equal(got, values, err_msg=name)
        assert int(table.lengths.max()) <= max_length and table.escape_length <= max_length, name


@pytest.mark.parametrize("max_length", [2, 4, 8])
def test_escape_codes_wide_sparse_ranges(max_length: int) -> None:
    rng = np.random.default_rng(max_length)
    calib = np.concatenate([geometric(rng, 5000, 0.4), [-700, 900]])  # 1601 values in range, most unseen
    table = HuffmanTable.fit(calib, max_length)  # more symbols than 2**max_length: escape needed
    assert table.escape_length > 0 and table.escape_bits == (1600).bit_length()
    assert np.count_nonzero(table.lengths) <= (1 << max_length) - 1
    unseen = rng.integers(-700, 901, 300)  # any value in range is codable, seen or not
    values = np.concatenate([geometric(rng, 3000, 0.4), unseen, [-700, 900]])
    np.testing.assert_array_equal(decode(encode(values, table), len(values), table), values)
    assert table.size_bits(values) >= entropy_bits(values)
    # escape=True: unseen values are escaped, even when all would fit; False: all get codewords
    small = HuffmanTable.fit(np.array([0, 0, 0, 5]), 8, escape=True)
    assert list(small.lengths > 0) == [True, False, False, False, False, True] and small.escape_length > 0
    np.testing.assert_array_equal(decode(encode(np.arange(6), small), 6, small), np.arange(6))
    assert HuffmanTable.fit(np.array([0, 0, 0, 5]), 8, escape=False).lengths.all()
    assert HuffmanTable.fit(np.array([0, 1, 1]), 8, escape=True).escape_length > 0
    # escape=None: whichever is cheaper on the calibration data; a dense range needs no escape
    assert HuffmanTable.fit(np.array([0, 1, 1, 2, 2, 2]), 8).escape_length == 0
    sparse = np.concatenate([np.zeros(1000, np.int64), [200]])  # 199 values never seen
    assert HuffmanTable.fit(sparse, 8).escape_length > 0
    assert HuffmanTable.fit(sparse, 8).size_bits(sparse) < HuffmanTable.fit(sparse, 8, escape=False).size_bits(sparse)


def test_escape_keeps_the_cheapest_number_of_codewords() -> None:
    rng = np.random.default_rng(6)
    values = np.round(rng.normal(0, 30, 20000)).astype(np.int64)  # ~300 values in range, 8-bit cap
    table = HuffmanTable.fit(values, 8, escape=True)
    kept = np.count_nonzero(table.lengths)
    assert table.escape_length and kept < 255  # 255 codewords and an escape would all be 8 bits long
    assert len(set(table.lengths[table.lengths > 0].tolist())) > 1
    assert table.size_bits(values) < 7.5 * len(values) < 8 * len(values)
    # against every other number of kept values in the candidate set, on the calibration data
    by_count = np.argsort(-np.bincount(values - table.lo), kind="stable")
    for k in (1, 3, 7, 15, 31, 63, 127, 255):
        keep = by_count[:k]
        counts = np.bincount(values - table.lo, minlength=len(table.lengths))
        escaped = int(counts.sum() - counts[keep].sum())
        both = huffman._limited_lengths(np.append(counts[keep] + 1, escaped + 1), 8)
        cost = int(np.sum(counts[keep] * both[:-1])) + escaped * (int(both[-1]) + table.escape_bits)
        assert table.size_bits(values) <= cost
    np.testing.assert_array_equal(decode(encode(values, table), len(values), table), values)


def test_plane_between_other_planes() -> None:
    rng = np.random.default_rng(11)
    a, b = geometric(rng, 999, 0.2), rng.integers(-50, 50, 10)
    ta, tb = HuffmanTable.fit(a), HuffmanTable.fit(b, 4)
    w = BitWriter()
    write(w, a, ta)
    w.uint(np.array([5, 6, 7]), 9)
    write(w, b, tb)
    write(w, np.zeros(0, np.int64), ta)  # an empty plane writes nothing
    r = BitReader(memoryview(w.tobytes()))
    np.testing.assert_array_equal(read(r, len(a), ta), a)
    np.testing.assert_array_equal(r.uint(3, 9), [5, 6, 7])
    np.testing.assert_array_equal(read(r, len(b), tb), b)
    assert len(read(r, 0, ta)) == 0
    r.finish()


def test_large_plane_uses_the_walkers(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    fast = huffman._decode_walkers

    def spy(*args: object) -> object:
        calls.append(result := fast(*args))  # type: ignore[arg-type]
        return result

    monkeypatch.setattr(huffman, "_decode_walkers", spy)
    rng = np.random.default_rng(3)
    for p, max_length in ((0.1, 8), (0.5, 16)):
        values = geometric(rng, 150_000, p)
        table = HuffmanTable.fit(values, max_length)
        np.testing.assert_array_equal(decode(encode(values, table), len(values), table), values)
    assert calls and all(c is not None for c in calls)


# --- the code itself ---------------------------------------------------------------------------------------

def kraft(table: HuffmanTable) -> float:
    lengths = [int(x) for x in table.lengths if x] + ([table.escape_length] if table.escape_length else [])
    return sum(2.0 ** -x for x in lengths)


@pytest.mark.parametrize("seed", range(3))
def test_kraft_and_canonical_codes(seed: int) -> None:
    for name, values in distributions(seed):
        for max_length in (1, 3, 8, 16):
            table = HuffmanTable.fit(values, max_length)
            n_codes = np.count_nonzero(table.lengths) + (table.escape_length > 0)
            assert kraft(table) == (0.5 if n_codes == 1 else 1.0), name  # complete unless one symbol
            # canonical: in (length, symbol) order, each code is the previous plus one, shifted to its length
            entries = sorted([(int(length), i, int(table.codes[i])) for i, length in enumerate(table.lengths) if length]
                             + ([(table.escape_length, len(table.lengths), table.escape_code)] if table.escape_length else []))
            code, prev_len = -1, entries[0][0]
            for length, _, got in entries:
                code = (code + 1) << (length - prev_len)
                assert got == code, name
                prev_len = length
            words = [format(c, f"0{length}b") for length, _, c in entries]
            assert not any(u != v and v.startswith(u) for u in words for v in words), name  # prefix-free


def brute_force_cost(weights: list[int], max_length: int) -> int:
    """Least sum(w * l) over all length vectors with lengths 1..max_length and Kraft sum <= 1."""
    return min(sum(w * x for w, x in zip(weights, ls))
               for ls in itertools.product(range(1, max_length + 1), repeat=len(weights))
               if sum(2.0 ** -x for x in ls) <= 1)


def huffman_cost(weights: list[int]) -> int:
    """Textbook Huffman: the total cost is the sum of all merged weights."""
    heap = list(weights)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    return cost


def test_lengths_are_optimal() -> None:
    limited = huffman._limited_lengths
    # by hand: weights 1, 1, 2, 4 -> Huffman lengths 3, 3, 2, 1 (cost 14); capped at 2 bits -> all 2 (cost 16)
    assert list(limited(np.array([1, 1, 2, 4]), 16)) == [3, 3, 2, 1]
    assert list(limited(np.array([1, 1, 2, 4]), 2)) == [2, 2, 2, 2]
    assert list(limited(np.array([5]), 4)) == [1]
    rng = np.random.default_rng(0)
    for trial in range(60):
        n = int(rng.integers(2, 7))
        weights = [int(x) for x in rng.integers(1, 60, n)] if trial % 3 else [int(x) for x in 2 ** rng.integers(0, 9, n)]
        for max_length in range(max(1, (n - 1).bit_length()), 6):
            lengths = limited(np.array(weights), max_length)
            assert sum(2.0 ** -int(x) for x in lengths) <= 1 and lengths.max() <= max_length
            assert sum(w * int(x) for w, x in zip(weights, lengths)) == brute_force_cost(weights, max_length)
    for _ in range(40):  # larger alphabets: unlimited package-merge equals textbook Huffman
        weights = [int(x) for x in rng.integers(1, 1000, int(rng.integers(2, 60)))]
        lengths = limited(np.array(weights), 16)
        assert sum(w * int(x) for w, x in zip(weights, lengths)) == huffman_cost(weights)


def test_fit_matches_smoothed_counts_and_is_deterministic() -> None:
    values = np.array([0] * 5 + [1] * 2 + [3] * 1)  # counts 5, 2, 0, 1 -> add-one weights 6, 3, 1, 2
    table = HuffmanTable.fit(values)
    assert table.lo == 0 and list(table.lengths) == [1, 2, 3, 3]
    assert list(table.codes) == [0b0, 0b10, 0b110, 0b111]
    rng = np.random.default_rng(5)
    values = geometric(rng, 5000, 0.2) - 3
    a, b = HuffmanTable.fit(values, 8), HuffmanTable.fit(rng.permutation(values), 8)
    assert a == b and hash(a) == hash(b) and a.to_bytes() == b.to_bytes()
    assert encode(values, a) == encode(values, b)
    assert not a.lengths.flags.writeable


def test_size_bits_and_entropy() -> None:
    rng = np.random.default_rng(8)
    for p in (0.03, 0.2, 0.5, 0.8):
        values = geometric(rng, 20000, p)
        h = entropy_bits(values)
        for max_length in (8, 16):
            table = HuffmanTable.fit(values, max_length)
            size = table.size_bits(values)
            lengths = table.lengths[values - table.lo].astype(int)
            lengths[lengths == 0] = table.escape_length + table.escape_bits
            assert size == int(lengths.sum())  # what write() sends, counted independently
            assert size >= h  # no prefix code beats the entropy
            if max_length == 16:
                assert size < h + len(values)  # Huffman: less than one bit per value above it
    assert entropy_bits(np.array([3, 4] * 50)) == pytest.approx(100.0)
    assert entropy_bits(np.full(10, 2)) == 0.0 and entropy_bits(np.zeros(0)) == 0.0


def test_bad_values() -> None:
    table = HuffmanTable.fit(np.array([0, 1, 2, 5]))
    for bad in ([6], [-1], [0, 1, 99]):
        with pytest.raises(CodecError):
            write(BitWriter(), np.array(bad), table)
        with pytest.raises(CodecError):
            table.size_bits(np.array(bad))
    with pytest.raises(CodecError):
        write(BitWriter(), np.array([0.5]), table)
    sparse = HuffmanTable(0, np.array([1, 0, 1]))  # value 1 has no codeword and there is no escape
    with pytest.raises(CodecError):
        write(BitWriter(), np.array([0, 1]), sparse)
    for values, max_length, escape in (([], 16, None), ([0.5], 16, None), ([1, 2], 0, None), ([1, 2], 17, None),
                                       ([0, 300], 8, False), ([0, 1 << 21], 16, None)):
        with pytest.raises(ValueError):
            HuffmanTable.fit(np.array(values), max_length, escape)


# --- side information --------------------------------------------------------------------------------------

def test_side_information_roundtrip() -> None:
    rng = np.random.default_rng(2)
    tables = [HuffmanTable.fit(v, m) for _, v in distributions(1) for m in (2, 8, 16)]
    tables.append(HuffmanTable.fit(np.concatenate([geometric(rng, 100, 0.3), [-2000, 2000]]), 6))
    tables.append(HuffmanTable(-5, np.array([16] * 65536)))  # 16-bit lengths: stored in 8 bits each
    for table in tables:
        data = table.to_bytes()
        back = HuffmanTable.from_bytes(data)
        assert back == table and back.to_bytes() == data
        four = max(int(table.lengths.max()), table.escape_length) <= 15
        assert len(data) == 10 + ((len(table.lengths) + 1) // 2 if four else len(table.lengths))


@pytest.mark.parametrize("mutate", [
    lambda d: d[:5],                              # truncated header
    lambda d: d[:-1],                             # truncated lengths
    lambda d: d + b"\x00",                        # trailing byte
    lambda d: d[:9] + b"\x05" + d[10:],           # bits per length neither 4 nor 8
    lambda d: d[:4] + b"\x00\x00\x00\x00" + d[8:],  # zero symbols
    lambda d: d[:4] + b"\xff\xff\xff\x00" + d[8:],  # more symbols than allowed
    lambda d: d[:10] + b"\x11" + d[11:],          # two 1-bit codes and more: Kraft sum above 1
    lambda d: d[:8] + b"\x11" + d[9:],            # escape longer than 16 bits
    lambda d: d[:10] + b"\x00" * (len(d) - 10),   # no codeword at all
    lambda d: d[:-1] + bytes([d[-1] | 1]),        # odd count: the padding nibble must be 0
], ids=["header", "lengths", "trailing", "width", "zero", "too-many", "kraft", "escape", "empty", "padding"])
def test_bad_side_information(mutate: Callable[[bytes], bytes]) -> None:
    table = HuffmanTable.fit(np.array([0, 0, 0, 1, 1, 2, 3, 4, 4]))  # 5 symbols: odd, 4-bit lengths
    data = table.to_bytes()
    assert HuffmanTable.from_bytes(data) == table
    with pytest.raises(CodecError):
        HuffmanTable.from_bytes(mutate(data))


def test_bad_side_information_wide_form() -> None:
    good = struct.pack("<iIBB", -3, 2, 0, 8) + bytes([1, 1])
    assert HuffmanTable.from_bytes(good) == HuffmanTable(-3, np.array([1, 1]))
    for bad in (struct.pack("<iIBB", -3, 2, 0, 8) + bytes([17, 1]),   # longer than 16 bits
                struct.pack("<iIBB", -3, 2, 0, 8) + bytes([1, 1, 1]),  # one length too many
                struct.pack("<iIBB", 2**31 - 1, 2, 0, 8) + bytes([1, 1])):  # symbols past 32 bits
        with pytest.raises(CodecError):
            HuffmanTable.from_bytes(bad)


def test_constructor_validates() -> None:
    for lo, lengths, escape in ((0, [], 0), (0, [1, 1, 1], 0), (0, [0, 0], 0), (0, [17], 0), (0, [1], 17),
                                (0, [-1, 1], 0), ((1 << 31) - 1, [1, 1], 0)):
        with pytest.raises(ValueError):
            HuffmanTable(lo, np.array(lengths, np.int64), escape)
    # the escape takes its place in (length, symbol) order as if it were the symbol after the last
    assert HuffmanTable(0, np.array([2, 2, 0]), 1).escape_code == 0b0
    assert list(HuffmanTable(0, np.array([2, 2, 0]), 1).codes) == [0b10, 0b11, 0]
    assert HuffmanTable(0, np.array([1, 2, 0]), 2).escape_code == 0b11


# --- corrupt planes ----------------------------------------------------------------------------------------

def test_truncated_and_corrupt_planes() -> None:
    rng = np.random.default_rng(4)
    values = geometric(rng, 500, 0.3)
    table = HuffmanTable.fit(values)
    data = encode(values, table)
    for cut in (0, 1, len(data) // 2, len(data) - 1):
        with pytest.raises(CodecError):
            read(BitReader(memoryview(data[:cut])), len(values), table)
    with pytest.raises(CodecError):
        read(BitReader(memoryview(data)), len(values) + 100, table)
    single = HuffmanTable.fit(np.array([3, 3]))  # one symbol, codeword "0": a 1 is no codeword
    assert encode(np.array([3] * 9), single) == b"\x00\x00"
    with pytest.raises(CodecError):
        read(BitReader(memoryview(b"\x00\x80")), 9, single)
    sparse = HuffmanTable(0, np.array([1, 3, 0, 0]))  # incomplete code 0, 100: "101" and "11" are none
    np.testing.assert_array_equal(decode(b"\x40", 3, sparse), [0, 1, 0])  # 0 100 0 (then padding)
    for data in (b"\xc0", b"\x50"):  # 11..., 0 101...
        with pytest.raises(CodecError):
            read(BitReader(memoryview(data)), 3, sparse)


def decode_both(data: bytes, count: int, table: HuffmanTable, monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """read() with the walkers forced on (any plane size), and with the exact decoder only."""
    outcomes: list[object] = []
    for walkers in (True, False):
        with monkeypatch.context() as m:
            m.setattr(huffman, "_WALK_FROM_BITS", 0)
            if not walkers:
                m.setattr(huffman, "_decode_walkers", lambda *a: None)
            r = BitReader(memoryview(data))
            try:
                out = read(r, count, table)
            except CodecError:
                outcomes.append("error")
                continue
            outcomes.append((out.tolist(), len(r.peek())))  # the values, and where the reader is
    return outcomes


def check_decoded(out: np.ndarray, count: int, table: HuffmanTable) -> None:
    assert out.shape == (count,) and out.dtype == np.int64
    index = out - table.lo
    assert ((index >= 0) & (index < len(table.lengths))).all()
    if not table.escape_length:
        assert (table.lengths[index] > 0).all()


def small_margin(table: HuffmanTable, margin: int) -> HuffmanTable:
    """The same code with the walkers' overlap cut short, so that some do not resynchronise and restart."""
    table.__dict__["_decoder"] = dataclasses.replace(table._decoder, margin=margin)
    return table


FUZZ_TABLES = [
    HuffmanTable.fit(geometric(np.random.default_rng(0), 4000, 0.1), 8),
    HuffmanTable.fit(geometric(np.random.default_rng(1), 4000, 0.6), 16),
    HuffmanTable.fit(np.concatenate([geometric(np.random.default_rng(2), 300, 0.4), [-500, 500]]), 5),  # escape
    HuffmanTable(0, np.array([1, 3, 0, 3])),  # incomplete: some patterns are no codeword
    HuffmanTable.fit(np.arange(8)),           # fixed length 3
    HuffmanTable.fit(np.array([1, 1, 2])),    # lengths 1, 1 (two symbols)
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(FUZZ_TABLES) - 1), payload=st.binary(max_size=300), count=st.integers(0, 700),
       margin=st.integers(1, 40))
def test_fuzz_random_planes(monkeypatch: pytest.MonkeyPatch, which: int, payload: bytes, count: int, margin: int) -> None:
    table = small_margin(HuffmanTable.from_bytes(FUZZ_TABLES[which].to_bytes()), margin)
    walk, exact = decode_both(payload, count, table, monkeypatch)
    assert walk == exact
    if walk != "error":
        check_decoded(np.array(walk[0], np.int64), count, table)  # type: ignore[index]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(FUZZ_TABLES) - 1), seed=st.integers(0, 2**32 - 1), n=st.integers(1, 3000),
       flips=st.lists(st.integers(0, 10**6), max_size=4), cut=st.integers(0, 20), extra=st.binary(max_size=20),
       margin=st.integers(1, 40))
def test_fuzz_mutated_planes(monkeypatch: pytest.MonkeyPatch, which: int, seed: int, n: int, flips: list[int],
                             cut: int, extra: bytes, margin: int) -> None:
    table = small_margin(HuffmanTable.from_bytes(FUZZ_TABLES[which].to_bytes()), margin)
    rng = np.random.default_rng(seed)
    index = np.flatnonzero(table.lengths)
    values = table.lo + (rng.integers(0, len(table.lengths), n) if table.escape_length else rng.choice(index, n))
    plane = bytearray(encode(values, table))
    intact = not flips and not cut
    for f in flips:
        plane[f % len(plane)] ^= 1 << (f % 8)
    walk, exact = decode_both(bytes(plane[:len(plane) - cut]) + extra, n, table, monkeypatch)
    assert walk == exact
    if intact:
        assert walk != "error" and walk[0] == values.tolist()  # type: ignore[index]
    if walk != "error":
        check_decoded(np.array(walk[0], np.int64), n, table)  # type: ignore[index]


def test_slowly_resynchronising_code(monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat distribution over 1000 values: lengths 9 and 10 bits, mostly 10, so a decoder started at a
    wrong bit takes hundreds of codewords to fall into step; the walkers retry with longer margins."""
    tries: list[int] = []
    chain = huffman._walk_chain

    def counting(*args: object) -> object:
        tries.append(args[4])  # type: ignore[arg-type]
        return chain(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(huffman, "_walk_chain", counting)
    monkeypatch.setattr(huffman, "_WALK_FROM_BITS", 0)
    values = np.random.default_rng(9).integers(0, 1000, 60000)
    table = HuffmanTable.fit(values)
    assert set(table.lengths.tolist()) == {9, 10}
    np.testing.assert_array_equal(decode(encode(values, table), len(values), table), values)
    assert len(tries) > 1 and tries == sorted(tries)  # a longer margin after the first


@pytest.mark.parametrize("p, max_length, slow", [(0.05, 8, True), (0.3, 8, True), (0.02, 16, True), (0.5, 16, False)])
def test_walkers_restart_and_agree(monkeypatch: pytest.MonkeyPatch, p: float, max_length: int, slow: bool) -> None:
    """Walkers with a short overlap often miss each other (codes from flat distributions resynchronise slowly):
    restarted walkers, or the exact decoder after too many rounds, must still decode exactly."""
    walks: list[int] = []
    walk = huffman._walk

    def counting(*args: object) -> object:
        walks.append(1)
        return walk(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(huffman, "_walk", counting)
    rng = np.random.default_rng(int(p * 100))
    for extra in range(3):
        values = geometric(rng, 20000, p)
        table = HuffmanTable.fit(values, max_length)
        table = small_margin(table, table._decoder.max_step + extra)
        walk_out, exact_out = decode_both(encode(values, table), len(values), table, monkeypatch)
        assert walk_out == exact_out and walk_out[0] == values.tolist()  # type: ignore[index]
    assert len(walks) > 3 or not slow  # some walkers were restarted
