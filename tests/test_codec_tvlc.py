"""Transform-VLC, the numpy reference codec: run tokens, exact round trips, an independent
re-derivation of the encode op, calibration that keeps its promises, a golden bitstream, and a
decoder that refuses every corrupt stream with a CodecError (truncation, fuzzing).
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import struct
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import DATA_KINDS
from featcomp.codecs.base import ActivationStats, sqnr_db
from featcomp.codecs.huffman import HuffmanTable
from featcomp.codecs.tvlc import (
    NO_TABLE, RUN_MAX, Coder, TransformVlc, TvlcSite, _Fitter, dead_zone_round, integer_basis, tokens_of, values_of,
)
from featcomp.errors import CodecError, FeatcompError
from test_bitstream import HEADER_V2, split_slices, with_slice

HEADER = HEADER_V2
HEADER_LEN = 24
FUZZ = settings(max_examples=150, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SHAPE = (16, 8, 8)


def stats_of(x: np.ndarray, name: str = "t") -> ActivationStats:
    stats = ActivationStats(name, tuple(x.shape[1:]), covariance=True, spatial_values=1 << 16)
    for sample in x:
        stats.update(sample[None])
    return stats


@pytest.fixture(scope="module")
def fronts() -> dict[str, tuple[list, np.ndarray, np.ndarray]]:
    """Per data kind and transform: the candidate front, calibration data and held-out data."""
    out = {}
    for seed, (kind, make) in enumerate(DATA_KINDS.items()):
        rng = np.random.default_rng(300 + seed)
        calib, fresh = make(rng, 8), make(rng, 4)
        stats = stats_of(calib, kind)
        for transform in ("pca", "dct", "none"):
            out[f"{kind}-{transform}"] = (TransformVlc(transform=transform, groups=(4, 16)).candidates(stats), calib, fresh)
    return out


# --- tokens --------------------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None, database=None, derandomize=True)
@given(planes=st.integers(1, 4), hw=st.integers(1, 200), density=st.floats(0.0, 1.0), seed=st.integers(0, 2**31))
def test_tokens_round_trip_and_runs_stay_in_planes(planes: int, hw: int, density: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    v = np.where(rng.random((planes, hw)) < density, rng.integers(-5, 6, (planes, hw)), 0)
    hi = 5
    t = tokens_of(v, hi)
    np.testing.assert_array_equal(values_of(t, hi, v.size), v.reshape(-1))
    assert t.max(initial=0) <= hi + RUN_MAX - 1
    # no run token spans a plane boundary: decoding plane by plane gives the same tokens
    per_plane = np.concatenate([tokens_of(v[i:i + 1], hi) for i in range(planes)])
    np.testing.assert_array_equal(per_plane, t)


def test_long_runs_split_into_max_runs() -> None:
    v = np.zeros((1, 3 * RUN_MAX + 5), np.int64)
    t = tokens_of(v, 2)
    np.testing.assert_array_equal(t, [2 + RUN_MAX - 1] * 3 + [2 + 5 - 1])
    assert tokens_of(np.zeros((1, 1), np.int64), 2).tolist() == [0]


def test_values_of_rejects_wrong_count() -> None:
    with pytest.raises(CodecError):
        values_of(np.array([0, 9]), 2, 5)


# --- calibrated sites ----------------------------------------------------------------------------------------

def test_pca_beats_identity_on_correlated_channels() -> None:
    """On low-rank signed data big enough to amortise the basis, the calibrated transform must win at
    every SQNR the identity reaches, by a clear margin (side information included)."""
    rng = np.random.default_rng(11)
    stats = stats_of(DATA_KINDS["smooth"](rng, 6, (16, 32, 32)))
    pca = TransformVlc(transform="pca", groups=(16,)).candidates(stats)
    none = TransformVlc(transform="none").candidates(stats)
    for cand in [c for c in none if 10 <= c.sqnr_db <= 35]:
        better = [p for p in pca if p.site.group == 16 and p.sqnr_db >= cand.sqnr_db]
        assert better and min(p.bits_per_value for p in better) < 0.8 * cand.bits_per_value


def test_fronts_are_sorted_pareto_and_bits_include_side(fronts) -> None:
    for name, (front, _, _) in fronts.items():
        bits = [c.bits_per_value for c in front]
        db = [c.sqnr_db for c in front]
        assert bits == sorted(bits) and db == sorted(db), name
        for c in front:
            assert c.bits_per_value >= 8.0 * c.site.side_bytes / int(np.prod(SHAPE))


def test_candidate_sqnr_matches_measured_on_calibration_data(fronts) -> None:
    for name, (front, calib, _) in fronts.items():
        for cand in front:
            got = sqnr_db(calib, cand.site.dequantize(cand.site.symbols(calib)))
            assert abs(got - cand.sqnr_db) < 1.0, (name, cand.site.mode, got, cand.sqnr_db)


def test_round_trip_exact_and_size_exact_on_fresh_data(fronts) -> None:
    for name, (front, _, fresh) in fronts.items():
        for cand in front[:: max(1, len(front) // 4)]:
            site = cand.site
            for x in fresh:
                s = site.symbols(x)
                data = site.pack(s)
                assert len(data) == site.coded_bytes(s)
                np.testing.assert_array_equal(site.unpack(data), s)
                np.testing.assert_array_equal(site.decode(data), site.dequantize(s))


def test_symbols_match_independent_rederivation(fronts) -> None:
    """Integer maths in int64 (exact), then the float32 division the op performs."""
    for name, (front, _, fresh) in fronts.items():
        for cand in front:
            site = cand.site
            c, h, w = site.shape
            k, g = site.cmin.shape
            q = np.clip(np.rint(fresh / site.scale), site.qmin, site.qmax).astype(np.int64)
            t = np.broadcast_to(site.transform.astype(np.int64), (k, g, g))
            y = np.einsum("kfg,nkgp->nkfp", t, q.reshape(len(fresh), k, g, h * w))
            assert np.abs(y).max() < 2**24  # exact in float32
            coef = np.rint(y.astype(np.float32) / site.step)
            coef = np.clip(coef, site.cmin[..., None], site.cmax[..., None])
            np.testing.assert_array_equal(coef.reshape(fresh.shape).astype(np.int16), site.symbols(fresh))


def test_constant_planes_cost_nothing_and_decode_to_their_constant() -> None:
    rng = np.random.default_rng(21)
    make = DATA_KINDS["smooth"]
    stats = stats_of(make(rng, 8, (16, 32, 32)))
    front = TransformVlc(transform="pca", groups=(16,)).candidates(stats)
    site = next(c.site for c in front if np.any(c.site.coder.table_of == NO_TABLE))
    x = make(rng, 1, (16, 32, 32))[0]
    s = site.symbols(x).reshape(16, -1)
    const = site.coder.table_of == NO_TABLE
    np.testing.assert_array_equal(s[const], np.broadcast_to(site.cmin.reshape(-1)[const][:, None], s[const].shape))
    # a constant plane adds no payload: changing its (impossible) value is never looked at by pack
    assert site.coded_bytes(s.reshape(site.shape)) == len(site.pack(s.reshape(site.shape)))


def test_determinism_and_rebuild_from_arrays(fronts) -> None:
    front, _, fresh = fronts["smooth-pca"]
    site = front[len(front) // 2].site
    again = TvlcSite.from_arrays(site.side_arrays(), site.attributes())
    assert again.param_id == site.param_id
    s = site.symbols(fresh[0])
    assert site.pack(s) == again.pack(s) == site.pack(s.copy())


def test_integer_basis_is_exact_in_float32() -> None:
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.standard_normal((64, 64)))
    t, bits = integer_basis(q[None], 255.0)
    assert t.dtype == np.int16 and bits >= 8
    assert 255 * np.abs(t.astype(np.int64)).sum(axis=-1).max() < 2**24


def test_policy_rejects_bad_options() -> None:
    with pytest.raises(FeatcompError, match="transform"):
        TransformVlc(transform="wavelet")
    with pytest.raises(FeatcompError, match="step"):
        TransformVlc(step=-1.0)


def test_fixed_step_uses_that_step() -> None:
    rng = np.random.default_rng(5)
    stats = stats_of(DATA_KINDS["lowrank"](rng, 6))
    site = TransformVlc(step=4.0).calibrate(stats)
    assert site.delta == 4.0


# --- dead zone (encoder only) ---------------------------------------------------------------------------------

def test_dead_zone_round_is_rint_at_zero_and_rounds_toward_the_centre() -> None:
    rng = np.random.default_rng(9)
    u = (rng.laplace(0.0, 3.0, 20000) + rng.integers(-2, 3, 20000)).astype(np.float32)
    u[:200] = np.rint(u[:200]) + np.float32(0.5)  # ties of plain rounding
    centre = rng.integers(-2, 3, 20000).astype(np.float32)
    np.testing.assert_array_equal(dead_zone_round(u, np.float32(0), centre), np.rint(u))
    plain = np.rint(u)
    for theta in (np.float32(np.float16(1 / 6)), np.float32(np.float16(1 / 3))):
        got = dead_zone_round(u, theta, centre)
        want = np.where(u > centre, np.rint(u - theta), np.where(u < centre, np.rint(u + theta), centre))
        np.testing.assert_array_equal(got, want)
        assert np.all(np.abs(got - centre) <= np.abs(plain - centre))        # never away from the centre
        assert np.all(np.abs(got - plain) <= 1) and np.all(np.abs(got - u) <= 0.5 + theta)
        assert np.all(got[np.abs(u - centre) < 0.5 + theta] == centre[np.abs(u - centre) < 0.5 + theta])
        assert np.sum(got == centre) > np.sum(plain == centre)


def test_dead_zone_lowers_the_real_coded_bytes_of_a_laplacian_sample() -> None:
    """Laplacian coefficients, the same step with and without a dead zone (ranges, centres kept; coder fitted on
    the symbols): fewer real bytes, and fewer bits than the plain front needs for the same SQNR."""
    rng = np.random.default_rng(17)
    x = (rng.laplace(0.0, 1.0, (6, 16, 16, 16)) * rng.uniform(0.5, 2.0, (1, 16, 1, 1))).astype(np.float32)
    stats = stats_of(x)
    fit = _Fitter(stats, np.float32(np.abs(x).max() / 127), True, 127.0, "huffman")
    basis, bits = fit.basis("none", 1)
    y = fit.transformed_spatial(basis)
    plain = [fit.candidate(basis, bits, y, float(d), "none") for d in np.geomspace(2.0, 64.0, 11)]
    db, rate = [c.sqnr_db for c in plain], [c.bits_per_value for c in plain]
    assert db == sorted(db, reverse=True)
    theta = float(np.float16(1 / 6))
    for i in (3, 4, 6):  # steps 5.7, 8, 16 (8-bit units; Laplacian scale ~8)
        dz = fit.candidate(basis, bits, y, float(plain[i].site.delta), "none", theta)
        assert float(dz.site.deadzone) == theta and float(plain[i].site.deadzone) == 0
        real = [sum(c.site.coded_bytes(one) for one in c.site.symbols(x)) for c in (plain[i], dz)]
        assert real[1] < 0.98 * real[0], (i, real)
        assert dz.bits_per_value < np.interp(dz.sqnr_db, db[::-1], rate[::-1]), i


def test_dead_zone_is_encoder_only_and_stored_with_the_site(fronts) -> None:
    front, _, fresh = fronts["lowrank-pca"]
    plain = front[len(front) // 2].site
    site = replace(plain, deadzone=np.float32(np.float16(1 / 3)))
    assert site.param_id == plain.param_id  # the decoder and the bitstream do not depend on it
    arrays = site.side_arrays()
    again = TvlcSite.from_arrays(arrays, site.attributes())
    s = site.symbols(fresh)
    assert again.deadzone == site.deadzone and np.array_equal(again.symbols(fresh), s)
    assert not np.array_equal(s, plain.symbols(fresh))
    np.testing.assert_array_equal(site.unpack(site.pack(s[0])), s[0])
    # a model written before the dead zone has neither input: plain rounding
    old = {k: v for k, v in arrays.items() if k not in ("centre", "deadzone")}
    assert TvlcSite.from_arrays(old, site.attributes()).deadzone == 0
    # off, the two inputs cost two bytes
    off = plain.side_arrays()
    assert off["centre"].nbytes + off["deadzone"].nbytes == 2
    with pytest.raises(FeatcompError, match="centres"):
        TvlcSite.from_arrays({**arrays, "centre": arrays["centre"] + 1}, site.attributes())
    with pytest.raises(FeatcompError, match="dead zone"):
        replace(plain, deadzone=np.float32(0.5))
    with pytest.raises(FeatcompError, match="deadzone"):
        TransformVlc(deadzone=0.7)


def test_dead_zone_candidates_join_the_front() -> None:
    """With deadzone > 0 every group and step is also tried with offsets deadzone/2 and deadzone; off, the
    front is the plain one exactly."""
    rng = np.random.default_rng(4)
    stats = stats_of(DATA_KINDS["smooth"](rng, 6))
    plain = TransformVlc(groups=(4,), grid=4).candidates(stats)
    off = TransformVlc(groups=(4,), grid=4, deadzone=0.0).candidates(stats)
    on = TransformVlc(groups=(4,), grid=4, deadzone=1 / 3).candidates(stats)
    assert [(c.bits_per_value, c.sqnr_db) for c in off] == [(c.bits_per_value, c.sqnr_db) for c in plain]
    assert any(c.site.deadzone > 0 for c in on)
    assert TransformVlc(deadzone=1 / 3).offsets == [0.0, float(np.float16(1 / 6)), float(np.float16(1 / 3))]
    assert TransformVlc(deadzone=1 / 3, step=2.0).offsets == [0.0]


# --- golden bitstream ----------------------------------------------------------------------------------------

def _hand_site(shape: tuple[int, int, int] = SHAPE) -> TvlcSite:
    """Fixed parameters: a 4-point integer DCT per group, tables fitted on a fixed LCG sequence."""
    c = shape[0]
    k, g = c // 4, 4
    n = np.arange(4)
    basis = np.sqrt(0.5) * np.cos(np.pi * (2 * n + 1) * n[:, None] / 8)
    basis[0] = 0.5
    t, bits = integer_basis(basis[None], 255.0)
    cmin = np.full((k, g), -6, np.int16)
    cmax = np.full((k, g), 9, np.int16)
    cmin[1, 2] = cmax[1, 2] = 2  # one constant plane
    centre = np.where(np.arange(c) == 6, 2, np.arange(c) % 3 - 1).astype(np.int64)
    table_of = (np.arange(c) % 2).astype(np.uint8)
    table_of[6] = NO_TABLE
    seq = _lcg(7, 4000)
    tables = tuple(HuffmanTable.fit(np.concatenate([(seq % (9 + 4 * j)) - 4 - j, [-7, 10 + RUN_MAX - 1]]), 16)
                   for j in range(2))
    step = np.float32(3 * (1 << bits))
    return TvlcSite(shape=shape, scale=np.float32(0.05), qmin=np.float32(0), qmax=np.float32(255),
                    transform=np.repeat(t, k, axis=0), step=step, cmin=cmin, cmax=cmax,
                    gain=np.float32(0.05 * float(step) / 4.0 ** bits), coder=Coder(centre, table_of, tables), kind="dct")


def _lcg(seed: int, n: int) -> np.ndarray:
    out = np.empty(n, np.int64)
    state = seed
    for i in range(n):
        state = (1103515245 * state + 12345) % 2**31
        out[i] = state >> 16
    return out


def _golden_symbols(site: TvlcSite, seed: int) -> np.ndarray:
    return _cached_symbols(site, seed).copy()


@functools.lru_cache(maxsize=256)
def _cached_symbols(site: TvlcSite, seed: int) -> np.ndarray:
    raw = _lcg(seed, int(np.prod(site.shape))).reshape(site.shape[0], -1)
    sparse = np.where(raw % 3 == 0, raw % 16 - 6, 0)  # runs of zeros and levels in range
    s = np.clip(sparse + site.coder.centre[:, None], site.cmin.reshape(-1, 1), site.cmax.reshape(-1, 1))
    return s.reshape(site.shape).astype(np.int16)


HAND = _hand_site()
BANDS = _hand_site((16, 25, 64))  # three slices: bands of 9, 9 and 7 rows
GOLDEN_SHA256 = "96d90c56438b5237938ed135e881acc1e4206f7990fdc1d3a9889b3172769880"
GOLDEN_BANDS_SHA256 = "9c0264c3a7457639835767797be591f4c736bb508a8fff2a6ff3c063b816720b"


@pytest.mark.parametrize("name", ["HAND", "BANDS"])
def test_golden_bitstream(name: str) -> None:
    site = HAND if name == "HAND" else BANDS
    symbols = _golden_symbols(site, 20240601)
    data = site.pack(symbols)
    np.testing.assert_array_equal(site.unpack(data), symbols)
    magic, version, codec, param, c, h, w, count, *_ = HEADER.unpack_from(data)
    assert (magic, version, codec, param, (c, h, w)) == (b"FC", 2, 2, site.param_id, site.shape)
    assert count == (1 if name == "HAND" else 3) == len(split_slices(data))
    digest = hashlib.sha256(data).hexdigest()
    key = "GOLDEN_SHA256" if name == "HAND" else "GOLDEN_BANDS_SHA256"
    if os.environ.get("FEATCOMP_UPDATE_GOLDEN") == "1":
        path = Path(__file__)
        path.write_text(re.sub(rf'\n{key} = "[0-9a-f]*"', f'\n{key} = "{digest}"', path.read_text(), count=1))
        return
    assert digest == globals()[key], (
        f"the transform-vlc bitstream changed (sha256 {digest}); if intended, bump the format version and rerun "
        "with FEATCOMP_UPDATE_GOLDEN=1")


def test_each_slice_decodes_alone_into_its_rows() -> None:
    symbols = _golden_symbols(BANDS, 3)
    data = BANDS.pack(symbols)
    got = [BANDS.unpack_slice(data, k) for k in range(3)]
    assert [(r0, r1) for r0, r1, _ in got] == [(0, 9), (9, 18), (18, 25)]
    for r0, r1, part in got:
        np.testing.assert_array_equal(part, symbols[:, r0:r1])
    damaged = bytearray(data)
    damaged[-1] ^= 0x01  # the last byte of slice 2
    with pytest.raises(CodecError, match="slice 2 is corrupted"):
        BANDS.unpack(bytes(damaged))
    np.testing.assert_array_equal(BANDS.unpack_slice(bytes(damaged), 0)[2], got[0][2])


def test_runs_end_at_slice_boundaries() -> None:
    """A plane at its centre throughout codes as runs within each band: no run token spans two slices."""
    symbols = _golden_symbols(BANDS, 4)
    live = int(np.flatnonzero(BANDS.coder.table_of != NO_TABLE)[0])
    symbols[live] = BANDS.coder.centre[live]
    data = BANDS.pack(symbols)
    np.testing.assert_array_equal(BANDS.unpack(data), symbols)
    assert BANDS.coded_bytes(symbols) == len(data)


def test_version_1_streams_are_refused_with_the_version() -> None:
    payload = split_slices(HAND.pack(_golden_symbols(HAND, 2)))[0]
    v1 = struct.Struct("<2sBBIHHHII").pack(b"FC", 1, 2, HAND.param_id, *HAND.shape, len(payload), zlib.crc32(payload))
    with pytest.raises(CodecError, match="format version 1 is not supported"):
        HAND.unpack(v1 + payload)


# --- corruption ----------------------------------------------------------------------------------------------

def with_payload(stream: bytes, payload: bytes, k: int = 0) -> bytes:
    return with_slice(stream, payload, k)


def check_decoded(site: TvlcSite, data: bytes) -> None:
    """The fuzz property: a CodecError, or int16 symbols of the site's shape within its ranges."""
    try:
        out = site.unpack(data)
    except CodecError:
        return
    assert out.dtype == np.int16 and out.shape == site.shape
    flat = out.reshape(site.shape[0], -1)
    assert np.all(flat >= site.cmin.reshape(-1, 1)) and np.all(flat <= site.cmax.reshape(-1, 1))


