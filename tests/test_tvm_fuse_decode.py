"""Compiled models keep only a site's 8-bit symbols, and consumers read them directly
(runtime_ops/tvm/fuse_decode.py): decodes folded into conv weights or fused into the consumer's
function, no decoded tensor in the memory plan or inside a fused PrimFunc, outputs unchanged."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import models
import numpy as np
import pytest
from tvm_tools import need_tvm

from featcomp.codecs.base import storage_dtype
from featcomp.quality import Sqnr

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
    from featcomp.runtime_ops.tvm import convert, fuse_decode

    from featcomp import api

    model = _compressed(tmp_path, quality=Sqnr(30.0), codec_options={"groups": (1,)})
    codecs = api.site_codecs(model)
    fused, plain, out, ref = _both(model)
    rows = {r["site"]: r for r in fused.stats["sites"]}
    assert set(rows) == set(codecs)
    for name, site in codecs.items():
        kept, offset = convert.stored_form(str(site.storage_dtype))  # uint8 sites: int8, symbol - 128
        assert rows[name]["stored"]["dtype"] == kept == "int8" and rows[name]["stored"]["offset"] == offset
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
    # a decode fused for a conv's residual Add is computed in the tile's write, not as a block of its
    # own that fills a whole decoded tensor inside the function (conv_schedules.output_stage)
    convs = [f.script() for _, f in fused.module.functions_items() if 'T.sblock("conv2d_nchw_update")' in f.script()]
    assert any("fc_symbols" in script for script in convs)
    for script in convs:
        assert 'T.sblock("decode")' not in script, script


def test_uint8_sites_share_the_int8_pool_bit_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One 8-bit pool: [0, 255] sites are stored as int8 (symbol - 128), read by convs (through a
    widening float(y) + 128 in the conv's input band), a residual Add and a MaxPool; the outputs are
    bit-identical to the build that stores them as uint8, whose plan has a uint8 pool of its own."""
    from featcomp.runtime_ops.tvm import convert, fuse_decode

    from featcomp import api

    model = _compressed(tmp_path, quality=Sqnr(40.0), codec_options={"groups": (1,)})
    dtypes = [str(s.storage_dtype) for s in api.site_codecs(model).values()]
    assert "uint8" in dtypes and "int8" in dtypes, dtypes
    build = need_tvm()
    target = build.make_target("host")
    x = np.random.default_rng(5).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    shared = build.compile_model(model, target)
    rows = shared.stats["sites"]
    assert sorted(r["stored"]["offset"] for r in rows) == sorted(128 if d == "uint8" else 0 for d in dtypes)
    assert all(r["stored"]["dtype"] == "int8" and r["decode"] == "in consumers" for r in rows), rows
    sites = {r["site"]: fuse_decode.SiteOutcome(r["site"], "int8", tuple(r["stored"]["shape"]), 1) for r in rows}
    assert not any(fuse_decode.decoded_allocations(shared.module, sites).values())
    assert "uint8" not in shared.stats["memory"]["by_dtype"]
    convs = [f.script() for _, f in shared.module.functions_items() if 'T.sblock("conv2d_nchw_update")' in f.script()]
    assert any("T.float32(128.0)" in c for c in convs), convs  # a conv widens float(y) + 128 itself
    monkeypatch.setattr(convert, "stored_form", lambda dtype: (dtype, 0))  # the storage before: uint8 sites
    apart = build.compile_model(model, target)
    assert "uint8" in apart.stats["memory"]["by_dtype"]
    np.testing.assert_array_equal(build.run_local(shared, [x])[0], build.run_local(apart, [x])[0])


