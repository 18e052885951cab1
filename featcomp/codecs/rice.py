"""Golomb-Rice codes with the quotient and remainder in separate planes.

A value u is coded as u >> k in unary plus the low k bits. Keeping all remainders in one
fixed-width plane and all quotients in one unary plane makes both directions vectorised: the
decoder finds the quotients from the positions of the ones, not by walking the bits.
Rice codes need no tables (k per frequency is the only side information) and are within a few
percent of the entropy for the geometric-like magnitudes that quantized activations have.
"""

from __future__ import annotations

import numpy as np

from featcomp.codecs.bitstream import BitReader, BitWriter

MAX_K = 15


def write(writer: BitWriter, values: np.ndarray, k: int) -> None:
    values = values.astype(np.int64)
    writer.uint(values & ((1 << k) - 1), k)
    writer.unary(values >> k)


def read(reader: BitReader, count: int, k: int) -> np.ndarray:
    remainders = reader.uint(count, k)
    return (reader.unary(count) << k) + remainders


def size_bits(values: np.ndarray, k: int) -> int:
    """Bits of write(values, k) before byte alignment."""
    return int(values.size * (k + 1) + np.sum(values.astype(np.int64) >> k))


def best_k(values: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per column of values [n, F]: the k with the fewest mean bits over the valid entries, and that mean.

    One histogram per column and one small matrix product give the cost of every k at once.
    Columns without valid entries get k = 0 and 0 bits.
    """
    v = values.astype(np.int64)
    n, cols = v.shape
    top = int(np.max(v, initial=0))
    column = np.broadcast_to(np.arange(cols), v.shape)
    index = (column * (top + 1) + v)[valid] if valid is not None else (column * (top + 1) + v).reshape(-1)
    hist = np.bincount(index, minlength=cols * (top + 1)).reshape(cols, top + 1).astype(np.float64)
    count = hist.sum(axis=1)
    ks = np.arange(min(MAX_K, top.bit_length()) + 1)
    quotient_bits = hist @ (np.arange(top + 1)[:, None] >> ks[None, :])  # [F, K]
    costs = quotient_bits / np.maximum(count, 1)[:, None] + (ks + 1)[None, :]
    best = np.argmin(costs, axis=1)
    mean = np.where(count > 0, costs[np.arange(cols), best], 0.0)
    return best.astype(np.uint8), mean
