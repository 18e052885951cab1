"""The dct-cm front rates rANS by the fit's estimate and counts real bytes only where the coder choice is close:
it must pick the same coders and quantizers as counting real bytes everywhere, and store the same models."""

from __future__ import annotations

import numpy as np
import pytest

from featcomp.codecs import bitstream, dctcm, rans, rice
from featcomp.codecs.base import ActivationStats, Candidate, pick
from featcomp.codecs.dctcm import DROP, DctCm, DctCmSite
from featcomp.codecs.rans import RansCoder


def relu_stats(shape: tuple[int, int, int] = (24, 14, 14), seed: int = 0) -> ActivationStats:
    """Spatially correlated, clipped ReLU6-like maps (zeros and a smooth tail), as after a conv."""
    rng = np.random.default_rng(seed)
    stats = ActivationStats("x", shape, spatial_values=dctcm.SPATIAL_VALUES)
    for _ in range(3):
        x = rng.normal(0.0, 1.0, (2, *shape)).cumsum(axis=3) * 0.3 - 0.3
        stats.update(np.clip(x, 0.0, 6.0).astype(np.float32))
    return stats


def symbols(site: DctCmSite, stats: ActivationStats) -> np.ndarray:
    c, h, w = site.shape
    return site.symbols(stats.spatial).reshape(len(stats.spatial), c, h * w).astype(np.int64)


def test_front_agrees_with_real_bytes_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    stats = relu_stats()
    fast = DctCm().candidates(stats)
    monkeypatch.setattr(dctcm, "RANS_EXACT_MARGIN", np.inf)  # every candidate's rANS bytes counted for real
    exact = DctCm().candidates(stats)
    assert [c.sqnr_db for c in fast] == [c.sqnr_db for c in exact]
    assert [c.site.rans is not None for c in fast] == [c.site.rans is not None for c in exact]  # type: ignore[attr-defined]
    assert any(c.site.rans is not None for c in fast)  # type: ignore[attr-defined]
    for f, e in zip(fast, exact):
        assert f.bits_per_value == pytest.approx(e.bits_per_value, rel=0.01, abs=1e-3)


def test_chosen_site_is_a_fresh_rans_fit_and_packs_the_same_bytes() -> None:
    stats = relu_stats(seed=1)
    site = DctCm(sqnr_db=25.0).calibrate(stats)
    assert site.rans is not None
    sym = symbols(site, stats)
    lo, hi = site.channel_ranges()
    fresh, _ = RansCoder.fit(sym, lo, hi, site.kinds != DROP, np.zeros(site.shape[0], np.int64),
                             bitstream.bands(site.shape))
    assert fresh.to_bytes() == site.rans.to_bytes()
    one = sym[0].reshape(site.shape)
    data = site.pack(one)
    assert data == DctCmSite.from_arrays(site.side_arrays(), site.attributes()).pack(one)
    assert site.coded_bytes(one) == len(data)
    assert np.array_equal(site.unpack(data), one)


def test_estimate_orders_candidates_like_real_bytes() -> None:
    stats = relu_stats(seed=2)
    rice = [c for c in DctCm(coder="rice").candidates(stats) if c.bits_per_value > 0]
    fits = [dctcm._fit_rans(c, stats.spatial) for c in rice]
    live = [f for f in fits if f.model.live.any()]
    assert len(live) >= 5
    real = [dctcm.rans_exact_bytes(f.model, f.sym, f.cand.site) for f in live]  # type: ignore[arg-type]
    estimate = [f.estimate for f in live]
    # the front runs from coarse to fine: both ratings grow with it, in the same order
    assert np.all(np.diff(real) > 0) and np.all(np.diff(estimate) > 0)
    offsets = np.subtract(real, estimate)
    # what the front corrects by one measured offset: it hardly varies along the front
    assert np.ptp(offsets) <= 0.02 * min(real) + 8


def test_rans_floor_is_the_allocators_floor() -> None:
    from featcomp.allocate import MIN_SITE_SQNR_DB

    assert dctcm.RANS_FLOOR_DB == MIN_SITE_SQNR_DB  # the front is only fitted where allocate can pick


def fingerprint(front: list[Candidate]) -> list[tuple[float, float, int, bool]]:
    return [(c.bits_per_value, c.sqnr_db, c.site.param_id, c.site.rans is not None) for c in front]


@pytest.mark.parametrize("seed", [0, 3])
def test_pruned_front_picks_what_the_full_front_picks(seed: int) -> None:
    stats = relu_stats(seed=seed)
    family = DctCm()
    pruned = family.candidates(stats)
    full = family._candidates(stats, -np.inf)  # every candidate fitted, as before the floor
    assert any(c.sqnr_db < dctcm.RANS_FLOOR_DB for c in full)  # the floor has something to skip
    above = [c for c in full if c.sqnr_db >= dctcm.RANS_FLOOR_DB]
    assert fingerprint([c for c in pruned if c.sqnr_db >= dctcm.RANS_FLOOR_DB]) == fingerprint(above)
    assert any(c.site.rans is not None for c in above)  # type: ignore[attr-defined]
    for target in np.linspace(dctcm.RANS_FLOOR_DB, 70.0, 59):
        assert fingerprint([pick(pruned, target)]) == fingerprint([pick(full, target)])


def test_calibrate_below_the_floor_fits_from_its_own_target() -> None:
    stats = relu_stats(seed=4)
    full = DctCm()._candidates(stats, -np.inf)
    low = DctCm(sqnr_db=6.0).calibrate(stats)
    assert low.param_id == pick(full, 6.0).site.param_id


def test_best_k_histogram_path_equals_the_shift_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(0)
    v = rng.geometric(0.2, (4000, 24)) - 1
    valid = rng.random(v.shape) < 0.6
    fast = [rice.best_k(v), rice.best_k(v, valid)]
    monkeypatch.setattr(rice, "HISTOGRAM_CELLS", 0)
    slow = [rice.best_k(v), rice.best_k(v, valid)]
    for (fk, fb), (sk, sb) in zip(fast, slow):
        assert np.array_equal(fk, sk) and np.array_equal(fb, sb)


def test_group_sum_equals_add_at() -> None:
    rng = np.random.default_rng(1)
    rows = rng.integers(0, 1000, (40, 3, 3, 21)).astype(np.float64)
    group = rng.integers(0, 5, 40)
    expected = np.zeros((5, 3, 3, 21))
    np.add.at(expected, group, rows)
    assert np.array_equal(rans._group_sum(group, rows, 5), expected)


def test_rice_bytes_of_all_samples_at_once_are_the_packed_sizes() -> None:
    stats = relu_stats(shape=(16, 20, 9), seed=5)
    front = DctCm(coder="rice", groups=(1, 8)).candidates(stats)
    kinds = set(np.concatenate([c.site.kinds for c in front]).tolist())  # type: ignore[attr-defined]
    assert kinds >= {dctcm.DENSE, dctcm.MASK}
    assert any(c.site.cmin.min() < 0 for c in front)  # type: ignore[attr-defined]  # signed ranges (sign planes)
    for cand in front:
        site = cand.site
        assert isinstance(site, DctCmSite)
        sym = site.symbols(stats.spatial)
        sym[0, 1] = 0  # an all-zero channel: its flag is cleared
        assert site.coded_bytes_batch(sym) == [len(site.pack(one)) for one in sym]