def test_folded_convs_widen_the_codes_once_per_band(tmp_path: Path) -> None:
    """14 x 14 maps on SSE: the pixels x channel-vectors tile, whose input load is a broadcast. A conv
    that reads 8-bit codes (a 3x3 with padding, a 1x1) converts its band's input once, in vectors, into
    a float32 scratch (conv_schedules._float_input); the reduction reads float32 without a cast."""
    from featcomp.runtime_ops import ort

    from featcomp import api
    from featcomp.deploy import targets

    build = need_tvm()
    path = tmp_path / "calib.npz"
    dims = (1, 3, 14, 14)
    data = np.random.default_rng(0).normal(size=(8, *dims[1:])).astype(np.float32)
    np.savez(path, **{models.INPUT: data})
    model = api.compress(models.two_convs(dims=dims), path, quality=Sqnr(30.0), codec_options={"groups": (1,)}).model
    target = build.make_target(targets.tvm_spec("x86_64"))
    fused = build.compile_model(model, target)
    scripts = [f.script() for _, f in fused.module.functions_items() if 'T.sblock("conv2d_nchw_update")' in f.script()]
    reading_codes = [s for s in scripts if re.search(r'def main\(\w+: T\.Buffer\(\([^"]*\), "u?int8"\)', s)]
    assert len(reading_codes) == 2, scripts  # conv2 (3x3) and conv3 (1x1)
    for script in reading_codes:
        update = script[script.index('T.sblock("conv2d_nchw_update")'):]
        update = update[:update.index("T.sblock(", 10)]
        assert "T.vectorized(" in script and 'T.Cast("float32"' not in update, update
        assert re.search(r'pad_temp_local\[[^\]]*\] = T\.(Cast\("float32"|if_then_else)', script), script
        assert 'T.Cast("float32", lv' in script or 'T.Cast("float32", T.if_then_else' in script, script
    x = np.random.default_rng(5).normal(size=dims).astype(np.float32)
    want = np.asarray(next(iter(ort.run(ort.session(model), {models.INPUT: x}).values())))
    np.testing.assert_allclose(build.run_local(fused, [x])[0], want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_depthwise_convs_widen_the_codes_once_per_band(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A depthwise conv whose decode folded into its weights reads 8-bit codes: its per-band padded
    scratch is float32 (the widening done once per input, stride 1 and 2), not cast per tap. The
    widening is exact, so the outputs equal those of the build that casts per tap, bit for bit."""
    from featcomp.runtime_ops.tvm import conv_schedules

    from featcomp import api
    from featcomp.deploy import targets

    build = need_tvm()
    model = models.mobile_block()
    path = tmp_path / "calib.npz"
    np.savez(path, **{"input": np.random.default_rng(0).normal(size=(4, 3, 128, 128)).astype(np.float32)})
    compressed = api.compress(model, path, quality=Sqnr(30.0), codec_options={"groups": (1,)}).model
    fused = build.compile_model(compressed, build.make_target(targets.tvm_spec("x86_64")))
    depthwise = [f.script() for _, f in fused.module.functions_items()
                 if 'T.sblock("group_conv2d_nchw_update")' in f.script()
                 and re.search(r'def main\(\w+: T\.Buffer\(\([^"]*\), "u?int8"\)', f.script())]
    assert len(depthwise) == 2, [name for name, _ in fused.module.functions_items()]
    for script in depthwise:
        update = script[script.index('T.sblock("group_conv2d_nchw_update")'):]
        update = update[:update.index("T.sblock(", 10)]
        assert 'T.Cast("float32"' not in update, update
        assert re.search(r'pad_temp_local = T\.sblock_alloc_buffer\([^\n]*scope="local"\)', script), script
        assert '"int8", scope="local"' not in script and '"uint8", scope="local"' not in script, script
    x = np.random.default_rng(5).normal(size=(1, 3, 128, 128)).astype(np.float32)
    monkeypatch.setattr(conv_schedules, "_float_input", lambda sch, conv: None)
    per_tap = build.compile_model(compressed, build.make_target(targets.tvm_spec("x86_64")))
    assert 'T.Cast("float32", pad_temp_local' in "".join(f.script() for _, f in per_tap.module.functions_items())
    np.testing.assert_array_equal(build.run_local(fused, [x])[0], build.run_local(per_tap, [x])[0])


def test_grouped_sites_fold_into_convs(tmp_path: Path) -> None:
    """DCT mode (G = 8): the inverse transform folds into the consuming convs' weights (W D)."""
    model = _compressed(tmp_path, quality=Sqnr(30.0), codec_options={"groups": (8,)})
    fused, _, out, ref = _both(model)
    rows = fused.stats["sites"]
    assert any(r["group"] == 8 and r["folded_into_convs"] for r in rows)
    assert all(r["decode"] == "in consumers" for r in rows)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_sites_that_keep_a_decoded_tensor_say_why() -> None:
    """A decoded tensor that is a model output, and a grouped decode read by no conv: both fall back,
    each with its reason in the site's row (never silently)."""
    from tvm_tools import pair_model

    build = need_tvm()
    g = 8
    arrays = {"scale": np.float32(0.1), "qmin": np.float32(-127), "qmax": np.float32(127),
              "transform": np.eye(g, dtype=np.float32) * 128, "step": np.full((g, 1), 64, np.float32),
              "cmin": np.full((g, 1), -100, np.float32), "cmax": np.full((g, 1), 100, np.float32),
              "decode": np.eye(g, dtype=np.float32) * 0.05}
    ones = {**arrays, "transform": np.ones((1, 1), np.float32), "step": np.ones((1, 1), np.float32),
            "cmin": np.full((1, 1), -127, np.float32), "cmax": np.full((1, 1), 127, np.float32),
            "decode": np.full((1, 1), 0.1, np.float32)}
    model = pair_model([("grouped", arrays, (1, 16, 4, 4)), ("plain", ones, (1, 16, 4, 4))])
    compiled = build.compile_model(model, build.make_target("host"))
    rows = compiled.stats["sites"]
    assert len(rows) == 2 and all(r["decode"] == "decoded tensor" for r in rows)
    reasons = " ".join(reason for r in rows for reason in r["fallback_reasons"])
    assert "grouped decode" in reasons and "model's outputs" in reasons, reasons
    assert {r["stored"]["dtype"] for r in rows} == {"int8"}


@pytest.mark.slow
def test_real_model_keeps_no_decoded_tensor() -> None:
    """EfficientNet-Lite0 compressed with DCT-CM in mask mode (G = 1, what calibration picks at every
    site of the benchmarked models): every site is stored in 8 bits and read by its consumers;
    neither the memory plan nor any PrimFunc holds a float32/int16 tensor of a site's size; top-1
    equals ONNX Runtime's on every sample photo, logits close. (Grouped sites whose consumer is not a
    conv fall back with a reason: test_sites_that_keep_a_decoded_tensor_say_why.)"""
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import fuse_decode

    from featcomp import api, zoo
    from featcomp.data import ImageReader
    from featcomp.modelio import input_spec, prepare
    from featcomp.preprocess import Preprocess

    build = need_tvm()
    model = prepare(zoo.efficientnet_lite0())
    spec = input_spec(model)
    photos = Preprocess.parse(zoo.DEFAULT_PREPROCESS)
    compressed = api.compress(model, ImageReader(zoo.sample_images(), photos, spec, None, role="calibration"),
                              quality=Sqnr(30.0), codec_options={"groups": (1,)}).model
    compiled = build.compile_model(compressed, build.make_target("host"), shape_dict={spec.name: [1, 3, 224, 224]})
    rows = compiled.stats["sites"]
    assert len(rows) == len(api.site_codecs(compressed)) > 40
    assert all(r["stored"]["dtype"] in ("int8", "uint8") for r in rows)
    fused = [r for r in rows if r["decode"] == "in consumers"]
    # the classifier's input (1280 values after the pool) reaches the Gemm through a reshape: that one
    # keeps its decoded tensor, and says so
    assert len(fused) >= len(rows) - 1 and all(r["fallback_reasons"] for r in rows if r not in fused)
    sites = {r["site"]: fuse_decode.SiteOutcome(r["site"], r["stored"]["dtype"], tuple(r["stored"]["shape"]), r["group"])
             for r in fused}
    assert not any(fuse_decode.decoded_allocations(compiled.module, sites).values())
    smallest = min(int(np.prod(r["stored"]["shape"])) for r in fused)
    largest = compiled.stats["memory"]["largest"]
    assert largest.get("float32", 0) < 4 * smallest and largest.get("int16", 0) < 2 * smallest, largest
    for path in zoo.sample_images():
        x = photos.load(path)[None]
        got = build.run_local(compiled, [x])[0]
        want = np.asarray(next(iter(ort.run(ort.session(compressed), {spec.name: x}).values())))
        assert got.argmax() == want.argmax(), path.name
        assert float(np.abs(got - want).max()) < 0.05 * float(np.ptp(want)), path.name


def test_dead_zone_encode_fuses_into_its_producer(tmp_path: Path) -> None:
    """Transform-VLC G = 1 sites with a dead zone (their own encode kernel, centre and offset as two more
    buffers): still fused into the producing layer's output stage, and the compiled model computes what ONNX
    Runtime computes with the dead zone, not what it computes without."""
    from dataclasses import replace

    from featcomp import api
    from featcomp.passes.insert import insert_pairs
    from featcomp.runtime_ops import ort

    plain = _compressed(tmp_path, codec="transform-vlc", quality=Sqnr(20.0), codec_options={"groups": ()})
    codecs = {name: replace(site, deadzone=np.float32(np.float16(1 / 3))) for name, site in api.site_codecs(plain).items()}
    dz = insert_pairs(api.strip(plain), codecs).model
    build = need_tvm()
    fused = build.compile_model(dz, build.make_target("host"))
    assert fused.stats["fusion"]["encode_fused"] == len(codecs) and fused.stats["fusion"]["encode_alone"] == 0
    x = np.random.default_rng(5).normal(size=(1, 3, models.SIZE, models.SIZE)).astype(np.float32)
    out = build.run_local(fused, [x])[0]
    want, without = (next(iter(ort.run(ort.session(m), {models.INPUT: x}).values())) for m in (dz, plain))
    err, moved = float(np.abs(out - want).max()), float(np.abs(without - want).max())
    assert err <= 1e-4 * float(np.abs(want).max()) and err < moved / 10, (err, moved)
