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
