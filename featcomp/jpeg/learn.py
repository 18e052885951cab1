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
from featcomp.jpeg.measure import Classifier, code, rate
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables

__all__ = ["METHODS", "PROBE_STD", "deepn_profile", "dct_std", "learn", "rd_ladder", "search_scale",
           "sensitivities"]

METHODS = ("deepn", "learned", "operational")
PROBE_STD = 8.0           # noise std per coefficient (orthonormal DCT units): ~1 grey level RMS per pixel
# DeepN-JPEG's mapping (sigma in orthonormal DCT units of 0..255 pixels): HF band sigma <= T1: a - k1*sigma;
# MF band T1 < sigma <= T2: b - k2*sigma; LF band sigma > T2: q_min.
DEEPN = {"a": 255.0, "b": 80.0, "k1": 9.75, "k2": 1.0, "t1": 20.0, "t2": 60.0, "q_min": 5.0}
# JFIF YCbCr -> RGB: the change of R, G, B per unit change of Cb and of Cr
_CB_RGB = np.array([0.0, -0.344136, 1.772])
_CR_RGB = np.array([1.402, -0.714136, 0.0])

Progress = Callable[[Iterable[Any]], Iterable[Any]]


def dct_std(views: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Standard deviation of each frequency's coefficient (orthonormal units) over all blocks: (Y, Cb+Cr)."""
    luma, chroma = [], []
    for v in views:
        ycc = dct.to_ycc(dct.pad8(v))
        coef = [dct.forward_blocks(ycc[..., c]).reshape(-1, 8, 8) / 8.0 for c in range(3)]
        luma.append(coef[0])
        chroma += coef[1:]
    return np.concatenate(luma).std(axis=0), np.concatenate(chroma).std(axis=0)


def _deepn_map(sigma: np.ndarray) -> np.ndarray:
    p = DEEPN
    step = np.where(sigma <= p["t1"], p["a"] - p["k1"] * sigma,
                    np.where(sigma <= p["t2"], p["b"] - p["k2"] * sigma, p["q_min"]))
    return np.clip(step, 1.0, 255.0)


def deepn_profile(views: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    luma_std, chroma_std = dct_std(views)
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


def _probe_error(rng: np.random.Generator, coef: np.ndarray, probe: str, std: float) -> np.ndarray:
    """Per-block error on one frequency: uniform noise of ``std``, or the error of quantizing that
    coefficient with step clip(2 sigma, 4, 64) (mostly zeroing it: what coarse JPEG steps do)."""
    if probe == "noise":
        return rng.uniform(-std * math.sqrt(3), std * math.sqrt(3), coef.shape)
    step = float(np.clip(2.0 * coef.std(), 4.0, 64.0))
    return np.sign(coef) * np.floor(np.abs(coef) / step + 0.5) * step - coef


def sensitivities(classifier: Classifier, views: Sequence[np.ndarray], *, probe: str = "quantize",
                  std: float = PROBE_STD, seed: int = 0, progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """g per frequency, (luma [8,8], chroma [8,8]): centred-logit error energy per unit of coefficient error energy.

    The chroma gain is of Cb and Cr perturbed together. ``probe``: "quantize" (default) perturbs each
    frequency with its own quantization error, "noise" with uniform noise of std ``std``.
    """
    if probe not in ("quantize", "noise"):
        raise FeatcompError(f"unknown probe {probe!r}; use quantize or noise")
    classifier.check(views)
    x0 = classifier.inputs(views)
    _, z0 = classifier.run(x0)
    h, w = views[0].shape[0], views[0].shape[1]
    luma, chroma = _coefficients(views)
    ly, lc = np.stack(luma), np.stack(chroma)          # [n, bh, bw, 64], [n, 2, bh, bw, 64]
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
            rgb = (_plane(err[:, 0], basis[k], h, w)[..., None] * _CB_RGB
                   + _plane(err[:, 1], basis[k], h, w)[..., None] * _CR_RGB)
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


def _coefficients(views: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Orthonormal-unit coefficients per image: luma [bh, bw, 64] and chroma [2, bh, bw, 64]."""
    luma, chroma = [], []
    for v in views:
        ycc = dct.to_ycc(dct.pad8(v))
        planes = [dct.forward_blocks(ycc[..., c]) / 8.0 for c in range(3)]
        luma.append(planes[0].reshape(*planes[0].shape[:2], 64))
        chroma.append(np.stack(planes[1:]).reshape(2, *planes[1].shape[:2], 64))
    return luma, chroma


def rd_ladder(views: Sequence[np.ndarray], g_luma: np.ndarray, g_chroma: np.ndarray) -> np.ndarray:
    """[L, 2, 8, 8] tables from finest to coarsest: per lambda, argmin_q n R(q) + lambda g D(q) per frequency."""
    luma, chroma = _coefficients(views)
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


def learn(method: str, views: Sequence[np.ndarray], classifier: Classifier | None = None, *,
          target_bpp: float | None = None, max_drop: float | None = None, model_name: str | None = None,
          progress: Progress | None = None) -> Tables:
    """Tables for ``views`` (uint8 RGB as the model sees them) by ``method``, aimed at one target.

    target_bpp: the coarsest tables whose rate on the views is at most B bpp. max_drop: the coarsest
    whose top-1 agreement with the model on the uncompressed views stays within P points (needs the
    model). Without either: max_drop = 1. ``learned`` and ``operational`` always need the model.
    """
    if method not in METHODS:
        raise FeatcompError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
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
    meta: dict[str, Any] = {"images": len(views), "size": [int(views[0].shape[1]), int(views[0].shape[0])]}
    if target_bpp is not None:
        def meets(t: Tables) -> bool:
            return rate(views, t) <= target_bpp
        finest, target = True, {"target_bpp": target_bpp}
    else:
        assert classifier is not None and max_drop is not None
        classifier.check(views)
        reference = classifier.top1(views)
        need = math.ceil(len(views) * (1.0 - max_drop / 100.0) - 1e-9)

        def meets(t: Tables) -> bool:
            return int(np.sum(classifier.top1(code(views, t).decoded) == reference)) >= need
        finest, target = False, {"max_drop": max_drop}
    if method == "deepn":
        luma, chroma, info = deepn_profile(views)
        meta["deepn"] = info
        family = Tables.from_profile(luma, chroma, 1.0, method, model=model_name)
    elif method == "learned":
        assert classifier is not None
        g_luma, g_chroma = sensitivities(classifier, views, progress=progress)
        meta["learned"] = {"probe_std": PROBE_STD, "g_luma": np.round(g_luma, 6).tolist(),
                           "g_chroma": np.round(g_chroma, 6).tolist()}
        ladder = rd_ladder(views, g_luma, g_chroma)
        family = Tables(ladder[0, 0], ladder[0, 1], method=method, model=model_name, ladder=ladder, scale=0.0)
    else:  # operational: tune the Annex K shape where Annex K meets the target, then aim the tuned shape
        from featcomp.jpeg.search import operational

        assert classifier is not None
        annex_k = Tables.from_profile(STANDARD_LUMA, STANDARD_CHROMA, 1.0, "standard")
        start = search_scale(annex_k, meets, finest=finest)
        if start is None and target_bpp is not None:
            raise _unreachable(target_bpp, views, annex_k)
        if start is None:  # no Annex K scale keeps the agreement: tune near the finest (quality 98)
            start = annex_k.scaled(0.04)
        assert start.scale is not None
        luma, chroma, info = operational(classifier, views, start.scale, progress=progress)
        meta["operational"] = info
        family = Tables.from_profile(luma, chroma, 1.0, method, model=model_name)
    found = search_scale(family, meets, finest=finest)
    if found is None and target_bpp is not None:
        raise _unreachable(target_bpp, views, family)
    if found is None:  # even all-1 steps flip more than allowed: keep the finest, and say so
        found, meta["met"] = family.member(0.0), False
    coded = code(views, found)
    meta.update(target=target, bpp=round(coded.bpp, 5))
    if classifier is not None:
        agree = float(np.mean(classifier.top1(coded.decoded) == classifier.top1(views)))
        meta["agreement"] = round(agree, 5)
    return replace(found, meta=meta)
