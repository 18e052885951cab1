"""The TIR CRC-32 that every coder kernel expands (runtime_ops/tvm/stream_tir.py: slicing-by-8, then a byte at a
time) against zlib.crc32 on every length from 0 to 40 at every start offset 0-7, so the 8-byte steps, the tail and
their seam are each checked; and the [8, 256] table it reads against zlib, row by row."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from tvm_tools import need_tvm


@pytest.fixture(scope="module")
def crc_kernel() -> Any:
    """A kernel that writes zlib.crc32(data[b, lo[b]:hi[b]]) to out[b], built for the host."""
    need_tvm()
    import tvm
    from tvm.script import tirx as T

    from featcomp.runtime_ops.tvm.stream_tir import crc32  # noqa: F401  (the macro the kernel expands)

    @T.prim_func
    def crc_of(data: T.Buffer((64, 48), "uint8"), lo: T.Buffer((64,), "int64"), hi: T.Buffer((64,), "int64"),
               crc: T.Buffer((8, 256), "uint32"), out: T.Buffer((64,), "uint32")) -> None:
        T.func_attr({"tirx.noalias": True})
        for b in range(64):
            sum_ = T.alloc_buffer((1,), "uint32", scope="global")
            crc32(data, lo[b], hi[b])
            out[b] = sum_[0]

    return tvm.compile(tvm.IRModule({"main": crc_of}), target="llvm")["main"]


def test_crc_table_rows_are_zlib_crc_after_zero_bytes() -> None:
    """Row k, entry i: the CRC register after byte i then k zero bytes (from a zero register), by zlib."""
    from featcomp.runtime_ops.tvm.coder import CRC_TABLE

    assert CRC_TABLE.shape == (8, 256) and CRC_TABLE.dtype == np.uint32
    for k in range(8):
        # zlib.crc32(m, 0xFFFFFFFF) starts from register 0 and ends with the final xor: undo it
        want = [zlib.crc32(bytes([i]) + bytes(k), 0xFFFFFFFF) ^ 0xFFFFFFFF for i in range(256)]
        assert CRC_TABLE[k].tolist() == want


def test_tir_crc32_matches_zlib_on_every_length_and_offset(crc_kernel: Any) -> None:
    import tvm

    from featcomp.runtime_ops.tvm.coder import CRC_TABLE

    rng = np.random.default_rng(12)
    data = rng.integers(0, 256, (64, 48), dtype=np.uint8)
    for start in range(8):
        lo = np.full(64, start, np.int64)
        hi = start + np.minimum(np.arange(64), 40).astype(np.int64)
        dev = tvm.cpu()
        t = lambda a: tvm.runtime.tensor(np.ascontiguousarray(a), dev)  # noqa: E731
        out = t(np.zeros(64, np.uint32))
        crc_kernel(t(data), t(lo), t(hi), t(CRC_TABLE), out)
        want = [zlib.crc32(data[b, lo[b]:hi[b]].tobytes()) for b in range(64)]
        assert out.numpy().tolist() == want, f"start {start}"
