"""The TIR kernels against the numpy reference: symbols bit for bit (integer data, planted .5 ties,
scalar and per-channel quantizers, G = 1, 8, C, DctCm and TVLC side arrays) in each site's storage
type (int8/uint8 where the range fits, else int16), decoded floats to round-off; one x86 compile of
one model holding every case."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from conftest import SiteCase, activation_stats, signed_smooth
from featcomp.codecs.base import ActivationStats, storage_dtype
from featcomp.codecs.dctcm import DctCm, integer_dct
from featcomp.codecs.tvlc import TransformVlc
from tvm_tools import need_tvm, pair_model, run_x86

need_tvm()
from featcomp.runtime_ops.tvm.convert import stored_form  # noqa: E402  (after the TVM check)

N = 2


def _ties(rng: np.random.Generator, shape: tuple[int, ...], scale: float | np.ndarray) -> np.ndarray:
    """Integer multiples of scale/2 (scalar or per channel): every other value is an exact .5 tie of X / scale."""
    return (rng.integers(-300, 300, shape) * (np.asarray(scale, np.float32) / 2)).astype(np.float32)


def _hand_arrays(c: int, g: int, per_channel: bool, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """DctCm-style side arrays with power-of-two steps (ties survive the divisions exactly)."""
    shape = (c, 1, 1) if per_channel else ()
    scale = (np.full(shape, 0.25) if not per_channel else 2.0 ** rng.integers(-3, 0, shape)).astype(np.float32)
    signed = rng.random(shape) < 0.5 if per_channel else np.bool_(True)
    transform = integer_dct(g)
    return {
        "scale": scale,
        "qmin": np.where(signed, -127, 0).astype(np.float32),
        "qmax": np.where(signed, 127, 255).astype(np.float32),
        "transform": transform,
        "step": (2.0 ** rng.integers(0, 4, (g, 1))).astype(np.float32),
        "cmin": rng.integers(-900, -100, (g, 1)).astype(np.float32),
        "cmax": rng.integers(100, 900, (g, 1)).astype(np.float32),
        "decode": (rng.random((g, g)) - 0.5).astype(np.float32),
    }


def _reference(a: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The op contract in numpy, with scale/qmin/qmax broadcast per channel (what DctCmSite does for scalars)."""
    n, c, h, w = x.shape
    g = a["transform"].shape[-1]
    q = np.clip(np.rint(x / a["scale"]), a["qmin"], a["qmax"]).astype(np.float32)
    y = a["transform"] @ q.reshape(n, c // g, g, h * w)
    s = np.minimum(np.maximum(np.rint(y / a["step"]), a["cmin"]), a["cmax"]).reshape(x.shape).astype(np.int16)
    return s, (a["decode"] @ s.astype(np.float32).reshape(n, c // g, g, h * w)).reshape(x.shape)


@pytest.fixture(scope="module")
def dctcm_results(site_cases: list[SiteCase]) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray, object]]:
    """(name, x, symbols, decoded, reference) for calibrated sites and hand-made ones, one compile."""
    need_tvm()
    rng = np.random.default_rng(7)
    picked = [case for case in site_cases if case.name.split("-", 1)[1] in ("24dB", "g1-24dB", "g8-30dB", "lossless")]
    sites, xs, refs = [], [], []
    for case in picked:
        c, h, w = case.site.shape
        x = np.concatenate([case.fresh[:1], _ties(rng, (1, c, h, w), float(case.site.scale))])
        sites.append((case.name, case.site.side_arrays(), x.shape))
        xs.append(x)
        refs.append(case.site)
    # per-channel steps (DctCm.channel_steps): step/cmin/cmax [C,1,1] and a [C,1,1] float16 decode
    stats = activation_stats("pc", site_cases[0].calib)
    stats.channel_weights = 10.0 ** rng.uniform(-1, 1, stats.shape[0])
    per = next(c.site for c in DctCm(channel_steps=0.5, groups=(1,)).candidates(stats) if c.site.per_channel)
    c, h, w = per.shape
    x = np.concatenate([site_cases[0].fresh[:1], _ties(rng, (1, c, h, w), float(per.scale))])
    sites.append(("calibrated-per-channel-steps", per.side_arrays(), x.shape))
    xs.append(x)
    refs.append(per)
    for name, c, g, per_channel in (("hand-g8-scalar", 16, 8, False), ("hand-g1-perch", 16, 1, True),
                                    ("hand-gC-perch", 8, 8, True), ("hand-g4-perch", 32, 4, True),
                                    ("hand-g1-unit", 16, 1, True), ("hand-g1-ratio", 16, 1, True)):
        arrays = _hand_arrays(c, g, per_channel, rng)
        if name.endswith("unit"):  # transform = step = 1: the encode kernel that skips its second rounding
            arrays["transform"], arrays["step"] = np.ones_like(arrays["transform"]), np.ones_like(arrays["step"])
        if name.endswith("ratio"):  # transform 128, step 160 (a real site's): the kernel multiplies by 0.8
            arrays["transform"], arrays["step"] = np.full_like(arrays["transform"], 128), np.full_like(arrays["step"], 160)
        x = _ties(rng, (N, c, 6, 10), arrays["scale"])
        sites.append((name, arrays, x.shape))
        xs.append(x)
        refs.append(arrays)
    outs = run_x86(pair_model(sites), xs)
    return [(name, x, outs[2 * i], outs[2 * i + 1], ref) for i, ((name, _, _), x, ref) in enumerate(zip(sites, xs, refs))]


def test_symbols_bit_exact_and_decode_to_round_off(dctcm_results) -> None:
    groups, dtypes = set(), set()
    for name, x, symbols, decoded, ref in dctcm_results:
        if isinstance(ref, dict):
            want, want_x = _reference(ref, x)
            groups.add((int(ref["transform"].shape[0]), ref["scale"].ndim))
            stored = storage_dtype(ref["cmin"], ref["cmax"])
        else:
            want, want_x = ref.symbols(x), ref.dequantize(ref.symbols(x))
            groups.add((ref.group, 0))
            stored = ref.storage_dtype
        kept, offset = stored_form(str(stored))  # uint8-range sites are kept as int8, symbol - 128
        assert symbols.dtype == np.dtype(kept), name  # the compiled model keeps the site's storage type
        dtypes.add(np.dtype(stored))
        np.testing.assert_array_equal(symbols.astype(np.int16) + offset, want, err_msg=name)
        assert np.count_nonzero(want) > 0, name
        np.testing.assert_allclose(decoded, want_x, rtol=2e-6, atol=1e-6 * float(np.abs(want_x).max() + 1), err_msg=name)
    assert {g for g, _ in groups} >= {1, 8} and any(dims == 3 for _, dims in groups)
    assert {np.dtype(np.int16), np.dtype(np.int8), np.dtype(np.uint8)} <= dtypes  # 8-bit and int16 sites both covered


def test_second_stage_multiplies_only_where_every_symbol_is_the_same() -> None:
    """The G = 1 encode replaces nearbyint(t * q / s) by q (t = s = 1) or nearbyint(q * (t / s)) only when the
    converter found the same value for every integer q of the site's range; the hand-g1-unit and
    hand-g1-ratio cases above check those kernels' symbols bit for bit."""
    from tvm import relax

    from featcomp.runtime_ops.tvm import kernels
    from featcomp.runtime_ops.tvm.convert import second_stage

    def mode(t: float, s: float, lo: float, hi: float) -> str:
        arrays = (np.float32(v) for v in (t, s, lo, hi))
        return second_stage(*(relax.const(a) for a in arrays), 4)[0]

    assert mode(1, 1, -127, 127) == kernels.SKIP
    assert mode(128, 160, 0, 255) == kernels.MULTIPLY
    s = np.float32(40) * np.float32(0.37)  # 1 / s rounded to float32 moves two q's rounding across .5
    q = np.arange(-255, 256, dtype=np.float32)
    assert np.any(np.rint(q * (np.float32(1) / s)) != np.rint(q / s))
    assert mode(1, float(s), -255, 255) == kernels.DIVIDE
    assert mode(128, 160, -32767, 32767) == kernels.DIVIDE  # too many levels to check: the division stays
    general = kernels.encode_kernel("DctCmEncode", 1, 8, 4, 4, 1, "int8").script()
    assert general.count("llvm.roundeven") == 2 and general.count(" / ") == 2
    multiply = kernels.encode_kernel("DctCmEncode", 1, 8, 4, 4, 1, "int8", 0, kernels.MULTIPLY).script()
    assert multiply.count("llvm.roundeven") == 2 and multiply.count(" / ") == 1
    skip = kernels.encode_kernel("DctCmEncode", 1, 8, 4, 4, 1, "int8", 0, kernels.SKIP).script()
    assert skip.count("llvm.roundeven") == 1 and "step" in skip.split("T.sblock")[0]  # same signature


def test_uint8_sites_are_kept_as_int8_with_an_offset() -> None:
    """One 8-bit pool: a [0, 255] site is stored as symbol - 128 in int8; other types are unchanged."""
    assert stored_form("uint8") == ("int8", 128)
    assert stored_form("int8") == ("int8", 0) and stored_form("int16") == ("int16", 0)


def test_planted_ties_round_half_to_even(dctcm_results) -> None:
    """Half of the hand inputs are exact .5 ties of X / scale: numpy.rint rounds them to even, so must TVM."""
    name, x, symbols, _, ref = next(r for r in dctcm_results if r[0] == "hand-g1-perch")
    ties = np.abs(x / ref["scale"] - np.floor(x / ref["scale"]) - 0.5) == 0
    assert ties.mean() > 0.4
    np.testing.assert_array_equal(symbols, _reference(ref, x)[0])


def test_tvlc_ops_map_onto_the_same_kernels() -> None:
    """TvlcEncode/TvlcDecode (int16 per-group transforms, scalar step, int16 clips, transpose * gain), with and
    without the dead zone (its own kernels: centre and offset, rounded toward the centre)."""
    rng = np.random.default_rng(11)
    calib, fresh = signed_smooth(rng, 8), signed_smooth(rng, 2)
    stats = ActivationStats("t", tuple(calib.shape[1:]), covariance=True, spatial_values=1 << 16)
    for sample in calib:
        stats.update(sample[None])
    cands = {}
    for transform in ("pca", "none"):
        front = TransformVlc(transform=transform, groups=(4, 16)).candidates(stats)
        cands[transform] = front[len(front) // 2].site
        cands[f"{transform}-deadzone"] = replace(front[len(front) // 2].site, deadzone=np.float32(np.float16(1 / 3)))
    sites = [(name, {**site.side_arrays(), "transform": site.transform}, fresh.shape) for name, site in cands.items()]
    outs = run_x86(pair_model(sites, "TvlcEncode", "TvlcDecode"), [fresh] * len(sites))
    for i, site in enumerate(cands.values()):
        want = site.symbols(fresh)
        if site.deadzone:  # not vacuous: the dead zone moves symbols here
            assert np.any(want != replace(site, deadzone=np.float32(0)).symbols(fresh))
        assert outs[2 * i].dtype == site.storage_dtype
        np.testing.assert_array_equal(outs[2 * i], want)
        np.testing.assert_allclose(outs[2 * i + 1], site.dequantize(want), rtol=2e-6,
                                   atol=1e-6 * float(np.abs(site.dequantize(want)).max() + 1))
