"""The rANS coder (featcomp/codecs/rans.py): exact round trips on integer planes of any range, byte counts that
equal the packed bytes, a model that is fitted once and never changes, a decoder that refuses every corrupt
or truncated payload with a one-line CodecError, and both codecs choosing it per site with a golden stream.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from dataclasses import replace

import numpy as np
import pytest
from conftest import DATA_KINDS, activation_stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_codec_tvlc import stats_of

from featcomp.codecs import bitstream, rans
from featcomp.codecs.dctcm import DctCm, DctCmSite
from featcomp.codecs.rans import NO_GROUP, RansCoder, lanes_of
from featcomp.codecs.tvlc import TransformVlc, TvlcSite
from featcomp.errors import CodecError, FeatcompError

FUZZ = settings(max_examples=120, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SHAPE = (12, 20, 48)  # 11520 values: one slice; (12, 40, 48) has two


def planes(seed: int, shape: tuple[int, int, int], spread: float, lo: int, hi: int, zeros: float) -> np.ndarray:
    """Symbols [N, C, H*W] with a spatially correlated magnitude and some zeros, clipped to [lo, hi]."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    level = np.repeat(rng.gamma(1.0, spread, (4, c, h, 1)), w, axis=3)
    v = np.rint(rng.laplace(0.0, 1.0, (4, c, h, w)) * level)
    v[rng.random(v.shape) < zeros] = 0
    return np.clip(v, lo, hi).reshape(4, c, h * w).astype(np.int64)


def fitted(data: np.ndarray, lo: np.ndarray, hi: np.ndarray, live: np.ndarray | None = None,
           centre: np.ndarray | None = None, shape: tuple[int, int, int] = SHAPE) -> RansCoder:
    c = shape[0]
    live = np.ones(c, bool) if live is None else live
    centre = np.zeros(c, np.int64) if centre is None else centre
    coder, _ = RansCoder.fit(data, lo, hi, live, centre, bitstream.bands(shape))
    return coder


def slices_of(one: np.ndarray, shape: tuple[int, int, int]) -> list[np.ndarray]:
    rows = bitstream.bands(shape)
    w = shape[2]
    return [one[:, a * w:b * w] for a, b in itertools.pairwise(rows)]


# --- round trips ---------------------------------------------------------------------------------------------

@FUZZ
@given(seed=st.integers(0, 2**31), spread=st.floats(0.05, 40.0), lo=st.integers(-300, 0), span=st.integers(0, 600),
       zeros=st.floats(0.0, 1.0), height=st.integers(1, 41), centre=st.integers(-3, 3))
def test_round_trip_is_exact_and_counted_exactly(seed: int, spread: float, lo: int, span: int, zeros: float,
                                                 height: int, centre: int) -> None:
    """Any ranges (signed, all >= 0, all <= 0, one value), any density: decode(payload) == symbols and
    payload_bytes == len(payload), including slices whose lanes end early."""
    shape = (5, height, 37)
    hi = lo + span
    c = shape[0]
    lo_c, hi_c = np.full(c, lo), np.full(c, hi)
    lo_c[1], hi_c[1] = 0, max(hi, 0)          # a channel with an unsigned range
    lo_c[2], hi_c[2] = min(lo, 0), 0          # one with a non-positive range
    data = planes(seed, shape, spread, lo, hi, zeros)
    data[:, 1] = np.clip(data[:, 1], lo_c[1], hi_c[1])
    data[:, 2] = np.clip(data[:, 2], lo_c[2], hi_c[2])
    live = np.array([True, True, True, False, True])
    data[:, 3] = lo_c[3]
    cen = np.clip(np.full(c, centre), lo_c, hi_c)
    coder = fitted(data[:2], lo_c, hi_c, live, cen, shape)
    again = RansCoder.from_bytes(coder.to_bytes())
    for one in data[2:]:
        parts = slices_of(one, shape)
        payloads = [coder.payload(s, lo_c, hi_c) for s in parts]
        assert coder.payload_bytes(parts, lo_c, hi_c) == [len(p) for p in payloads]
        for p, s in zip(payloads, parts):
            np.testing.assert_array_equal(again.read(memoryview(p), s.shape[1], lo_c, hi_c), s)


