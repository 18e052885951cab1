"""Compiled models keep only a site's 8-bit symbols, and consumers read them directly
(runtime_ops/tvm/fuse_decode.py): decodes folded into conv weights or fused into the consumer's
function, no decoded tensor in the memory plan or inside a fused PrimFunc, outputs unchanged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

import models
from featcomp.codecs.base import storage_dtype
from tvm_tools import need_tvm

SHARED = Path(__file__).resolve().parents[2] / "shared"


def test_storage_dtype_is_the_narrowest_that_holds_the_range() -> None:
    assert storage_dtype(-127, 127) == np.int8
    assert storage_dtype(0, 255) == np.uint8
    assert storage_dtype(np.array([0.0, -3.0]), np.array([100.0, 3.0])) == np.int8
    assert storage_dtype(-128, 128) == np.int16  # neither 8-bit type holds it
    assert storage_dtype(-1, 255) == np.int16


def _compressed(tmp_path: Path, **options: Any) -> Any:
    from featcomp import api

    path = tmp_path / "calib.npz"
    data = np.random.default_rng(0).normal(size=(8, 3, models.SIZE, models.SIZE)).astype(np.float32)
    np.savez(path, **{models.INPUT: data})
    return api.compress(models.residual(), path, **options).model


def _both(model: Any) -> tuple[Any, Any, np.ndarray, np.ndarray]:
    """(fused build, unfused build, their outputs) on one random input."""
    build = need_tvm()
    target = build.make_target("host")
    fused = build.compile_model(model, target)
    plain = build.compile_model(model, target, fuse=False)
    x = np.random.default_rng(5).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    return fused, plain, build.run_local(fused, [x])[0], build.run_local(plain, [x])[0]


def test_g1_sites_store_8_bits_and_consumers_read_them(tmp_path: Path) -> None:
    """residual(): sites read by convs, by a residual Add (an epilogue of the next conv), by a MaxPool."""
    from featcomp import api
    from featcomp.runtime_ops.tvm import fuse_decode

    model = _compressed(tmp_path, sqnr_db=30.0, groups=(1,))
    codecs = api.site_codecs(model)
    fused, plain, out, ref = _both(model)
    rows = {r["site"]: r for r in fused.stats["sites"]}
    assert set(rows) == set(codecs)
    for name, site in codecs.items():
        assert rows[name]["stored"]["dtype"] == str(site.storage_dtype) != "int16"
        assert rows[name]["decode"] == "in consumers", rows[name]
    assert sum(r["folded_into_convs"] for r in rows.values()) >= 3
    assert sum(r["fused_into_consumers"] for r in rows.values()) >= 2  # the Add and the MaxPool
    sites = {r["site"]: fuse_decode.SiteOutcome(r["site"], r["stored"]["dtype"], tuple(r["stored"]["shape"]), 1)
             for r in rows.values()}
    assert not any(fuse_decode.decoded_allocations(fused.module, sites).values())
    unfused = fuse_decode.decoded_allocations(plain.module, sites)
    assert all(unfused.values())  # the check sees the decoded tensors when they are there
    assert fused.stats["memory"]["activation_bytes"] < plain.stats["memory"]["activation_bytes"]
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_grouped_sites_fold_into_convs_and_say_where_they_cannot(tmp_path: Path) -> None:
    """DCT mode (G = 8): the inverse transform folds into the convs' weights; the Add and MaxPool
    consumers keep a decoded tensor, and the site's row says why."""
    model = _compressed(tmp_path, sqnr_db=30.0, groups=(8,))
    fused, _, out, ref = _both(model)
    rows = fused.stats["sites"]
    assert any(r["group"] == 8 and r["folded_into_convs"] for r in rows)
    kept = [r for r in rows if r["decode"] == "decoded tensor"]
    assert kept and all(r["fallback_reasons"] for r in kept)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))
