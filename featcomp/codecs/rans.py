"""Static-model rANS with contexts frozen at calibration: an entropy coder both codecs can use.

A codec turns a sample into integer symbol planes (one per channel) and, per slice of the container
(bitstream.bands), hands this coder the slice's planes [C, n] with each channel's symbol range. The
coder is a frozen model fitted on calibration symbols; nothing adapts while coding, so every slice
decodes on its own and the byte count of a slice is a pure function of its symbols.

Symbols -> tokens. Each coded channel has a centre (subtracted first); the centred value v becomes a
magnitude u: v itself when the channel's range is all >= 0, -v when all <= 0, else the zigzag
(0, -1, 1, -2, ... -> 0, 1, 2, 3, ...). u < D = 16 is the token u; a larger u with top bit e carries
e and the 2 bits below its top bit in its token (D + 4 (e - 4) + those bits) and its e - 2 low bits
as raw bits (a hybrid integer code, as in JPEG XL): no value needs an escape, the model sees the shape
of the tail, and the alphabet K follows from the ranges.

Contexts. A channel belongs to one of a few groups (fitted by the calibration entropy of its tokens),
and a context adds the magnitude class (0, 1..2, >= 3) of already-coded neighbours: the value to the
left in the same lane (the previous position in raster order) and/or the value at the same position
in the previous coded channel. One static 12-bit frequency table per (group, context); the tables,
groups and centres are the coder description, counted as side information.

Lanes. The n positions of a slice are cut into L runs of `chunk` consecutive positions; lane l codes
positions l*chunk .. (l+1)*chunk - 1 of every channel, channel by channel, so at step
t = c*chunk + j all lanes code channel c, position l*chunk + j at once: the left neighbour and the
previous channel were coded at earlier steps, and numpy runs one step across all lanes (and, when
counting bytes, across all slices of all samples). rANS: 32-bit state in [2**16, 2**32), 16-bit
renormalisation (at most one word per symbol), 12-bit frequencies, table-driven decode (a 4096-slot
symbol lookup per table).

Slice payload: L final encoder states (u32 LE), then the 16-bit words (u16 LE) in the order the
decoder reads them (step by step, lanes in order, a word whenever a lane's state falls below 2**16),
then one bit plane (bitstream.BitWriter: MSB first, zero padded) with the Exp-Golomb raw bits of the
tokens >= D, in step-then-lane order. Bit-level layout: docs/bitstream.md.
"""

from __future__ import annotations

import itertools
import struct
from dataclasses import dataclass

import numpy as np

from featcomp.codecs import bitstream
from featcomp.errors import CodecError, FeatcompError

PRECISION = 12
TOTAL = 1 << PRECISION          # frequencies of a table add up to this
LOWER = 1 << 16                 # the state lives in [LOWER, 2**32)
WORD = 16
MAX_LANES = 32
MIN_CHUNK = 8                   # positions per lane at least: each lane costs 4 state bytes per slice
DIRECT = 16                     # magnitudes below this are tokens of their own (a power of two)
MANTISSA = 2                    # bits below the top bit that a larger magnitude's token carries
NO_GROUP = 15                   # group of a channel the coder does not code (constant or dropped)
MAX_GROUPS = 15                 # groups 0..14 (a 4-bit number per channel; 15 = not coded)
LLOYD_ROUNDS = 4                # refinements of the channel groups (each channel to the table that codes it best)
CONTEXT_MODES = {0: 1, 1: 3, 2: 3, 3: 9}   # none, left, previous channel, both -> contexts per group
_HEAD = struct.Struct("<BBBBBHB")          # format, D, K, groups, context mode, channels, flags
FORMAT = 1