def test_values_the_calibration_never_saw_still_code() -> None:
    """Every token keeps a frequency >= 1: values absent at calibration (the range's extremes) round-trip."""
    c = SHAPE[0]
    lo, hi = np.full(c, -1000), np.full(c, 1000)
    coder = fitted(np.zeros((2, c, SHAPE[1] * SHAPE[2]), np.int64), lo, hi)
    x = np.random.default_rng(1).integers(-1000, 1001, (c, SHAPE[1] * SHAPE[2]))
    for s in slices_of(x, SHAPE):
        np.testing.assert_array_equal(coder.read(memoryview(coder.payload(s, lo, hi)), s.shape[1], lo, hi), s)


def test_symbols_outside_the_ranges_are_refused() -> None:
    c = SHAPE[0]
    lo, hi = np.full(c, -4), np.full(c, 4)
    coder = fitted(planes(0, SHAPE, 1.0, -4, 4, 0.3), lo, hi)
    bad = np.zeros((c, 48), np.int64)
    bad[3, 7] = 5
    with pytest.raises(FeatcompError, match="outside their channel ranges"):
        coder.payload(bad, lo, hi)


def test_lanes_cover_every_position_once() -> None:
    for n in [1, 7, 8, 9, 49, 255, 256, 257, 1568, 12544]:
        lanes, chunk = lanes_of(n)
        assert 1 <= lanes <= rans.MAX_LANES and chunk >= rans.MIN_CHUNK
        assert (lanes - 1) * chunk < n <= lanes * chunk


def test_context_model_beats_order_zero_on_correlated_planes() -> None:
    """On planes whose magnitude follows the neighbours, the fitted model uses contexts and codes below
    the order-0 entropy of the symbols per channel (measured bytes, states and raw bits included)."""
    c = SHAPE[0]
    lo, hi = np.full(c, -64), np.full(c, 64)
    data = planes(5, SHAPE, 1.0, -64, 64, 0.0)
    coder = fitted(data[:2], lo, hi)
    assert coder.context_mode != 0
    held = data[2:]
    coded = sum(sum(coder.payload_bytes(slices_of(one, SHAPE), lo, hi)) for one in held)
    entropy = 0.0
    for ch in range(c):
        _, counts = np.unique(held[:, ch], return_counts=True)
        p = counts / counts.sum()
        entropy -= float(np.sum(counts * np.log2(p)))
    assert 8 * coded < entropy


# --- the decoder refuses corrupt payloads ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def stream() -> tuple[RansCoder, np.ndarray, np.ndarray, np.ndarray, bytes]:
    c = SHAPE[0]
    lo, hi = np.full(c, -200), np.full(c, 200)
    data = planes(9, SHAPE, 8.0, -200, 200, 0.3)
    coder = fitted(data[:2], lo, hi)
    s = data[3]
    return coder, lo, hi, s, coder.payload(s, lo, hi)


@FUZZ
@given(data=st.data())
def test_corrupt_payloads_raise_codec_error(stream: tuple[RansCoder, np.ndarray, np.ndarray, np.ndarray, bytes],
                                            data: st.DataObject) -> None:
    """Flipped bytes, cut or extended payloads: CodecError with one line, or (rarely) other valid symbols."""
    coder, lo, hi, s, payload = stream
    raw = bytearray(payload)
    how = data.draw(st.sampled_from(["flip", "cut", "extend", "states"]))
    if how == "flip":
        for at in data.draw(st.lists(st.integers(0, len(raw) - 1), min_size=1, max_size=4)):
            raw[at] ^= data.draw(st.integers(1, 255))
    elif how == "cut":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "extend":
        raw += bytes(data.draw(st.lists(st.integers(0, 255), min_size=1, max_size=6)))
    else:
        lane = data.draw(st.integers(0, lanes_of(s.shape[1])[0] - 1))
        raw[4 * lane:4 * lane + 4] = data.draw(st.integers(0, 2**32 - 1)).to_bytes(4, "little")
    try:
        out = coder.read(memoryview(bytes(raw)), s.shape[1], lo, hi)
    except CodecError as e:
        assert "\n" not in str(e)
        return
    assert out.shape == s.shape and np.all((out >= lo[:, None]) & (out <= hi[:, None]))