@pytest.mark.parametrize("name", ["HAND", "BANDS"])
def test_every_truncation_is_a_codec_error(name: str) -> None:
    site = HAND if name == "HAND" else BANDS
    data = site.pack(_golden_symbols(site, 99))
    stride = 1 if len(data) < 1000 else 17
    for n in range(0, len(data), stride):
        with pytest.raises(CodecError):
            site.unpack(data[:n])
    for k, payload in enumerate(split_slices(data)):
        for n in range(0, len(payload), stride):
            with pytest.raises(CodecError):
                site.unpack(with_payload(data, payload[:n], k))
        with pytest.raises(CodecError):
            site.unpack(with_payload(data, payload + b"\x00", k))


@FUZZ
@given(payload=st.binary(max_size=200), k=st.integers(0, 2), banded=st.booleans())
def test_fuzz_random_payload_with_valid_header(payload: bytes, k: int, banded: bool) -> None:
    site = BANDS if banded else HAND
    check_decoded(site, with_payload(site.pack(_golden_symbols(site, 1)), payload, k if banded else 0))


@FUZZ
@given(seed=st.integers(0, 2**31 - 1), banded=st.booleans(), data=st.data())
def test_fuzz_mutated_valid_streams(seed: int, banded: bool, data: st.DataObject) -> None:
    site = BANDS if banded else HAND
    stream = site.pack(_golden_symbols(site, seed % (50 if banded else 1000)))
    slices = split_slices(stream)
    k = data.draw(st.integers(0, len(slices) - 1))
    payload = bytearray(slices[k])
    edits = data.draw(st.lists(st.tuples(st.integers(0, len(payload) - 1), st.integers(0, 255)), max_size=6))
    for position, value in edits:
        payload[position] = value
    cut = data.draw(st.integers(0, len(payload)))
    mutated = bytes(payload[:cut]) + data.draw(st.binary(max_size=4)) if data.draw(st.booleans()) else bytes(payload)
    check_decoded(site, with_payload(stream, mutated, k))


@FUZZ
@given(blob=st.binary(max_size=300))
def test_fuzz_coder_description(blob: bytes) -> None:
    """The coder side information parses, or is refused with a CodecError."""
    try:
        Coder.from_bytes(blob)
    except CodecError:
        pass
    good = HAND.coder.to_bytes()
    for cut in range(0, len(good), 7):
        with pytest.raises(CodecError):
            Coder.from_bytes(good[:cut])