def lanes_of(n: int) -> tuple[int, int]:
    """(lanes, chunk) of a slice with n positions per channel."""
    chunk = max(MIN_CHUNK, -(-n // MAX_LANES))
    return max(1, -(-n // chunk)), chunk


def magnitude_class(tokens: np.ndarray) -> np.ndarray:
    """Context class of coded tokens: 0 for zero, 1 for magnitudes 1..2, 2 above."""
    return (tokens > 0).astype(np.int64) + (tokens > 2)


def _bit_length(u: np.ndarray) -> np.ndarray:
    """bit_length of non-negative int64 values (0 for 0)."""
    if u.size and int(u.max()) < (1 << 52):  # exact in float64: frexp's exponent is the bit length
        return np.frexp(u.astype(np.float64))[1].astype(np.int64)
    n = np.zeros(u.shape, np.int64)
    v = u.copy()
    for shift in (32, 16, 8, 4, 2, 1):
        big = v >= (1 << shift)
        n += np.where(big, shift, 0)
        v = np.where(big, v >> shift, v)
    return n + (v > 0)


def _bucket(u: np.ndarray, direct: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(tokens, raw-bit widths, raw-bit values) of magnitudes u: u < D itself; else, with e = bit_length(u) - 1,
    the token D + (e - log2 D) * 2**MANTISSA + the MANTISSA bits below u's top bit, and e - MANTISSA raw bits."""
    big = u >= direct
    e = np.maximum(_bit_length(u) - 1, 0)
    width = np.where(big, e - MANTISSA, 0)
    mantissa = np.where(big, (u >> width) & ((1 << MANTISSA) - 1), 0)
    base = direct.bit_length() - 1
    tokens = np.where(big, direct + ((e - base) << MANTISSA) + mantissa, u)
    return tokens, width, np.where(big, u & ((1 << width) - 1), 0)


def _unbucket(tokens: np.ndarray, raw: np.ndarray, direct: int) -> np.ndarray:
    """Inverse of _bucket."""
    big = tokens >= direct
    k = np.where(big, tokens - direct, 0)
    width = np.where(big, (k >> MANTISSA) + (direct.bit_length() - 1) - MANTISSA, 0)
    top = (1 << MANTISSA) + (k & ((1 << MANTISSA) - 1))
    return np.where(big, (top << width) | raw, tokens)


def _alphabet(umax: int, direct: int) -> tuple[int, int]:
    """(D, K) for magnitudes up to umax."""
    if umax < direct:
        return umax + 1, umax + 1
    return direct, direct + (umax.bit_length() - direct.bit_length() + 1) * (1 << MANTISSA)


def _refine(group: np.ndarray, hist: np.ndarray, groups: int) -> np.ndarray:
    """Lloyd rounds on channel token histograms [C, K]: each group's table from its channels, then each channel
    to the group whose table codes its tokens in the fewest bits (empty groups keep their channels' old place)."""
    for _ in range(LLOYD_ROUNDS):
        q = _quantize(_group_sum(group, hist, groups)) / TOTAL
        new = np.argmin(-hist @ np.log2(q).T, axis=1)
        if np.array_equal(new, group):
            break
        group = new
    return np.searchsorted(np.unique(group), group).astype(np.int64)  # empty groups dropped


def _group_sum(group: np.ndarray, rows: np.ndarray, groups: int) -> np.ndarray:
    """[groups, ...] sums of rows [C, ...] by each row's group: np.add.at's result in one bincount (the rows hold
    counts, integers in float64, so every sum is exact whatever the order)."""
    flat = rows.reshape(len(rows), -1)
    m = flat.shape[1]
    keys = (group.astype(np.int64)[:, None] * m + np.arange(m)[None, :]).reshape(-1)
    sums = np.bincount(keys, weights=flat.reshape(-1), minlength=groups * m)
    return sums.reshape((groups,) + rows.shape[1:])


def _stack(parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]]) -> tuple[np.ndarray, np.ndarray]:
    """The lanes of several slices as the rows of one [R, T] array (shorter slices padded with invalid cells)."""
    steps = max(p[0].shape[1] for p in parts)
    index = np.zeros((sum(p[4] for p in parts), steps), np.int64)
    valid = np.zeros(index.shape, bool)
    at = 0
    for p in parts:
        index[at:at + p[4], :p[0].shape[1]] = p[0]
        valid[at:at + p[4], :p[0].shape[1]] = p[1]
        at += p[4]
    return index, valid


def _quantize(counts: np.ndarray) -> np.ndarray:
    """12-bit frequencies [T, K] from counts [T, K]: every token >= 1, each row adds up to TOTAL."""
    _t, k = counts.shape
    if k > TOTAL // 2:
        raise FeatcompError(f"rans alphabet of {k} tokens is too large for {PRECISION}-bit frequencies")
    total = counts.sum(axis=1, keepdims=True)
    p = np.where(total > 0, counts / np.maximum(total, 1), 1.0 / k)
    spare = TOTAL - k
    raw = p * spare
    f = np.floor(raw).astype(np.int64)
    left = spare - f.sum(axis=1)
    order = np.argsort(-(raw - f), axis=1, kind="stable")
    bonus = np.arange(k)[None, :] < left[:, None]
    np.put_along_axis(f, order, np.take_along_axis(f, order, axis=1) + bonus, axis=1)
    return f + 1


@dataclass(frozen=True, eq=False)
class RansCoder:
    """The frozen model: per channel a centre and a group; per (group, context) a frequency table."""

    centre: np.ndarray     # [C] int64
    group_of: np.ndarray   # [C] uint8, NO_GROUP for channels not coded
    freq: np.ndarray       # [groups * contexts, K] int64, rows add up to TOTAL
    direct: int
    context_mode: int

    def __post_init__(self) -> None:
        c = len(self.centre)
        if self.group_of.shape != (c,) or self.freq.ndim != 2:
            raise CodecError("rans coder description is inconsistent (channel arrays)")
        if self.context_mode not in CONTEXT_MODES:
            raise CodecError(f"rans context mode {self.context_mode} is not supported")
        rows = self.groups * self.contexts
        if self.freq.shape[0] != rows or rows == 0 and np.any(self.group_of != NO_GROUP):
            raise CodecError("rans coder description is inconsistent (table count)")
        if np.any(self.freq < 1) or np.any(self.freq.sum(axis=1) != TOTAL):
            raise CodecError(f"rans frequency tables must be >= 1 and add up to {TOTAL}")
        live = self.group_of[self.group_of != NO_GROUP]
        if live.size and int(live.max()) >= self.groups:
            raise CodecError("rans coder refers to a group it has no tables for")
        k = self.freq.shape[1]
        if not (1 <= self.direct <= k and (self.direct == k or (self.direct == DIRECT and (k - DIRECT) % (1 << MANTISSA) == 0
                                                                 and k - DIRECT <= 60 << MANTISSA))):
            raise CodecError("rans coder alphabet is inconsistent")

    @property
    def groups(self) -> int:
        live = self.freq.shape[0]
        return live // self.contexts if self.contexts else 0

    @property
    def contexts(self) -> int:
        return CONTEXT_MODES[self.context_mode]

    @property
    def tokens(self) -> int:
        return int(self.freq.shape[1])

    @property
    def live(self) -> np.ndarray:
        return np.flatnonzero(self.group_of != NO_GROUP)

    @property
    def cum(self) -> np.ndarray:
        return np.cumsum(self.freq, axis=1) - self.freq

    def lookup(self) -> np.ndarray:
        """[tables, TOTAL] token of every slot: the decoder's table."""
        return np.stack([np.repeat(np.arange(self.tokens), f) for f in self.freq]) if len(self.freq) else \
            np.zeros((0, TOTAL), np.int64)

    def check_ranges(self, lo: np.ndarray, hi: np.ndarray) -> None:
        """Every coded channel's magnitudes fit the alphabet (FeatcompError if the site and coder disagree)."""
        umax = self._umax(lo, hi)
        if umax.size and _alphabet(int(umax.max()), self.direct)[1] > self.tokens:
            raise FeatcompError("rans coder alphabet does not cover the site's symbol ranges")

    def _umax(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        live = self.live
        a = lo[live].astype(np.int64) - self.centre[live]
        b = hi[live].astype(np.int64) - self.centre[live]
        return np.where(a >= 0, b, np.where(b <= 0, -a, np.maximum(2 * b, -2 * a - 1)))

    # --- description -------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        c = len(self.centre)
        has_centre = bool(np.any(self.centre != 0))
        parts = [_HEAD.pack(FORMAT, self.direct, self.tokens, self.groups, self.context_mode, c, int(has_centre))]
        if has_centre:
            parts.append(self.centre.astype("<i2").tobytes())
        nibbles = np.concatenate([self.group_of.astype(np.uint8), np.zeros(c % 2, np.uint8)])
        parts.append(((nibbles[0::2] << 4) | nibbles[1::2]).astype(np.uint8).tobytes())
        parts.append((self.freq - 1).astype("<u2").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> RansCoder:
        """Inverse of to_bytes; anything malformed is a CodecError."""
        if len(data) < _HEAD.size:
            raise CodecError("rans coder description is truncated")
        fmt, direct, k, groups, mode, c, flags = _HEAD.unpack_from(data)
        if fmt != FORMAT or flags > 1 or mode not in CONTEXT_MODES:
            raise CodecError(f"rans coder description format {fmt} (mode {mode}, flags {flags}) is not supported")
        rows = groups * CONTEXT_MODES[mode]
        need = _HEAD.size + 2 * c * flags + (c + 1) // 2 + 2 * rows * k
        if len(data) != need:
            raise CodecError(f"rans coder description is {len(data)} bytes, its header implies {need}")
        at = _HEAD.size
        centre = np.frombuffer(data, "<i2", c, at).astype(np.int64) if flags else np.zeros(c, np.int64)
        at += 2 * c * flags
        packed = np.frombuffer(data, np.uint8, (c + 1) // 2, at)
        group_of = np.stack([packed >> 4, packed & 15], axis=1).reshape(-1)[:c].astype(np.uint8)
        at += (c + 1) // 2
        freq = np.frombuffer(data, "<u2", rows * k, at).astype(np.int64).reshape(rows, k) + 1
        return cls(centre, group_of, freq, direct, mode)

    # --- tokens and contexts ---------------------------------------------------------------------------
    def _magnitudes(self, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Magnitudes u [C_live, n] of a slice's symbols s [C, n] (ranges checked)."""
        live = self.live
        v = s[live].astype(np.int64)
        if np.any((v < lo[live, None]) | (v > hi[live, None])):
            raise FeatcompError("symbols outside their channel ranges cannot be rans coded")
        v = v - self.centre[live, None]
        a = (lo[live].astype(np.int64) - self.centre[live])[:, None]
        b = (hi[live].astype(np.int64) - self.centre[live])[:, None]
        return np.where(a >= 0, v, np.where(b <= 0, -v, np.where(v >= 0, 2 * v, -2 * v - 1)))

    def _values(self, u: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Inverse of _magnitudes for the live channels: symbols [C_live, n]; CodecError when out of range."""
        live = self.live
        a = (lo[live].astype(np.int64) - self.centre[live])[:, None]
        b = (hi[live].astype(np.int64) - self.centre[live])[:, None]
        v = np.where(a >= 0, u, np.where(b <= 0, -u, np.where(u % 2 == 0, u // 2, -(u + 1) // 2)))
        s = v + self.centre[live, None]
        if np.any((s < lo[live, None]) | (s > hi[live, None])):
            raise CodecError("rans bitstream value out of range for its channel")
        return s

    def _context(self, left: np.ndarray, prev: np.ndarray) -> np.ndarray:
        if self.context_mode == 0:
            return np.zeros_like(left)
        if self.context_mode == 1:
            return left
        if self.context_mode == 2:
            return prev
        return 3 * left + prev

    def _lane_layout(self, tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(tables [L, T], valid [L, T], lanes, chunk) of one slice's tokens [C_live, n], padded with 0."""
        c, n = tokens.shape
        lanes, chunk = lanes_of(n)
        padded = np.zeros((c, lanes * chunk), np.int64)
        padded[:, :n] = tokens
        cube = padded.reshape(c, lanes, chunk)
        cls = magnitude_class(cube)
        left = np.zeros_like(cls)
        left[:, :, 1:] = cls[:, :, :-1]
        prev = np.zeros_like(cls)
        prev[1:] = cls[:-1]
        ctx = self._context(left, prev) + (self.group_of[self.live].astype(np.int64) * self.contexts)[:, None, None]
        valid = np.zeros((c, lanes * chunk), bool)
        valid[:, :n] = True
        table = (ctx * self.tokens + cube).transpose(1, 0, 2).reshape(lanes, c * chunk)
        return table, valid.reshape(c, lanes, chunk).transpose(1, 0, 2).reshape(lanes, c * chunk), lanes, chunk

    # --- the coder --------------------------------------------------------------------------------------
    def _prepare(self, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(table-token index [L, T], valid [L, T], raw-bit widths, raw-bit values, lanes) of one slice."""
        tokens, widths, raw = _bucket(self._magnitudes(s, lo, hi), self.direct)
        index, valid, lanes, chunk = self._lane_layout(tokens)
        # raw bits in step-then-lane order: [C, lanes, chunk] -> [C, chunk, lanes]
        c, n = tokens.shape
        order = np.full((c, lanes * chunk), -1, np.int64)
        order[:, :n] = np.arange(c * n).reshape(c, n)
        flat = order.reshape(c, lanes, chunk).transpose(0, 2, 1).reshape(-1)
        flat = flat[flat >= 0]
        return index, valid, widths.reshape(-1)[flat], raw.reshape(-1)[flat], lanes

    def _encode(self, index: np.ndarray, valid: np.ndarray, collect: bool) -> tuple[np.ndarray, np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
        """Run the encoder over rows (lanes of any number of slices) [R, T], last step first.
        Returns (final states [R], words emitted per row [R], and if collect the (step, rows, words) per step)."""
        rows, steps = index.shape
        freq, cum = self.freq.reshape(-1), self.cum.reshape(-1)
        f_all = np.where(valid, freq[index], TOTAL)   # an invalid cell encodes nothing: f = TOTAL, cum = 0
        c_all = np.where(valid, cum[index], 0)
        x = np.full(rows, LOWER, np.int64)
        emitted = np.zeros(rows, np.int64)
        out: list[tuple[int, np.ndarray, np.ndarray]] = []
        for t in range(steps - 1, -1, -1):
            f = f_all[:, t]
            emit = x >= (f << (32 - PRECISION))
            if collect:
                who = np.flatnonzero(emit)
                if who.size:
                    out.append((t, who, x[who] & 0xFFFF))
            emitted += emit
            x = np.where(emit, x >> WORD, x)
            q = x // f
            x = (q << PRECISION) + (x - q * f) + c_all[:, t]
        return x, emitted, out

    def payload(self, s: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> bytes:
        """One slice's bytes for its symbols s [C, n]; lo, hi [C] the channel ranges."""
        return self.payloads([s], lo, hi)[0]

    def payloads(self, slices: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> list[bytes]:
        """The bytes of each slice, all slices encoded together (one step loop for all their lanes)."""
        if not len(self.live):  # nothing coded: empty slices, as read expects (not L lane states of an empty lane)
            return [b""] * len(slices)
        parts = [self._prepare(s, lo, hi) for s in slices]
        if not parts:
            return []
        index, valid = _stack(parts)
        states, _, steps = self._encode(index, valid, collect=True)
        owner = np.repeat(np.arange(len(parts)), [p[4] for p in parts])
        if steps:
            t = np.concatenate([np.full(len(who), step) for step, who, _ in steps])
            rows = np.concatenate([who for _, who, _ in steps])
            words = np.concatenate([w for _, _, w in steps])
            order = np.lexsort((rows, t, owner[rows]))  # per slice: steps in increasing order, lanes in order
            words, first = words[order], np.searchsorted(owner[rows][order], np.arange(len(parts) + 1))
        else:
            words, first = np.zeros(0, np.int64), np.zeros(len(parts) + 1, np.int64)
        out, at = [], 0
        for k, p in enumerate(parts):
            writer = bitstream.BitWriter()
            writer.uint_var(p[3], p[2])
            out.append(states[at:at + p[4]].astype("<u4").tobytes()
                       + words[first[k]:first[k + 1]].astype("<u2").tobytes() + writer.tobytes())
            at += p[4]
        return out

    def payload_bytes(self, slices: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> list[int]:
        """len(payload(s)) for each slice, all slices encoded together (one step loop for all their lanes)."""
        if not len(self.live):
            return [0] * len(slices)
        parts = [self._prepare(s, lo, hi) for s in slices]
        if not parts:
            return []
        index, valid = _stack(parts)
        _, emitted, _ = self._encode(index, valid, collect=False)
        sizes, at = [], 0
        for p in parts:
            words = int(emitted[at:at + p[4]].sum())
            sizes.append(4 * p[4] + 2 * words + (int(p[2].sum()) + 7) // 8)
            at += p[4]
        return sizes

    def read(self, payload: memoryview, n: int, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        """Inverse of payload: int64 [C, n] symbols (channels not coded are left at lo); CodecError if corrupt."""
        c_all = len(self.centre)
        live = self.live
        c = len(live)
        out = np.repeat(lo.astype(np.int64)[:, None], n, axis=1)
        if c == 0 or n == 0:
            if len(payload):
                raise CodecError(f"rans slice has {len(payload)} unexpected bytes")
            return out
        lanes, chunk = lanes_of(n)
        data = bytes(payload)
        if len(data) < 4 * lanes:
            raise CodecError(f"rans slice truncated: {len(data)} bytes cannot hold {lanes} lane states")
        x = np.frombuffer(data, "<u4", lanes).astype(np.int64)
        if np.any(x < LOWER):
            raise CodecError("rans slice is corrupted (a lane state is below 2**16)")
        body = data[4 * lanes:]
        words = np.frombuffer(body, "<u2", len(body) // 2).astype(np.int64)
        lookup, freq, cum = self.lookup(), self.freq, self.cum
        tokens = np.zeros((c, lanes, chunk), np.int64)
        cls = np.zeros((c, lanes, chunk), np.int64)
        valid = (np.arange(lanes)[:, None] * chunk + np.arange(chunk)[None, :]) < n   # [L, chunk]
        group = self.group_of[live].astype(np.int64) * self.contexts
        cursor = 0
        for ci in range(c):
            for j in range(chunk):
                left = cls[ci, :, j - 1] if j else np.zeros(lanes, np.int64)
                prev = cls[ci - 1, :, j] if ci else np.zeros(lanes, np.int64)
                ctx = self._context(left, prev) + group[ci]
                slot = x & (TOTAL - 1)
                tok = lookup[ctx, slot]
                on = valid[:, j]
                tok = np.where(on, tok, 0)
                new = freq[ctx, tok] * (x >> PRECISION) + slot - cum[ctx, tok]
                x = np.where(on, new, x)
                need = np.flatnonzero(x < LOWER)
                if need.size:
                    if cursor + need.size > len(words):
                        raise CodecError("rans slice truncated: the coder needs more words than the slice holds")
                    x[need] = (x[need] << WORD) | words[cursor:cursor + need.size]
                    cursor += need.size
                tokens[ci, :, j] = tok
                cls[ci, :, j] = magnitude_class(tok)
        if np.any(x != LOWER):
            raise CodecError("rans slice is corrupted (the lane states do not return to their start)")
        flat = tokens.transpose(0, 2, 1)[:, valid.T].reshape(-1)        # step-then-lane order
        big = flat >= self.direct
        widths = np.where(big, ((flat - self.direct) >> MANTISSA) + (self.direct.bit_length() - 1) - MANTISSA, 0)
        reader = bitstream.BitReader(memoryview(body)[2 * cursor:])
        raw = reader.uint_var(widths)
        reader.finish()
        u_flat = _unbucket(flat, raw, self.direct)
        # back to raster order [C, n]: step-then-lane within a channel is (j, l), position l*chunk + j
        pos = (np.arange(lanes)[None, :] * chunk + np.arange(chunk)[:, None])[valid.T]
        u = np.zeros((c, n), np.int64)
        u[:, pos] = u_flat.reshape(c, -1)
        out[live] = self._values(u, lo, hi)
        del c_all
        return out

    # --- calibration ---------------------------------------------------------------------------------
    @classmethod
    def fit(cls, samples: np.ndarray, lo: np.ndarray, hi: np.ndarray, live: np.ndarray, centre: np.ndarray,
            bands: np.ndarray) -> tuple[RansCoder, float]:
        """The cheapest model for calibration samples [N, C, H*W] (symbols), by estimated bytes per sample
        including the coder description: (coder, estimated bytes per sample, payloads plus description)."""
        n_s, c, hw = samples.shape
        w = hw // max(1, int(bands[-1]))
        live_idx = np.flatnonzero(live)
        centre = np.where(live, centre, 0).astype(np.int64)
        probe = cls(centre, np.where(live, 0, NO_GROUP).astype(np.uint8), np.full((1, 1), TOTAL), 1, 0)
        umax = int(probe._umax(lo, hi).max()) if live_idx.size else 0
        direct, k = _alphabet(umax, DIRECT)
        if not live_idx.size:
            coder = cls(centre, np.full(c, NO_GROUP, np.uint8), np.zeros((0, 1), np.int64), 1, 0)
            return coder, float(len(coder.to_bytes()))
        # tokens and neighbour classes of every band, as the coder will see them
        toks: list[np.ndarray] = []
        lefts: list[np.ndarray] = []
        prevs: list[np.ndarray] = []
        extra, states = 0.0, 0
        a_live = (lo[live_idx].astype(np.int64) - centre[live_idx])[:, None]
        b_live = (hi[live_idx].astype(np.int64) - centre[live_idx])[:, None]
        for a, b in itertools.pairwise(bands):
            # all samples of a band at once (the same tokens and classes as one sample at a time)
            n = int(b - a) * w
            v = samples[:, live_idx, int(a) * w:int(b) * w].astype(np.int64)
            if np.any((v < lo[live_idx, None]) | (v > hi[live_idx, None])):
                raise FeatcompError("symbols outside their channel ranges cannot be rans coded")
            v = v - centre[live_idx, None]
            u = np.where(a_live >= 0, v, np.where(b_live <= 0, -v, np.where(v >= 0, 2 * v, -2 * v - 1)))
            t, widths, _ = _bucket(u, direct)
            lanes, chunk = lanes_of(n)
            padded = np.zeros((n_s, len(live_idx), lanes * chunk), np.int64)
            padded[:, :, :n] = t
            cube = padded.reshape(n_s, len(live_idx), lanes, chunk)
            cl = magnitude_class(cube)
            left = np.zeros_like(cl)
            left[..., 1:] = cl[..., :-1]
            prev = np.zeros_like(cl)
            prev[:, 1:] = cl[:, :-1]
            keep = (np.arange(lanes * chunk) < n).reshape(lanes, chunk)
            for part, out in ((cube, toks), (left, lefts), (prev, prevs)):
                out.append(part[:, :, keep].transpose(1, 0, 2).reshape(len(live_idx), -1))
            extra += sum(float(one.sum()) / 8 + 0.5 for one in widths)
            states += 4 * lanes * n_s
        tok = np.concatenate(toks, axis=1)      # [C_live, N * n_total]
        left = np.concatenate(lefts, axis=1)
        prev = np.concatenate(prevs, axis=1)
        fixed = (extra + states) / n_s
        # one joint histogram (channel, left class, previous-channel class, token); every model is counted from it
        nlive = len(live_idx)
        cells = ((np.arange(nlive, dtype=np.int64)[:, None] * 3 + left) * 3 + prev) * k + tok
        joint = np.bincount(cells.reshape(-1), minlength=nlive * 9 * k).reshape(nlive, 3, 3, k).astype(np.float64)
        # channel order by entropy of their tokens, for grouping
        per_channel = joint.sum(axis=(1, 2))
        p = per_channel / per_channel.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            entropy = -np.sum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
        rank = np.argsort(np.argsort(entropy, kind="stable"), kind="stable")
        best: tuple[float, RansCoder] | None = None
        for wanted in (1, 2, 4, 8, MAX_GROUPS):
            if wanted > nlive:
                continue
            group_live = _refine((rank * wanted // nlive).astype(np.int64), per_channel, wanted)
            groups = int(group_live.max()) + 1
            by_group = _group_sum(group_live, joint, groups)  # [groups, 3, 3, K]: each mode's tables are its sums
            per_mode = {0: by_group.sum(axis=(1, 2)), 1: by_group.sum(axis=2), 2: by_group.sum(axis=1),
                        3: by_group}
            for mode, nctx in CONTEXT_MODES.items():
                counts = per_mode[mode].reshape(groups * nctx, k)
                freq = _quantize(counts)
                bits = -float(np.sum(counts * np.log2(freq / TOTAL)))
                group_of = np.full(c, NO_GROUP, np.uint8)
                group_of[live_idx] = group_live
                coder = cls(centre, group_of, freq, direct, mode)
                cost = bits / 8 / n_s + fixed + len(coder.to_bytes())
                if best is None or cost < best[0]:
                    best = (cost, coder)
        assert best is not None
        return best[1], best[0]
