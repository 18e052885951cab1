"""DCT-CM: channel-DCT with masks (after Shi et al., ISCAS 2021), as a calibrated, frozen codec.

Per site the activations are first quantized to 8 bits with a calibrated scale (uint8 after ReLU,
symmetric int8 otherwise; the range is the calibration peak or, for heavy tails, the clip with the
least squared error). Each pixel's channel vector is then cut into groups of G channels and
transformed by an *integer* approximation of the orthonormal DCT-II (G = 1 is the identity: plain
zero-mask coding of the 8-bit values). Coefficient f of every group is divided by its own step,
rounded and clipped to its calibrated range, giving int16 symbols. Because the transform is integer
and every float operation is a single correctly rounded IEEE op (divisions, not multiplications by
a reciprocal, so that graph optimizers cannot fold them into a preceding Conv), any runtime that
follows the same op sequence produces the same symbols bit for bit.

A frequency whose calibration energy is not worth its bits is DROPped (always zero, nothing
stored). Every other channel (channel c carries frequency c mod G) is coded DENSE (every value) or
MASK (a bitmap of nonzeros, then the nonzeros), chosen per channel at calibration, with its own
Golomb-Rice parameter k_c (see rice.py): DENSE codes zigzag(v) for signed ranges and v - cmin
otherwise (zigzag: 0, -1, 1, -2, ... -> 0, 1, 2, 3, ...; a range is signed when its cmin < 0); MASK
codes a sign bit (signed ranges; 1 = negative) and |v| - 1. Channel statistics differ by orders of
magnitude in a CNN (dead channels, dense ones, sparse ones), which is why the choice is per channel.

Payload of each slice (a band of rows, see bitstream.py; the channel flags, bitmaps and values below
are those of the band's rows, n = rows * W values per channel in raster order): five planes, each
starting on a byte boundary, each in channel order (docs/bitstream.md has the bit-level layout):
1. one flag per channel that is not dropped: does this sample's channel hold any nonzero in the band;
2. the nonzero bitmaps (n bits each) of flagged MASK channels;
3. sign bits of the nonzeros of flagged MASK channels with a signed range;
4. Rice remainders (k_c bits) of every coded value (all of a flagged DENSE channel, the nonzeros
   of a flagged MASK channel);
5. Rice quotients of the same values, in unary (q zeros, then a one).

Instead of these planes, a site can code its slices with the context-modelled rANS coder (rans.py, codec
id + 128): calibration (coder="auto") keeps whichever gives fewer real bytes on whole calibration samples.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from featcomp.codecs import bitstream, rice
from featcomp.codecs.base import ActivationStats, Candidate, FoldFactors, pick, sqnr_db, storage_dtype
from featcomp.codecs.rans import NO_GROUP, RansCoder
from featcomp.errors import CodecError, FeatcompError

CODEC_ID = 1
DROP, DENSE, MASK = 0, 1, 2
KIND_NAMES = {DROP: "drop", DENSE: "dense", MASK: "mask"}
TRANSFORM_BITS = 7  # the integer DCT is round(2**7 * orthonormal DCT): exact in float32 for G <= 64
CLIP_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)  # of the calibration peak
RANGE_QUANTILE = 0.9999  # coefficient ranges cover this fraction of calibration values
CODERS = ("auto", "own", "rice", "rans")  # entropy coder: the cheaper per site (auto), or one of them (own = rice)
RANS_EXACT_MARGIN = 0.03  # rANS and Rice this close (relative): count rANS's real bytes to choose
SPATIAL_VALUES = 1 << 18  # whole-sample values kept to fit and measure the rANS coder (its contexts are spatial)
# candidates below this SQNR keep their Rice rating (no rANS fit): the allocators never pick them (their floor,
# featcomp.allocate.MIN_SITE_SQNR_DB, equal by a test), and they cannot change the front above it (see _with_rans_front)
RANS_FLOOR_DB = 12.0
_RD_SLOPE = 2.0 * math.log(2.0) / 12.0  # dD/dR of a uniform quantizer at high rate, per step^2


def _rice_bytes(codes: np.ndarray, k: np.ndarray) -> int:
    """Bytes of the remainder plane plus the unary plane, each byte-aligned."""
    ks = k.astype(np.int64)
    remainder = int(ks.sum())
    unary = int(len(codes) + np.sum(codes.astype(np.int64) >> ks))
    return (remainder + 7) // 8 + (unary + 7) // 8


def dct_matrix(group: int) -> np.ndarray:
    """The orthonormal DCT-II matrix (float64), one frequency per row."""
    n = np.arange(group)
    k = n[:, None]
    t = np.sqrt(2.0 / group) * np.cos(np.pi * (2 * n + 1) * k / (2 * group))
    t[0] /= np.sqrt(2.0)
    return t


def integer_dct(group: int) -> np.ndarray:
    """round(2**TRANSFORM_BITS * DCT-II orthonormal matrix), as float32 holding integers."""
    return np.rint(dct_matrix(group) * (1 << TRANSFORM_BITS)).astype(np.float32)


@dataclass(frozen=True, eq=False)
class DctCmSite:
    """Frozen parameters of one site. The fields are exactly the inputs of the ONNX ops."""

    shape: tuple[int, int, int]
    scale: np.float32
    qmin: np.float32
    qmax: np.float32
    transform: np.ndarray  # [G, G] integer-valued float32
    # step, cmin, cmax: [G] per frequency, shared by every group, or [C] per coefficient (channel c is
    # coefficient c: group c // G, frequency c % G; per-channel steps, see DctCm.channel_steps)
    step: np.ndarray       # float32; 1 for dropped coefficients (their range is [0, 0])
    cmin: np.ndarray       # integer-valued float32
    cmax: np.ndarray
    decode_matrix: np.ndarray  # [G, G], or [C/G, G, G] with per-coefficient steps: scale * inverse(transform) * diag(step)
    kinds: np.ndarray      # [C] uint8 per channel: DROP (its frequency is dropped) / DENSE / MASK
    rice_k: np.ndarray     # [C] uint8: Golomb-Rice parameter per channel
    rans: RansCoder | None = None  # set: the slices are rANS coded (rans.py) instead of the five planes below

    codec_name = "dct-cm"

    def __post_init__(self) -> None:
        c = self.shape[0]
        if c % self.group:
            raise FeatcompError(f"dct-cm group {self.group} does not divide {c} channels")
        if self.kinds.shape != (c,) or self.rice_k.shape != (c,) or np.any(self.rice_k > rice.MAX_K):
            raise FeatcompError(f"dct-cm site needs one coding kind and Rice parameter per channel ({c})")
        g = self.group
        if not (self.step.shape == self.cmin.shape == self.cmax.shape and self.step.shape in ((g,), (c,))):
            raise FeatcompError(f"dct-cm steps and ranges need {g} (per frequency) or {c} (per coefficient) entries each")
        if self.decode_matrix.shape not in ((g, g), (len(self.step) // g, g, g)):
            raise FeatcompError("dct-cm decode matrix does not match the steps' shape")
        dropped = (self.cmin == 0) & (self.cmax == 0)
        if np.any(self.cmin > self.cmax) or np.any((self.kinds == DROP) != dropped[self.coefficient_of]):
            raise FeatcompError("dct-cm parameters are inconsistent (coefficient ranges)")
        if self.rans is not None:
            if len(self.rans.centre) != c or np.any((self.rans.group_of == NO_GROUP) != (self.kinds == DROP)):
                raise FeatcompError("dct-cm rans coder and channel kinds disagree on dropped channels")
            self.rans.check_ranges(*self.channel_ranges())

    # --- derived -------------------------------------------------------------------------------
    @property
    def group(self) -> int:
        return int(self.transform.shape[0])

    @property
    def codec_id(self) -> int:
        """The header's codec id: CODEC_ID, with the RANS bit when the rANS coder codes the slices."""
        return CODEC_ID | (bitstream.RANS if self.rans is not None else 0)

    @property
    def mode(self) -> str:
        return "mask" if self.group == 1 else "dct"

    @property
    def per_channel(self) -> bool:
        """Steps and ranges per coefficient (one per channel) rather than per frequency."""
        return len(self.step) != self.group

    @property
    def coefficient_of(self) -> np.ndarray:
        """[C]: the index into step/cmin/cmax of each channel (c mod G per frequency, c per coefficient)."""
        c = np.arange(self.shape[0])
        return c if self.per_channel else c % self.group

    def _grouped(self, a: np.ndarray) -> np.ndarray:
        """step/cmin/cmax shaped to broadcast against [N, C/G, G, H*W]."""
        return a.reshape(-1, self.group, 1)

    @property
    def storage_dtype(self) -> np.dtype:
        """int8/uint8 when every coefficient range fits (mask mode always: its symbols are 8-bit values)."""
        return storage_dtype(self.cmin, self.cmax)

    @property
    def param_id(self) -> int:
        crc = zlib.crc32(struct.pack("<3H", *self.shape))
        for a in (self.scale, self.qmin, self.qmax, self.transform, self.step, self.cmin, self.cmax,
                  self.decode_matrix, self.kinds, self.rice_k):
            crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
        return crc if self.rans is None else zlib.crc32(self.rans.to_bytes(), crc)

    def fold_factors(self) -> FoldFactors | None:
        """None: dct-cm sites keep their transform in the codec ops (fold is a transform-vlc option)."""
        return None

    # --- the ops ---------------------------------------------------------------------------------
    def symbols(self, x: np.ndarray) -> np.ndarray:
        """The encode op: float [N,C,H,W] (or [C,H,W]) -> int16 symbols of the same shape."""
        x = np.asarray(x, dtype=np.float32)
        shape = x.shape
        x4 = x.reshape((-1,) + tuple(shape[-3:]))
        n, c, h, w = map(int, x4.shape)
        g = self.group
        q = np.clip(np.rint(x4 / self.scale), self.qmin, self.qmax)
        y = self.transform @ q.reshape(n, c // g, g, h * w)
        coef = np.rint(y / self._grouped(self.step))
        coef = np.minimum(np.maximum(coef, self._grouped(self.cmin)), self._grouped(self.cmax))
        return coef.reshape(shape).astype(np.int16)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """The decode op: int16 symbols -> float activations."""
        shape = symbols.shape
        s4 = symbols.reshape((-1,) + tuple(shape[-3:]))
        n, c, h, w = map(int, s4.shape)
        g = self.group
        out = self.decode_matrix @ s4.astype(np.float32).reshape(n, c // g, g, h * w)
        return out.reshape(shape)

    # --- the bitstream -----------------------------------------------------------------------------
    def _streams(self, symbols: np.ndarray) -> np.ndarray:
        """Symbols as [C, H*W]; channel c carries frequency c mod G."""
        if symbols.shape != self.shape:
            raise FeatcompError(f"dct-cm site expects one tensor of shape {self.shape}, got {symbols.shape}")
        c, h, w = self.shape
        return symbols.reshape(c, h * w).astype(np.int64)

    def channel_ranges(self) -> tuple[np.ndarray, np.ndarray]:
        """Each channel's coefficient range (channel c carries frequency c mod G), as int64 [C] lo, hi."""
        f = self.coefficient_of
        return self.cmin[f].astype(np.int64), self.cmax[f].astype(np.int64)

    def _layout(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(any-flags of live channels, masked channels, coded positions [C, HW], coded values' channels)."""
        live = self.kinds != DROP
        flagged = live & (s != 0).any(axis=1)
        masked = flagged & (self.kinds == MASK)
        coded = np.zeros(s.shape, bool)
        coded[flagged & (self.kinds == DENSE)] = True
        coded[masked] = s[masked] != 0
        return flagged[live], masked, coded, np.nonzero(coded)[0]

    def _to_codes(self, values: np.ndarray, channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(Rice inputs, sign bits of masked signed values) for coded values of the given channels."""
        lo, _ = self.channel_ranges()
        lo, is_mask = lo[channel], self.kinds[channel] == MASK
        signed = lo < 0
        dense = np.where(signed, np.where(values >= 0, 2 * values, -2 * values - 1), values - lo)
        masked = np.abs(values) - 1
        return np.where(is_mask, masked, dense), (values < 0)[is_mask & signed]

    def _slices(self, s: np.ndarray) -> list[np.ndarray]:
        """s [C, H*W] cut into the container's bands of rows, each [C, rows*W]."""
        w = self.shape[2]
        rows = bitstream.bands(self.shape)
        return [s[:, a * w:b * w] for a, b in zip(rows[:-1], rows[1:])]

    def _payload(self, s: np.ndarray) -> bytes:
        """One slice's five planes, for its values s [C, n]."""
        if self.rans is not None:
            return self.rans.payload(s, *self.channel_ranges())
        flags, masked, coded, channel = self._layout(s)
        codes, signs = self._to_codes(s[coded], channel)
        writer = bitstream.BitWriter()
        writer.bits(flags)
        writer.bits(s[masked] != 0)
        writer.bits(signs)
        rice.write(writer, codes, self.rice_k[channel])
        return writer.tobytes()

    def pack(self, symbols: np.ndarray) -> bytes:
        s = self._streams(symbols)
        if self.rans is not None:  # all slices in one encoder pass
            return bitstream.write(self.codec_id, self.param_id, self.shape,
                                   self.rans.payloads(self._slices(s), *self.channel_ranges()))
        return bitstream.write(self.codec_id, self.param_id, self.shape, [self._payload(one) for one in self._slices(s)])

    def _read_payload(self, payload: memoryview, n: int) -> np.ndarray:
        """Inverse of _payload: int64 [C, n] values of one slice."""
        if self.rans is not None:
            return self.rans.read(payload, n, *self.channel_ranges())
        reader = bitstream.BitReader(payload)
        c = self.shape[0]
        live = self.kinds != DROP
        flagged = np.zeros(c, bool)
        flagged[live] = reader.bits(int(live.sum())).astype(bool)
        masked = flagged & (self.kinds == MASK)
        coded = np.zeros((c, n), bool)
        coded[flagged & (self.kinds == DENSE)] = True
        coded[masked] = reader.bits(int(masked.sum()) * n).reshape(-1, n).astype(bool)
        channel = np.nonzero(coded)[0]
        lo, hi = self.channel_ranges()
        lo_v, hi_v, is_mask = lo[channel], hi[channel], self.kinds[channel] == MASK
        signed = lo_v < 0
        negative = np.zeros(len(channel), bool)
        negative[is_mask & signed] = reader.bits(int(np.count_nonzero(is_mask & signed))).astype(bool)
        u = rice.read(reader, len(channel), self.rice_k[channel])
        reader.finish()
        dense = np.where(signed, np.where(u % 2 == 0, u // 2, -(u + 1) // 2), u + lo_v)
        values = np.where(is_mask, np.where(negative, -(u + 1), u + 1), dense)
        if np.any((values < lo_v) | (values > hi_v)):
            raise CodecError("bitstream value out of range for its channel")
        out = np.zeros((c, n), np.int64)
        out[coded] = values
        if np.any(flagged & ~(out != 0).any(axis=1)):
            raise CodecError("bitstream flags a channel as nonzero but codes only zeros")
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
        total = bitstream.overhead_bytes(self.shape)
        if self.rans is not None:
            return total + sum(self.rans.payload_bytes(self._slices(self._streams(symbols)), *self.channel_ranges()))
        for s in self._slices(self._streams(symbols)):
            flags, masked, coded, channel = self._layout(s)
            codes, signs = self._to_codes(s[coded], channel)
            planes = (len(flags), int(masked.sum()) * s.shape[1], len(signs))
            total += sum((p + 7) // 8 for p in planes) + _rice_bytes(codes, self.rice_k[channel])
        return total

    def coded_bytes_batch(self, symbols: np.ndarray) -> list[int]:
        """coded_bytes of each sample of symbols [N, C, H, W]; either coder counts all samples in one pass."""
        if len(symbols) < 2:
            return [self.coded_bytes(one) for one in symbols]
        if self.rans is None:
            return self._rice_bytes_batch(symbols)
        slices = [s for one in symbols for s in self._slices(self._streams(one))]
        sizes = self.rans.payload_bytes(slices, *self.channel_ranges())
        count = len(slices) // len(symbols)
        return [bitstream.overhead_bytes(self.shape) + sum(sizes[i:i + count]) for i in range(0, len(sizes), count)]

    def _rice_bytes_batch(self, symbols: np.ndarray) -> list[int]:
        """coded_bytes of each sample [N, C, H, W] under the Rice planes, counted for all samples at once: per band
        the flag, bitmap and sign planes' bits and the Rice remainder and unary bits, as _payload writes them."""
        if symbols.shape[1:] != self.shape:
            raise FeatcompError(f"dct-cm site expects tensors of shape {self.shape}, got {symbols.shape[1:]}")
        c, h, w = self.shape
        sym = symbols.reshape(len(symbols), c, h * w).astype(np.int64)
        lo, _ = self.channel_ranges()
        live, is_mask = self.kinds != DROP, self.kinds == MASK
        signed_mask = is_mask & (lo < 0)
        k = self.rice_k.astype(np.int64)
        codes = np.where(is_mask[:, None], np.abs(sym) - 1,
                         np.where((lo < 0)[:, None], np.where(sym >= 0, 2 * sym, -2 * sym - 1), sym - lo[:, None]))
        quotient = codes >> k[:, None]
        nonzero = sym != 0
        total = np.full(len(sym), bitstream.overhead_bytes(self.shape), np.int64)
        flag_bytes = (int(live.sum()) + 7) // 8
        rows = bitstream.bands(self.shape)
        for a, b in zip(rows[:-1], rows[1:]):
            part = slice(int(a) * w, int(b) * w)
            nz = nonzero[:, :, part]
            flagged = live & nz.any(axis=2)                                   # [N, C]
            coded = np.where(is_mask[:, None], nz, True) & flagged[:, :, None]  # [N, C, n]
            count = coded.sum(axis=2)
            bitmap = (flagged & is_mask).sum(axis=1) * (part.stop - part.start)
            signs = (count * (flagged & signed_mask)).sum(axis=1)
            remainder = (count * k).sum(axis=1)
            unary = count.sum(axis=1) + np.where(coded, quotient[:, :, part], 0).sum(axis=(1, 2))
            total += flag_bytes + (bitmap + 7) // 8 + (signs + 7) // 8 + (remainder + 7) // 8 + (unary + 7) // 8
        return [int(t) for t in total]

    def encode(self, x: np.ndarray) -> bytes:
        return self.pack(self.symbols(np.asarray(x).reshape(self.shape)))

    def decode(self, data: bytes) -> np.ndarray:
        return self.dequantize(self.unpack(data))

    # --- storage in an ONNX model ------------------------------------------------------------------
    def side_arrays(self) -> dict[str, np.ndarray]:
        """The op inputs as stored: each array in the narrowest type that holds its values exactly (integer
        arrays as int8/int16, steps and the decode matrix as float16 when calibration rounded them to it);
        the ops compute in float32 after a Cast, so the values, the symbols and param_id are unchanged."""
        g = self.group
        return {
            "scale": np.asarray(self.scale, np.float32),
            "qmin": np.asarray(self.qmin, np.float32),
            "qmax": np.asarray(self.qmax, np.float32),
            "transform": compact(self.transform),
            "step": compact(self.step.reshape(-1, g, 1) if self.per_channel else self.step.reshape(g, 1)),
            "cmin": compact(self.cmin.reshape(-1, g, 1) if self.per_channel else self.cmin.reshape(g, 1)),
            "cmax": compact(self.cmax.reshape(-1, g, 1) if self.per_channel else self.cmax.reshape(g, 1)),
            "decode": compact(self.decode_matrix),
        }

    @property
    def side_bytes(self) -> int:
        """Bytes read per inference: the stored op inputs, and one byte per channel for the packer
        (kind << 4 | Rice k: a kind is 2 bits, k <= 15), or the kinds and the rANS coder's description."""
        if self.rans is None:
            return sum(a.nbytes for a in self.side_arrays().values()) + self.shape[0]
        return sum(a.nbytes for a in self.side_arrays().values()) + self.shape[0] + len(self.rans.to_bytes())

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kinds": [int(k) for k in self.kinds], "rice_k": [int(k) for k in self.rice_k],
                               "shape": list(self.shape)}
        if self.rans is not None:
            out["rans"] = self.rans.to_bytes()  # absent: the Rice planes (models written before rans)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> "DctCmSite":
        return cls(
            shape=tuple(int(v) for v in attributes["shape"]),  # type: ignore[arg-type]
            scale=np.float32(arrays["scale"]),
            qmin=np.float32(arrays["qmin"]),
            qmax=np.float32(arrays["qmax"]),
            transform=arrays["transform"].astype(np.float32),
            step=arrays["step"].reshape(-1).astype(np.float32),
            cmin=arrays["cmin"].reshape(-1).astype(np.float32),
            cmax=arrays["cmax"].reshape(-1).astype(np.float32),
            decode_matrix=arrays["decode"].astype(np.float32),
            kinds=np.asarray(attributes["kinds"], dtype=np.uint8),
            rice_k=np.asarray(attributes["rice_k"], dtype=np.uint8),
            rans=RansCoder.from_bytes(bytes(attributes["rans"])) if "rans" in attributes else None,
        )

    def describe(self) -> dict[str, Any]:
        kinds = [KIND_NAMES[int(k)] for k in self.kinds]
        return {
            "mode": self.mode,
            "coder": "rice" if self.rans is None else "rans",
            "group": self.group,
            "signed": bool(self.qmin < 0),
            "scale": float(self.scale),
            "channels": {name: kinds.count(name) for name in ("dense", "mask", "drop")},
            "dropped_frequencies": int(np.count_nonzero((self.cmin == 0) & (self.cmax == 0))),
            "step": float(np.mean(self.step) / self.transform[0, 0]) if self.group == 1 else None,
            "per_channel_steps": self.per_channel,
            "mean_rice_k": float(np.mean(self.rice_k)),
        }


@dataclass(frozen=True)
class DctCm:
    """Calibration policy: per site, the cheapest candidate whose SQNR meets `sqnr_db`.

    Candidates: lossless zero-mask coding of the 8-bit values (always admissible), and for each G in
    `groups` (G = 1 re-quantizes the 8-bit values more coarsely; G > 1 is a channel DCT) a grid of
    `grid` steps. `candidates()` exposes the whole rate-distortion front so that an allocator can
    give each site its own target (see featcomp.allocate).
    """

    sqnr_db: float = 30.0
    groups: tuple[int, ...] = (1, 8, 16)
    grid: int = 12
    coder: str = "auto"
    name: str = "dct-cm"
    stats_options: dict[str, Any] = field(default_factory=lambda: {"spatial_values": SPATIAL_VALUES})
    # exponent a of per-channel steps in zero-mask mode (G = 1): delta_c = delta * (w_c / geomean w)^-a, w_c the
    # channel's consumer sensitivity (ActivationStats.channel_weights); 0.5 is reverse water-filling at high
    # rate. 0 (default): one step per site. With a > 0 every candidate's SQNR is sensitivity-weighted.
    channel_steps: float = 0.0
    # > 0: sites of at least this many pixels (H * W) weight channels by their measured sensitivity
    # (allocate.channel_sensitivities: C model runs per input), the others have one step; 0: consumer weights
    measured_pixels: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.channel_steps) and 0.0 <= self.channel_steps <= 2.0):
            raise FeatcompError(f"channel_steps must be between 0 and 2, got {self.channel_steps}")
        if self.coder not in CODERS:
            raise FeatcompError(f"unknown entropy coder '{self.coder}'; choose one of: {', '.join(CODERS)}")
        if self.coder == "own":
            object.__setattr__(self, "coder", "rice")
        if self.coder == "rice":
            object.__setattr__(self, "stats_options", {})

    def calibrate(self, stats: ActivationStats) -> DctCmSite:
        site = pick(self._candidates(stats, min(self.sqnr_db, RANS_FLOOR_DB)), self.sqnr_db).site
        assert isinstance(site, DctCmSite)
        return site

    def candidates(self, stats: ActivationStats) -> list[Candidate]:
        """The Pareto front (fewer bits <-> lower SQNR), cheapest first, lossless last. Candidates below
        RANS_FLOOR_DB, which no allocator picks, are rated with the Rice planes only (unless coder="rans")."""
        return self._candidates(stats, RANS_FLOOR_DB)

    def _candidates(self, stats: ActivationStats, floor_db: float) -> list[Candidate]:
        """The front, with the rANS coder fitted on the candidates of at least floor_db SQNR."""
        sample = stats.sample
        signed = stats.minimum < 0
        qmax = 127.0 if signed else 255.0
        scale = clip_scale(sample, max(abs(stats.minimum), abs(stats.maximum)), signed)
        q = np.clip(np.rint(sample / scale), -qmax if signed else 0.0, qmax).astype(np.float32)
        c = stats.shape[0]
        weights = channel_weights(stats, q) if self.channel_steps > 0 else None
        found = [_fit(stats.shape, scale, signed, q, sample, 1, None, weights)]
        for g in self.groups:
            if c % g or c < g:
                continue
            low = 1.25 if g == 1 else 0.5
            for delta in np.geomspace(low, 128.0, self.grid):
                found.append(_fit(stats.shape, scale, signed, q, sample, g, float(delta), weights))
                if g == 1 and weights is not None:
                    per = np.clip(float(delta) * weights ** -self.channel_steps, 1.0, 255.0)
                    found.append(_fit(stats.shape, scale, signed, q, sample, g, per, weights))
        front = _front(found)
        if self.coder == "rice" or stats.spatial_values <= 0:
            return front
        force = self.coder == "rans"
        return _front(_with_rans_front(front, stats.spatial, force, -math.inf if force else floor_db))


def _front(found: list[Candidate]) -> list[Candidate]:
    """The Pareto front of candidates (fewer bits <-> lower SQNR), cheapest first."""
    front: list[Candidate] = []
    for cand in sorted(found, key=lambda c: (c.bits_per_value, -c.sqnr_db)):
        if not front or cand.sqnr_db > front[-1].sqnr_db:
            front.append(cand)
    return front


@dataclass(frozen=True)
class _RansFit:
    """A front candidate with its rANS model fitted: symbols [N, C, H*W], Rice and estimated rANS bytes/sample."""

    cand: Candidate
    model: RansCoder
    sym: np.ndarray
    rice_bytes: float
    estimate: float


def _fit_rans(cand: Candidate, spatial: np.ndarray) -> _RansFit:
    site = cand.site
    assert isinstance(site, DctCmSite)
    c, h, w = site.shape
    sym = site.symbols(spatial).reshape(len(spatial), c, h * w).astype(np.int64)
    lo, hi = site.channel_ranges()
    model, cost = RansCoder.fit(sym, lo, hi, site.kinds != DROP, np.zeros(c, np.int64), bitstream.bands(site.shape))
    rice_bytes = sum(site.coded_bytes_batch(sym.reshape(len(sym), *site.shape))) / len(sym)
    return _RansFit(cand, model, sym, rice_bytes, bitstream.overhead_bytes(site.shape) + cost - len(model.to_bytes()))


def _with_rans_front(front: list[Candidate], spatial: np.ndarray, force: bool,
                     floor_db: float = -math.inf) -> list[Candidate]:
    """Each candidate of at least `floor_db` SQNR with the rANS coder fitted on whole calibration samples, if its
    bytes (payload and coder description) are fewer than the Rice planes' on the same samples (or `force`). Its
    bits are the Rice estimate scaled by the rANS/Rice payload ratio, so the front stays on one scale (payload
    only, as the rest).

    Candidates below `floor_db` keep their Rice rating: a pick for a target >= floor_db only looks at candidates
    meeting it, and the Pareto pruning of a candidate only depends on the candidates at or above its SQNR (a
    cheaper one of at least its SQNR drops it; each one's rating is its own), which the floor never touches, so
    the front above the floor, and every such pick, is the same as when every candidate is fitted.

    Running the rANS encoder on every candidate of every front was most of compress time, so a candidate's
    payload is rated by the fit's estimate (ideal code length under the quantized frequencies), corrected by
    the offset to the real bytes measured on one candidate of the front (nearly constant: the final states and
    byte rounding). That reference is the middle one of the candidates with coded channels, fitted even when
    it lies below the floor, so the offset does not depend on the floor. Where rANS and Rice are within
    RANS_EXACT_MARGIN, so the estimate could pick the wrong coder, the real bytes are counted. The bytes a
    compressed model reports are always the real ones."""
    # the reference test of the fits, model.live.any(), read from the candidates: `live` is the index array of the
    # channels that are not dropped, so a candidate whose only coded channel is channel 0 does not count (kept as
    # it was: it only decides which candidate is the reference)
    coded = [i for i, cand in enumerate(front) if np.flatnonzero(_dctcm(cand).kinds != DROP).any()]
    ref = coded[len(coded) // 2] if coded else -1
    fits = {i: _fit_rans(cand, spatial) for i, cand in enumerate(front) if cand.sqnr_db >= floor_db or i == ref}
    offset = 0.0
    if coded:
        one = fits[ref]
        offset = rans_exact_bytes(one.model, one.sym, _dctcm(one.cand)) - one.estimate
    return [_choose(fits[i], offset, force) if cand.sqnr_db >= floor_db else cand for i, cand in enumerate(front)]


def _dctcm(cand: Candidate) -> DctCmSite:
    site = cand.site
    assert isinstance(site, DctCmSite)
    return site


def _choose(fit: _RansFit, offset: float, force: bool) -> Candidate:
    site = fit.cand.site
    assert isinstance(site, DctCmSite)
    other = replace(site, rans=fit.model)  # rice_k kept (not read, not counted): replace(rans=None) compares coders
    rice_total = fit.rice_bytes + site.side_bytes
    rans_bytes = fit.estimate + offset
    if not fit.model.live.any() or abs(rans_bytes + other.side_bytes - rice_total) <= RANS_EXACT_MARGIN * rice_total:
        rans_bytes = rans_exact_bytes(fit.model, fit.sym, site)
    if not force and rans_bytes + other.side_bytes >= rice_total:
        return fit.cand
    scale = rans_bytes / max(fit.rice_bytes, 1.0)
    return Candidate(other, fit.cand.bits_per_value * scale, fit.cand.sqnr_db)


def rans_exact_bytes(model: RansCoder, sym: np.ndarray, site: DctCmSite) -> float:
    """Real coded bytes per sample (without side information) of symbols [N, C, H*W] under `model`."""
    w = site.shape[2]
    rows = bitstream.bands(site.shape)
    lo, hi = site.channel_ranges()
    slices = [one[:, a * w:b * w] for one in sym for a, b in zip(rows[:-1], rows[1:])]
    return bitstream.overhead_bytes(site.shape) + sum(model.payload_bytes(slices, lo, hi)) / len(sym)


def channel_weights(stats: ActivationStats, q: np.ndarray) -> np.ndarray | None:
    """The site's consumer sensitivities [C] normalised to geometric mean 1 over the channels that carry
    signal (so per-channel steps keep the rate of the shared step at high rate); dead channels get 1 (their
    step does not matter); None when the consumers do not give them."""
    w = stats.channel_weights
    if w is None or len(w) != q.shape[1]:
        return None
    live = np.any(q != 0, axis=0) & (w > 0)
    if not live.any():
        return None
    w = np.where(live, w, 1.0)
    return np.asarray(w / np.exp(np.mean(np.log(w[live]))), np.float64)


def weighted_sqnr_db(sample: np.ndarray, recon: np.ndarray, weights: np.ndarray | None) -> float:
    """SQNR with each channel's error weighted by its sensitivity (weights normalised to mean 1)."""
    if weights is None:
        return sqnr_db(sample, recon)
    w = weights / np.mean(weights)
    err = float(np.sum(np.square(sample.astype(np.float64) - recon) * w[None, :]))
    signal = float(np.sum(np.square(sample, dtype=np.float64)))
    return 10.0 * math.log10(max(signal, 1e-30) / max(err, 1e-30))


def compact(a: np.ndarray) -> np.ndarray:
    """a (float32 values) in the narrowest stored type that holds every value exactly: int8, int16 for
    integers, float16, else float32 as it is. Casting back to float32 restores a bit for bit."""
    a = np.asarray(a, np.float32)
    if np.all(np.isfinite(a)) and np.all(a == np.rint(a)):
        for dtype in (np.int8, np.int16):
            info = np.iinfo(dtype)
            if a.size == 0 or (info.min <= a.min() and a.max() <= info.max):
                return a.astype(dtype)
    half = a.astype(np.float16)
    if np.array_equal(half.astype(np.float32), a):
        return half
    return a


def to_half(a: np.ndarray, tolerance: float = 2.0 ** -11) -> np.ndarray:
    """float32 a rounded to float16 values when that moves no entry by more than `tolerance` of the largest
    entry (no overflow, no entry lost to the subnormal range), else a unchanged."""
    a = np.asarray(a, np.float32)
    with np.errstate(over="ignore"):
        half = a.astype(np.float16).astype(np.float32)
    peak = float(np.max(np.abs(a), initial=0.0))
    if np.all(np.isfinite(half)) and float(np.max(np.abs(half - a), initial=0.0)) <= tolerance * peak:
        return half
    return a


def clip_scale(sample: np.ndarray, peak: float, signed: bool) -> np.float32:
    """The 8-bit step with the least squared error on the sample: the max, or a clip below a heavy tail."""
    if peak <= 0:
        return np.float32(1.0)
    qmax = 127.0 if signed else 255.0
    best, best_err = np.float32(peak / qmax), np.inf
    for fraction in CLIP_FRACTIONS:
        scale = np.float32(peak * fraction / qmax)
        err = float(np.sum(np.square(sample - scale * np.clip(np.rint(sample / scale), -qmax if signed else 0, qmax))))
        if err < best_err:
            best, best_err = scale, err
    return best


def _fit(shape: tuple[int, int, int], scale: np.float32, signed: bool, q: np.ndarray, sample: np.ndarray,
         group: int, delta: float | np.ndarray | None, weights: np.ndarray | None = None) -> Candidate:
    """The site for one (group, step), with per-channel coding chosen by expected bits.

    delta None means lossless: identity transform, unit step, the full 8-bit range. An array delta [C]
    (G = 1 only) gives every channel its own step. `weights` [C] weight the SQNR per channel.
    """
    s, c = q.shape
    qmax = 127.0 if signed else 255.0
    per_channel = isinstance(delta, np.ndarray)
    if delta is None:
        t = np.ones((1, 1), np.float32)
        step = np.ones(1)
        coef = q.reshape(-1, 1)
        lo, hi = np.array([-qmax if signed else 0.0]), np.array([qmax])
        deltas = np.ones(1)
    else:
        t = integer_dct(group)
        deltas = np.asarray(delta, np.float64).reshape(-1)
        if per_channel and (group != 1 or len(deltas) != c):
            raise FeatcompError("per-channel steps are for zero-mask mode (G = 1), one per channel")
        step = to_half((deltas * np.linalg.norm(t.astype(np.float64), axis=1)).astype(np.float32))
        width = c if per_channel else group
        # G = 1: one exact product per value (a [S*C, 1] x [1, 1] matmul is the same value, many times slower)
        y = q * t[0, 0] if group == 1 else q.reshape(s, c // group, group) @ t.T
        coef = np.rint(y.reshape(-1, width) / step.astype(np.float32))
        # Ranges are clipped at a high quantile: rare outliers are cheap to clip and costly to allow.
        hi = np.ceil(np.quantile(np.abs(coef), RANGE_QUANTILE, axis=0))
        coef = np.clip(coef, -hi, hi)
        lo = -hi if (signed or group > 1) else np.zeros_like(hi)
    # per channel (channel = group * G + frequency): the cheaper of DENSE and MASK, with its own Rice k
    v = coef.astype(np.int64).reshape(s, c)
    index = np.arange(c) if per_channel else np.arange(c) % group  # each channel's step/range entry
    lo_c = lo[index].astype(np.int64)
    has_sign = lo_c < 0
    k_dense, dense = rice.best_k(np.where(has_sign, np.where(v >= 0, 2 * v, -2 * v - 1), v - lo_c))
    nz = v != 0
    k_mask, mask_bits = rice.best_k(np.maximum(np.abs(v) - 1, 0), nz)
    masked = 1.0 + nz.mean(axis=0) * (mask_bits + has_sign)
    use_mask = masked < dense
    kinds = np.where(use_mask, MASK, DENSE).astype(np.uint8)
    ks = np.where(use_mask, k_mask, k_dense)
    cost = np.where(use_mask, masked, dense)
    if delta is not None:
        entries = len(step)
        entry_cost = np.bincount(index, weights=cost, minlength=entries) / (c // entries)
        energy = np.mean(np.square(coef * deltas, dtype=np.float64), axis=0)
        dropped = (hi == 0) | (energy < _RD_SLOPE * deltas * deltas * entry_cost)
        kinds[dropped[index]], cost[dropped[index]] = DROP, 0.0
    site = _make_site(shape, scale, signed, t, step, lo, hi, kinds, ks)
    if per_channel:
        recon = np.clip(coef, site.cmin, site.cmax) * site.decode_matrix.reshape(c)
    elif group == 1:  # one product per value, as the 1 x 1 matmul computes it
        recon = (np.clip(coef, site.cmin, site.cmax) * site.decode_matrix[0, 0]).reshape(s, c)
    else:  # batched per sample, not one [S*C/G, G] threaded BLAS call (summation order may differ in the last bit)
        recon = (np.clip(coef, site.cmin, site.cmax).reshape(s, c // group, group) @ site.decode_matrix.T).reshape(s, c)
    bits = float(cost.mean())
    if weights is not None:  # per-channel steps cost side information: every candidate counts its own
        bits += 8.0 * site.side_bytes / (shape[0] * shape[1] * shape[2])
    return Candidate(site, bits, weighted_sqnr_db(sample, recon, weights))


def _make_site(shape: tuple[int, int, int], scale: np.float32, signed: bool, transform: np.ndarray,
               step: np.ndarray, cmin: np.ndarray, cmax: np.ndarray, kinds: np.ndarray,
               rice_k: np.ndarray) -> DctCmSite:
    group = transform.shape[0]
    entries = len(step)  # G (per frequency) or C (per coefficient)
    keep = np.ones(entries, bool)
    keep[np.arange(len(kinds))[kinds == DROP] % entries] = False
    # steps and a G x G decode matrix are rounded to float16 values here (when that is exact enough), so that
    # they are stored in half the bytes and every runtime computes with exactly these values
    step = to_half(np.where(keep, step, 1.0).astype(np.float32))
    inverse = float(scale) * np.linalg.inv(transform.astype(np.float64))
    kept = np.where(keep, step, 0.0).reshape(-1, group)  # [K or 1, G]
    decode = (inverse[None] * kept[:, None, :]).astype(np.float32)  # inverse @ diag(step) per group
    decode = decode[0] if entries == group else decode
    if decode.size > 1:  # a single 1 x 1 decode stays float32 (zero-mask mode reproduces the 8-bit grid exactly)
        decode = to_half(decode)
    qmax = 127.0 if signed else 255.0
    return DctCmSite(
        shape=shape, scale=np.float32(scale), qmin=np.float32(-qmax if signed else 0.0), qmax=np.float32(qmax),
        transform=transform.astype(np.float32), step=step,
        cmin=np.where(keep, cmin, 0).astype(np.float32), cmax=np.where(keep, cmax, 0).astype(np.float32),
        decode_matrix=decode.astype(np.float32), kinds=kinds.astype(np.uint8),
        rice_k=np.where(kinds != DROP, rice_k, 0).astype(np.uint8),
    )
