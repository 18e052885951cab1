"""The codec protocol and the calibration statistics every codec starts from.

A codec has two halves. `Codec.calibrate(stats)` looks at activations once and returns a frozen
`SiteCodec` for one site. A SiteCodec is the numpy reference that *defines* the format: `symbols`
is exactly what the ONNX encode op computes (the integer payload), `pack`/`unpack` turn symbols into
the bitstream and back, `dequantize` is the decode op. Runtime kernels are tested against it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from featcomp.errors import FeatcompError


@dataclass
class ActivationStats:
    """Streaming statistics of one activation tensor over the calibration set.

    The range is exact over all data; the distribution is kept as a bounded random sample of pixel
    channel-vectors, which is what channel transforms need and keeps memory flat on big sets.
    """

    name: str
    shape: tuple[int, int, int]
    max_values: int = 1 << 17  # values kept for fitting; plenty for per-frequency statistics
    seed: int = 0
    # Optional, for codecs that need them (see Codec.stats_options): the exact channel covariance over
    # all data (calibrated transforms), and the first samples whole, up to this many values
    # (entropy coders whose codes depend on spatial order, such as zero runs).
    covariance: bool = False
    spatial_values: int = 0
    # [C] sensitivity of each channel as its consumers see it (passes.sites.consumer_weights), when known:
    # codecs with per-channel steps weight each channel's error by it
    channel_weights: np.ndarray | None = None
    minimum: float = np.inf
    maximum: float = -np.inf
    values: int = 0
    sum_squares: float = 0.0
    _parts: list[np.ndarray] = field(default_factory=list)
    _rng: np.random.Generator | None = None
    _sum: np.ndarray | None = None
    _outer: np.ndarray | None = None
    _pixels: int = 0
    _spatial: list[np.ndarray] = field(default_factory=list)

    def update(self, x: np.ndarray) -> None:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.shape:
            raise FeatcompError(f"activation '{self.name}' has shape {x.shape}, expected (N, {', '.join(map(str, self.shape))})")
        if not np.isfinite(x).all():
            raise FeatcompError(
                f"activation '{self.name}' contains NaN or Inf on the calibration data; check the inputs and --preprocess"
            )
        if self._rng is None:
            self._rng = np.random.default_rng(self.seed)
        self.minimum = min(self.minimum, float(x.min()))
        self.maximum = max(self.maximum, float(x.max()))
        self.values += x.size
        self.sum_squares += float(np.sum(np.square(x, dtype=np.float64)))
        c = self.shape[0]
        vectors = x.transpose(0, 2, 3, 1).reshape(-1, c)
        if self.covariance:
            v64 = vectors.astype(np.float64)
            self._sum = v64.sum(axis=0) + (0.0 if self._sum is None else self._sum)
            self._outer = v64.T @ v64 + (0.0 if self._outer is None else self._outer)
            self._pixels += len(vectors)
        kept_spatial = sum(a.size for a in self._spatial)
        for one in x:
            if kept_spatial >= self.spatial_values:
                break
            self._spatial.append(np.array(one, dtype=np.float32))
            kept_spatial += one.size
        per_batch = max(1, self.max_values // (c * 8))
        if len(vectors) > per_batch:
            vectors = vectors[self._rng.choice(len(vectors), per_batch, replace=False)]
        self._parts.append(np.ascontiguousarray(vectors, dtype=np.float32))
        kept = sum(len(p) for p in self._parts)
        limit = max(1, self.max_values // c)
        if kept > 2 * limit:
            merged = np.concatenate(self._parts)
            self._parts = [merged[self._rng.choice(len(merged), limit, replace=False)]]

    @property
    def sample(self) -> np.ndarray:
        """Pixel channel-vectors [S, C] drawn from the calibration activations."""
        if not self._parts:
            raise FeatcompError(f"no calibration data reached activation '{self.name}'")
        merged = np.concatenate(self._parts)
        limit = max(1, self.max_values // self.shape[0])
        return merged if len(merged) <= limit else merged[: limit]

    @property
    def channel_covariance(self) -> tuple[np.ndarray, np.ndarray]:
        """(mean [C], covariance [C, C]) of the pixel channel-vectors over all calibration data."""
        if self._outer is None or self._sum is None:
            raise FeatcompError(f"activation '{self.name}' was calibrated without channel covariance")
        mean = self._sum / self._pixels
        return mean, self._outer / self._pixels - np.outer(mean, mean)

    @property
    def spatial(self) -> np.ndarray:
        """The first calibration samples whole, [n, C, H, W] (at least one)."""
        if not self._spatial:
            raise FeatcompError(f"activation '{self.name}' was calibrated without whole samples")
        return np.stack(self._spatial)

    @property
    def mean_square(self) -> float:
        """Signal power per value, over all calibration data."""
        return self.sum_squares / max(1, self.values)


@dataclass(frozen=True, eq=False)
class FoldFactors:
    """What folding a site's channel transform into the convolutions around it needs (passes/fold.py): the
    transform at orthonormal scale, and the site that codes its coefficients directly. The codec derives
    both, so a pass never re-derives codec maths."""

    blocks: np.ndarray  # [K, G, G] float64: coefficients of group k are blocks[k] @ x[group k]
    plain: SiteCodec    # the same symbols of the coefficients, quantized without a transform (G = 1)


@runtime_checkable
class SiteCodec(Protocol):
    """Frozen parameters of one site plus the reference encoder/decoder they define."""

    codec_name: str

    @property
    def shape(self) -> tuple[int, int, int]: ...

    @property
    def param_id(self) -> int:
        """CRC-32 of the frozen parameters: the bitstream header's parameter id (runtimes key sites by it)."""
        ...

    def fold_factors(self) -> FoldFactors | None:
        """The transform and plain site for folding into the convs around the site; None when it has none to fold."""
        ...

    def symbols(self, x: np.ndarray) -> np.ndarray: ...
    def dequantize(self, symbols: np.ndarray) -> np.ndarray: ...
    def pack(self, symbols: np.ndarray) -> bytes: ...
    def unpack(self, data: bytes) -> np.ndarray: ...
    def coded_bytes(self, symbols: np.ndarray) -> int: ...
    def encode(self, x: np.ndarray) -> bytes: ...
    def decode(self, data: bytes) -> np.ndarray: ...
    def side_arrays(self) -> dict[str, np.ndarray]: ...
    def attributes(self) -> dict[str, Any]: ...

    @property
    def storage_dtype(self) -> np.dtype: ...
    def describe(self) -> dict[str, Any]: ...

    @property
    def side_bytes(self) -> int: ...


