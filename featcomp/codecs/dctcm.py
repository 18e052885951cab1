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

Each frequency f is coded in one of three ways, chosen at calibration by expected bits:
DROP (always zero, nothing stored), DENSE (every value) or MASK (a bitmap of nonzeros, then the
nonzeros). Values are Golomb-Rice coded with a calibrated parameter k_f (see rice.py): DENSE codes
zigzag(v) for signed ranges and v - cmin otherwise; MASK codes a sign bit (signed ranges) and
|v| - 1.

Payload, after the shared header (see bitstream.py): for f = 0..G-1 in order, over the positions of
frequency f (group-major, then pixel), these planes, each starting on a byte boundary:
DENSE: Rice remainders, Rice quotients (unary);
MASK: nonzero bitmap, sign bits (signed ranges only), Rice remainders, Rice quotients.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from featcomp.codecs import bitstream, rice
from featcomp.codecs.base import ActivationStats, Candidate, pick, sqnr_db
from featcomp.errors import CodecError, FeatcompError

CODEC_ID = 1
DROP, DENSE, MASK = 0, 1, 2
KIND_NAMES = {DROP: "drop", DENSE: "dense", MASK: "mask"}
TRANSFORM_BITS = 7  # the integer DCT is round(2**7 * orthonormal DCT): exact in float32 for G <= 64
CLIP_FRACTIONS = (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)  # of the calibration peak
RANGE_QUANTILE = 0.9999  # coefficient ranges cover this fraction of calibration values
_RD_SLOPE = 2.0 * math.log(2.0) / 12.0  # dD/dR of a uniform quantizer at high rate, per step^2


