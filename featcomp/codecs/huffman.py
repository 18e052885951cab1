"""Static, length-limited, canonical Huffman codes for integer symbols, vectorised both ways.

The transform-VLC codec (Chmiel et al.) codes quantized coefficients with static tables built once
from calibration histograms, and its hardware caps codeword lengths; this module is that building
block. A HuffmanTable is the side information (lowest symbol, one code length per symbol), so the
codes themselves are canonical: sorted by (length, symbol), rebuilt identically by every reader.

Lengths are optimal under the cap: package-merge (Larmore & Hirschberg 1990), not the zlib / JPEG
Annex K.3 heuristic, which can lose a little when the cap binds. A table fitted with an escape
codes rare or unseen values as the escape codeword followed by ``value - lo`` in fixed width,
which keeps wide sparse ranges codable under a short cap (e.g. 8 bits like the paper's hardware).

Plane layout: the codewords, MSB first, back to back, as one byte-aligned plane (BitWriter.uint_var).
The plane has no length field; the reader finds its end by decoding.

Decoding without a loop over symbols: for every bit position p of the plane, one table lookup on the
next max-length bits gives the length of the codeword that would start at p, hence next(p). The
codeword starts are the chain 0 -> next(0) -> ..., found by pointer doubling (jump = jump[jump])
while the set of positions still in play shrinks to the images of the jumps: Huffman codes
resynchronise, so chains from wrong starts merge into the true one after a few codewords and the
set collapses onto the true chain, which one vectorised check then confirms - typically after a
handful of rounds. Codes that never resynchronise (e.g. all lengths equal) fall back to plain
doubling, log2(count) rounds, so the work is bounded either way.

BitReader has no way to look at bits without consuming them; `_unread_bits` below is the one place
that reaches into it (see its docstring for the public method that would replace it). Consuming
goes through the public ``reader.bits(n)``, which also moves to the next byte boundary.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from featcomp.codecs.bitstream import BitReader, BitWriter
from featcomp.errors import CodecError

MAX_LENGTH = 16          # longest codeword; the decoder's lookup table has 2**MAX_LENGTH entries
MAX_SYMBOLS = 1 << 20    # widest symbol range a table covers, so escaped offsets fit in 20 bits
_SIDE = struct.Struct("<iIBB")  # lo, symbol count, escape length, bits per stored length (4 or 8)


@dataclass(frozen=True, eq=False)
class HuffmanTable:
    """A canonical prefix code for the integers lo .. lo + len(lengths) - 1.

    lengths[i] is the codeword length of lo + i; 0 means that value has no codeword of its own: it is
    sent as the escape codeword (length escape_length) plus i in escape_bits bits, or, without an
    escape (escape_length 0), it cannot be coded at all.
    """

    lo: int
    lengths: np.ndarray
    escape_length: int = 0

    def __post_init__(self) -> None:
        lengths = np.array(self.lengths, dtype=np.int64).reshape(-1)
        n = len(lengths)
        if not 1 <= n <= MAX_SYMBOLS:
            raise ValueError(f"a Huffman table covers 1 to {MAX_SYMBOLS} symbols, not {n}")
        if not (-(1 << 31) <= self.lo and self.lo + n - 1 < (1 << 31)):
            raise ValueError(f"symbols {self.lo}..{self.lo + n - 1} do not fit in 32 bits")
        if lengths.min() < 0 or lengths.max() > MAX_LENGTH or not 0 <= self.escape_length <= MAX_LENGTH:
            raise ValueError(f"code lengths must be 0..{MAX_LENGTH}")
        present = np.append(lengths[lengths > 0], np.array([self.escape_length] if self.escape_length else [], np.int64))
        if present.size == 0:
            raise ValueError("a Huffman table needs at least one codeword")
        if int(np.sum(np.int64(1) << (MAX_LENGTH - present))) > (1 << MAX_LENGTH):
            raise ValueError("code lengths violate the Kraft inequality (no prefix code has them)")
        frozen = lengths.astype(np.uint8)
        frozen.flags.writeable = False
        object.__setattr__(self, "lo", int(self.lo))
        object.__setattr__(self, "escape_length", int(self.escape_length))
        object.__setattr__(self, "lengths", frozen)

    # --- construction -------------------------------------------------------------------------------

    @classmethod
    def fit(cls, values: np.ndarray, max_length: int = MAX_LENGTH, escape: bool | None = None) -> HuffmanTable:
        """Optimal lengths (capped at max_length) for calibration values.

        Without an escape every value in [min, max] of the data gets a codeword, with add-one
        smoothing, so values the calibration never saw but that lie in its range stay codable. With
        an escape, only seen values get codewords (the 2**max_length - 1 most frequent, if there are
        more) and the rest share the escape. escape=None uses one only when the range has more than
        2**max_length values, i.e. when there is no other way.
        """
        v = np.asarray(values).reshape(-1)
        if v.size == 0 or not (np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_):
            raise ValueError("fit needs a non-empty array of integers")
        if not 1 <= max_length <= MAX_LENGTH:
            raise ValueError(f"max_length must be 1..{MAX_LENGTH}, not {max_length}")
        lo, hi = int(v.min()), int(v.max())
        n = hi - lo + 1
        if n > MAX_SYMBOLS:
            raise ValueError(f"calibration values span {n} integers; clip them to at most {MAX_SYMBOLS}")
        counts = np.bincount((v.astype(np.int64) - lo), minlength=n)
        room = 1 << max_length
        if escape is None:
            escape = n > room
        if not escape:
            if n > room:
                raise ValueError(f"{n} symbols need codewords longer than {max_length} bits; fit with escape=True")
            return cls(lo, _limited_lengths(counts + 1, max_length))
        keep = np.flatnonzero(counts)
        if len(keep) > room - 1:  # the escape takes one codeword
            keep = np.sort(keep[np.argsort(-counts[keep], kind="stable")[:room - 1]])
        n_escaped = n - len(keep)
        if n_escaped == 0:
            return cls(lo, _limited_lengths(counts + 1, max_length))
        escape_weight = int(counts.sum() - counts[keep].sum()) + n_escaped
        both = _limited_lengths(np.append(counts[keep] + 1, escape_weight), max_length)
        lengths = np.zeros(n, np.uint8)
        lengths[keep] = both[:-1]
        return cls(lo, lengths, int(both[-1]))

    def to_bytes(self) -> bytes:
        """Side information: lo, symbol count, escape length, then one length per symbol in 4 or 8 bits."""
        wide = max(int(self.lengths.max()), self.escape_length) > 15
        head = _SIDE.pack(self.lo, len(self.lengths), self.escape_length, 8 if wide else 4)
        if wide:
            return head + self.lengths.tobytes()
        nibbles = np.append(self.lengths, np.zeros(len(self.lengths) % 2, np.uint8))
        return head + ((nibbles[0::2] << 4) | nibbles[1::2]).astype(np.uint8).tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> HuffmanTable:
        """Inverse of to_bytes; anything that is not a valid table is a CodecError."""
        if len(data) < _SIDE.size:
            raise CodecError(f"Huffman table truncated: {len(data)} bytes, the header alone is {_SIDE.size}")
        lo, n, escape_length, width = _SIDE.unpack_from(data)
        if width not in (4, 8):
            raise CodecError(f"Huffman table stores lengths in {width} bits; only 4 or 8 are defined")
        if not 1 <= n <= MAX_SYMBOLS:
            raise CodecError(f"Huffman table claims {n} symbols; 1 to {MAX_SYMBOLS} are allowed")
        body = np.frombuffer(data, np.uint8, offset=_SIDE.size)
        expected = n if width == 8 else (n + 1) // 2
        if len(body) != expected:
            raise CodecError(f"Huffman table has {len(body)} bytes of lengths, {expected} expected for {n} symbols")
        if width == 8:
            lengths = body
        else:
            lengths = np.stack([body >> 4, body & 15], axis=1).reshape(-1)
            if n % 2 and lengths[-1]:
                raise CodecError("Huffman table has a non-zero padding nibble")
            lengths = lengths[:n]
        try:
            return cls(lo, lengths, escape_length)
        except ValueError as e:
            raise CodecError(f"invalid Huffman table: {e}") from e

    # --- derived ------------------------------------------------------------------------------------

    @property
    def escape_bits(self) -> int:
        """Width of the offset that follows the escape codeword (enough for any symbol index)."""
        return (len(self.lengths) - 1).bit_length() if self.escape_length else 0

    @cached_property
    def codes(self) -> np.ndarray:
        """Canonical codeword per symbol (0 where lengths is 0): codes count up in (length, symbol) order."""
        return self._canonical[0]

    @cached_property
    def escape_code(self) -> int:
        """Canonical codeword of the escape; it sorts after every symbol of its length."""
        return int(self._canonical[1])

    @cached_property
    def _canonical(self) -> tuple[np.ndarray, int, np.ndarray, np.ndarray]:
        """Codes of symbols and escape, and the (length, symbol)-sorted order with each first left-justified code."""
        n = len(self.lengths)
        all_len = np.append(self.lengths.astype(np.int64), self.escape_length)  # index n is the escape
        present = np.flatnonzero(all_len)
        order = present[np.lexsort((present, all_len[present]))]
        lens = all_len[order]
        top = int(lens.max())
        span = np.int64(1) << (top - lens)
        start = np.cumsum(span) - span  # left-justified code = Kraft sum of the codewords before it
        codes = np.zeros(n + 1, np.int64)
        codes[order] = start >> (top - lens)
        return codes[:n], int(codes[n]), order, span

    @cached_property
    def _encoder(self) -> tuple[np.ndarray, np.ndarray]:
        """Per symbol index: the full bits sent (escape + offset for escaped symbols) and their count (0 = uncodable)."""
        code, length = self.codes.copy(), self.lengths.astype(np.int64)
        if self.escape_length:
            escaped = np.flatnonzero(length == 0)
            code[escaped] = (self.escape_code << self.escape_bits) | escaped
            length[escaped] = self.escape_length + self.escape_bits
        return code, length

    @cached_property
    def _decoder(self) -> _Decoder:
        n = len(self.lengths)
        _, _, order, span = self._canonical
        all_len = np.append(self.lengths.astype(np.int64), self.escape_length)
        width = int(all_len.max())
        ext = all_len.copy()
        ext[n] += self.escape_bits
        filled = int(span.sum())
        symbol = np.full(1 << width, -1, np.int32)  # symbol index of the codeword the window starts with
        symbol[:filled] = np.repeat(order, span)
        step = np.zeros(1 << width, np.uint8)       # bits it takes, escape offset included; 0 = no codeword
        step[:filled] = np.repeat(ext[order], span)
        weight = 0.5 ** all_len[order]
        mean_step = float(np.sum(weight * ext[order]) / np.sum(weight))
        return _Decoder(width, symbol, step, int(ext[order].max()), mean_step)

    # --- measures -----------------------------------------------------------------------------------

    def size_bits(self, values: np.ndarray) -> int:
        """Exact bits write() produces for values (before the plane's byte alignment)."""
        return int(self._encoder[1][self._index(values)].sum())

    def _index(self, values: np.ndarray) -> np.ndarray:
        """Symbol indices of values; a value the table cannot code is a CodecError (clip before coding)."""
        v = np.asarray(values).reshape(-1)
        if v.size and not (np.issubdtype(v.dtype, np.integer) or v.dtype == np.bool_):
            raise CodecError(f"Huffman coding needs integer values, not {v.dtype}")
        idx = v.astype(np.int64) - self.lo
        n = len(self.lengths)
        if v.size and (idx.min() < 0 or idx.max() >= n):
            bad = v[(idx < 0) | (idx >= n)][0]
            raise CodecError(f"value {bad} is outside the Huffman table's range {self.lo}..{self.lo + n - 1}")
        if not self.escape_length and v.size and not self.lengths[idx].all():
            bad = v[self.lengths[idx] == 0][0]
            raise CodecError(f"value {bad} has no codeword in this Huffman table")
        return idx

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, HuffmanTable):
            return NotImplemented
        return (self.lo, self.escape_length) == (other.lo, other.escape_length) and np.array_equal(self.lengths, other.lengths)

    def __hash__(self) -> int:
        return hash((self.lo, self.escape_length, self.lengths.tobytes()))


