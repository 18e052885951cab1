"""Transform-VLC: calibrated channel transform + uniform quantizer + static variable-length code.

After Chmiel et al. ("Feature Map Transform Coding for Energy-Efficient CNN Inference"), done the
way a deployed codec must be: every parameter is calibrated once and frozen, the bits are real
bitstream bits, and the side information (bases, centres, code tables) is counted.

The arithmetic half is the same integer pipeline as DCT-CM (and runs in the same kind of ONNX
function, TvlcEncode/TvlcDecode): an 8-bit quantization with a calibrated clip, then per pixel and
per group of G channels an *integer* transform, then per coefficient a step, rounding and a clip
range. The transform of group k is round(2**B * V_k^T), V_k the eigenvectors of the calibration
covariance of that group's channels (PCA/KLT, strongest first), or a DCT-II, or the identity; B is
the largest precision at which every product sum stays an exact float32 integer, so the symbols are
bit-exact in numpy, ONNX Runtime and TVM. One step Delta (in 8-bit units, orthonormal scale) serves
every coefficient of a site: for MSE that is the high-rate optimum after a decorrelating transform.
A coefficient whose energy is not worth its bits gets cmin == cmax: it costs nothing and decodes to
its calibrated constant.

The coder half (numpy here, the reference that defines the bitstream):
- each coefficient channel ("plane", H*W values of one sample in raster order) has a calibrated
  centre, its most frequent symbol: the calibrated mean for unimodal coefficients, the zero of sparse
  ones. The coder codes symbol - centre;
- planes are grouped into table classes by their calibrated entropy (half-bit bins); one static,
  length-limited canonical Huffman table per class (huffman.py) codes tokens: a nonzero level v is
  the token v, a run of r values equal to the centre (1 <= r <= RUN_MAX, runs never cross planes)
  is the token 0 for r = 1 and hi + r - 1 otherwise (hi: the class's highest level, which is the
  table's lo + symbol count - RUN_MAX; longer runs are cut into runs of RUN_MAX, then the rest). Runs are what
  lets a near-constant coefficient cost far less than the one bit per value a symbol-by-symbol
  code cannot go below.

Payload of each slice (a band of rows, see bitstream.py): one byte-aligned plane with the token
count of each class that has live planes (class order; each count MSB first in bit_length(planes * rows
* W) bits), then per such class one Huffman plane holding the tokens of its planes' rows in the band, in
channel order. Runs do not cross slices either: every slice decodes on its own. Constant planes
(NO_TABLE) are not in the stream and decode to cmin (== cmax). Bit-level layout: docs/bitstream.md.

Instead of the Huffman tokens, a site can code its slices with the context-modelled rANS coder (rans.py,
codec id + 128): calibration (coder="auto") keeps whichever gives fewer real bytes on the whole samples.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featcomp.codecs import bitstream, huffman
from featcomp.codecs.base import ActivationStats, Candidate, FoldFactors, pick, sqnr_db, storage_dtype
from featcomp.codecs.dctcm import clip_scale, compact, dct_matrix
from featcomp.codecs.huffman import HuffmanTable
from featcomp.codecs.rans import NO_GROUP, RansCoder
from featcomp.errors import CodecError, FeatcompError

CODEC_ID = 2
TRANSFORMS = ("pca", "dct", "none")
CODERS = ("auto", "own", "huffman", "rans")  # entropy coder: the cheaper per site (auto), or one of them (own = huffman)
RUN_MAX = 64               # longest zero run one token stands for
MAX_CODE_LENGTH = 16       # longest Huffman codeword
EXACT = float(1 << 24)     # float32 holds every integer below this exactly
MAX_BASIS_BITS = 14
RANGE_QUANTILE = 0.9999    # coefficient ranges cover this fraction of calibration values
MIN_QUANTILE_SAMPLES = 4096  # fewer pixel vectors than this: full ranges, and no coefficient made constant
ENTROPY_BIN = 0.5          # bits: planes whose entropies fall in one bin share a table
NO_TABLE = 255             # table class of a constant plane (nothing coded)
SPATIAL_VALUES = 1 << 18   # whole-sample values kept for fitting run-length tables
_RD_SLOPE = 2.0 * math.log(2.0) / 12.0  # dD/dR of a uniform quantizer at high rate, per step^2
_CODER_HEAD = struct.Struct("<BHBH")  # format 1, channels, table count, RUN_MAX


# --------------------------------------------------------------------------------------------- tokens

def tokens_of(v: np.ndarray, hi: int) -> np.ndarray:
    """Tokens of planes v [P, HW] of centred symbols: nonzero levels as themselves, zero runs as run tokens."""
    p, hw = v.shape
    flat = v.reshape(-1).astype(np.int64)
    n = flat.size
    zero = flat == 0
    at_plane_start = (np.arange(n) % hw) == 0 if hw else np.zeros(n, bool)
    prev_zero = np.concatenate([[False], zero[:-1]])
    start = zero & (~prev_zero | at_plane_start)
    starts = np.flatnonzero(start)
    run_id = np.cumsum(start) - 1
    lengths = np.bincount(run_id[zero], minlength=len(starts))
    chunks = -(-lengths // RUN_MAX)
    run_of = np.repeat(np.arange(len(starts)), chunks)
    k = np.arange(len(run_of)) - np.repeat(np.cumsum(chunks) - chunks, chunks)
    size = np.minimum(RUN_MAX, lengths[run_of] - k * RUN_MAX)
    out = np.zeros(n, np.int64)
    used = ~zero
    out[starts[run_of] + k * RUN_MAX] = np.where(size == 1, 0, hi + size - 1)
    used[starts[run_of] + k * RUN_MAX] = True
    out[~zero] = flat[~zero]
    return out[used]


def values_of(tokens: np.ndarray, hi: int, count: int) -> np.ndarray:
    """Inverse of tokens_of: the count centred values the tokens stand for (CodecError if they don't)."""
    run = tokens > hi
    lengths = np.where(run, tokens - hi + 1, 1)
    total = int(lengths.sum())
    if total != count:
        raise CodecError(f"transform-vlc tokens stand for {total} values, the planes hold {count}")
    return np.repeat(np.where(run, 0, tokens), lengths)


def dead_zone_round(u: np.ndarray, theta: float | np.floating, centre: np.ndarray) -> np.ndarray:
    """round(u) with a dead zone of rounding offset theta toward centre (integer-valued, broadcast against u):
    max(rint(u - theta), min(rint(u + theta), centre)), i.e. rint(u - theta) above the centre and
    rint(u + theta) below it. Values within 0.5 + theta of the centre become the centre, which the coder codes
    cheapest (zero runs), and every other value moves by at most one level toward it: fewer bits for a little
    more distortion on Laplacian-like coefficients. At theta = 0 it is rint(u) exactly, for any centre. The ops
    compute it in u's precision (float32) in this order, so numpy, ONNX Runtime and TIR agree bit for bit."""
    if not theta:
        return np.rint(u)
    t = np.asarray(theta, u.dtype)
    return np.maximum(np.rint(u - t), np.minimum(np.rint(u + t), np.asarray(centre, u.dtype)))


# ---------------------------------------------------------------------------------------------- coder

@dataclass(frozen=True, eq=False)
class Coder:
    """The frozen entropy coder of one site: per plane a centre and a table class, and the tables."""

    centre: np.ndarray     # [C] int: subtracted from each plane's symbols
    table_of: np.ndarray   # [C] uint8: table class of each plane, NO_TABLE for constant planes
    tables: tuple[HuffmanTable, ...]

    def hi(self, j: int) -> int:
        """Highest level of class j: the table spans lo .. hi + RUN_MAX - 1 (levels, then run tokens)."""
        t = self.tables[j]
        return t.lo + len(t.lengths) - RUN_MAX

    def to_bytes(self) -> bytes:
        parts = [_CODER_HEAD.pack(1, len(self.centre), len(self.tables), RUN_MAX),
                 self.centre.astype("<i2").tobytes(), self.table_of.astype(np.uint8).tobytes()]
        for t in self.tables:
            body = t.to_bytes()
            parts += [struct.pack("<I", len(body)), body]
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> Coder:
        """Inverse of to_bytes; anything malformed is a CodecError."""
        if len(data) < _CODER_HEAD.size:
            raise CodecError("transform-vlc coder description is truncated")
        fmt, c, n, run_max = _CODER_HEAD.unpack_from(data)
        if fmt != 1 or run_max != RUN_MAX:
            raise CodecError(f"transform-vlc coder format {fmt} (runs up to {run_max}) is not supported")
        at = _CODER_HEAD.size
        if len(data) < at + 3 * c:
            raise CodecError("transform-vlc coder description is truncated")
        centre = np.frombuffer(data, "<i2", c, at).astype(np.int64)
        table_of = np.frombuffer(data, np.uint8, c, at + 2 * c).copy()
        at += 3 * c
        tables = []
        for _ in range(n):
            if len(data) < at + 4:
                raise CodecError("transform-vlc coder description is truncated")
            (size,) = struct.unpack_from("<I", data, at)
            if len(data) < at + 4 + size:
                raise CodecError("transform-vlc coder description is truncated")
            tables.append(HuffmanTable.from_bytes(data[at + 4:at + 4 + size]))
            at += 4 + size
        if at != len(data):
            raise CodecError("transform-vlc coder description has trailing bytes")
        coder = cls(centre, table_of, tuple(tables))
        coder.check(c)
        return coder

    def check(self, channels: int) -> None:
        if self.centre.shape != (channels,) or self.table_of.shape != (channels,):
            raise CodecError(f"transform-vlc coder needs one centre and table class per channel ({channels})")
        live = self.table_of[self.table_of != NO_TABLE]
        if live.size and int(live.max()) >= len(self.tables):
            raise CodecError("transform-vlc coder refers to a table it does not have")
        for j, t in enumerate(self.tables):
            if len(t.lengths) < RUN_MAX or not t.lo <= 0 <= self.hi(j):
                raise CodecError("transform-vlc table does not span its levels and run tokens")


# ----------------------------------------------------------------------------------------------- site

@dataclass(frozen=True, eq=False)
class TvlcSite:
    """Frozen parameters of one site; the array fields are exactly the inputs of the ONNX ops."""

    shape: tuple[int, int, int]
    scale: np.float32
    qmin: np.float32
    qmax: np.float32
    transform: np.ndarray      # [K, G, G] int16
    step: np.float32           # of every coefficient: delta * 2**B (rows of transform have norm ~2**B)
    cmin: np.ndarray           # [K, G] int16
    cmax: np.ndarray           # [K, G] int16
    gain: np.float32           # scale * step / 4**B: decode = transform^T * gain
    coder: Coder | RansCoder   # Huffman tokens with zero runs, or the context-modelled rANS coder (rans.py)
    kind: str = "pca"
    deadzone: np.float32 = np.float32(0.0)  # rounding offset theta toward each plane's centre (encoder only)

    codec_name = "transform-vlc"

    def __post_init__(self) -> None:
        c = self.shape[0]
        k, g = self.cmin.shape
        if k * g != c or self.transform.shape not in ((k, g, g), (1, g, g)) or self.transform.dtype != np.int16:
            raise FeatcompError(f"transform-vlc site with {c} channels has inconsistent group shapes")
        if self.cmin.shape != (k, g) or self.cmax.shape != (k, g) or np.any(self.cmin > self.cmax):
            raise FeatcompError("transform-vlc coefficient ranges are inconsistent")
        if not (np.isfinite(self.deadzone) and 0.0 <= self.deadzone < 0.5):
            raise FeatcompError(f"transform-vlc dead zone must be in [0, 0.5), got {float(self.deadzone)}")
        constant = (self.cmin == self.cmax).reshape(c)
        if isinstance(self.coder, RansCoder):
            if len(self.coder.centre) != c or np.any(constant != (self.coder.group_of == NO_GROUP)):
                raise FeatcompError("transform-vlc rans coder and coefficient ranges disagree on constant planes")
            self.coder.check_ranges(self.cmin.reshape(c), self.cmax.reshape(c))
            return
        self.coder.check(c)
        if np.any(constant != (self.coder.table_of == NO_TABLE)):
            raise FeatcompError("transform-vlc coder and coefficient ranges disagree on constant planes")
        for j in range(len(self.coder.tables)):
            planes = self.coder.table_of == j
            if not planes.any():
                continue
            lo = self.cmin.reshape(c)[planes] - self.coder.centre[planes]
            hi = self.cmax.reshape(c)[planes] - self.coder.centre[planes]
            if lo.min() < self.coder.tables[j].lo or hi.max() > self.coder.hi(j):
                raise FeatcompError("transform-vlc table range does not cover its planes' coefficient ranges")

    # --- derived -------------------------------------------------------------------------------
    @property
    def group(self) -> int:
        return int(self.cmin.shape[1])

    @property
    def delta(self) -> float:
        """The step in 8-bit units at orthonormal scale: step / 2**B, B from the transform's row norm."""
        return float(self.step) / self._unit

    @property
    def _unit(self) -> float:
        """2**B: the transform's row norm rounded to a power of two (T / 2**B is orthonormal)."""
        norm = float(np.sqrt(np.sum(np.square(self.transform[0, 0].astype(np.float64)))))
        return 2.0 ** round(math.log2(norm))

    @property
    def storage_dtype(self) -> np.dtype:
        """int8/uint8 when every coefficient range fits, else int16 (fine steps of wide PCA coefficients)."""
        return storage_dtype(self.cmin, self.cmax)

    @property
    def live(self) -> np.ndarray:
        """[C] bool: the planes the stream codes (the others are constant)."""
        if isinstance(self.coder, RansCoder):
            return self.coder.group_of != NO_GROUP
        return self.coder.table_of != NO_TABLE

    @property
    def codec_id(self) -> int:
        """The header's codec id: CODEC_ID, with the RANS bit when the rANS coder codes the slices."""
        return CODEC_ID | (bitstream.RANS if isinstance(self.coder, RansCoder) else 0)

    @property
    def mode(self) -> str:
        if self.kind.startswith("folded"):
            return self.kind
        return "none" if self.group == 1 else f"{self.kind}{self.group}"

    def folded(self) -> TvlcSite:
        """This site once its transform is folded into the convs around it (passes/fold.py): the same symbols
        of z = (T / 2**B) x, quantized directly with the step Delta * scale, as a G = 1 site."""
        c = self.shape[0]
        step = np.float32(self.delta * float(self.scale))
        return TvlcSite(shape=self.shape, scale=step, qmin=np.float32(-32767), qmax=np.float32(32767),
                        transform=np.ones((1, 1, 1), np.int16), step=np.float32(1.0),
                        cmin=self.cmin.reshape(c, 1).copy(), cmax=self.cmax.reshape(c, 1).copy(), gain=step,
                        coder=self.coder, kind=f"folded-{self.kind}{self.group}", deadzone=self.deadzone)

    def fold_factors(self) -> FoldFactors | None:
        """T / 2**B per group and folded() (None at G = 1: nothing to fold)."""
        if self.group == 1:
            return None
        k, g = self.cmin.shape
        blocks = np.broadcast_to(self.transform.astype(np.float64), (k, g, g)) / self._unit
        return FoldFactors(blocks=blocks, plain=self.folded())

    @property
    def param_id(self) -> int:
        crc = zlib.crc32(struct.pack("<3H", *self.shape))
        for a in (self.scale, self.qmin, self.qmax, self.transform, self.step, self.cmin, self.cmax, self.gain):
            crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
        return zlib.crc32(self.coder.to_bytes(), crc)

    @property
    def centre(self) -> np.ndarray:
        """[C] float32: each plane's centre (the coder's), which the dead zone rounds toward."""
        return self.coder.centre.astype(np.float32)

    @property
    def decode_matrix(self) -> np.ndarray:
        """[K, G, G] float32, computed as the decode op computes it: transpose(float(transform)) * gain."""
        return np.swapaxes(self.transform.astype(np.float32), 1, 2) * self.gain

    # --- the ops ---------------------------------------------------------------------------------
    def symbols(self, x: np.ndarray) -> np.ndarray:
        """The encode op: float [N,C,H,W] (or [C,H,W]) -> int16 symbols of the same shape."""
        x = np.asarray(x, dtype=np.float32)
        shape = x.shape
        n = int(np.prod(shape[:-3], dtype=np.int64))
        c, h, w = map(int, shape[-3:])
        k, g = self.cmin.shape
        q = np.clip(np.rint(x.reshape(n, c, h, w) / self.scale), self.qmin, self.qmax)
        y = self.transform.astype(np.float32) @ q.reshape(n, k, g, h * w)
        coef = dead_zone_round(y / self.step, self.deadzone, self.centre.reshape(k, g, 1))
        coef = np.minimum(np.maximum(coef, self.cmin[..., None].astype(np.float32)), self.cmax[..., None].astype(np.float32))
        return coef.reshape(shape).astype(np.int16)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """The decode op: int16 symbols -> float activations."""
        shape = symbols.shape
        n = int(np.prod(shape[:-3], dtype=np.int64))
        c, h, w = map(int, shape[-3:])
        k, g = self.cmin.shape
        out = self.decode_matrix @ symbols.astype(np.float32).reshape(n, k, g, h * w)
        return out.reshape(shape)

    # --- the bitstream -----------------------------------------------------------------------------
    def classes(self) -> list[tuple[int, np.ndarray]]:
        """(class, its planes) for every class with live planes, in class order (Huffman coder only)."""
        assert isinstance(self.coder, Coder)
        table_of = self.coder.table_of
        return [(j, np.flatnonzero(table_of == j)) for j in range(len(self.coder.tables)) if np.any(table_of == j)]

    def count_widths(self, classes: list[tuple[int, np.ndarray]], values: int | None = None) -> np.ndarray:
        """Bit widths of the classes' token counts in a slice of `values` values per plane (default H*W)."""
        n = self.shape[1] * self.shape[2] if values is None else values
        return np.array([int(len(planes) * n).bit_length() for _, planes in classes], np.int64)

    def _slices(self, symbols: np.ndarray) -> list[np.ndarray]:
        """Centred symbols [C, rows*W] of each band of rows of the container (bitstream.bands)."""
        if symbols.shape != self.shape:
            raise FeatcompError(f"transform-vlc site expects one tensor of shape {self.shape}, got {symbols.shape}")
        c, h, w = self.shape
        s = symbols.reshape(c, h * w).astype(np.int64) - self.coder.centre[:, None]
        rows = bitstream.bands(self.shape)
        return [s[:, a * w:b * w] for a, b in zip(rows[:-1], rows[1:])]

    def _tokens(self, s: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Tokens of each class with live planes, for one slice's centred symbols s [C, n]."""
        assert isinstance(self.coder, Coder)
        return [(j, tokens_of(s[planes], self.coder.hi(j))) for j, planes in self.classes()]

    def _ranges(self) -> tuple[np.ndarray, np.ndarray]:
        c = self.shape[0]
        return self.cmin.reshape(c).astype(np.int64), self.cmax.reshape(c).astype(np.int64)

    def _payload(self, s: np.ndarray) -> bytes:
        if isinstance(self.coder, RansCoder):  # the rANS coder takes the symbols themselves
            return self.coder.payload(s + self.coder.centre[:, None], *self._ranges())
        assert isinstance(self.coder, Coder)
        tokens = self._tokens(s)
        writer = bitstream.BitWriter()
        writer.uint_var(np.array([len(t) for _, t in tokens], np.int64), self.count_widths(self.classes(), s.shape[1]))
        for j, t in tokens:
            huffman.write(writer, t, self.coder.tables[j])
        return writer.tobytes()

    def pack(self, symbols: np.ndarray) -> bytes:
        if isinstance(self.coder, RansCoder):  # all slices in one encoder pass
            slices = [s + self.coder.centre[:, None] for s in self._slices(symbols)]
            return bitstream.write(self.codec_id, self.param_id, self.shape, self.coder.payloads(slices, *self._ranges()))
        return bitstream.write(self.codec_id, self.param_id, self.shape, [self._payload(s) for s in self._slices(symbols)])

    def _read_payload(self, payload: memoryview, n: int) -> np.ndarray:
        """Inverse of _payload: int64 [C, n] symbols of one slice."""
        if isinstance(self.coder, RansCoder):
            return self.coder.read(payload, n, *self._ranges())
        assert isinstance(self.coder, Coder)
        reader = bitstream.BitReader(payload)
        c = self.shape[0]
        classes = self.classes()
        counts = reader.uint_var(self.count_widths(classes, n))
        cmin, cmax = self.cmin.reshape(c).astype(np.int64), self.cmax.reshape(c).astype(np.int64)
        out = np.repeat(cmin[:, None], n, axis=1)  # constant planes: cmin == cmax
        for (j, planes), count in zip(classes, counts):
            if count > len(planes) * n:
                raise CodecError(f"transform-vlc class {j} claims {count} tokens for {len(planes) * n} values")
            t = huffman.read(reader, int(count), self.coder.tables[j])
            v = values_of(t, self.coder.hi(j), len(planes) * n).reshape(len(planes), n)
            out[planes] = v + self.coder.centre[planes, None]
        reader.finish()
        if np.any((out < cmin[:, None]) | (out > cmax[:, None])):
            raise CodecError("transform-vlc bitstream value out of range for its coefficient")
        return out

    def unpack_slice(self, data: bytes, k: int) -> tuple[int, int, np.ndarray]:
        """Slice k alone: (first row, end row, int16 symbols [C, rows, W]); the other slices are not read."""
        box = bitstream.open_stream(data, self.codec_id, self.param_id, self.shape)
        return bitstream.decode_band(box, k, self.shape, self._read_payload)

    def unpack(self, data: bytes) -> np.ndarray:
        box = bitstream.open_stream(data, self.codec_id, self.param_id, self.shape)
        return bitstream.decode_all(box, self.shape, self._read_payload)

    def coded_bytes(self, symbols: np.ndarray) -> int:
        """Exact len(pack(symbols)) from counts alone (no packing)."""
        if isinstance(self.coder, RansCoder):
            slices = [s + self.coder.centre[:, None] for s in self._slices(symbols)]
            return bitstream.overhead_bytes(self.shape) + sum(self.coder.payload_bytes(slices, *self._ranges()))
        classes = self.classes()
        total = bitstream.overhead_bytes(self.shape)
        for s in self._slices(symbols):
            total += (int(self.count_widths(classes, s.shape[1]).sum()) + 7) // 8
            for j, t in self._tokens(s):
                total += (self.coder.tables[j].size_bits(t) + 7) // 8
        return total

    def entropy_bits(self, symbols: np.ndarray) -> float:
        """Order-0 empirical entropy of each coded plane's symbols, summed: the limit of a per-plane symbol code."""
        c, h, w = self.shape
        s = symbols.reshape(c, h * w).astype(np.int64)
        live = self.live
        if not live.any():
            return 0.0
        s = s[live] - s[live].min(axis=1, keepdims=True)
        span = int(s.max()) + 1
        counts = np.bincount((np.arange(len(s))[:, None] * span + s).reshape(-1), minlength=len(s) * span)
        p = counts[counts > 0] / (h * w)
        return float(-np.sum(counts[counts > 0] * np.log2(p)))

    def coded_bytes_batch(self, symbols: np.ndarray) -> list[int]:
        """coded_bytes of each sample of symbols [N, C, H, W]; the rANS coder counts all samples in one pass."""
        if not isinstance(self.coder, RansCoder) or len(symbols) < 2:
            return [self.coded_bytes(one) for one in symbols]
        slices = [s + self.coder.centre[:, None] for one in symbols for s in self._slices(one)]
        sizes = self.coder.payload_bytes(slices, *self._ranges())
        count = len(slices) // len(symbols)
        return [bitstream.overhead_bytes(self.shape) + sum(sizes[i:i + count]) for i in range(0, len(sizes), count)]

    def encode(self, x: np.ndarray) -> bytes:
        return self.pack(self.symbols(np.asarray(x).reshape(self.shape)))

    def decode(self, data: bytes) -> np.ndarray:
        return self.dequantize(self.unpack(data))

    # --- storage in an ONNX model ------------------------------------------------------------------
    def side_arrays(self) -> dict[str, np.ndarray]:
        k, g = self.cmin.shape
        return {
            "scale": np.asarray(self.scale, np.float32),
            "qmin": np.asarray(self.qmin, np.float32),
            "qmax": np.asarray(self.qmax, np.float32),
            "transform": self.transform,
            "step": np.asarray(self.step, np.float32),
            "cmin": compact(self.cmin.reshape(k, g, 1)),  # int8 when the ranges fit (the op casts to float)
            "cmax": compact(self.cmax.reshape(k, g, 1)),
            "gain": np.asarray(self.gain, np.float32),
            # encoder only (the decoder, the bitstream and param_id ignore them): one int8 byte each when off
            "centre": compact(self.centre.reshape(k, g, 1)) if self.deadzone else np.zeros((1, 1, 1), np.int8),
            "deadzone": compact(np.asarray(self.deadzone, np.float32)),
        }

    @property
    def side_bytes(self) -> int:
        """Bytes the ops and the coder read per inference: the arrays as stored, and the coder description."""
        return sum(a.nbytes for a in self.side_arrays().values()) + len(self.coder.to_bytes())

    def attributes(self) -> dict[str, Any]:
        out = {"coder": self.coder.to_bytes(), "transform_kind": self.kind, "shape": list(self.shape)}
        if isinstance(self.coder, RansCoder):
            out["entropy_coder"] = "rans"  # absent: the Huffman token coder (models written before rans)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> TvlcSite:
        t = arrays["transform"]
        g = t.shape[-1]
        k = arrays["cmin"].size // g
        coder = attributes["coder"]
        kind = attributes.get("transform_kind", b"pca")
        entropy = attributes.get("entropy_coder", b"huffman")
        entropy = entropy.decode() if isinstance(entropy, bytes) else str(entropy)
        if entropy not in ("huffman", "rans"):
            raise FeatcompError(f"the model's transform-vlc site uses entropy coder '{entropy}', which this featcomp does not know")
        site = cls(
            shape=tuple(int(v) for v in attributes["shape"]),  # type: ignore[arg-type]
            scale=np.float32(arrays["scale"]), qmin=np.float32(arrays["qmin"]), qmax=np.float32(arrays["qmax"]),
            transform=t.astype(np.int16).reshape(-1, g, g), step=np.float32(arrays["step"]),
            cmin=arrays["cmin"].reshape(k, g).astype(np.int16), cmax=arrays["cmax"].reshape(k, g).astype(np.int16),
            gain=np.float32(arrays["gain"]),
            coder=(RansCoder if entropy == "rans" else Coder).from_bytes(bytes(coder)),
            kind=kind.decode() if isinstance(kind, bytes) else str(kind),
            deadzone=np.float32(arrays.get("deadzone", 0.0)),  # absent: a model written before the dead zone
        )
        if site.deadzone and not np.array_equal(np.asarray(arrays.get("centre"), np.float32).reshape(-1), site.centre):
            raise FeatcompError("the model's transform-vlc dead-zone centres differ from its coder's centres")
        return site

    def describe(self) -> dict[str, Any]:
        live = self.live
        rans = isinstance(self.coder, RansCoder)
        return {
            "mode": self.mode,
            "coder": "rans" if rans else "huffman",
            "transform": self.kind if self.group > 1 else "none",
            "group": self.group,
            "signed": bool(self.qmin < 0),
            "scale": float(self.scale),
            "step": float(self.delta),
            "deadzone": float(self.deadzone),
            "coded_channels": int(live.sum()),
            "constant_channels": int((~live).sum()),
            "tables": len(self.coder.freq) if isinstance(self.coder, RansCoder) else len(self.coder.tables),
            "coder_bytes": len(self.coder.to_bytes()),
        }


# -------------------------------------------------------------------------------------------- policy

@dataclass(frozen=True)
class TransformVlc:
    """Calibration policy. The front spans groups x steps; `step` fixes Delta (8-bit units) at every site.

    transform: "pca" (calibrated KLT per group), "dct" (integer DCT-II per group) or "none" (G = 1).
    groups: the group sizes tried (each must divide C; the identity G = 1 is always tried as well).
    deadzone: the largest rounding offset tried (see dead_zone_round); every group and step is also tried
    with offsets deadzone / 2 and deadzone (rounded to float16 values, stored in 2 bytes), and the site's
    real-bits front keeps whichever wins. 0 tries only plain rounding. With a fixed `step`: no dead zone.
    """

    transform: str = "pca"
    groups: tuple[int, ...] = (8, 32)
    grid: int = 10
    step: float | None = None
    sqnr_db: float = 30.0
    coder: str = "auto"
    deadzone: float = 0.0
    name: str = "transform-vlc"
    stats_options: dict[str, Any] = field(default_factory=lambda: {"covariance": True, "spatial_values": SPATIAL_VALUES})

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORMS:
            raise FeatcompError(f"unknown transform '{self.transform}'; choose one of: {', '.join(TRANSFORMS)}")
        if self.coder not in CODERS:
            raise FeatcompError(f"unknown entropy coder '{self.coder}'; choose one of: {', '.join(CODERS)}")
        if self.coder == "own":
            object.__setattr__(self, "coder", "huffman")
        if self.step is not None and not (math.isfinite(self.step) and self.step > 0):
            raise FeatcompError(f"--step must be a positive number (8-bit quantization steps), got {self.step}")
        if not (math.isfinite(self.deadzone) and 0.0 <= self.deadzone < 0.5):
            raise FeatcompError(f"deadzone must be a rounding offset in [0, 0.5), got {self.deadzone}")

    @property
    def offsets(self) -> list[float]:
        """The dead-zone offsets each group and step is tried with (0 first)."""
        if self.step is not None or not self.deadzone:
            return [0.0]
        return [0.0, float(np.float16(self.deadzone / 2)), float(np.float16(self.deadzone))]

    def calibrate(self, stats: ActivationStats) -> TvlcSite:
        front = self.candidates(stats)
        chosen = front[0] if self.step is not None else pick(front, self.sqnr_db)
        site = chosen.site
        assert isinstance(site, TvlcSite)
        return site

    def candidates(self, stats: ActivationStats) -> list[Candidate]:
        """The Pareto front (fewer bits <-> lower SQNR), cheapest first. Bits include side information."""
        sample = stats.sample
        signed = stats.minimum < 0
        qmax = 127.0 if signed else 255.0
        scale = clip_scale(sample, max(abs(stats.minimum), abs(stats.maximum)), signed)
        fit = _Fitter(stats, scale, signed, qmax, self.coder)
        c = stats.shape[0]
        groups = [1] + ([g for g in self.groups if 1 < g <= c and c % g == 0] if self.transform != "none" else [])
        found = []
        for g in groups:
            basis, bits = fit.basis(self.transform, g)
            y = fit.transformed_spatial(basis)
            deltas = [self.step] if self.step is not None else list(np.geomspace(1.0 if g == 1 else 0.5, 64.0, self.grid))
            found += [fit.candidate(basis, bits, y, float(d), self.transform if g > 1 else "none", theta)
                      for d in deltas for theta in self.offsets]
        if self.step is not None:
            return sorted(found, key=lambda cand: cand.bits_per_value)[:1]
        front: list[Candidate] = []
        for cand in sorted(found, key=lambda cand: (cand.bits_per_value, -cand.sqnr_db)):
            if not front or cand.sqnr_db > front[-1].sqnr_db:
                front.append(cand)
        return front


def integer_basis(vectors: np.ndarray, peak: float) -> tuple[np.ndarray, int]:
    """(round(2**B * vectors) [K, G, G] as int16, B) with the largest B whose product sums stay exact in float32."""
    worst = float(np.abs(vectors).sum(axis=-1).max())
    for bits in range(MAX_BASIS_BITS, -1, -1):
        t = np.rint(vectors * (1 << bits))
        if peak * float(np.abs(t).sum(axis=-1).max()) < EXACT and np.all(np.linalg.slogdet(t)[0] != 0):
            return t.astype(np.int16), bits
    raise FeatcompError(f"no exact integer transform exists for basis rows of L1 norm {worst:.1f}")


class _Fitter:
    """Shared work of one site's candidates: the 8-bit quantized sample, whole samples, covariance."""

    def __init__(self, stats: ActivationStats, scale: np.float32, signed: bool, qmax: float, coder: str = "auto") -> None:
        self.stats, self.scale, self.signed, self.qmax, self.coder = stats, scale, signed, qmax, coder
        self.qmin = -qmax if signed else 0.0
        self.sample = stats.sample
        self.spatial = stats.spatial
        self.q = np.clip(np.rint(self.sample / scale), self.qmin, qmax).astype(np.float32)
        self.q_spatial = np.clip(np.rint(self.spatial / scale), self.qmin, qmax).astype(np.float32)

    def transformed_spatial(self, t: np.ndarray) -> np.ndarray:
        """T q of the whole samples, [n, K, G, HW] float32 (exact integers): shared by every step."""
        n, c, h, w = self.q_spatial.shape
        g = t.shape[-1]
        return t.astype(np.float32) @ self.q_spatial.reshape(n, c // g, g, h * w)

    def basis(self, kind: str, g: int) -> tuple[np.ndarray, int]:
        """The integer transform [K, G, G] of each group, and its precision B (rows have norm ~2**B)."""
        c = self.stats.shape[0]
        k = c // g
        if g == 1:
            return np.ones((1, 1, 1), np.int16), 0  # broadcast over the C groups of one channel
        if kind == "dct":
            t, bits = integer_basis(dct_matrix(g)[None], self.qmax)
            return np.repeat(t, k, axis=0), bits
        _, cov = self.stats.channel_covariance
        blocks = np.stack([cov[i * g:(i + 1) * g, i * g:(i + 1) * g] for i in range(k)])
        _, vecs = np.linalg.eigh(blocks)              # ascending eigenvalues, vectors in columns
        rows = np.swapaxes(vecs[:, :, ::-1], 1, 2)    # strongest first, one basis vector per row
        sign = np.sign(np.take_along_axis(rows, np.abs(rows).argmax(axis=2)[..., None], axis=2))
        return integer_basis(rows * np.where(sign == 0, 1.0, sign), self.qmax)

    def candidate(self, t: np.ndarray, bits: int, y_spatial: np.ndarray, delta: float, kind: str,
                  theta: float = 0.0) -> Candidate:
        c = self.stats.shape[0]
        g = t.shape[-1]
        k = c // g
        step = np.float32(delta * (1 << bits))
        s = len(self.q)
        y = np.einsum("kfg,skg->skf", np.broadcast_to(t, (k, g, g)).astype(np.float64), self.q.reshape(s, k, g))
        coef = np.rint(y / step)                                       # [S, K, G]
        if s >= MIN_QUANTILE_SAMPLES:  # ranges clipped at a high quantile: rare outliers cost escapes
            lo = np.floor(np.quantile(coef, 1 - RANGE_QUANTILE, axis=0))
            hi = np.ceil(np.quantile(coef, RANGE_QUANTILE, axis=0))
        else:  # too few samples to trust a quantile: every value the 8-bit stage can produce
            reach = np.abs(np.broadcast_to(t, (k, g, g)).astype(np.float64)).sum(axis=2) * self.qmax / float(step)
            lo = -np.ceil(reach) if self.signed or g > 1 else np.zeros((k, g))
            hi = np.ceil(reach)
        coef = np.clip(coef, lo, hi).reshape(s, c)
        lo, hi = lo.reshape(c), hi.reshape(c)
        centre = _mode(coef.astype(np.int64))
        if theta:  # ranges and centres as plain rounding gives them; the dead zone rounds toward the centre
            coef = np.clip(dead_zone_round((y / step).reshape(s, c), theta, centre), lo, hi)
        # make constant the coefficients whose distortion saving is not worth their bits
        entropy = _plane_entropy(coef.astype(np.int64))
        yo = (y / (1 << bits)).reshape(s, c)  # orthonormal units (8-bit steps)
        gain = np.mean(np.square(yo - centre * delta), axis=0) - np.mean(np.square(yo - coef * delta), axis=0)
        constant = (lo == hi) | ((gain < _RD_SLOPE * delta * delta * entropy) & (s >= MIN_QUANTILE_SAMPLES))
        lo = np.where(constant, centre, lo)
        hi = np.where(constant, centre, hi)
        table_of = np.where(constant, NO_TABLE, np.minimum(np.floor(entropy / ENTROPY_BIN), NO_TABLE - 1)).astype(np.int64)
        used = np.unique(table_of[table_of != NO_TABLE])
        table_of = np.where(constant, NO_TABLE, np.searchsorted(used, table_of)).astype(np.uint8)
        arith = self._site_arrays(t, bits, step, lo, hi)
        # tables from the whole samples' symbols (spatial order matters to the runs), computed as the op does
        n = len(y_spatial)
        sym = dead_zone_round(y_spatial / step, np.float32(theta), centre.reshape(k, g, 1))
        sym = np.minimum(np.maximum(sym, arith["cmin"][..., None].astype(np.float32)), arith["cmax"][..., None].astype(np.float32))
        sym = sym.reshape(n, c, -1).astype(np.int64) - centre[None, :, None]
        # runs end where the stream's slices (bands of rows) end, so tokens are taken per slice
        w = self.stats.shape[2]
        rows = bitstream.bands(self.stats.shape)
        spans = [(int(a) * w, int(b) * w) for a, b in zip(rows[:-1], rows[1:])]
        tables, tokens = [], []
        for j in range(len(used)):
            planes = np.flatnonzero(table_of == j)
            lv = int((lo[planes] - centre[planes]).min())
            hv = int((hi[planes] - centre[planes]).max())
            per_slice = [tokens_of(one[planes][:, a:b], hv) for one in sym for a, b in spans]
            ends = np.array([lv, hv + RUN_MAX - 1])
            tables.append(HuffmanTable.fit(np.concatenate([*per_slice, ends]), MAX_CODE_LENGTH))
            tokens.append(per_slice)
        site = TvlcSite(shape=self.stats.shape, **arith, coder=Coder(centre, table_of, tuple(tables)), kind=kind,
                        deadzone=np.float32(theta))
        counts = sum((int(site.count_widths(site.classes(), b - a).sum()) + 7) // 8 for a, b in spans)
        coded = n * (counts + bitstream.overhead_bytes(self.stats.shape) - bitstream.HEADER_BYTES) + sum(
            (table.size_bits(one) + 7) // 8 for table, per in zip(tables, tokens) for one in per)
        values = self.spatial[0].size
        bits = 8.0 * (coded / n + site.side_bytes) / values
        if self.coder != "huffman":  # the rANS coder, fitted on the same symbols; kept if its real bits are fewer
            raw = sym + centre[None, :, None]
            lo_c, hi_c = site.cmin.reshape(c).astype(np.int64), site.cmax.reshape(c).astype(np.int64)
            model, _ = RansCoder.fit(raw, lo_c, hi_c, ~constant, centre, rows)
            other = replace(site, coder=model)
            slices = [one[:, a:b] for one in raw for a, b in spans]
            rans_coded = n * (bitstream.overhead_bytes(self.stats.shape) - bitstream.HEADER_BYTES) + sum(
                model.payload_bytes(slices, lo_c, hi_c))
            rans_bits = 8.0 * (rans_coded / n + other.side_bytes) / values
            if self.coder == "rans" or rans_bits < bits:
                site, bits = other, rans_bits
        clipped = np.clip(coef, site.cmin.reshape(c), site.cmax.reshape(c))
        decode = np.broadcast_to(site.decode_matrix, (k, g, g)).astype(np.float64)
        recon = np.einsum("kfg,skg->skf", decode, clipped.reshape(s, k, g)).reshape(s, c)
        return Candidate(site, float(bits), sqnr_db(self.sample, recon))

    def _site_arrays(self, t: np.ndarray, bits: int, step: np.float32, lo: np.ndarray, hi: np.ndarray) -> dict[str, Any]:
        g = t.shape[-1]
        k = len(lo) // g
        return {
            "scale": np.float32(self.scale), "qmin": np.float32(self.qmin), "qmax": np.float32(self.qmax),
            "transform": t.astype(np.int16), "step": step,
            "cmin": lo.reshape(k, g).astype(np.int16), "cmax": hi.reshape(k, g).astype(np.int16),
            "gain": np.float32(float(self.scale) * float(step) / 4.0 ** bits),
        }


def _mode(v: np.ndarray) -> np.ndarray:
    """Most frequent value of each column of v [S, C] (the smallest on ties)."""
    lo = v.min(axis=0)
    span = int((v - lo).max()) + 1
    c = v.shape[1]
    counts = np.bincount((np.arange(c) * span + (v - lo)).reshape(-1), minlength=c * span).reshape(c, span)
    return lo + counts.argmax(axis=1)


def _plane_entropy(v: np.ndarray) -> np.ndarray:
    """Order-0 entropy in bits/value of each column of v [S, C]."""
    lo = v.min(axis=0)
    span = int((v - lo).max()) + 1
    s, c = v.shape
    counts = np.bincount((np.arange(c) * span + (v - lo)).reshape(-1), minlength=c * span).reshape(c, span)
    p = counts / s
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.sum(np.where(p > 0, p * np.log2(p), 0.0), axis=1)
