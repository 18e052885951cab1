"""Two ways to make tables for a network, and the search that sets their overall coarseness.

Each method gives a *profile*: the relative step of each of the 64 luma and 64 chroma frequencies.
The table is ``clip(round(scale * profile), 1, 255)``; one number, the scale, then moves along the
rate-accuracy curve, and is searched for the user's target.

- ``deepn`` (after DeepN-JPEG, Liu et al. 2018): per-frequency standard deviation sigma of the images'
  DCT coefficients, and the paper's piecewise-linear map from sigma to step in three bands: frequencies
  that vary a lot across the data carry the content the network was trained on and get fine steps,
  quiet ones coarse steps. It looks at the images only, not at the network.
- ``learned``: the network's own sensitivity, in J4D's objective (task loss + lambda x rate) solved
  per frequency instead of by backprop, so it needs no torch:
  1. sensitivity: for each frequency k (luma; chroma with Cb and Cr together, since they share a
     table) zero-mean uniform noise of known variance s^2 is added to that coefficient of every 8x8
     block; the model runs in ONNX Runtime and g_k = E||dz||^2 / s^2, dz the change of its centred
     logits. This linearises the task loss: quantization error e_k costs about g_k e_k^2.
  2. operational rate-distortion per frequency, measured on the images' own coefficients for every
     candidate step q: D_k(q), the real mean squared quantization error (dead zone included: a step
     that zeroes a coefficient costs its whole energy, not q^2/12), and R_k(q), the entropy of the
     quantized symbols in bits (DC: of the differences between neighbouring blocks, as JPEG codes it).
  3. for each lambda, every frequency independently takes the step minimising
     n_k R_k(q) + lambda g_k D_k(q) (n_k = 1 luma coefficient, 2 chroma coefficients per block). Large
     lambda: accuracy matters, fine tables; small lambda: cheap tables. The lambdas of a log grid give
     a ladder of tables from finest to coarsest, and the target picks the rung.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from featcomp.errors import FeatcompError
from featcomp.jpeg import dct
from featcomp.jpeg.measure import METRICS, Classifier, Reference, code, rate
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables

__all__ = ["METHODS", "PROBE_STD", "deepn_profile", "dct_std", "learn", "loss_test", "rd_ladder", "search_scale",
           "sensitivities", "smallest"]

METHODS = ("deepn", "learned", "operational", "e2e")
PROBE_STD = 8.0           # noise std per coefficient (orthonormal DCT units): ~1 grey level RMS per pixel
# DeepN-JPEG's mapping (sigma in orthonormal DCT units of 0..255 pixels): HF band sigma <= T1: a - k1*sigma;
# MF band T1 < sigma <= T2: b - k2*sigma; LF band sigma > T2: q_min.
DEEPN = {"a": 255.0, "b": 80.0, "k1": 9.75, "k2": 1.0, "t1": 20.0, "t2": 60.0, "q_min": 5.0}
# JFIF YCbCr -> RGB: the change of R, G, B per unit change of Cb and of Cr
_CB_RGB = np.array([0.0, -0.344136, 1.772])
_CR_RGB = np.array([1.402, -0.714136, 0.0])

Progress = Callable[[Iterable[Any]], Iterable[Any]]


def dct_std(views: Sequence[np.ndarray], subsampling: str = "4:4:4") -> tuple[np.ndarray, np.ndarray]:
    """Standard deviation of each frequency's coefficient (orthonormal units) over all blocks: (Y, Cb+Cr).

    At 4:2:0 the chroma blocks are those of the halved planes, as the file codes them."""
    luma, chroma = [], []
    for v in views:
        coef = [dct.forward_blocks(p).reshape(-1, 8, 8) / 8.0 for p in dct.samples(v, subsampling)]
        luma.append(coef[0])
        chroma += coef[1:]
    return np.concatenate(luma).std(axis=0), np.concatenate(chroma).std(axis=0)


def _deepn_map(sigma: np.ndarray) -> np.ndarray:
    p = DEEPN
    step = np.where(sigma <= p["t1"], p["a"] - p["k1"] * sigma,
                    np.where(sigma <= p["t2"], p["b"] - p["k2"] * sigma, p["q_min"]))
    return np.clip(step, 1.0, 255.0)


def deepn_profile(views: Sequence[np.ndarray], subsampling: str = "4:4:4") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    luma_std, chroma_std = dct_std(views, subsampling)
    info = {"sigma_luma": np.round(luma_std, 3).tolist(), "sigma_chroma": np.round(chroma_std, 3).tolist(),
            "mapping": DEEPN}
    return _deepn_map(luma_std), _deepn_map(chroma_std), info


def _basis() -> np.ndarray:
    """[64, 8, 8]: the orthonormal DCT basis image of each frequency (u, v), natural order."""
    c = dct.DCT_ORTHO
    return np.einsum("ui,vj->uvij", c, c).reshape(64, 8, 8)


def _plane(amp: np.ndarray, basis: np.ndarray, h: int, w: int) -> np.ndarray:
    """[n, h, w] pixels from per-block amplitudes [n, bh, bw] of one basis image."""
    n, hb, wb = amp.shape
    return (amp[:, :, None, :, None] * basis[None, None, :, None, :]).reshape(n, hb * 8, wb * 8)[:, :h, :w]


def _upsample(planes: np.ndarray, h: int, w: int) -> np.ndarray:
    """libjpeg's fancy 4:2:0 upsampling without its rounding: how a chroma error spreads to the pixels."""
    hd, wd = dct.chroma_size(h, w)
    x = np.pad(planes[..., :hd, :wd], [(0, 0)] * (planes.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    out = np.empty((*x.shape[:-2], 2 * hd, 2 * wd))
    for v, far in ((0, x[..., :-2, :]), (1, x[..., 2:, :])):
        sums = 3 * x[..., 1:-1, :] + far
        out[..., v::2, 0::2] = (3 * sums[..., 1:-1] + sums[..., :-2]) / 16
        out[..., v::2, 1::2] = (3 * sums[..., 1:-1] + sums[..., 2:]) / 16
    return out[..., :h, :w]


def _probe_error(rng: np.random.Generator, coef: np.ndarray, probe: str, std: float) -> np.ndarray:
    """Per-block error on one frequency: uniform noise of ``std``, or the error of quantizing that
    coefficient with step clip(2 sigma, 4, 64) (mostly zeroing it: what coarse JPEG steps do)."""
    if probe == "noise":
        return rng.uniform(-std * math.sqrt(3), std * math.sqrt(3), coef.shape)
    step = float(np.clip(2.0 * coef.std(), 4.0, 64.0))
    return np.sign(coef) * np.floor(np.abs(coef) / step + 0.5) * step - coef


def sensitivities(classifier: Classifier, views: Sequence[np.ndarray], *, probe: str = "quantize",
                  std: float = PROBE_STD, seed: int = 0, progress: Progress | None = None,
                  subsampling: str = "4:4:4") -> tuple[np.ndarray, np.ndarray]:
    """g per frequency, (luma [8,8], chroma [8,8]): centred-logit error energy per unit of coefficient error energy.

    The chroma gain is of Cb and Cr perturbed together. ``probe``: "quantize" (default) perturbs each
    frequency with its own quantization error, "noise" with uniform noise of std ``std``. At 4:2:0 the
    chroma errors are made on the halved planes' coefficients and upsampled as the decoder does.
    """
    if probe not in ("quantize", "noise"):
        raise FeatcompError(f"unknown probe {probe!r}; use quantize or noise")
    classifier.check(views)
    x0 = classifier.inputs(views)
    _, z0 = classifier.run(x0)
    h, w = views[0].shape[0], views[0].shape[1]
    luma, chroma = _coefficients(views, subsampling)
    ly, lc = np.stack(luma), np.stack(chroma)          # [n, bh, bw, 64], [n, 2, bh, bw, 64]
    hc, wc = (lc.shape[2] * 8, lc.shape[3] * 8)

    def chroma_plane(amp: np.ndarray, k: int) -> np.ndarray:
        if subsampling == "4:4:4":
            return _plane(amp, basis[k], h, w)
        return _upsample(_plane(amp, basis[k], hc, wc), h, w)
    basis = _basis()
    gains = np.zeros((2, 64))
    probes = [(comp, k) for comp in (0, 1) for k in range(64)]
    for comp, k in (progress(probes) if progress is not None else probes):
        rng = np.random.default_rng([seed, comp, k])
        if comp == 0:
            err = _probe_error(rng, ly[..., k], probe, std)
            rgb = _plane(err, basis[k], h, w)[..., None] * np.ones(3)
            energy = float(np.sum(np.square(err)))
        else:
            err = _probe_error(rng, lc[..., k], probe, std)
            rgb = chroma_plane(err[:, 0], k)[..., None] * _CB_RGB + chroma_plane(err[:, 1], k)[..., None] * _CR_RGB
            energy = float(np.sum(np.square(err))) / 2.0  # per component: the gain is of Cb and Cr together
        _, z = classifier.run(x0 + classifier.delta(rgb))
        gains[comp, k] = float(np.sum(np.square(z - z0))) / max(energy, 1e-12)
    if not (gains > 0).all():
        raise FeatcompError("the model's output does not change when its input image does; "
                            "it cannot be used to learn tables")
    return gains[0].reshape(8, 8), gains[1].reshape(8, 8)


_STEPS = np.unique(np.round(np.geomspace(1, 255, 72)).astype(np.int64))  # candidate steps
_LAMBDAS = np.geomspace(1e-7, 1e5, 145)


def _rd(coef: np.ndarray, dc: bool) -> tuple[np.ndarray, np.ndarray]:
    """(rate bits, distortion) per coefficient for each candidate step, coef [blocks] or [images, rows, cols]."""
    rates, dists = np.zeros(len(_STEPS)), np.zeros(len(_STEPS))
    for i, q in enumerate(_STEPS):
        sym = np.sign(coef) * np.floor(np.abs(coef) / q + 0.5)
        dists[i] = float(np.mean(np.square(coef - sym * q)))
        if dc:  # JPEG codes DC as the difference from the previous block in the row
            sym = np.diff(sym, axis=-1, prepend=0)
        _, counts = np.unique(sym, return_counts=True)
        p = counts / counts.sum()
        rates[i] = float(-np.sum(p * np.log2(p)))
    return rates, dists


def _coefficients(views: Sequence[np.ndarray], subsampling: str = "4:4:4") -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Orthonormal-unit coefficients per image: luma [bh, bw, 64] and chroma [2, bh', bw', 64] (halved at 4:2:0)."""
    luma, chroma = [], []
    for v in views:
        planes = [dct.forward_blocks(p) / 8.0 for p in dct.samples(v, subsampling)]
        luma.append(planes[0].reshape(*planes[0].shape[:2], 64))
        chroma.append(np.stack(planes[1:]).reshape(2, *planes[1].shape[:2], 64))
    return luma, chroma


def rd_ladder(views: Sequence[np.ndarray], g_luma: np.ndarray, g_chroma: np.ndarray,
              subsampling: str = "4:4:4") -> np.ndarray:
    """[L, 2, 8, 8] tables from finest to coarsest: per lambda, argmin_q n R(q) + lambda g D(q) per frequency.

    Each frequency's choice is independent, so the number of blocks per component (4 luma per 2 chroma
    blocks at 4:2:0) scales both of its terms alike and drops out; the chroma statistics are those of the
    planes the file codes."""
    luma, chroma = _coefficients(views, subsampling)
    cost_r, cost_d = np.zeros((2, 64, len(_STEPS))), np.zeros((2, 64, len(_STEPS)))
    for k in range(64):
        dc = k == 0
        y = np.concatenate([c[..., k].reshape(-1) for c in luma])
        c2 = np.concatenate([c[..., k].reshape(-1) for c in chroma])
        if dc:  # keep block rows intact so DC differences run along them
            ry = np.mean([_rd(c[..., 0], True)[0] for c in luma], axis=0)
            rc = np.mean([_rd(c[..., 0], True)[0] for c in chroma], axis=0)
            cost_r[0, k], cost_r[1, k] = ry, 2 * rc
            cost_d[0, k], cost_d[1, k] = _rd(y, False)[1], _rd(c2, False)[1]
        else:
            (ry, dy), (rc, dc_) = _rd(y, False), _rd(c2, False)
            cost_r[0, k], cost_d[0, k], cost_r[1, k], cost_d[1, k] = ry, dy, 2 * rc, dc_
    g = np.stack([g_luma.reshape(64), g_chroma.reshape(64)])[..., None]
    g = g / float(np.median(g))
    rungs: list[np.ndarray] = []
    for lam in _LAMBDAS[::-1]:  # large lambda first: finest
        cost = (cost_r + lam * g * cost_d)[..., ::-1]  # ties go to the coarsest step (it costs nothing more)
        steps = _STEPS[len(_STEPS) - 1 - np.argmin(cost, axis=-1)].reshape(2, 8, 8)
        if rungs:  # D(q) is not monotone in q: keep every rung at least as coarse as the last, so the
            steps = np.maximum(steps, rungs[-1])  # family is ordered and the bisections stay valid
        if not rungs or not np.array_equal(steps, rungs[-1]):
            rungs.append(steps)
    if rungs[-1].min() < 255:  # the coarsest JPEG there is ends every ladder
        rungs.append(np.full((2, 8, 8), 255, np.int64))
    return np.stack(rungs)


def search_scale(family: Tables, meets: Callable[[Tables], bool], iterations: int = 18, *,
                 finest: bool = False) -> Tables | None:
    """The coarsest member of the family that ``meets``, or with ``finest`` the finest one (Tables.member order).

    Bisection for a monotone test: an accuracy test holds for fine tables and fails for coarse ones
    (ask for the coarsest); a rate budget holds for coarse ones (ask for the finest). None when no
    member meets it.
    """
    good, bad = (1.0, 0.0) if finest else (0.0, 1.0)
    if meets(family.member(bad)):
        return family.member(bad)
    if not meets(family.member(good)):
        return None
    for _ in range(iterations):
        mid = (good + bad) / 2
        if meets(family.member(mid)):
            good = mid
        else:
            bad = mid
    return family.member(good)


def _unreachable(target_bpp: float, views: Sequence[np.ndarray], family: Tables) -> FeatcompError:
    low = rate(views, family.member(1.0))
    return FeatcompError(f"--target-bpp {target_bpp:g} is below what JPEG can reach on these images: "
                         f"{low:.3f} bpp with every step at 255 (headers included)")


def smallest(family: Tables, meets: Callable[[Tables], bool], views: Sequence[np.ndarray], *,
             scan: int = 6) -> tuple[Tables | None, int]:
    """The member with the fewest bytes on ``views`` among those that ``meets``, and how many were tried.

    An accuracy test on a few hundred images is not monotone along a family: bisection stops at the
    first boundary it brackets, and coarser members may pass again. So every member the bisection tried
    is kept, ``scan`` more are tried past the boundary (each about 1.3x coarser in scale, or one rung of
    a ladder), and the smallest file among all that passed wins. None when none passed.
    """
    tried: dict[bytes, tuple[Tables, bool]] = {}

    def test(t: Tables) -> bool:
        key = t.luma.tobytes() + t.chroma.tobytes()
        if key not in tried:
            tried[key] = (t, meets(t))
        return tried[key][1]

    found = search_scale(family, test)
    if found is not None:
        lo = 1.0 / (len(family.ladder) - 1) if family.ladder is not None and len(family.ladder) > 1 else 0.02
        t0 = _position(family, found)
        for k in range(1, scan + 1):
            if t0 + k * lo > 1.0:
                break
            test(family.member(t0 + k * lo))
    passed = [t for t, ok in tried.values() if ok]
    if not passed:
        return None, len(tried)
    sizes = [rate(views, t) for t in passed]
    return passed[int(np.argmin(sizes))], len(tried)


def _position(family: Tables, member: Tables) -> float:
    """Where ``member`` sits in ``family.member`` order (0 finest, 1 coarsest)."""
    from featcomp.jpeg.tables import SCALE_RANGE

    if family.ladder is not None:
        return float(member.scale or 0.0) / max(len(family.ladder) - 1, 1)
    lo, hi = (math.log(v) for v in SCALE_RANGE)
    return (math.log(float(member.scale or 1.0)) - lo) / (hi - lo)


def loss_test(classifier: Classifier, views: Sequence[np.ndarray], max_drop: float, metric: str,
              reference: Reference) -> Callable[[Tables], bool]:
    """Does coding ``views`` with the tables keep ``metric`` within ``max_drop`` points of the uncompressed views?"""
    base = reference.uncompressed[metric]
    assert base is not None

    def meets(t: Tables) -> bool:
        got = reference.scores(classifier.top1(code(views, t).decoded))[metric]
        assert got is not None
        return base - got <= max_drop / 100.0 + 1e-9
    return meets


def learn(method: str, views: Sequence[np.ndarray], classifier: Classifier | None = None, *,
          target_bpp: float | None = None, max_drop: float | None = None, model_name: str | None = None,
          progress: Progress | None = None, subsampling: str = "4:4:4", labels: np.ndarray | None = None,
          label_offset: int = 0, metric: str | None = None, e2e_settings: Any = None) -> Tables:
    """Tables for ``views`` (uint8 RGB as the model sees them) by ``method``, aimed at one target, at ``subsampling``.

    target_bpp: the finest member of the family whose rate on the views is at most B bpp. max_drop: the
    member with the fewest bytes whose ``metric`` stays within P points of the uncompressed views (see
    ``smallest``); metric: "top1" (needs ``labels``; the default with them), "expected" (label-free
    expected top-1; the default without) or "agreement". Without either target: max_drop = 1.
    ``learned``, ``operational`` and ``e2e`` always need the model; ``e2e`` also torch (``featcomp[e2e]``),
    and ``e2e_settings`` (``featcomp.jpeg.e2e.Settings``) sets its descent.
    """
    from featcomp.jpeg.dct import check_subsampling

    if method not in METHODS:
        raise FeatcompError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    check_subsampling(subsampling)
    if method == "e2e":
        from featcomp.jpeg.e2e import import_torch

        import_torch()  # one line before any work when torch is missing
    if target_bpp is not None and max_drop is not None:
        raise FeatcompError("give --target-bpp or --max-drop, not both")
    if not views:
        raise FeatcompError("no images to learn from")
    if target_bpp is None and max_drop is None:
        max_drop = 1.0
    if target_bpp is not None and not (math.isfinite(target_bpp) and target_bpp > 0):
        raise FeatcompError(f"--target-bpp must be a positive number of bits per pixel, got {target_bpp}")
    if max_drop is not None and not (math.isfinite(max_drop) and 0 <= max_drop <= 100):
        raise FeatcompError(f"--max-drop must be a number of top-1 points in 0..100, got {max_drop}")
    if classifier is None and (method != "deepn" or max_drop is not None):
        raise FeatcompError(f"method {method} with --max-drop needs the model" if method == "deepn"
                            else f"method {method} needs the model")
    metric = metric or ("top1" if labels is not None else "expected")
    if metric not in METRICS:
        raise FeatcompError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    if metric == "top1" and labels is None:
        raise FeatcompError("--metric top1 needs labels (--labels FILE, or labels.txt in the image folder)")
    meta: dict[str, Any] = {"images": len(views), "size": [int(views[0].shape[1]), int(views[0].shape[0])],
                            "subsampling": subsampling}
    reference: Reference | None = None
    meets: Callable[[Tables], bool]
    target: dict[str, Any]
    if target_bpp is not None:
        budget = target_bpp
        meets = lambda t: rate(views, t) <= budget  # noqa: E731
        finest, target = True, {"target_bpp": target_bpp}
    else:
        assert classifier is not None and max_drop is not None
        classifier.check(views)
        reference = Reference.of(classifier, views, labels, label_offset)
        meets = loss_test(classifier, views, max_drop, metric, reference)
        finest, target = False, {"max_drop": max_drop, "metric": metric}
    if method == "deepn":
        luma, chroma, info = deepn_profile(views, subsampling)
        meta["deepn"] = info
        family = Tables.from_profile(luma, chroma, 1.0, method, model=model_name, subsampling=subsampling)
    elif method == "learned":
        assert classifier is not None
        g_luma, g_chroma = sensitivities(classifier, views, progress=progress, subsampling=subsampling)
        meta["learned"] = {"probe_std": PROBE_STD, "g_luma": np.round(g_luma, 6).tolist(),
                           "g_chroma": np.round(g_chroma, 6).tolist()}
        ladder = rd_ladder(views, g_luma, g_chroma, subsampling)
        family = Tables(ladder[0, 0], ladder[0, 1], method=method, model=model_name, ladder=ladder, scale=0.0,
                        subsampling=subsampling)
    elif method == "e2e":
        from featcomp.jpeg.e2e import e2e_ladder

        assert classifier is not None
        ladder, meta["e2e"] = e2e_ladder(classifier, views, subsampling, e2e_settings, progress)
        family = Tables(ladder[0, 0], ladder[0, 1], method=method, model=model_name, ladder=ladder, scale=0.0,
                        subsampling=subsampling)
    else:  # operational: tune the Annex K shape where Annex K meets the target, then aim the tuned shape
        from featcomp.jpeg.search import operational

        assert classifier is not None
        annex_k = Tables.from_profile(STANDARD_LUMA, STANDARD_CHROMA, 1.0, "standard", subsampling=subsampling)
        start = search_scale(annex_k, meets, finest=finest)
        if start is None and target_bpp is not None:
            raise _unreachable(target_bpp, views, annex_k)
        if start is None:  # no Annex K scale keeps the agreement: tune near the finest (quality 98)
            start = annex_k.scaled(0.04)
        assert start.scale is not None
        luma, chroma, info = operational(classifier, views, start.scale, progress=progress, subsampling=subsampling)
        meta["operational"] = info
        family = Tables.from_profile(luma, chroma, 1.0, method, model=model_name, subsampling=subsampling)
    if target_bpp is not None:
        found = search_scale(family, meets, finest=True)
        if found is None:
            raise _unreachable(target_bpp, views, family)
    else:
        found, meta["candidates"] = smallest(family, meets, views)
    if found is None:  # even all-1 steps lose more than allowed: keep the finest, and say so
        found, meta["met"] = family.member(0.0), False
    coded = code(views, found)
    meta.update(target=target, bpp=round(coded.bpp, 5))
    if classifier is not None:
        if reference is None:
            reference = Reference.of(classifier, views, labels, label_offset)
        scores = reference.scores(classifier.top1(coded.decoded))
        meta["agreement"] = round(float(scores["agreement"] or 0.0), 5)
        meta["expected_top1_drop"] = round(float(reference.uncompressed["expected"] or 0.0)
                                           - float(scores["expected"] or 0.0), 5)
        if scores["top1"] is not None:
            meta["top1"] = round(scores["top1"], 5)
            meta["top1_uncompressed"] = round(float(reference.uncompressed["top1"] or 0.0), 5)
    return replace(found, meta=meta)