def integer_dct(group: int) -> np.ndarray:
    """round(2**TRANSFORM_BITS * DCT-II orthonormal matrix), as float32 holding integers."""
    n = np.arange(group)
    k = n[:, None]
    t = np.sqrt(2.0 / group) * np.cos(np.pi * (2 * n + 1) * k / (2 * group))
    t[0] /= np.sqrt(2.0)
    return np.rint(t * (1 << TRANSFORM_BITS)).astype(np.float32)


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
    rice_k: np.ndarray     # [G] uint8: Golomb-Rice parameter per frequency

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
    def param_id(self) -> int:
        crc = zlib.crc32(struct.pack("<3H", *self.shape))
        for a in (self.scale, self.qmin, self.qmax, self.transform, self.step, self.cmin, self.cmax,
                  self.decode_matrix, self.kinds, self.rice_k):
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

    def _coded_values(self, f: int, v: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(values to Rice-code, nonzero mask or None, sign bits or None) of frequency f."""
        lo = int(self.cmin[f])
        if self.kinds[f] == DENSE:
            u = np.where(v >= 0, 2 * v, -2 * v - 1) if lo < 0 else v - lo
            return u, None, None
        nz = v != 0
        nzv = v[nz]
        if lo < 0:
            return np.abs(nzv) - 1, nz, (nzv < 0).astype(np.uint8)
        return nzv - 1, nz, None

    def pack(self, symbols: np.ndarray) -> bytes:
        freq = self._by_frequency(symbols).astype(np.int64)
        writer = bitstream.BitWriter()
        for f in range(self.group):
            if self.kinds[f] == DROP:
                continue
            u, nz, signs = self._coded_values(f, freq[f])
            if nz is not None:
                writer.bits(nz)
            if signs is not None:
                writer.bits(signs)
            rice.write(writer, u, int(self.rice_k[f]))
        return bitstream.write(CODEC_ID, self.param_id, self.shape, writer.tobytes())

    def unpack(self, data: bytes) -> np.ndarray:
        reader = bitstream.BitReader(bitstream.read(data, CODEC_ID, self.param_id, self.shape))
        c, h, w = self.shape
        g = self.group
        n = (c // g) * h * w
        freq = np.zeros((g, n), dtype=np.int64)
        for f in range(g):
            kind, k, lo, hi = self.kinds[f], int(self.rice_k[f]), int(self.cmin[f]), int(self.cmax[f])
            if kind == DROP:
                continue
            if kind == DENSE:
                u = rice.read(reader, n, k)
                v = np.where(u % 2 == 0, u // 2, -(u + 1) // 2) if lo < 0 else u + lo
                freq[f] = v
            else:
                nz = reader.bits(n).astype(bool)
                count = int(nz.sum())
                negative = reader.bits(count).astype(bool) if lo < 0 else np.zeros(count, bool)
                m = rice.read(reader, count, k) + 1
                v = np.where(negative, -m, m)
                freq[f, nz] = v
                if lo >= 0 and np.any(negative):
                    raise CodecError(f"bitstream holds a negative value in unsigned frequency {f}")
            if np.any((freq[f] < lo) | (freq[f] > hi)):
                raise CodecError(f"bitstream value out of range in frequency {f}")
        reader.finish()
        return freq.reshape(g, c // g, h * w).transpose(1, 0, 2).reshape(c, h, w).astype(np.int16)

    def coded_bytes(self, symbols: np.ndarray) -> int:
        """Exact len(pack(symbols)) from counts alone (no packing)."""
        freq = self._by_frequency(symbols).astype(np.int64)
        size = bitstream.HEADER_BYTES
        for f in range(self.group):
            if self.kinds[f] == DROP:
                continue
            u, nz, signs = self._coded_values(f, freq[f])
            k = int(self.rice_k[f])
            for plane in (len(nz) if nz is not None else 0, len(signs) if signs is not None else 0, u.size * k,
                          rice.size_bits(u, k) - u.size * k):
                size += (plane + 7) // 8
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
        return sum(a.nbytes for a in self.side_arrays().values()) + self.kinds.nbytes + self.rice_k.nbytes

    def attributes(self) -> dict[str, Any]:
        return {"kinds": [int(k) for k in self.kinds], "rice_k": [int(k) for k in self.rice_k], "shape": list(self.shape)}

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
            rice_k=np.asarray(attributes["rice_k"], dtype=np.uint8),
        )

    def describe(self) -> dict[str, Any]:
        kinds = [KIND_NAMES[int(k)] for k in self.kinds]
        return {
            "mode": self.mode,
            "group": self.group,
            "signed": bool(self.qmin < 0),
            "scale": float(self.scale),
            "frequencies": {name: kinds.count(name) for name in ("dense", "mask", "drop")},
            "step": float(self.step[0] / self.transform[0, 0]) if self.group == 1 else None,
            "rice_k": [int(k) for k in self.rice_k],
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
    name: str = "dct-cm"

    def calibrate(self, stats: ActivationStats) -> DctCmSite:
        return pick(self.candidates(stats), self.sqnr_db).site

    def candidates(self, stats: ActivationStats) -> list[Candidate]:
        """The Pareto front (fewer bits <-> lower SQNR), cheapest first, lossless last."""
        sample = stats.sample
        signed = stats.minimum < 0
        qmax = 127.0 if signed else 255.0
        scale = _clip_scale(sample, max(abs(stats.minimum), abs(stats.maximum)), signed)
        q = np.clip(np.rint(sample / scale), -qmax if signed else 0.0, qmax).astype(np.float32)
        found = [_fit(stats.shape, scale, signed, q, sample, 1, None)]
        c = stats.shape[0]
        for g in self.groups:
            if c % g or c < g:
                continue
            low = 1.25 if g == 1 else 0.5
            for delta in np.geomspace(low, 128.0, self.grid):
                found.append(_fit(stats.shape, scale, signed, q, sample, g, float(delta)))
        front: list[Candidate] = []
        for cand in sorted(found, key=lambda c: (c.bits_per_value, -c.sqnr_db)):
            if not front or cand.sqnr_db > front[-1].sqnr_db:
                front.append(cand)
        return front


def _clip_scale(sample: np.ndarray, peak: float, signed: bool) -> np.float32:
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
         group: int, delta: float | None) -> Candidate:
    """The site for one (group, step), with per-frequency coding chosen by expected bits.

    delta None means lossless: identity transform, unit step, the full 8-bit range.
    """
    s, c = q.shape
    qmax = 127.0 if signed else 255.0
    if delta is None:
        t = np.ones((1, 1), np.float32)
        step = np.ones(1)
        coef = q.reshape(-1, 1)
        lo, hi = np.array([-qmax if signed else 0.0]), np.array([qmax])
    else:
        t = integer_dct(group)
        step = delta * np.linalg.norm(t.astype(np.float64), axis=1)
        y = q.reshape(s, c // group, group) @ t.T
        coef = np.rint(y / step.astype(np.float32)).reshape(-1, group)
        # Ranges are clipped at a high quantile: rare outliers are cheap to clip and costly to allow.
        hi = np.ceil(np.quantile(np.abs(coef), RANGE_QUANTILE, axis=0))
        coef = np.clip(coef, -hi, hi)
        lo = -hi if (signed or group > 1) else np.zeros_like(hi)
    v = coef.astype(np.int64)
    has_sign = lo < 0
    k_dense, dense = rice.best_k(np.where(has_sign, np.where(v >= 0, 2 * v, -2 * v - 1), v - lo.astype(np.int64)))
    nz = v != 0
    k_mask, mask_bits = rice.best_k(np.maximum(np.abs(v) - 1, 0), nz)
    masked = 1.0 + nz.mean(axis=0) * (mask_bits + has_sign)
    use_mask = masked < dense
    kinds = np.where(use_mask, MASK, DENSE).astype(np.uint8)
    ks = np.where(use_mask, k_mask, k_dense)
    cost = np.where(use_mask, masked, dense)
    if delta is not None:
        energy = np.mean(np.square(v * delta, dtype=np.float64), axis=0)
        drop = (hi == 0) | (energy < _RD_SLOPE * delta * delta * cost)
        kinds[drop], cost[drop] = DROP, 0.0
    site = _make_site(shape, scale, signed, t, step, lo, hi, kinds, ks)
    recon = (np.clip(coef, site.cmin, site.cmax) @ site.decode_matrix.T).reshape(s, c)
    return Candidate(site, float(cost.sum() / group), sqnr_db(sample, recon))


def _make_site(shape: tuple[int, int, int], scale: np.float32, signed: bool, transform: np.ndarray,
               step: np.ndarray, cmin: np.ndarray, cmax: np.ndarray, kinds: np.ndarray,
               rice_k: np.ndarray) -> DctCmSite:
    keep = kinds != DROP
    step = np.where(keep, step, 1.0).astype(np.float32)
    decode = float(scale) * np.linalg.inv(transform.astype(np.float64)) @ np.diag(np.where(keep, step, 0.0))
    qmax = 127.0 if signed else 255.0
    return DctCmSite(
        shape=shape, scale=np.float32(scale), qmin=np.float32(-qmax if signed else 0.0), qmax=np.float32(qmax),
        transform=transform.astype(np.float32), step=step,
        cmin=np.where(keep, cmin, 0).astype(np.float32), cmax=np.where(keep, cmax, 0).astype(np.float32),
        decode_matrix=decode.astype(np.float32), kinds=kinds.astype(np.uint8),
        rice_k=np.where(keep, rice_k, 0).astype(np.uint8),
    )