@FUZZ
@given(blob=st.binary(max_size=80))
def test_corrupt_descriptions_raise_codec_error(blob: bytes) -> None:
    try:
        RansCoder.from_bytes(blob)
    except CodecError as e:
        assert "\n" not in str(e)


def test_description_round_trips_and_truncations_are_refused(
        stream: tuple[RansCoder, np.ndarray, np.ndarray, np.ndarray, bytes]) -> None:
    coder = stream[0]
    data = coder.to_bytes()
    assert RansCoder.from_bytes(data).to_bytes() == data
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            RansCoder.from_bytes(data[:cut])


# --- the codecs -------------------------------------------------------------------------------------------------

def _sites() -> dict[str, tuple[object, np.ndarray]]:
    out: dict[str, tuple[object, np.ndarray]] = {}
    shape = (16, 24, 64)
    for seed, kind in enumerate(("smooth", "sparse")):
        rng = np.random.default_rng(40 + seed)
        calib, fresh = DATA_KINDS[kind](rng, 3, shape), DATA_KINDS[kind](rng, 2, shape)
        stats = activation_stats(kind, calib, spatial_values=1 << 17)
        out[f"dctcm-{kind}"] = (DctCm(sqnr_db=24.0, coder="rans").calibrate(stats), fresh)
        front = TransformVlc(groups=(8,), coder="rans").candidates(stats_of(calib, kind))
        out[f"tvlc-{kind}"] = (front[len(front) // 2].site, fresh)
    return out


@pytest.fixture(scope="module")
def sites() -> dict[str, tuple[object, np.ndarray]]:
    return _sites()


def test_codec_streams_round_trip_with_exact_sizes(sites: dict[str, tuple[object, np.ndarray]]) -> None:
    for name, (site, fresh) in sites.items():
        assert isinstance(site, (DctCmSite, TvlcSite)) and site.describe()["coder"] == "rans", name
        symbols = site.symbols(fresh)
        sizes = site.coded_bytes_batch(symbols)
        for one, size in zip(symbols, sizes):
            data = site.pack(one)
            assert data[3] & bitstream.RANS and len(data) == size == site.coded_bytes(one), name
            np.testing.assert_array_equal(site.unpack(data), one, err_msg=name)
            np.testing.assert_array_equal(site.decode(data), site.dequantize(one), err_msg=name)


def test_codec_sites_survive_the_model_attributes(sites: dict[str, tuple[object, np.ndarray]]) -> None:
    """A site rebuilt from its stored arrays and attributes (as a model loads it) reads the same streams."""
    for name, (site, fresh) in sites.items():
        assert isinstance(site, (DctCmSite, TvlcSite))
        again = type(site).from_arrays(site.side_arrays(), site.attributes())
        assert again.param_id == site.param_id, name
        one = site.symbols(fresh[0])
        np.testing.assert_array_equal(again.unpack(site.pack(one)), one)


def test_a_stream_of_the_other_coder_is_refused_in_one_line(sites: dict[str, tuple[object, np.ndarray]]) -> None:
    """The coder is in the header's codec id: a Rice/Huffman stream given to a rANS site (and back) is refused."""
    site, fresh = sites["dctcm-smooth"]
    assert isinstance(site, DctCmSite) and site.rans is not None
    own = replace(site, rans=None)
    one = site.symbols(fresh[0])
    for writer, reader in ((own, site), (site, own)):
        with pytest.raises(CodecError, match="entropy coded with") as e:
            reader.unpack(writer.pack(one))
        assert "\n" not in str(e.value)


def test_coder_choice_is_validated() -> None:
    with pytest.raises(FeatcompError, match="unknown entropy coder"):
        DctCm(coder="arith")
    with pytest.raises(FeatcompError, match="unknown entropy coder"):
        TransformVlc(coder="arith")


def test_auto_picks_the_fewer_bits(sites: dict[str, tuple[object, np.ndarray]]) -> None:
    """auto keeps rANS only where its measured bits are fewer: per candidate it is never worse than the
    own coder's candidate at the same quality."""
    rng = np.random.default_rng(3)
    calib = DATA_KINDS["smooth"](rng, 3, (16, 24, 64))
    stats = activation_stats("smooth", calib, spatial_values=1 << 17)
    own = {round(c.sqnr_db, 6): c.bits_per_value for c in DctCm(coder="rice").candidates(stats)}
    auto = DctCm(coder="auto").candidates(stats)
    matched = [(c.bits_per_value, own[round(c.sqnr_db, 6)]) for c in auto if round(c.sqnr_db, 6) in own]
    assert matched and all(a <= b + 1e-9 for a, b in matched)


def test_calibration_is_deterministic() -> None:
    rng = np.random.default_rng(11)
    calib = DATA_KINDS["sparse"](rng, 3, (16, 24, 64))
    a = DctCm(sqnr_db=24.0, coder="rans").calibrate(activation_stats("k", calib, spatial_values=1 << 17))
    b = DctCm(sqnr_db=24.0, coder="rans").calibrate(activation_stats("k", calib, spatial_values=1 << 17))
    assert a.rans is not None and b.rans is not None and a.rans.to_bytes() == b.rans.to_bytes()
    one = a.symbols(calib[0])
    assert a.pack(one) == b.pack(one)


def _golden_site() -> tuple[DctCmSite, np.ndarray]:
    """A hand-built site (no calibration: stable across fitting changes) with a hand-built rANS model."""
    c, h, w = 8, 20, 48
    site = DctCmSite(
        shape=(c, h, w), scale=np.float32(0.05), qmin=np.float32(-127), qmax=np.float32(127),
        transform=np.ones((1, 1), np.float32), step=np.ones(1, np.float32), cmin=np.array([-127.0], np.float32),
        cmax=np.array([127.0], np.float32), decode_matrix=np.full((1, 1), 0.05, np.float32),
        kinds=np.array([1, 1, 2, 2, 1, 2, 1, 2], np.uint8), rice_k=np.zeros(c, np.uint8))
    k = 16 + 4 * 4  # magnitudes up to 254: top bits 4..7
    freq = np.stack([np.r_[np.full(8, 400), np.full(k - 8, 3)] for _ in range(2 * 9)])
    freq[:, 0] += rans.TOTAL - freq.sum(axis=1)
    group_of = np.array([0, 1, 0, 1, 0, 1, 0, 1], np.uint8)
    model = RansCoder(np.zeros(c, np.int64), group_of, freq.astype(np.int64), 16, 3)
    site = replace(site, rans=model)
    x = np.random.default_rng(20240601).laplace(0.0, 6.0, (c, h, w))
    x[np.random.default_rng(2).random(x.shape) < 0.4] = 0
    return site, np.clip(np.rint(x), -127, 127).astype(np.int16)


def test_golden_stream() -> None:
    """The bytes of a hand-built rANS site are frozen: a change to the format or the coder shows here
    (FEATCOMP_UPDATE_GOLDEN=1 prints the new hash)."""
    site, symbols = _golden_site()
    assert site.rans is not None and not np.any(site.rans.group_of == NO_GROUP)
    data = site.pack(symbols)
    digest = hashlib.sha256(data).hexdigest()
    if os.environ.get("FEATCOMP_UPDATE_GOLDEN"):
        print(digest)
    assert digest == GOLDEN_SHA256
    np.testing.assert_array_equal(site.unpack(data), symbols)
    assert len(data) == site.coded_bytes(symbols)


GOLDEN_SHA256 = "de4e4f1f1650f12c981e4c6b885d6fbbc10303512e09c5c251131f9692b74477"


def test_compress_cli_entropy_coder(cli, tmp_path) -> None:  # noqa: ANN001 - conftest's Run
    """--entropy-coder rans makes every site rANS coded, own none; the report names each site's coder."""
    import json

    import models

    calib = tmp_path / "calib.npz"
    x = np.random.default_rng(0).normal(size=(4, 3, models.SIZE, models.SIZE)).astype(np.float32)
    np.savez(calib, **{models.INPUT: x})
    path = models.save(models.two_convs(), tmp_path / "m.onnx")
    for coder, want in (("rans", {"rans"}), ("own", {"rice"})):
        out, report = tmp_path / f"{coder}.fc.onnx", tmp_path / f"{coder}.json"
        run = cli("compress", path, "--calib", calib, "--sqnr", "30", "--entropy-coder", coder, "-o", out,
                  "--report", report, "-q")
        assert run.code == 0, run.err
        sites = json.loads(report.read_text())["sites"]
        assert {s["coder"] for s in sites} == want