@dataclass(frozen=True)
class _Decoder:
    width: int            # bits looked at per position (the longest codeword)
    symbol: np.ndarray    # [2**width] symbol index (len(lengths) = escape, -1 = no codeword)
    step: np.ndarray      # [2**width] bits consumed, escape offset included (0 = no codeword)
    max_step: int
    mean_step: float      # expected bits per value if values followed the code's own distribution


def entropy_bits(values: np.ndarray) -> float:
    """Empirical (order-0) entropy of values in bits, in total: what no symbol-by-symbol code beats."""
    v = np.asarray(values).reshape(-1)
    if v.size == 0:
        return 0.0
    _, counts = np.unique(v, return_counts=True)
    return float(-np.sum(counts * np.log2(counts / v.size)))


def write(writer: BitWriter, values: np.ndarray, table: HuffmanTable) -> None:
    """Huffman-code values as one plane; values the table cannot code are a CodecError."""
    code, length = table._encoder
    idx = table._index(values)
    writer.uint_var(code[idx], length[idx])


def read(reader: BitReader, count: int, table: HuffmanTable) -> np.ndarray:
    """Decode count values written by write(); a plane that is not count codewords is a CodecError."""
    if count == 0:
        return np.zeros(0, np.int64)
    dec = table._decoder
    bits = _unread_bits(reader)
    avail = len(bits)
    starts: list[np.ndarray] = []
    symbols: list[np.ndarray] = []
    start, left = 0, count
    # First try a window sized by the expected length: the plane is usually followed by other planes,
    # and looking at every bit position up to the worst case (count * longest codeword) would waste work.
    stop = min(avail, int(count * dec.mean_step * 1.125) + 64)
    while True:
        chain, sym, end, dead = _decode_window(bits, start, stop, left, dec)
        starts.append(chain + start)
        symbols.append(sym)
        left -= len(chain)
        if left == 0:
            start = end
            break
        if dead or stop >= avail:
            raise CodecError(f"Huffman plane corrupt or truncated: {count - left} of {count} values decode, "
                             f"then no codeword fits at bit {end} of {avail}")
        start = end
        stop = min(avail, start + left * dec.max_step)  # enough for any codewords
    sym = np.concatenate(symbols)
    out = sym.astype(np.int64)
    n = len(table.lengths)
    escaped = np.flatnonzero(sym == n)
    if escaped.size:
        at = np.concatenate(starts)[escaped] + table.escape_length
        offsets = _read_uint(bits, at, table.escape_bits)
        if offsets.max() >= n:
            raise CodecError(f"Huffman plane escapes to symbol index {int(offsets.max())}, the table has {n}")
        out[escaped] = offsets
    reader.bits(start)
    return out + table.lo


