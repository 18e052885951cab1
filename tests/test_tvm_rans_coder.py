"""The rANS coder as TIR kernels (runtime_ops/tvm/rans_coder_kernels.py) against the numpy reference: the same
bytes for the same symbols on rANS-coded sites of both codecs (every context mode, random tables, one and three
slices, odd sizes, all-zero and extreme symbols, a lone nonzero, sites with no coded channel), the reference's
symbols back from the reference's streams, and corrupt streams refused exactly when numpy refuses them."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pytest
from test_codec_dctcm import DROP, HAND_SITES, _site, lcg_symbols
from test_tvm_coder import _damaged, refused_like_numpy, round_trips_like_numpy
from tvm_tools import need_tvm

from featcomp.codecs import rans
from featcomp.codecs.dctcm import DctCmSite
from featcomp.codecs.rans import NO_GROUP, RansCoder
from featcomp.codecs.tvlc import TvlcSite
from featcomp.errors import FeatcompError


@pytest.fixture(scope="module")
def tir():  # type: ignore[no-untyped-def]
    need_tvm()
    from featcomp.runtime_ops.tvm import coder

    return coder


def random_coder(lo: np.ndarray, hi: np.ndarray, live: np.ndarray, mode: int, seed: int) -> RansCoder:
    """A valid rANS model for these ranges with random centres, groups and skewed tables: the kernels must agree
    with numpy whatever the calibration would have fitted."""
    rng = np.random.default_rng(seed)
    c = len(lo)
    centre = np.where(live, rng.integers(lo, hi + 1), 0).astype(np.int64)
    probe = RansCoder(centre, np.where(live, 0, NO_GROUP).astype(np.uint8), np.full((1, 1), rans.TOTAL), 1, 0)
    umax = int(probe._umax(lo, hi).max()) if live.any() else 0
    direct, k = rans._alphabet(umax, rans.DIRECT)
    groups = int(rng.integers(1, 4)) if live.any() else 0
    group_of = np.where(live, rng.integers(0, max(groups, 1), c), NO_GROUP).astype(np.uint8)
    counts = rng.exponential(1.0, (groups * rans.CONTEXT_MODES[mode], k)) ** 4 * (rng.random((1, k)) < 0.7)
    freq = rans._quantize(counts) if groups else np.zeros((0, k), np.int64)
    if groups and int(group_of[live].max()) < groups - 1:
        group_of[np.flatnonzero(live)[0]] = groups - 1
    return RansCoder(centre, group_of, freq, direct, mode)


def dctcm_rans(name: str, mode: int, seed: int) -> DctCmSite:
    site = HAND_SITES[name]
    return replace(site, rans=random_coder(*site.channel_ranges(), site.kinds != DROP, mode, seed))


def edge_symbols(site: Any, lo: np.ndarray, hi: np.ndarray, seeds: tuple[int, ...]) -> np.ndarray:
    """Seeded symbols, all at the low end, all at the high end, all zero (clipped in range), and one lone
    value at the high end in a field of low ends."""
    c, h, w = site.shape
    lo3, hi3 = lo[:, None, None], hi[:, None, None]
    rng = np.random.default_rng(seeds[0])
    out = [rng.integers(lo3, hi3 + 1, size=site.shape) * (rng.random(site.shape) < p) for p in (1.0, 0.3)]
    out = [np.clip(s, lo3, hi3) for s in out]
    lone = np.broadcast_to(lo3, site.shape).copy()
    lone[-1, h - 1, w - 1] = hi[-1]
    out += [np.broadcast_to(lo3, site.shape), np.broadcast_to(hi3, site.shape), np.clip(np.zeros(site.shape), lo3, hi3), lone]
    return np.stack(out).astype(np.int16)


@pytest.mark.parametrize("mode", sorted(rans.CONTEXT_MODES))
@pytest.mark.parametrize("name", sorted(HAND_SITES))
def test_dctcm_rans_sites_pack_to_the_numpy_bitstream_and_back(tir, name: str, mode: int) -> None:
    """dct-cm hand sites (signed and unsigned, dropped channels, one and three slices) with a random rANS model
    per context mode: golden-generator symbols, arbitrary and extreme values, all zeros, a lone nonzero."""
    site = dctcm_rans(name, mode, seed=10 + mode)
    lo, hi = site.channel_ranges()
    symbols = np.concatenate([np.stack([lcg_symbols(site, s) for s in (20240601, 5)]).astype(np.int16),
                              edge_symbols(site, lo, hi, (mode,))])
    round_trips_like_numpy(tir.TirCoder(site, n=len(symbols)), site, symbols)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tvlc_rans_sites_with_odd_sizes_and_constant_planes(tir, seed: int) -> None:
    """transform-vlc sites of odd shapes (lanes that end early, a short last band), signed/unsigned/non-positive
    ranges, 16-bit extremes (raw bits of the widest tokens), constant planes the coder skips."""
    from test_codec_tvlc import HAND

    rng = np.random.default_rng(seed)
    c = HAND.shape[0]
    h, w = [(1, 1), (7, 13), (37, 61)][seed]
    k, g = HAND.cmin.shape
    cmin = rng.integers(-30000, 10, (k, g)).astype(np.int16)
    cmax = (cmin + rng.integers(0, 30000, (k, g))).astype(np.int16)
    cmin[0, 0], cmax[0, 0] = 0, 400       # unsigned
    cmin[-1, -1] = cmax[-1, -1] = 3       # constant: not coded
    cmin[0, -1], cmax[0, -1] = -200, 0    # non-positive
    live = (cmin != cmax).reshape(c)
    coder = random_coder(cmin.reshape(c).astype(np.int64), cmax.reshape(c).astype(np.int64), live, seed % 4, seed)
    site = replace(HAND, shape=(c, h, w), cmin=cmin, cmax=cmax, coder=coder)
    assert isinstance(site, TvlcSite)
    symbols = edge_symbols(site, site.cmin.reshape(c).astype(np.int64), site.cmax.reshape(c).astype(np.int64), (seed,))
    round_trips_like_numpy(tir.TirCoder(site, n=len(symbols)), site, symbols)


def test_a_site_with_no_coded_channel_writes_empty_slices(tir) -> None:
    """Every channel dropped: each slice is empty in both coders (numpy used to write the lane states of an
    empty lane, which its own read refused)."""
    site = _site((2, 3, 3), 0.1, False, [[1]], [1.0], [0], [0], [DROP, DROP], [0, 0])
    lo, hi = site.channel_ranges()
    site = replace(site, rans=random_coder(lo, hi, np.zeros(2, bool), 0, 0))
    symbols = np.zeros((2, 2, 3, 3), np.int16)
    coder = tir.TirCoder(site, n=2)
    round_trips_like_numpy(coder, site, symbols)
    assert all(len(s) == site.coded_bytes(symbols[0]) for s in coder.pack(symbols))


def test_symbols_outside_their_range_are_refused(tir) -> None:
    site = dctcm_rans("dct4", 3, 1)
    symbols = lcg_symbols(site, 3)[None].copy()
    live = int(np.flatnonzero(site.kinds != DROP)[0])
    symbols[0, live, 1, 1] = int(site.channel_ranges()[1][live]) + 1
    with pytest.raises(FeatcompError, match="symbols the site cannot code"):
        tir.TirCoder(site).pack(symbols)


@pytest.mark.parametrize("name,count", [("dct4", 140), ("bands3", 21)])  # bands3: three slices (numpy decodes slowly)
def test_corrupt_streams_are_refused_exactly_when_numpy_refuses_them(tir, name: str, count: int) -> None:
    site = dctcm_rans(name, 3, 7)
    streams = _damaged(site, np.random.default_rng(17), count, make=lcg_symbols) + [b"", b"FC", b"\x00" * 40]
    refused_like_numpy(tir.TirCoder(site, n=len(streams)), site, streams)


@pytest.mark.parametrize("op", ["pack", "unpack"])
def test_kernels_run_one_parallel_task_per_slice_with_its_own_lane_states(tir, op: str) -> None:
    """The structure that lets one stream use every core at batch 1: the outer loop is parallel over (sample,
    slice), and each task keeps its lanes' states and runs their cells itself (no shared state between slices);
    the only other parallel loop is the per-sample pass that seals or combines the slices."""
    import re

    from featcomp.runtime_ops.tvm import rans_coder_kernels as rk

    script = getattr(rk, f"{op}_kernel")().script()
    assert "nsl: T.let[T.int64] = slices_1 - T.int64(1)" in script, script[:2000]
    loops = re.findall(r"for (\w+) in T\.parallel\(([^)]*)\):", script)
    assert loops == [("i", "n * nsl"), ("b", "n")], loops
    task = script[script.index("T.parallel(n * nsl)"):script.index("T.parallel(n)")]
    assert re.search(r"xs = T\.alloc_buffer\(\(32,\), \"int64\"\)", task)  # the lanes' states, per task
    assert re.search(r"for (ll|l) in range\(nv\):", task)  # the cells of the lanes live at this step


def test_encoder_reciprocals_give_the_exact_quotient_for_every_frequency(tir) -> None:
    """pack divides by the symbol frequency with a multiply (recip_table): the table is floor(2**44 / f) and,
    with one correction, x * rcp >> 44 is x // f for every state the encoder divides (x < f * 2**20), checked
    at the edges (multiples of f and their neighbours, the largest state) and at random states, for the extreme
    frequencies 1 and M - 1, the powers of two and around sqrt(2**24), where a shorter reciprocal fails."""
    from featcomp.runtime_ops.tvm import rans_coder_kernels as rk

    freq = np.array([[1, 2, 3, 4095, 4096, 2048, 2049, 2895, 2896, 2897, 4094, 1000]])
    rcp = rk.recip_table(freq)
    assert rcp.dtype == np.int64 and rcp.tolist() == [[(1 << 44) // int(f) for f in freq[0]]]
    rng = np.random.default_rng(5)
    for f, r in zip(freq[0].astype(np.uint64), rcp[0].astype(np.uint64)):
        top = f << np.uint64(32 - rans.PRECISION)  # the renormalised state is below this
        q = np.arange(0, int(top // f), max(1, int(top // f) // 4096), dtype=np.uint64)
        x = np.concatenate([q * f, q * f + f - np.uint64(1), q * f + np.uint64(1), [top - np.uint64(1)],
                            rng.integers(0, int(top), 100_000, dtype=np.uint64)])
        x = x[x < top]
        q0 = (x * r) >> np.uint64(rk.RCP_SHIFT)          # no wrap-around: x * r < 2**64
        assert np.all(q0 <= x // f) and np.all((x - q0 * f) // f <= 1)
        quotient = q0 + ((x - q0 * f) >= f)
        np.testing.assert_array_equal(quotient, x // f)


@pytest.mark.parametrize("mode", sorted(rans.CONTEXT_MODES))
def test_extreme_frequencies_round_trip(tir, mode: int) -> None:
    """Tables of two tokens with frequencies 1 and M - 1 (each way round per context): the rarest symbol costs
    12 bits and renormalises at once, the commonest almost never; streams of mostly rare and mostly common
    symbols are the reference's bytes and decode back."""
    from test_codec_tvlc import HAND

    c = HAND.shape[0]
    k, g = HAND.cmin.shape
    cmin, cmax = np.zeros((k, g), np.int16), np.ones((k, g), np.int16)   # unsigned 0..1: tokens 0 and 1
    rows = rans.CONTEXT_MODES[mode]
    freq = np.array([[rans.TOTAL - 1, 1] if r % 2 == 0 else [1, rans.TOTAL - 1] for r in range(rows)], np.int64)
    coder = RansCoder(np.zeros(c, np.int64), np.zeros(c, np.uint8), freq, 2, mode)
    site = replace(HAND, shape=(c, 9, 11), cmin=cmin, cmax=cmax, coder=coder)
    rng = np.random.default_rng(mode)
    symbols = np.stack([(rng.random((c, 9, 11)) < p) for p in (0.02, 0.5, 0.98)]).astype(np.int16)
    round_trips_like_numpy(tir.TirCoder(site, n=len(symbols)), site, symbols)
