"""Golomb-Rice codes with the quotient and remainder in separate planes.

A value u is coded as u >> k in unary (that many zeros, then a one) plus the low k bits (MSB first). Keeping all remainders in one
fixed-width plane and all quotients in one unary plane makes both directions vectorised: the
decoder finds the quotients from the positions of the ones, not by walking the bits.
Rice codes need no tables (k per frequency is the only side information) and are within a few
percent of the entropy for the geometric-like magnitudes that quantized activations have.
"""

from __future__ import annotations

import numpy as np

from featcomp.codecs.bitstream import BitReader, BitWriter

MAX_K = 15
HISTOGRAM_CELLS = 1 << 20  # best_k counts through a [columns, values] histogram up to this size


def write(writer: BitWriter, values: np.ndarray, k: np.ndarray | int) -> None:
    """Rice-code values with a parameter per value (or one for all)."""
    values = values.astype(np.int64)
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), values.shape)
    writer.uint_var(values & ((1 << ks) - 1), ks)
    writer.unary(values >> ks)


def read(reader: BitReader, count: int, k: np.ndarray | int) -> np.ndarray:
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), (count,))
    remainders = reader.uint_var(ks)
    return (reader.unary(count) << ks) + remainders


def size_bits(values: np.ndarray, k: np.ndarray | int) -> int:
    """Bits of write(values, k) before byte alignment."""
    ks = np.broadcast_to(np.asarray(k, dtype=np.int64), values.shape)
    return int(np.sum(ks + 1) + np.sum(values.astype(np.int64) >> ks))


def best_k(values: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per column of values [n, F]: the k with the fewest mean bits over the valid entries, and that mean.

    Columns without valid entries get k = 0 and 0 bits.
    """
    v = values.astype(np.int64)
    if valid is not None:
        v = np.where(valid, v, 0)
    count = v.shape[0] if valid is None else valid.sum(axis=0)
    top = int(np.max(v, initial=0))
    ks = np.arange(min(MAX_K, top.bit_length()) + 1)
    if v.ndim == 2 and v.shape[1] * (top + 1) <= HISTOGRAM_CELLS:
        # one pass: per column the histogram of values, then sum(v >> k) = hist @ (values >> k) (exact integers)
        f = v.shape[1]
        hist = np.bincount((np.arange(f, dtype=np.int64) * (top + 1) + v).reshape(-1), minlength=f * (top + 1))
        sums = (np.arange(top + 1, dtype=np.int64)[:, None] >> ks[None, :]).T @ hist.reshape(f, top + 1).T
    else:
        sums = np.stack([(v >> k).sum(axis=0) for k in ks])
    costs = sums / np.maximum(count, 1) + (ks + 1)[:, None]
    best = np.argmin(costs, axis=0)
    mean = np.where(np.asarray(count) > 0, costs[best, np.arange(v.shape[1])], 0.0)
    return best.astype(np.uint8), mean