def _decode_window(bits: np.ndarray, start: int, stop: int, need: int, dec: _Decoder) -> tuple[np.ndarray, np.ndarray, int, bool]:
    """Up to need codeword starts (relative to start) whose starts lie in [start, stop), with their symbols.

    Also returns the bit where the last codeword ends and whether the chain hit a bit pattern that is no
    codeword (or a codeword running past the end of the bits).
    """
    avail = len(bits)
    if stop <= start:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), start, False
    base = start - start % 8
    ahead = min(avail, stop + dec.width)  # lookahead so windows near stop see real bits
    packed = np.zeros((ahead - base + 7) // 8 + 3, np.uint8)
    packed[:(ahead - base + 7) // 8] = np.packbits(bits[base:ahead])
    n_pos = stop - start
    n_bytes = (stop - base + 7) // 8
    word = (packed[:n_bytes].astype(np.uint32) << 16) | (packed[1:n_bytes + 1].astype(np.uint32) << 8) | packed[2:n_bytes + 2]
    shifts = (24 - dec.width - np.arange(8)).astype(np.uint32)
    window = ((word[:, None] >> shifts) & np.uint32((1 << dec.width) - 1)).reshape(-1)[start - base:start - base + n_pos]
    step = dec.step[window]
    itype = np.int32 if n_pos + 2 < (1 << 31) else np.int64
    nxt = np.empty(n_pos + 2, itype)
    nxt[:n_pos] = np.arange(n_pos, dtype=itype) + step
    nxt[n_pos], nxt[n_pos + 1] = n_pos, n_pos + 1  # END: left the window; DEAD: no codeword here
    bad = (step == 0) | (nxt[:n_pos] > avail - start)
    np.minimum(nxt[:n_pos], n_pos, out=nxt[:n_pos])
    nxt[:n_pos][bad] = n_pos + 1
    chain, dead = _chain(nxt, need)
    last = int(chain[-1])
    return chain, dec.symbol[window[chain]], start + last + int(step[last]), dead


def _chain(nxt: np.ndarray, need: int) -> tuple[np.ndarray, bool]:
    """The first need positions of 0 -> nxt[0] -> ... below END = len(nxt) - 2, and whether it ended in DEAD.

    Pointer doubling over a shrinking domain. Invariants after round r: `jump` is nxt applied 2**r
    times on every position of `domain`; `domain` holds the whole chain and is closed under `jump`;
    `prefix` is the first 2**r chain positions. The domain is the image of the jumps plus the prefix,
    so wrong chains drop out as they merge into the true one; once nothing else is left, the domain
    is the chain, which a single comparison against nxt proves.
    """
    end = len(nxt) - 2
    jump = nxt.copy()
    domain: np.ndarray | None = None  # None: every position
    prefix = np.zeros(1, nxt.dtype)
    mask = np.empty(len(nxt), bool)
    while True:
        cand = np.arange(end, dtype=nxt.dtype) if domain is None else domain[:np.searchsorted(domain, end)]
        if len(cand) and cand[0] == 0 and np.array_equal(nxt[cand[:-1]], cand[1:]):
            return cand[:need], bool(nxt[cand[-1]] == end + 1) and len(cand) < need
        if len(prefix) >= need or prefix[-1] >= end:
            chain = prefix[:np.searchsorted(prefix, end)][:need]  # prefix is increasing until it sticks at END/DEAD
            return chain, bool(prefix[-1] == end + 1) and len(chain) < need
        prefix = np.concatenate([prefix, jump[prefix]])
        if domain is None:
            image = jump[jump]
            jump = image
        else:
            image = jump[jump[domain]]
            jump[domain] = image
        mask[:] = False
        mask[image] = True
        mask[prefix] = True
        domain = np.flatnonzero(mask).astype(nxt.dtype, copy=False)


def _read_uint(bits: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """The width-bit MSB-first integers starting at bit positions `at` (few: only escaped values)."""
    if width == 0:
        return np.zeros(len(at), np.int64)
    idx = at[:, None] + np.arange(width)
    if idx.max() >= len(bits):
        raise CodecError("Huffman plane truncated inside an escaped value")
    return bits[idx].astype(np.int64) @ (np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))


def _unread_bits(reader: BitReader) -> np.ndarray:
    """The bits from the reader's cursor to the end, without consuming them.

    >>> BitReader has no public peek, so this reads its private fields. The clean fix is one method in
    >>> bitstream.py: ``def peek(self) -> np.ndarray: return self._bits[self._pos:]`` (callers consume
    >>> with ``bits(n)`` as now), and this helper becomes ``reader.peek()``.
    """
    return reader._bits[reader._pos:]


def _limited_lengths(weights: np.ndarray, max_length: int) -> np.ndarray:
    """Optimal prefix-code lengths for positive weights with none longer than max_length (package-merge).

    Level lists are built bottom-up: each is the leaves merged with the pairs ("packages") of the list
    below, leaves first on ties, so the result is deterministic. Selecting the 2n - 2 cheapest items of
    the top list and following packages down gives each leaf its length: one per selected item holding
    it. Because every list is sorted, the selection in each list is a prefix, and the leaves in it are
    the lightest leaves, so no per-item bookkeeping is needed. One symbol gets length 1.
    """
    w = np.asarray(weights, dtype=np.int64)
    n = len(w)
    if n > (1 << max_length):
        raise ValueError(f"{n} symbols cannot all have codewords of at most {max_length} bits")
    if n == 1:
        return np.ones(1, np.uint8)
    order = np.argsort(w, kind="stable")
    leaves = w[order]
    is_package = [np.zeros(n, bool)]
    items = leaves
    for _ in range(max_length - 1):
        packages = items[:len(items) // 2 * 2].reshape(-1, 2).sum(axis=1)
        merged = np.concatenate([leaves, packages])
        pick = np.argsort(merged, kind="stable")
        items = merged[pick]
        is_package.append(pick >= n)
    depth = np.zeros(n + 1, np.int64)  # depth[k] counts lists whose selection holds the k lightest leaves
    take = 2 * n - 2
    for flags in reversed(is_package):
        packages = int(np.count_nonzero(flags[:take]))
        depth[take - packages] += 1
        take = 2 * packages
    lengths = np.zeros(n, np.uint8)
    lengths[order] = np.cumsum(depth[::-1])[::-1][1:]  # leaf i is in every selection of more than i leaves
    return lengths
