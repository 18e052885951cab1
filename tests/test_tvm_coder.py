"""The transform-VLC coder as TIR kernels (DCT-CM's: test_tvm_dctcm_coder.py) against the numpy reference coder: the same bytes for the same
symbols (hand and calibrated sites, escapes, long runs, constant planes, batches), the same symbols back,
and a decoder that refuses exactly the streams numpy refuses (mutations that pass the CRC, truncations,
foreign headers) without reading or writing out of bounds; then inside compiled models."""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pytest
from conftest import DATA_KINDS
from test_bitstream import seal, split_slices, with_slice
from test_codec_tvlc import BANDS, HAND, _golden_symbols, stats_of
from tvm_tools import need_tvm

from featcomp.codecs.tvlc import NO_TABLE, Coder, TransformVlc, TvlcSite
from featcomp.errors import CodecError, FeatcompError
from featcomp.quality import OutputSnr


@pytest.fixture(scope="module")
def tir():  # type: ignore[no-untyped-def]
    need_tvm()
    from featcomp.runtime_ops.tvm import coder

    return coder


def calibrated_sites() -> list[tuple[str, TvlcSite, np.ndarray]]:
    """(name, site, fresh symbols [3, C, H, W]) for every data kind and transform, at two rates."""
    out = []
    for seed, (kind, make) in enumerate(DATA_KINDS.items()):
        rng = np.random.default_rng(500 + seed)
        shape = (16, 40, 40)  # 6 x 1600 pixel vectors: enough for clipped ranges and constant planes; 3 slices
        stats = stats_of(make(rng, 6, shape), kind)
        fresh = make(rng, 3, shape)
        for transform in ("pca", "dct", "none"):
            for db in (12.0, 30.0):
                site = TransformVlc(transform=transform, groups=(4, 16), sqnr_db=db, coder="own").calibrate(stats)
                out.append((f"{kind}-{transform}-{db:g}dB", site, site.symbols(fresh)))
    return out


SITES = calibrated_sites()


def test_the_cases_cover_escapes_long_runs_and_constant_planes() -> None:
    """Otherwise the bit-exactness tests below would prove less than they claim."""
    escapes = sum(t.escape_length > 0 for _, s, _ in SITES for t in s.coder.tables)
    constant = sum(int(np.sum(s.coder.table_of == NO_TABLE)) for _, s, _ in SITES)
    long_runs = 0
    for _, site, symbols in SITES:
        centred = symbols.reshape(len(symbols), site.shape[0], -1) - site.coder.centre[:, None]
        live = site.coder.table_of != NO_TABLE
        long_runs += int(np.sum(np.all(centred[:, live] == 0, axis=2)))  # whole planes at the centre: runs of RUN_MAX
    assert escapes > 0 and constant > 0 and long_runs > 0


def round_trips_like_numpy(coder: Any, site: Any, symbols: np.ndarray) -> None:
    """The TIR streams are site.pack's, byte for byte, and the TIR unpack gives the symbols back."""
    streams = coder.pack(symbols)
    assert streams == [site.pack(s) for s in symbols]
    back, status = coder.unpack(streams)
    assert status.tolist() == [0] * len(symbols)
    np.testing.assert_array_equal(back, symbols)


@pytest.mark.parametrize("name,site,symbols", SITES, ids=[s[0] for s in SITES])
def test_pack_is_the_numpy_bitstream_and_unpack_inverts_it(tir, name: str, site: TvlcSite, symbols: np.ndarray) -> None:
    round_trips_like_numpy(tir.TirCoder(site, n=len(symbols)), site, symbols)


def test_hand_site_golden_streams_and_every_run_length(tir) -> None:
    """The golden-bitstream site, plus planes made of runs of every length 1..2*RUN_MAX+1 between levels."""
    symbols = np.stack([_golden_symbols(HAND, seed) for seed in (20240601, 7, 8)])
    c, h, w = HAND.shape
    flat = symbols.reshape(3, c, h * w)
    live = np.flatnonzero(HAND.coder.table_of != NO_TABLE)
    for k, plane in enumerate(live[:3]):
        centre = HAND.coder.centre[plane]
        level = centre + 1 if centre + 1 <= HAND.cmax.reshape(-1)[plane] else centre - 1
        row = np.full(h * w, centre)
        row[np.cumsum(np.arange(1, 12)) * (k + 1) % (h * w)] = level
        flat[2, plane] = row
    coder = tir.TirCoder(HAND, n=3)
    streams = coder.pack(symbols)
    assert streams == [HAND.pack(s) for s in symbols]
    back, status = coder.unpack(streams)
    assert not status.any()
    np.testing.assert_array_equal(back, symbols)


