"""DCT-CM: channel-DCT with masks (after Shi et al., ISCAS 2021), as a calibrated, frozen codec.

Per site the activations are first quantized to 8 bits with a calibrated scale (uint8 after ReLU,
symmetric int8 otherwise). Each pixel's channel vector is then cut into groups of G channels and
transformed by an *integer* approximation of the orthonormal DCT-II (G = 1 is the identity: plain
zero-mask coding of the 8-bit values). Coefficient f of every group is quantized with its own step
and clipped to its calibrated range, giving int16 symbols. Because the transform is integer and
every float operation is a single correctly rounded IEEE op (divisions, not
multiplications by a reciprocal, so that graph optimizers cannot fold them into a preceding Conv), any runtime that follows the same op
sequence produces the same symbols bit for bit.

Each frequency f is coded in one of three ways, chosen at calibration by expected bits:
DROP (always zero, nothing stored), DENSE (every value at b_f bits) or MASK (a bitmap of nonzeros
plus the nonzeros at b_f bits). Values are stored as `v - cmin_f` in b_f = ceil(log2(range)) bits.

Payload, after the shared header (see bitstream.py): for f = 0..G-1 in order, the segment of
frequency f over all positions (group-major, then pixel), each segment byte-aligned:
DENSE: packed values; MASK: ceil(n/8) bytes of bitmap (MSB first) then the packed nonzeros.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from featcomp.codecs import bitstream
from featcomp.codecs.base import ActivationStats, sqnr_db
from featcomp.errors import CodecError, FeatcompError

CODEC_ID = 1
DROP, DENSE, MASK = 0, 1, 2
KIND_NAMES = {DROP: "drop", DENSE: "dense", MASK: "mask"}
TRANSFORM_BITS = 7  # the integer DCT is round(2**7 * orthonormal DCT): exact in float32 for G <= 64
RANGE_QUANTILE = 0.9999  # coefficient ranges cover this fraction of calibration values
_RD_SLOPE = 2.0 * math.log(2.0) / 12.0  # dD/dR of a uniform quantizer at high rate, per step^2


def integer_dct(group: int) -> np.ndarray:
    """round(2**TRANSFORM_BITS * DCT-II orthonormal matrix), as float32 holding integers."""
    n = np.arange(group)
    k = n[:, None]
    t = np.sqrt(2.0 / group) * np.cos(np.pi * (2 * n + 1) * k / (2 * group))
    t[0] /= np.sqrt(2.0)
    return np.rint(t * (1 << TRANSFORM_BITS)).astype(np.float32)


def _bits(cmin: np.ndarray, cmax: np.ndarray) -> np.ndarray:
    span = (cmax.astype(np.int64) - cmin.astype(np.int64) + 1).clip(1)
    return np.ceil(np.log2(span)).astype(np.int64)


@dataclass(frozen=True, eq=False)
class DctCmSite:
    """Frozen parameters of one site. The fields are exactly the inputs of the ONNX ops."""

    shape: tuple[int, int, int]
    scale: np.float32
    qmin: np.float32
    qmax: np.float32
    transform: np.ndarray  # [G, G] integer-valued float32
    step: np.ndarray       # [G] float32; 1 for dropped frequencies (their range is [0, 0])
    cmin: np.ndarray       # [G] integer-valued float32
    cmax: np.ndarray       # [G]
    decode_matrix: np.ndarray  # [G, G] float32 = scale * inverse(transform) * diag(step)
    kinds: np.ndarray      # [G] uint8: DROP / DENSE / MASK

    codec_name = "dct-cm"

    def __post_init__(self) -> None:
        c = self.shape[0]
        if c % self.group:
            raise FeatcompError(f"dct-cm group {self.group} does not divide {c} channels")
        if np.any(self.cmin > self.cmax) or np.any((self.kinds == DROP) & ((self.cmin != 0) | (self.cmax != 0))):
            raise FeatcompError("dct-cm parameters are inconsistent (coefficient ranges)")

    # --- derived -------------------------------------------------------------------------------
    @property
    def group(self) -> int:
        return int(self.transform.shape[0])

    @property
    def mode(self) -> str:
        return "mask" if self.group == 1 else "dct"

    @property
    def bits(self) -> np.ndarray:
        return _bits(self.cmin, self.cmax)

    @property
    def param_id(self) -> int:
        crc = zlib.crc32(struct.pack("<3H", *self.shape))
        for a in (self.scale, self.qmin, self.qmax, self.transform, self.step, self.cmin, self.cmax,
                  self.decode_matrix, self.kinds):
            crc = zlib.crc32(np.ascontiguousarray(a).tobytes(), crc)
        return crc

    # --- the ops ---------------------------------------------------------------------------------
    def symbols(self, x: np.ndarray) -> np.ndarray:
        """The encode op: float [N,C,H,W] (or [C,H,W]) -> int16 symbols of the same shape."""
        x = np.asarray(x, dtype=np.float32)
        shape = x.shape
        x4 = x.reshape((-1,) + tuple(shape[-3:]))
        n, c, h, w = x4.shape
        g = self.group
        q = np.clip(np.rint(x4 / self.scale), self.qmin, self.qmax)
        y = self.transform @ q.reshape(n, c // g, g, h * w)
        coef = np.rint(y / self.step[:, None])
        coef = np.minimum(np.maximum(coef, self.cmin[:, None]), self.cmax[:, None])
        return coef.reshape(shape).astype(np.int16)

    def dequantize(self, symbols: np.ndarray) -> np.ndarray:
        """The decode op: int16 symbols -> float activations."""
        shape = symbols.shape
        s4 = symbols.reshape((-1,) + tuple(shape[-3:]))
        n, c, h, w = s4.shape
        g = self.group
        out = self.decode_matrix @ s4.astype(np.float32).reshape(n, c // g, g, h * w)
        return out.reshape(shape)

    # --- the bitstream -----------------------------------------------------------------------------
    def _by_frequency(self, symbols: np.ndarray) -> np.ndarray:
        c, h, w = self.shape
        if symbols.shape != self.shape:
            raise FeatcompError(f"dct-cm site expects one tensor of shape {self.shape}, got {symbols.shape}")
        g = self.group
        return symbols.reshape(c // g, g, h * w).transpose(1, 0, 2).reshape(g, -1)

    def pack(self, symbols: np.ndarray) -> bytes:
        freq = self._by_frequency(symbols)
        parts: list[bytes] = []
        for f, (kind, b) in enumerate(zip(self.kinds, self.bits)):
            v = freq[f].astype(np.int64)
            if kind == DROP:
                continue
            if kind == DENSE:
                parts.append(bitstream.pack_uint(v - int(self.cmin[f]), int(b)))
            else:
                nz = v != 0
                parts.append(np.packbits(nz).tobytes())
                parts.append(bitstream.pack_uint(v[nz] - int(self.cmin[f]), int(b)))
        return bitstream.write(CODEC_ID, self.param_id, self.shape, b"".join(parts))

    def unpack(self, data: bytes) -> np.ndarray:
        payload = bitstream.Reader(bitstream.read(data, CODEC_ID, self.param_id, self.shape))
        c, h, w = self.shape
        g = self.group
        n = (c // g) * h * w
        freq = np.zeros((g, n), dtype=np.int64)
        for f, (kind, b) in enumerate(zip(self.kinds, self.bits)):
            lo, span = int(self.cmin[f]), int(self.cmax[f]) - int(self.cmin[f])
            if kind == DROP:
                continue
            if kind == DENSE:
                u = bitstream.unpack_uint(payload.take(bitstream.packed_size(n, int(b))), n, int(b))
                if np.any(u > span):
                    raise CodecError(f"bitstream value out of range in frequency {f}")
                freq[f] = u + lo
            else:
                nz = np.unpackbits(np.frombuffer(payload.take((n + 7) // 8), dtype=np.uint8), count=n).astype(bool)
                k = int(nz.sum())
                u = bitstream.unpack_uint(payload.take(bitstream.packed_size(k, int(b))), k, int(b))
                if np.any(u > span) or np.any(u + lo == 0):
                    raise CodecError(f"bitstream value out of range in frequency {f}")
                freq[f, nz] = u + lo
        payload.finish()
        return freq.reshape(g, c // g, h * w).transpose(1, 0, 2).reshape(c, h, w).astype(np.int16)

    def coded_bytes(self, symbols: np.ndarray) -> int:
        """Exact len(pack(symbols)) from counts alone (no packing)."""
        freq = self._by_frequency(symbols)
        n = freq.shape[1]
        nnz = np.count_nonzero(freq, axis=1)
        size = bitstream.HEADER_BYTES
        for kind, b, k in zip(self.kinds, self.bits, nnz):
            if kind == DENSE:
                size += bitstream.packed_size(n, int(b))
            elif kind == MASK:
                size += (n + 7) // 8 + bitstream.packed_size(int(k), int(b))
        return size

    def encode(self, x: np.ndarray) -> bytes:
        return self.pack(self.symbols(np.asarray(x).reshape(self.shape)))

    def decode(self, data: bytes) -> np.ndarray:
        return self.dequantize(self.unpack(data))

    # --- storage in an ONNX model ------------------------------------------------------------------
    def side_arrays(self) -> dict[str, np.ndarray]:
        g = self.group
        return {
            "scale": np.asarray(self.scale, np.float32),
            "qmin": np.asarray(self.qmin, np.float32),
            "qmax": np.asarray(self.qmax, np.float32),
            "transform": self.transform,
            "step": self.step.reshape(g, 1),
            "cmin": self.cmin.reshape(g, 1),
            "cmax": self.cmax.reshape(g, 1),
            "decode": self.decode_matrix,
        }

    @property
    def side_bytes(self) -> int:
        return sum(a.nbytes for a in self.side_arrays().values()) + self.kinds.nbytes

    def attributes(self) -> dict[str, Any]:
        return {"kinds": [int(k) for k in self.kinds], "shape": list(self.shape)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> "DctCmSite":
        g = arrays["transform"].shape[0]
        return cls(
            shape=tuple(int(v) for v in attributes["shape"]),  # type: ignore[arg-type]
            scale=np.float32(arrays["scale"]),
            qmin=np.float32(arrays["qmin"]),
            qmax=np.float32(arrays["qmax"]),
            transform=arrays["transform"].astype(np.float32),
            step=arrays["step"].reshape(g).astype(np.float32),
            cmin=arrays["cmin"].reshape(g).astype(np.float32),
            cmax=arrays["cmax"].reshape(g).astype(np.float32),
            decode_matrix=arrays["decode"].astype(np.float32),
            kinds=np.asarray(attributes["kinds"], dtype=np.uint8),
        )

    def describe(self) -> dict[str, Any]:
        kinds = [KIND_NAMES[int(k)] for k in self.kinds]
        return {
            "mode": self.mode,
            "group": self.group,
            "signed": bool(self.qmin < 0),
            "scale": float(self.scale),
            "frequencies": {name: kinds.count(name) for name in ("dense", "mask", "drop")},
            "bits": [int(b) for b in self.bits],
        }


@dataclass(frozen=True)
class DctCm:
    """Calibration policy: per site, the cheapest of zero-mask and channel-DCT that keeps SQNR >= target.

    Zero-mask coding is lossless with respect to the 8-bit values, so it is always admissible; a DCT
    mode competes only where its quantization keeps the site's SQNR (against float) above `sqnr_db`.
    """

    sqnr_db: float = 30.0
    groups: tuple[int, ...] = (8, 16)
    name: str = "dct-cm"

    def calibrate(self, stats: ActivationStats) -> DctCmSite:
        sample = stats.sample
        signed = stats.minimum < 0
        qmax = 127.0 if signed else 255.0
        peak = max(abs(stats.minimum), abs(stats.maximum))
        scale = np.float32(peak / qmax) if peak > 0 else np.float32(1.0)
        q = np.clip(np.rint(sample / scale), -qmax if signed else 0.0, qmax).astype(np.float32)
        best = _mask_candidate(stats.shape, scale, signed, q, sample)
        c = stats.shape[0]
        for g in self.groups:
            if c % g or c < g:
                continue
            cand = _search_dct(stats.shape, scale, signed, q, sample, g, self.sqnr_db)
            if cand is not None and cand[1] < best[1]:
                best = cand
        return best[0]


def _estimate(site: DctCmSite, q: np.ndarray, sample: np.ndarray) -> tuple[float, float]:
    """(bits per value, SQNR dB) of a site on the calibration sample, from counts."""
    s, c = q.shape
    g = site.group
    y = q.reshape(s, c // g, g) @ site.transform.T
    coef = np.clip(np.rint(y / site.step), site.cmin, site.cmax)
    nnz = np.count_nonzero(coef, axis=(0, 1)) / (s * c // g)
    b = site.bits
    cost = np.where(site.kinds == DENSE, b, np.where(site.kinds == MASK, 1 + nnz * b, 0.0))
    recon = (coef @ site.decode_matrix.T).reshape(s, c)
    return float(cost.sum() / g), sqnr_db(sample, recon)


def _make_site(shape: tuple[int, int, int], scale: np.float32, signed: bool, transform: np.ndarray,
               step: np.ndarray, cmin: np.ndarray, cmax: np.ndarray, kinds: np.ndarray) -> DctCmSite:
    keep = kinds != DROP
    step = np.where(keep, step, 1.0).astype(np.float32)
    decode = float(scale) * np.linalg.inv(transform.astype(np.float64)) @ np.diag(np.where(keep, step, 0.0))
    qmax = 127.0 if signed else 255.0
    return DctCmSite(
        shape=shape, scale=np.float32(scale), qmin=np.float32(-qmax if signed else 0.0), qmax=np.float32(qmax),
        transform=transform.astype(np.float32), step=step,
        cmin=np.where(keep, cmin, 0).astype(np.float32), cmax=np.where(keep, cmax, 0).astype(np.float32),
        decode_matrix=decode.astype(np.float32), kinds=kinds.astype(np.uint8),
    )


def _mask_candidate(shape: tuple[int, int, int], scale: np.float32, signed: bool, q: np.ndarray,
                    sample: np.ndarray) -> tuple[DctCmSite, float]:
    density = float(np.count_nonzero(q)) / max(1, q.size)
    kind = MASK if 1.0 + 8.0 * density < 8.0 else DENSE
    qmax = 127.0 if signed else 255.0
    site = _make_site(shape, scale, signed, np.ones((1, 1), np.float32), np.ones(1),
                      np.array([-qmax if signed else 0.0]), np.array([qmax]), np.array([kind]))
    return site, _estimate(site, q, sample)[0]


def _dct_candidate(shape: tuple[int, int, int], scale: np.float32, signed: bool, q: np.ndarray,
                   group: int, delta: float) -> DctCmSite:
    s, c = q.shape
    t = integer_dct(group)
    step = delta * np.linalg.norm(t.astype(np.float64), axis=1)
    y = q.reshape(s, c // group, group) @ t.T
    coef = np.rint(y / step.astype(np.float32)).reshape(-1, group)
    # The range is clipped at a high quantile: a few outliers would otherwise cost a bit on every value.
    peak = np.ceil(np.quantile(np.abs(coef), RANGE_QUANTILE, axis=0))
    nnz = np.count_nonzero(coef, axis=0) / len(coef)
    b = _bits(-peak, peak)
    dense, masked = b.astype(np.float64), 1.0 + nnz * b
    kinds = np.where(masked < dense, MASK, DENSE)
    cost = np.minimum(dense, masked)
    energy = np.mean(np.square(coef * delta, dtype=np.float64), axis=0)
    kinds = np.where((peak == 0) | (energy < _RD_SLOPE * delta * delta * cost), DROP, kinds)
    return _make_site(shape, scale, signed, t, step, -peak, peak, kinds)


def _search_dct(shape: tuple[int, int, int], scale: np.float32, signed: bool, q: np.ndarray,
                sample: np.ndarray, group: int, target_db: float) -> tuple[DctCmSite, float] | None:
    """The coarsest step whose SQNR on the sample still meets the target (bisection on log step)."""
    lo, hi = math.log(0.5), math.log(512.0)
    found: tuple[DctCmSite, float] | None = None
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        site = _dct_candidate(shape, scale, signed, q, group, math.exp(mid))
        bpv, sqnr = _estimate(site, q, sample)
        if sqnr >= target_db:
            found, lo = (site, bpv), mid
        else:
            hi = mid
    return found