STORAGE_DTYPES = (np.dtype(np.int8), np.dtype(np.uint8), np.dtype(np.int16))


def storage_dtype(lo: float | np.ndarray, hi: float | np.ndarray) -> np.dtype:
    """The narrowest integer type a runtime keeps a site's symbols in between its encode and decode:
    every symbol lies in [min(lo), max(hi)] (the encode's final clip), so int8 or uint8 hold them
    whenever that range fits, else int16 (what the ops' ONNX interface declares). A storage choice
    only: the bitstream codes the same values whatever the dtype."""
    low, high = float(np.min(lo)), float(np.max(hi))
    for dtype in STORAGE_DTYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return dtype
    raise FeatcompError(f"symbol range [{low:g}, {high:g}] does not fit int16; the site parameters are corrupt")


@dataclass(frozen=True)
class Candidate:
    """One way to code a site, with its expected cost and quality on the calibration sample."""

    site: SiteCodec
    bits_per_value: float  # payload bits per value (header excluded)
    sqnr_db: float


def pick(front: list[Candidate], target_db: float) -> Candidate:
    """The cheapest candidate meeting the target, else the most accurate one."""
    return next((c for c in front if c.sqnr_db >= target_db), front[-1])


class Codec(Protocol):
    """A codec family: turns calibration statistics into frozen SiteCodecs.

    `candidates` is the site's rate-distortion front (cheapest first); `calibrate` picks from it by the
    family's own default target, and allocators (featcomp.allocate) pick per site instead.
    """

    name: str
    stats_options: dict[str, Any]  # extra ActivationStats fields the family needs (covariance, spatial_values)

    def calibrate(self, stats: ActivationStats) -> SiteCodec: ...
    def candidates(self, stats: ActivationStats) -> list[Candidate]: ...


def sqnr_db(reference: np.ndarray, approx: np.ndarray) -> float:
    """Signal-to-quantization-noise ratio in dB (inf when exact)."""
    signal = float(np.sum(np.square(reference, dtype=np.float64)))
    noise = float(np.sum(np.square(reference.astype(np.float64) - approx, dtype=np.float64)))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise))
