"""Static, length-limited, canonical Huffman codes for integer symbols, vectorised both ways.

The transform-VLC codec (Chmiel et al.) codes quantized coefficients with static tables built once
from calibration histograms, and its hardware caps codeword lengths; this module is that building
block. A HuffmanTable is the side information (lowest symbol, one code length per symbol), so the
codes themselves are canonical: sorted by (length, symbol), the first code 0 and each next one
(previous + 1) << (its length - previous length), rebuilt identically by every reader.

Lengths are optimal under the cap: package-merge (Larmore & Hirschberg 1990), not the zlib / JPEG
Annex K.3 heuristic, which can lose a little when the cap binds. A table fitted with an escape
codes rare or unseen values as the escape codeword (canonical order puts it after every symbol of its
length) followed by ``value - lo`` in bit_length(symbol count - 1) bits, MSB first,
which keeps wide sparse ranges codable under a short cap (e.g. 8 bits like the paper's hardware).

Plane layout: the codewords, MSB first, back to back, as one byte-aligned plane (BitWriter.uint_var).
The plane has no length field; the reader finds its end by decoding.

Decoding without a Python loop over values. Where a codeword starts depends on every codeword
before it, so decoding is sequential in principle; two vectorised methods find the starts anyway,
both resting on the fact that prefix codes resynchronise (a decoder started mid-codeword soon lands
on a true codeword start and from then on agrees with the true decoding):

- walkers (fast; planes of 2**18 bits and more): the plane is cut into chunks and one decoder per
  chunk starts at its first bit as if a codeword started there; all decode in lock step, a margin
  into the next chunk. The Python loop runs over the steps within a chunk (a few hundred, however
  many values), each step decoding one codeword in every chunk. From the first position decoder k
  shares with decoder k - 1 it is right, so the starts are decoder 0 up to where decoder 1 joins
  it, decoder 1 from there, and so on. A decoder nobody joined is restarted where its left
  neighbour entered its chunk (a few rounds); many such mean a code that resynchronises slowly
  (flat distributions), and the walk is redone with longer margins; failing that, exact runs.
- exact (reference; small planes and the fallback): for every bit position p, a table lookup on
  the next bits gives next(p), where the codeword starting at p ends. The starts are the chain
  0 -> next(0) -> ..., found by pointer doubling over a set of positions that shrinks as chains
  from wrong starts merge into the true one; log2(count) rounds at worst.

Codes whose codewords all have one length need neither: the starts are multiples of it. A plane
that does not decode (a pattern that is no codeword, too few bits) is a CodecError.

Look-ahead uses ``BitReader.peek()``; consuming goes through ``reader.bits(n)``, which also moves to
the next byte boundary.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from featcomp.codecs.bitstream import BitReader, BitWriter
from featcomp.errors import CodecError

MAX_LENGTH = 16          # longest codeword; the decoder's lookup table has 2**MAX_LENGTH entries
MAX_SYMBOLS = 1 << 20    # widest symbol range a table covers, so escaped offsets fit in 20 bits
_SIDE = struct.Struct("<iIBB")  # lo, symbol count, escape length, bits per stored length (4 or 8)
_ESCAPED = np.iinfo(np.int64).min  # decoded value standing for "escape: the value follows in escape_bits"
_NO_CODEWORD = 1 << 40   # how far a decoder jumps from a bit pattern that starts no codeword: past any plane
_WALK_FROM_BITS = 1 << 18  # below this many bits the exact decoder is as fast as the walkers
_RESTARTS = 4            # rounds of restarting walkers that did not resynchronise, then the exact decoder


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
        smoothing, so values the calibration never saw but that lie in its range stay codable (a
        range much wider than the data spends bits on that: clip outliers first). With an escape,
        only the most frequent values get codewords of their own, as many as cost the fewest bits on
        the calibration data (0, 1, 3, 7, ... are tried: keeping 2**max_length - 1 would force every
        codeword to max_length bits), and the rest share the escape, weighted by their count plus one
        so that unseen values stay codable at little cost. escape=None picks whichever costs fewer
        bits on the calibration data (an escape is the only way when the range has more than
        2**max_length values); True and False force one or the other.
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
        options = []  # (bits on the calibration data, kept values, lengths, escape length)
        if escape is not True:
            if n > (1 << max_length):
                if escape is False:
                    raise ValueError(f"{n} symbols need codewords longer than {max_length} bits; fit with an escape")
            else:
                lengths = _limited_lengths(counts + 1, max_length)
                options.append((int(np.sum(counts * lengths)), -1, lengths, 0))
        if escape is not False:
            seen = np.flatnonzero(counts)
            by_count = seen[np.argsort(-counts[seen], kind="stable")]
            escape_bits = (n - 1).bit_length()
            for k in sorted({min(len(by_count), (1 << j) - 1) for j in range(max_length + 1)} - {n}):
                keep = by_count[:k]
                escaped = int(counts.sum() - counts[keep].sum())
                both = _limited_lengths(np.append(counts[keep] + 1, escaped + 1), max_length)
                lengths = np.zeros(n, np.uint8)
                lengths[keep] = both[:-1]
                bits = int(np.sum(counts * lengths)) + escaped * (int(both[-1]) + escape_bits)
                options.append((bits, k, lengths, int(both[-1])))
        _, _, lengths, escape_length = min(options, key=lambda option: option[:2])
        return cls(lo, lengths, escape_length)

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
        value = np.full(1 << width, _ESCAPED, np.int64)  # value of the codeword the window starts with
        value[:filled] = np.repeat(np.where(order == n, _ESCAPED, order + self.lo), span)
        step = np.zeros(1 << width, np.uint8)       # bits it takes, escape offset included; 0 = no codeword
        step[:filled] = np.repeat(ext[order], span)
        jump = np.where(step > 0, step.astype(np.int64), _NO_CODEWORD)
        weight = 0.5 ** all_len[order]
        mean_step = float(np.sum(weight * ext[order]) / np.sum(weight))
        steps = ext[order]
        fixed = int(steps[0]) if (steps == steps[0]).all() else 0
        grain = int(np.gcd.reduce(steps))  # every codeword start is a multiple of this from the first
        margin = -(-(int(32 * mean_step) + int(steps.max())) // grain) * grain  # ~32 codewords
        return _Decoder(width, value, step, jump, int(steps.min()), int(steps.max()), mean_step,
                        filled == len(step), fixed, grain, margin, self.escape_length > 0)

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
    value: np.ndarray     # [2**width] value of the codeword starting the window (_ESCAPED for the escape)
    step: np.ndarray      # [2**width] bits consumed, escape offset included (0 = no codeword)
    jump: np.ndarray      # step as int64, with _NO_CODEWORD where there is no codeword
    min_step: int
    max_step: int
    mean_step: float      # expected bits per value if values followed the code's own distribution
    complete: bool        # every window starts with a codeword (Kraft sum 1)
    fixed: int            # the one codeword length (escape offset included) if all are equal, else 0
    grain: int            # every codeword length is a multiple of this, so walkers start on multiples of it
    margin: int           # bits a walker decodes into the next chunk to meet its neighbour (fast decoder)
    escape: bool          # the code has an escape codeword


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
    """Decode count values written by write(), leaving the reader at the next plane.

    A plane that does not hold count codewords (corrupt or truncated) is a CodecError.
    """
    if count == 0:
        return np.zeros(0, np.int64)
    dec = table._decoder
    bits = reader.peek()
    avail = len(bits)
    parts: list[np.ndarray] = []
    escapes: list[np.ndarray] = []
    start, left, per_value = 0, count, dec.mean_step
    for attempt in range(3):
        # The plane's end is unknown and other planes may follow, so look at a window sized by the
        # expected bits per value first; only the third try takes the bound (values * longest codeword).
        guess = left * dec.max_step if attempt >= 2 else int(left * per_value * 1.125) + 64
        stop = min(avail, start + min(guess, left * dec.max_step))
        values, escaped_at, end, dead = _decode_window(bits, start, stop, left, dec)
        parts.append(values)
        escapes.append(escaped_at)
        left -= len(values)
        if left == 0:
            break
        if dead or stop >= avail:
            raise CodecError(f"Huffman plane corrupt or truncated: {count - left} of {count} values decode, "
                             f"then no codeword fits at bit {end} of {avail}")
        start, per_value = end, max(per_value, end / (count - left))
    else:  # the third window holds every remaining codeword, so it cannot end without one of the above
        raise AssertionError("unreachable")
    out = parts[0] if len(parts) == 1 else np.concatenate(parts)
    if dec.escape:
        n = len(table.lengths)
        offsets = _read_uint(bits, np.concatenate(escapes) + table.escape_length, table.escape_bits)
        if offsets.size and offsets.max() >= n:
            raise CodecError(f"Huffman plane escapes to symbol index {int(offsets.max())}, the table has {n}")
        out[out == _ESCAPED] = offsets + table.lo
    reader.bits(end)
    return out


_Decoded = tuple[np.ndarray, np.ndarray, int, bool]


def _decode_window(bits: np.ndarray, start: int, stop: int, need: int, dec: _Decoder) -> _Decoded:
    """Decode up to need codewords that start in [start, stop), the first at start.

    Returns their values (_ESCAPED for escapes), the bit positions of the escapes among them, the bit where
    the last one ends, and whether decoding stopped at a bit pattern that is no codeword (or one that
    runs past the end of the bits) rather than at the end of the window.
    """
    if stop <= start:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), start, False
    if dec.fixed:
        return _decode_fixed(bits, start, stop, need, dec)
    fast = _decode_walkers(bits, start, stop, need, dec)
    return fast if fast is not None else _decode_exact(bits, start, stop, need, dec)


def _decode_fixed(bits: np.ndarray, start: int, stop: int, need: int, dec: _Decoder) -> _Decoded:
    """All codewords one length: the starts are known (and such codes never resynchronise, so walkers would fail)."""
    k = dec.fixed
    chain = np.arange(min(need, -(-(stop - start) // k)), dtype=np.int64) * k + start
    fits = chain[chain + k <= len(bits)]
    window = _read_uint(bits, fits, dec.width)  # width <= k, so inside the bits
    bad = dec.step[window] == 0
    n_ok = int(np.argmax(bad)) if bad.any() else len(fits)
    values = dec.value[window[:n_ok]]
    return values, chain[:n_ok][values == _ESCAPED], start + n_ok * k, n_ok < len(chain)


def _decode_exact(bits: np.ndarray, start: int, stop: int, need: int, dec: _Decoder) -> _Decoded:
    """The reference method: next codeword start for every bit position, then the chain by pointer doubling."""
    n_pos = stop - start
    room = len(bits) - start
    window = _windows(bits, start, n_pos, dec.width)
    end, dead = n_pos, n_pos + 1
    nxt = np.arange(n_pos + 2, dtype=np.int64)  # nxt[end] = end, nxt[dead] = dead
    nxt[:n_pos] += dec.jump[window]              # no codeword: a jump far past dead
    safe = max(0, min(n_pos, room) - dec.max_step)  # codewords starting before this end inside both
    if not dec.complete:
        np.minimum(nxt[:safe], dead, out=nxt[:safe])
    tail = nxt[safe:n_pos]
    tail[tail > end] = np.where(tail[tail > end] > room, dead, end)
    chain = _chain(nxt, need)
    last = int(chain[-1])
    broken = bool(nxt[last] == dead)  # the last start holds no whole codeword
    if broken:
        chain = chain[:-1]
    values = dec.value[window[chain]]
    return values, chain[values == _ESCAPED] + start, start + last + (0 if broken else int(dec.step[window[last]])), broken


def _decode_walkers(bits: np.ndarray, start: int, stop: int, need: int, dec: _Decoder) -> _Decoded | None:
    """The fast method: decode chunks of the window in parallel, stitched where the decoders resynchronise.

    One decoder ("walker") starts at the beginning of each chunk as if a codeword started there and
    decodes, all walkers in lock step, a margin into the next chunk. Walker 0 is right; walker k is
    right from the first position it shares with walker k - 1, so the chain is walker 0 up to that
    position, walker 1 from it, and so on. A few walkers that met nobody are restarted from where
    their left neighbour entered their chunk; many mean a code that resynchronises slowly, and the
    walk is redone with a longer margin (twice at most). None (use _decode_exact) if that does not
    settle it, or if the window is too small for walkers to pay off. The Python loop runs over the
    steps within a chunk (a few hundred for most codes, whatever the number of values).
    """
    n_pos = stop - start
    if n_pos < _WALK_FROM_BITS:
        return None
    base = start - start % 8  # walker positions count from here, so bytes line up
    off = start - base
    cap = off + n_pos
    word = _words(bits, base, min(len(bits), stop + dec.width), cap // 8 + 1)
    for margin in (dec.margin, 8 * dec.margin, 64 * dec.margin):
        # Chunk length: each step costs a fixed Python overhead plus a little per walker, so the best
        # length grows like sqrt(bits * margin); it must exceed the margin (see _Joins).
        chunk = max(2 * margin, int(np.sqrt(n_pos * margin / 250)))
        chunk = -(-chunk // dec.grain) * dec.grain
        if chunk >= n_pos:
            return None
        chain = _walk_chain(word, off, cap, chunk, margin, need, dec)
        if chain is None:
            continue
        wins, position = chain
        values = dec.value[wins]
        escaped_at = position(np.flatnonzero(values == _ESCAPED)) + base if dec.escape else np.zeros(0, np.int64)
        last = int(position(np.array([len(wins) - 1]))[0]) + base
        step = int(dec.step[wins[-1]])
        if step == 0 or last + step > len(bits):  # the last start holds no whole codeword
            return values[:-1], escaped_at[escaped_at < last], last, True
        return values, escaped_at, last + step, False
    return None


def _walk_chain(word: np.ndarray, off: int, cap: int, chunk: int, margin: int, need: int,
                dec: _Decoder) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
    """Walkers for one chunk length and margin: the windows of (up to) the first need codewords of the
    chain, and a function from their indices to their bit positions; None if walkers did not resynchronise.
    """
    n_walkers = -(-(cap - off) // chunk)
    first = off + np.arange(n_walkers, dtype=np.int64) * chunk
    limit = np.minimum(first + chunk + margin, cap)
    pos, win, steps = _walk(word, first, limit, dec)
    joins = _Joins(first, chunk, limit, margin, dec)
    joins.update(pos[:steps], np.arange(n_walkers))
    for attempt in range(_RESTARTS + 1):
        found, row_start, row_end, bad = joins.result()
        lens = row_end[:bad + 1] - row_start[:bad + 1]
        if bad == n_walkers - 1 or lens.sum() >= need:
            break
        # restart each walker its left neighbour did not meet, from where that neighbour entered its chunk
        lost = np.flatnonzero(~found[:-1])
        entry = pos[np.minimum(joins.cross[lost], steps - 1), lost]
        ok = (joins.cross[lost] < steps) & (entry < limit[lost])
        if not ok[0] and entry[0] >= _NO_CODEWORD:  # walker `bad` is right, so the chain ends there
            break
        if not ok[0] or attempt == _RESTARTS or len(lost) > n_walkers // 2:
            return None  # a code that resynchronises slowly: a longer margin will do better
        lost, entry = lost[ok] + 1, entry[ok]
        new_pos, new_win, new_steps = _walk(word, entry, limit[lost], dec)
        pos[steps:new_steps] = cap  # the others are done: pad them
        pos[:new_steps, lost] = new_pos[:new_steps]
        win[:new_steps, lost] = new_win[:new_steps]
        pos[new_steps:steps, lost] = cap
        steps = max(steps, new_steps)
        joins.update(pos[:steps], lost)
    # the chain: walker k's steps row_start[k] .. row_end[k] - 1, for k = 0 .. bad, gathered walker by walker
    at = np.arange(steps)
    keep = (at >= row_start[:bad + 1, None]) & (at < row_end[:bad + 1, None])
    wins = np.ascontiguousarray(win[:steps, :bad + 1].T)[keep][:need]
    ends = np.cumsum(lens)

    def position(i: np.ndarray) -> np.ndarray:
        k = np.searchsorted(ends, i, side="right")
        return pos[i - (ends[k] - lens[k]) + row_start[k], k]

    return wins, position


def _walk(word: np.ndarray, first: np.ndarray, limit: np.ndarray, dec: _Decoder) -> tuple[np.ndarray, np.ndarray, int]:
    """Decode from every position in first, in lock step, until each is at or past its limit.

    Returns positions and windows [room for steps, walkers] and the steps taken; a walker that meets
    no codeword jumps _NO_CODEWORD bits on, past every limit. Each step moves every walker on by at least
    min_step bits, so the loop ends, and the arrays have room for every step.
    """
    pos = first.copy()
    shift, mask = 24 - dec.width, (1 << dec.width) - 1
    room = int((limit - first).max(initial=0)) // dec.min_step + 9
    positions = np.empty((room, len(first)), np.int64)
    windows = np.empty((room, len(first)), np.uint16)  # small: the chain is gathered from it across rows
    steps = 0
    while True:
        for _ in range(8):
            w = word.take(pos >> 3, mode="clip")  # walkers past the end read anything; they are done
            w >>= shift - (pos & 7)
            w &= mask
            positions[steps] = pos
            windows[steps] = w
            pos = pos + dec.jump.take(w)
            steps += 1
        if (pos >= limit).all():
            return positions, windows, steps


class _Joins:
    """Where each walker meets its right neighbour (see _decode_walkers), kept up to date as walkers restart.

    Per walker k: cross[k], its first step into the next chunk; meet[k], its step at the first position it
    shares with walker k + 1 (-1: none), which is walker k + 1's step met[k] - 1; n_over[k], its steps
    in the overlap when there is no meeting.
    """

    def __init__(self, first: np.ndarray, chunk: int, limit: np.ndarray, margin: int, dec: _Decoder) -> None:
        n = len(first)
        self.first, self.limit, self.margin, self.dec = first, limit, margin, dec
        self.head = margin + dec.max_step  # a walker's opening stretch, shorter than a chunk
        self.next_first = np.append(first[1:], first[-1] + chunk)
        self.cross = np.zeros(n, np.int64)
        self.step_at = np.zeros((n + 1) * (self.head + 1), np.int32)  # flat: walker * (head + 1) + offset
        self.meet = np.full(n, -1, np.int64)
        self.met = np.zeros(n, np.int64)
        self.n_over = np.zeros(n, np.int64)

    def update(self, pos: np.ndarray, walkers: np.ndarray) -> None:
        """Recompute what involves these walkers (sorted), from positions [steps, all walkers]."""
        n, head, dec = len(self.first), self.head, self.dec
        cols = pos if len(walkers) == n else pos[:, walkers]
        self.cross[walkers] = (cols < np.minimum(self.next_first, self.limit)[walkers]).sum(axis=0)
        # each walker's opening steps by offset from its first position: a position there belongs to that
        # walker only, so one table serves all; positions past `head` go to a spare slot per walker
        self.step_at.reshape(-1, head + 1)[walkers] = 0
        for row in range(0, min(len(pos), head // dec.min_step + 1), 16):  # until all are past `head`
            opening = cols[row:row + 16] - self.first[walkers]
            if opening.min() >= head:
                break
            np.minimum(opening, head, out=opening)
            opening += walkers * (head + 1)
            self.step_at[opening] = np.arange(row + 1, row + len(opening) + 1, dtype=np.int32)[:, None]
        pairs = np.arange(n - 1) if len(walkers) == n else np.union1d(walkers - 1, walkers)
        self._meet(pos, pairs[(pairs >= 0) & (pairs < n - 1)])

    def _meet(self, pos: np.ndarray, todo: np.ndarray) -> None:
        """Walker k's steps into the next chunk looked up among walker k + 1's opening steps, for k in todo.

        The first few for all, then the rest (fewer than margin / min_step + 1 in all) for those not met yet.
        """
        steps, n = pos.shape
        head = self.head
        self.meet[todo], self.met[todo], self.n_over[todo] = -1, 0, 0
        for lo, hi in ((0, 8), (8, self.margin // self.dec.min_step + 1)):
            if lo >= hi or not len(todo):
                break
            reach = self.cross[todo, None] + np.arange(lo, hi)
            over = pos.reshape(-1)[np.minimum(reach, steps - 1) * n + todo[:, None]]
            inside = (reach < steps) & (over < self.limit[todo, None])
            over -= self.next_first[todo, None]
            np.clip(over, 0, head, out=over)
            over += (todo[:, None] + 1) * (head + 1)
            hit = self.step_at[over]
            hit[~inside] = 0
            col = np.argmax(hit > 0, axis=1)
            hit = hit[np.arange(len(todo)), col]
            got = hit > 0
            self.meet[todo[got]] = lo + col[got]
            self.met[todo[got]] = hit[got]
            self.n_over[todo] += inside.sum(axis=1)
            todo = todo[~got & inside[:, -1]]  # not met, and steps left in the overlap

    def result(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """found[k] (walker k meets walker k + 1); per walker the steps that belong to the chain if
        its left neighbour is right, row_start[k] .. row_end[k] - 1; and the first walker k that meets
        no right neighbour (the last if all do)."""
        found = self.meet >= 0
        row_end = np.where(found, self.cross + self.meet, self.cross + self.n_over)
        row_start = np.zeros(len(found), np.int64)
        row_start[1:] = np.where(found[:-1], self.met[:-1] - 1, 0)
        bad = int(np.argmin(found[:-1])) if not found[:-1].all() else len(found) - 1
        return found, row_start, row_end, bad


def _windows(bits: np.ndarray, start: int, count: int, width: int) -> np.ndarray:
    """For each bit position start .. start + count - 1: the next width bits as an integer (zeros past the end)."""
    base = start - start % 8
    word = _words(bits, base, min(len(bits), start + count + width), (start + count - base + 7) // 8)
    window = word[:, None] >> (24 - width - np.arange(8, dtype=np.int64))
    window &= (1 << width) - 1
    return window.reshape(-1)[start - base:start - base + count]


def _words(bits: np.ndarray, base: int, stop: int, count: int) -> np.ndarray:
    """For count bytes from bit base (a byte boundary): 24 bits from that byte on, enough for width + 7 bits.

    Bits from stop on read as zeros.
    """
    packed = np.zeros(max(count, (stop - base + 7) // 8) + 2, np.uint8)
    packed[:(stop - base + 7) // 8] = np.packbits(bits[base:stop])
    word = packed[:count].astype(np.int64) << 16
    word |= packed[1:count + 1].astype(np.int64) << 8
    word |= packed[2:count + 2]
    return word


def _chain(nxt: np.ndarray, need: int) -> np.ndarray:
    """The first need positions of 0 -> nxt[0] -> ... that lie below END = len(nxt) - 2.

    nxt[END] = END and nxt[END + 1] = END + 1 (DEAD). Pointer doubling over a shrinking domain.
    Invariants after round r: `jump` is nxt applied 2**r times on every position of `domain`;
    `domain` holds the whole chain and is closed under `jump`; `prefix` is the first 2**r chain
    positions. The domain is the image of the jumps plus the prefix, so wrong chains drop out as they
    merge into the true one; once nothing else is left, the domain is the chain, which one comparison
    against nxt proves. Otherwise the prefix is complete after log2(need) rounds.
    """
    end = len(nxt) - 2
    mask = np.zeros(len(nxt), bool)
    jump = nxt[nxt]  # round 0 over every position
    prefix = np.array([0, nxt[0]], np.int64)
    mask[jump] = True
    mask[prefix] = True
    domain = np.flatnonzero(mask)
    while True:
        cand = domain[:np.searchsorted(domain, end)]
        probe = np.arange(0, len(cand) - 1, 61)  # a sample first: most rounds fail it, saving the full check
        if (len(cand) and cand[0] == 0 and np.array_equal(nxt[cand[probe]], cand[probe + 1])
                and np.array_equal(nxt[cand[:-1]], cand[1:])):
            return cand[:need]
        if len(prefix) >= need or prefix[-1] >= end:
            return prefix[:np.searchsorted(prefix, end)][:need]  # prefix rises until it sticks at END or DEAD
        prefix = np.concatenate([prefix, jump[prefix]])
        image = jump[jump[domain]]
        jump[domain] = image
        mask[:] = False
        mask[image] = True
        mask[prefix] = True
        domain = np.flatnonzero(mask)


def _read_uint(bits: np.ndarray, at: np.ndarray, width: int) -> np.ndarray:
    """The width-bit MSB-first integers starting at bit positions `at` (all inside the bits)."""
    if width == 0 or len(at) == 0:
        return np.zeros(len(at), np.int64)
    got = bits[at[:, None] + np.arange(width)].astype(np.int64)
    return got @ (np.int64(1) << np.arange(width - 1, -1, -1, dtype=np.int64))




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
