"""The DCT-CM coder as TIR kernels against the numpy reference coder: the same bytes for the same symbols
(calibrated and hand sites, every kind of channel, long unary codes, empty streams, batches), the same
symbols back, and a decoder that refuses exactly the streams numpy refuses, without reading or writing out
of bounds. (Inside compiled models: test_tvm_coder.py, both codecs.)"""

from __future__ import annotations

import numpy as np
import pytest

from featcomp.codecs import bitstream, rice
from featcomp.codecs.dctcm import CODEC_ID, DENSE, DROP, MASK, DctCmSite
from featcomp.errors import CodecError, FeatcompError
from test_codec_dctcm import HAND_SITES, _all_sites, lcg_symbols
from test_bitstream import split_slices
from test_tvm_coder import _damaged, _reseal, refused_like_numpy, round_trips_like_numpy
from tvm_tools import need_tvm


@pytest.fixture(scope="module")
def tir():  # type: ignore[no-untyped-def]
    need_tvm()
    from featcomp.runtime_ops.tvm import coder

    return coder


def _ranges(site: DctCmSite) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = site.channel_ranges()
    return lo[:, None, None], hi[:, None, None]


def _check(tir, site: DctCmSite, symbols: np.ndarray) -> None:  # type: ignore[no-untyped-def]
    round_trips_like_numpy(tir.TirCoder(site, n=len(symbols)), site, symbols)


def test_calibrated_sites_pack_to_the_numpy_bitstream_and_back(tir, site_cases) -> None:
    """Every calibrated site (both modes, all channel kinds, signed and unsigned) on calibration, held-out and
    out-of-range data, and the hand-built sites."""
    cases = _all_sites(site_cases)
    assert {int(k) for _, site, _ in cases for k in site.kinds} == {0, 1, 2}
    for name, site, data in cases:
        symbols = np.stack([site.symbols(x) for x in data])
        _check(tir, site, symbols)


@pytest.mark.parametrize("name", sorted(HAND_SITES))
def test_hand_sites_on_golden_arbitrary_and_extreme_symbols(tir, name: str) -> None:
    """The golden-bitstream symbols; any in-range integers (dense and sparse); every value at its range's ends
    (unary codes far longer than the 32-bit chunks the packer writes); all zeros (no channel flagged)."""
    site = HAND_SITES[name]
    lo, hi = _ranges(site)
    rng = np.random.default_rng(3)
    golden = [lcg_symbols(site, seed) for seed in (20240601, 1, 2)]
    arbitrary = [rng.integers(lo, hi + 1, size=site.shape) * (rng.random(site.shape) < p) for p in (1.0, 0.2)]
    extremes = [np.broadcast_to(lo, site.shape), np.broadcast_to(hi, site.shape)]
    symbols = np.stack(golden + arbitrary + extremes + [np.zeros(site.shape)]).astype(np.int16)
    _check(tir, site, symbols)


def test_symbols_outside_their_range_are_refused(tir) -> None:
    site = HAND_SITES["dct4"]
    symbols = lcg_symbols(site, 3)[None].copy()
    live = int(np.flatnonzero(site.kinds != DROP)[0])
    symbols[0, live, 0, 0] = int(_ranges(site)[1][live, 0, 0]) + 1
    with pytest.raises(FeatcompError, match="symbols the site cannot code"):
        tir.TirCoder(site).pack(symbols)


@pytest.mark.parametrize("name", sorted(HAND_SITES))
def test_corrupt_streams_are_refused_exactly_when_numpy_refuses_them(tir, name: str) -> None:
    site = HAND_SITES[name]
    streams = _damaged(site, np.random.default_rng(17), 180, make=lcg_symbols) + [b"", b"FC", b"\x00" * 40]
    empty = site.pack(np.zeros(site.shape, np.int16))  # a flags plane alone: set flags, no bitmaps behind them
    streams += [_reseal(empty, b"\xff" * len(part), k) for k, part in enumerate(split_slices(empty))]
    refused_like_numpy(tir.TirCoder(site, n=len(streams)), site, streams)


@pytest.mark.parametrize("name", ["dense1", "mask1"])
def test_a_flagged_channel_that_codes_only_zeros_is_refused(tir, name: str) -> None:
    """Sealed and well formed to the last bit, but channel 0 claims a nonzero and has none."""
    site = HAND_SITES[name]
    c, h, w = site.shape
    writer = bitstream.BitWriter()
    writer.bits(np.arange(c) == 0)  # every channel of these sites is live
    if site.kinds[0] == MASK:
        writer.bits(np.zeros(h * w, np.uint8))  # its bitmap: nothing coded
    else:
        assert site.kinds[0] == DENSE and site.cmin[0] == 0
        writer.bits(np.zeros(0, np.uint8))
        rice.write(writer, np.zeros(h * w, np.int64), int(site.rice_k[0]))  # every value v - lo = 0
    stream = bitstream.write(CODEC_ID, site.param_id, site.shape, [writer.tobytes()])
    with pytest.raises(CodecError, match="codes only zeros"):
        site.unpack(stream)
    back, status = tir.TirCoder(site).unpack([stream])
    assert status[0] != 0 and not back.any()


def test_a_stream_longer_than_the_site_can_produce_is_refused(tir) -> None:
    site = HAND_SITES["mask1"]
    coder = tir.TirCoder(site)
    stream = site.pack(lcg_symbols(site, 5))
    _, status = coder.unpack([_reseal(stream, split_slices(stream)[0] + b"\x00" * coder.arrays.max_bytes)])
    assert status[0] != 0


def test_max_bytes_bounds_the_longest_streams(tir) -> None:
    """The room the kernels get must hold any stream of in-range symbols; the extremes come closest."""
    for site in HAND_SITES.values():
        lo, hi = _ranges(site)
        longest = max(len(site.pack(np.broadcast_to(v, site.shape).astype(np.int16))) for v in (lo, hi))
        assert longest <= tir.coder_arrays(site).max_bytes