def test_site_with_only_constant_planes(tir) -> None:
    c = HAND.shape[0]
    const = TvlcSite(shape=HAND.shape, scale=HAND.scale, qmin=HAND.qmin, qmax=HAND.qmax, transform=HAND.transform,
                     step=HAND.step, cmin=HAND.cmin, cmax=HAND.cmin.copy(), gain=HAND.gain,
                     coder=Coder(HAND.coder.centre, np.full(c, NO_TABLE, np.uint8), ()), kind="dct")
    symbols = np.broadcast_to(const.cmin.reshape(c, 1, 1), const.shape).astype(np.int16)[None]
    coder = tir.TirCoder(const)
    assert coder.pack(symbols) == [const.pack(symbols[0])]
    back, status = coder.unpack(coder.pack(symbols))
    assert status[0] == 0
    np.testing.assert_array_equal(back, symbols)


def test_symbols_the_tables_cannot_code_are_refused(tir) -> None:
    symbols = _golden_symbols(HAND, 3)[None].copy()
    symbols[0, 0, 0, 0] = 30000
    with pytest.raises(CodecError):
        HAND.pack(symbols[0])
    with pytest.raises(FeatcompError, match="symbols the site cannot code"):
        tir.TirCoder(HAND).pack(symbols)


def _reseal(stream: bytes, payload: bytes, k: int = 0) -> bytes:
    """The stream with slice k replaced by payload, table and CRCs recomputed, so damage reaches the plane decoder."""
    return with_slice(stream, payload, k)


def _damaged(site: Any, rng: np.random.Generator, count: int,
             make: Callable[[Any, int], np.ndarray] = _golden_symbols) -> list[bytes]:
    """Valid streams (of make(site, seed)) with resealed byte edits, bit flips, truncations, extensions, random
    payloads (of one slice), slice tables whose lengths overlap, leave gaps or run past the end (under a valid
    table CRC), and a few unsealed (header or CRC) faults."""
    out = []
    for i in range(count):
        stream = site.pack(make(site, 1000 + i))
        slices = split_slices(stream)
        k = int(rng.integers(0, len(slices)))
        payload = bytearray(slices[k])
        kind = i % 7
        if not payload and kind in (0, 1, 4):
            kind = 3
        if kind == 0:
            for at in rng.integers(0, len(payload), rng.integers(1, 4)):
                payload[at] = int(rng.integers(0, 256))
        elif kind == 1:
            at = int(rng.integers(0, 8 * len(payload)))
            payload[at // 8] ^= 0x80 >> (at % 8)
        elif kind == 2:
            payload = payload[:int(rng.integers(0, len(payload)))]
        elif kind == 3:
            payload += bytes(rng.integers(0, 256, rng.integers(1, 5)).astype(np.uint8))
        elif kind == 4:
            payload = bytearray(rng.integers(0, 256, len(payload)).astype(np.uint8).tobytes())
        if kind == 6:
            lengths = [len(p) for p in slices]
            lengths[k] += int(rng.choice([-3, -1, 1, 2, 1 << 31]))
            if len(slices) > 1 and rng.random() < 0.5:
                lengths[(k + 1) % len(slices)] -= lengths[k] - len(slices[k])  # same total: the slices overlap
            out.append(seal(stream, slices, [max(0, n) for n in lengths]))
        elif kind == 5:
            raw = bytearray(stream)
            raw[int(rng.integers(0, len(raw)))] ^= 1 << int(rng.integers(0, 8))
            out.append(bytes(raw[:int(rng.integers(len(raw) // 2, len(raw) + 1))]))
        else:
            out.append(_reseal(stream, bytes(payload), k))
    return out


def refused_like_numpy(coder: Any, site: Any, streams: list[bytes]) -> None:
    """The TIR unpack refuses exactly the streams site.unpack refuses, and decodes the rest identically."""
    back, status = coder.unpack(streams)
    refused = 0
    for data, out, st in zip(streams, back, status):
        try:
            ref = site.unpack(data)
        except CodecError:
            refused += 1
            assert st != 0
            assert not out.any()  # a refused stream leaves zeros, never garbage
            continue
        assert st == 0
        np.testing.assert_array_equal(out, ref)
    assert 0 < refused < len(streams)  # both outcomes occur: the comparison is not vacuous


def test_corrupt_streams_are_refused_exactly_when_numpy_refuses_them(tir) -> None:
    rng = np.random.default_rng(11)
    streams = _damaged(HAND, rng, 240) + [b"", b"FC", b"\x00" * 40]
    refused_like_numpy(tir.TirCoder(HAND, n=len(streams)), HAND, streams)


def test_three_slice_site_packs_like_numpy_and_refuses_like_numpy(tir) -> None:
    """BANDS (three slices of 9, 9 and 7 rows): streams equal, symbols back, damage to any slice or to the
    slice table refused exactly when numpy refuses it, and a refused stream zero in every slice."""
    from featcomp.codecs import bitstream

    assert len(bitstream.bands(BANDS.shape)) - 1 == 3
    symbols = np.stack([_golden_symbols(BANDS, seed) for seed in (20240601, 7)])
    round_trips_like_numpy(tir.TirCoder(BANDS, n=2), BANDS, symbols)
    streams = _damaged(BANDS, np.random.default_rng(12), 70)
    refused_like_numpy(tir.TirCoder(BANDS, n=len(streams)), BANDS, streams)


def test_a_stream_longer_than_the_site_can_produce_is_refused(tir) -> None:
    coder = tir.TirCoder(HAND)
    stream = HAND.pack(_golden_symbols(HAND, 5))
    payload = split_slices(stream)[0] + b"\x00" * coder.arrays.max_bytes
    _, status = coder.unpack([_reseal(stream, payload)])
    assert status[0] != 0


# --- inside compiled models ---------------------------------------------------------------------------------

def _compressed(calib_npz, codec: str = "transform-vlc", coder: str = "own"):  # type: ignore[no-untyped-def]
    import models

    from featcomp import api

    return api.compress(models.residual(), calib_npz, codec=codec, quality=OutputSnr(25.0),
                        codec_options={"coder": coder}).model


@pytest.mark.parametrize("codec,coder", [("transform-vlc", "own"), ("dct-cm", "own"), ("dct-cm", "rans")])
def test_model_with_coder_decodes_what_it_packed(tir, calib_npz, codec: str, coder: str) -> None:
    """Host build, batch 2: the coder changes no output, and each site's coded bytes are len(site.pack)
    of the very symbols the compiled encoder produced (exposed as extra outputs). rANS: its kernels' int64
    reciprocal table reaches the compiled model as int64 (relax.const alone would make it int32)."""
    import models
    from featcomp.passes.pairs import find_pairs
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import build, convert
    from onnx import TensorProto

    model = _compressed(calib_npz, codec, coder)
    pairs = find_pairs(model)
    mod = convert.import_model(model, coder=True)
    name = "rans" if coder == "rans" else "tvlc" if codec == "transform-vlc" else "dctcm"
    coders = sorted(gv.name_hint for gv, _ in mod.functions_items() if gv.name_hint.endswith(("_pack", "_unpack")))
    assert len(pairs) > 1 and coders == [f"fc_{name}_pack", f"fc_{name}_unpack"]  # one kernel pair serves every site
    probe = ort.with_outputs(model, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs))
    target = build.make_target("host")
    shape = {models.INPUT: [2, 3, models.SIZE, models.SIZE]}
    plain = build.compile_model(probe, target, shape_dict=shape)
    coded = build.compile_model(probe, target, shape_dict=shape, coder=True)
    assert len(coded.outputs) == len(plain.outputs) + len(pairs)
    scratch = coded.stats["coder_scratch"]  # the coders' per-task workspace per site, and per thread in the total
    assert [r["site"] for r in scratch["sites"]] == [p.site for p in pairs] and "coder_scratch" not in plain.stats
    most = max(max(r["pack_task_bytes"], r["unpack_task_bytes"]) for r in scratch["sites"])
    assert coded.stats["memory"]["coder_scratch_bytes_per_thread"] == scratch["bytes_per_thread"] == most > 0
    x = np.random.default_rng(4).normal(size=(2, 3, models.SIZE, models.SIZE)).astype(np.float32)
    want, got = build.run_local(plain, [x]), build.run_local(coded, [x])
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    k = len(plain.outputs)
    for i, p in enumerate(pairs):
        symbols, lengths = got[1 + i], got[k + i]
        assert lengths.dtype == np.int32
        assert lengths.tolist() == [len(p.codec.pack(s)) for s in symbols]


def test_coder_needs_a_compressed_model(tir, model_file, cli, tmp_path) -> None:
    import models

    path = model_file(models.residual(), "plain.onnx")
    run = cli("compile", path, "--target", "host", "-o", tmp_path / "bundle", "--coder", "-q")
    assert run.code == 1 and "no featcomp pairs" in run.err and "Traceback" not in run.err
    assert not (tmp_path / "bundle").exists()


# --- slices in parallel --------------------------------------------------------------------------------------

@pytest.mark.parametrize("codec", ["tvlc", "dctcm"])
@pytest.mark.parametrize("op", ["pack", "unpack"])
def test_the_slices_of_one_stream_are_a_parallel_loop(tir, codec: str, op: str) -> None:
    """The kernel's outer loop runs over samples x slices in parallel (so one stream at batch 1 keeps every core
    busy), then a per-sample parallel loop seals (pack) or combines the slices' verdicts (unpack); the kernels
    are marked scheduled, so this is the loop nest the compiler gets, and the compiled code launches both."""
    import re

    import tvm
    from featcomp.runtime_ops.tvm import coder_kernels, dctcm_coder_kernels

    kernels = coder_kernels if codec == "tvlc" else dctcm_coder_kernels
    func = getattr(kernels, f"{op}_kernel")()
    script = func.script()
    loops = re.findall(r"for (\w+) in T\.(parallel|serial)\(([^)]*)\)", script)
    parallel = [(var, extent) for var, kind, extent in loops if kind == "parallel"]
    assert parallel[0][1] == "n * nsl" and "nsl: T.let[T.int64] = slices_1 - T.int64(1)" in script, script[:2000]
    assert parallel[1] == ("b", "n")
    assert len(parallel) == 2  # nothing else: every other loop runs inside one slice's iteration
    assert tir.KERNELS  # the kernels coder.py builds are these
    lib = tvm.compile(tvm.IRModule({"k": func.with_attr("global_symbol", "k")}), target="llvm")
    ir = lib.mod.inspect_source("ll")
    assert len(re.findall(r"define [^\n]*@__tvm_parallel_lambda", ir)) == 2
    assert len(re.findall(r"call i32 %\d+\(ptr nonnull @__tvm_parallel_lambda", ir)) == 2  # TVMBackendParallelLaunch


@pytest.mark.parametrize("codec", ["transform-vlc", "dct-cm"])
def test_model_with_four_slice_sites_codes_them_like_numpy(tir, tmp_path, codec: str) -> None:
    """Batch 1, sites of 8 x 64 x 64 (four slices each): the compiled coder's stream lengths are len(site.pack)
    of the compiled encoder's symbols, and the outputs equal the model's without the coder."""
    import models
    from featcomp.passes.pairs import find_pairs
    from featcomp.runtime_ops import ort
    from featcomp.runtime_ops.tvm import build
    from onnx import TensorProto

    from featcomp import api
    from featcomp.codecs import bitstream

    x = np.random.default_rng(2).normal(size=(3, 3, 64, 64)).astype(np.float32)
    np.savez(tmp_path / "calib.npz", **{models.INPUT: x})
    model = api.compress(models.two_convs(dims=(1, 3, 64, 64)), tmp_path / "calib.npz", codec=codec,
                         quality=OutputSnr(20.0), codec_options={"coder": "own"}).model  # TIR: no rANS
    pairs = find_pairs(model)
    assert pairs and all(len(bitstream.bands(p.codec.shape)) - 1 == 4 for p in pairs)
    probe = ort.with_outputs(model, [p.symbols for p in pairs], [TensorProto.INT16] * len(pairs))
    target = build.make_target("host")
    shape = {models.INPUT: [1, 3, 64, 64]}
    plain = build.compile_model(probe, target, shape_dict=shape)
    coded = build.compile_model(probe, target, shape_dict=shape, coder=True)
    want, got = build.run_local(plain, [x[:1]]), build.run_local(coded, [x[:1]])
    for a, b in zip(want, got):
        np.testing.assert_array_equal(a, b)
    k = len(plain.outputs)
    for i, p in enumerate(pairs):
        assert got[k + i].tolist() == [len(p.codec.pack(got[1 + i][0]))]


def test_a_version_1_stream_is_refused_like_numpy(tir) -> None:
    """A v1 stream (22-byte header, one unsliced payload) of the right site: numpy names the version, the TIR
    unpack refuses it as a foreign container (status 1) and leaves zeros."""
    import struct
    import zlib

    from featcomp.runtime_ops.tvm.stream_tir import ST_CONTAINER

    payload = split_slices(HAND.pack(_golden_symbols(HAND, 2)))[0]
    v1 = struct.Struct("<2sBBIHHHII").pack(b"FC", 1, 2, HAND.param_id, *HAND.shape, len(payload), zlib.crc32(payload))
    with pytest.raises(CodecError, match="format version 1 is not supported"):
        HAND.unpack(v1 + payload)
    back, status = tir.TirCoder(HAND).unpack([v1 + payload])
    assert status.tolist() == [ST_CONTAINER] and not back.any()
