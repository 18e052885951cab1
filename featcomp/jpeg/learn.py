"""Two ways to make tables for a network, and the search that sets their overall coarseness.

Each method gives a *profile*: the relative step of each of the 64 luma and 64 chroma frequencies.
The table is ``clip(round(scale * profile), 1, 255)``; one number, the scale, then moves along the
rate-accuracy curve, and is searched for the user's target.

- ``deepn`` (after DeepN-JPEG, Liu et al. 2018): per-frequency standard deviation sigma of the images'
  DCT coefficients, and the paper's piecewise-linear map from sigma to step in three bands: frequencies
  that vary a lot across the data carry the content the network was trained on and get fine steps,
  quiet ones coarse steps. It looks at the images only, not at the network.
- ``learned``: the network's own sensitivity. For each frequency k (luma; chroma with Cb and Cr
  together, since they share a table) we add zero-mean uniform noise of known variance s^2 to that
  coefficient of every 8x8 block, run the model in ONNX Runtime and measure the change of its centred
  logits: g_k = E||dz||^2 / s^2. With JPEG's quantization noise D_k = step_k^2 / 12 and the high-rate
  rate n_k log2(sigma_k / step_k) per block (n_k = 1 coefficient for luma, 2 for chroma), minimising
  rate + lambda * sum_k g_k D_k gives step_k = c / sqrt(g_k / n_k): reverse water-filling over the
  frequencies, weighted by what the network notices. Frequencies it ignores end at 255 (dropped).
  This is J4D's objective (task loss + lambda * rate) with the task loss linearised around the clean
  image, solved in closed form instead of by backprop, so it needs no torch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from featcomp.errors import FeatcompError
from featcomp.jpeg import dct
from featcomp.jpeg.measure import Classifier, code, rate
from featcomp.jpeg.tables import STANDARD_LUMA, Tables

__all__ = ["METHODS", "PROBE_STD", "deepn_profile", "dct_std", "learn", "learned_profile", "search_scale",
           "sensitivities"]

METHODS = ("deepn", "learned")
PROBE_STD = 8.0           # noise std per coefficient (orthonormal DCT units): ~1 grey level RMS per pixel
SCALE_RANGE = (1e-3, 1e3)  # every step is 1 below the low end and 255 above the high end for any profile
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


def _noise_plane(rng: np.random.Generator, basis: np.ndarray, n: int, h: int, w: int, std: float) -> np.ndarray:
    """[n, h, w]: independent uniform noise of this std on one frequency of every block."""
    hb, wb = -(-h // 8), -(-w // 8)
    amp = rng.uniform(-std * math.sqrt(3), std * math.sqrt(3), (n, hb, 1, wb, 1))
    return (amp * basis[None, None, :, None, :]).reshape(n, hb * 8, wb * 8)[:, :h, :w]


def sensitivities(classifier: Classifier, views: Sequence[np.ndarray], *, std: float = PROBE_STD, seed: int = 0,
                  progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """g per frequency, (luma [8,8], chroma [8,8]): centred-logit error energy per unit coefficient noise variance.

    The chroma gain is of Cb and Cr perturbed together (both get noise of variance std^2).
    """
    classifier.check(views)
    x0 = classifier.inputs(views)
    _, z0 = classifier.run(x0)
    n, h, w = len(views), views[0].shape[0], views[0].shape[1]
    basis = _basis()
    gains = np.zeros((2, 64))
    probes = [(comp, k) for comp in (0, 1) for k in range(64)]
    for comp, k in (progress(probes) if progress is not None else probes):
        rng = np.random.default_rng([seed, comp, k])
        if comp == 0:
            rgb = _noise_plane(rng, basis[k], n, h, w, std)[..., None] * np.ones(3)
        else:
            rgb = (_noise_plane(rng, basis[k], n, h, w, std)[..., None] * _CB_RGB
                   + _noise_plane(rng, basis[k], n, h, w, std)[..., None] * _CR_RGB)
        _, z = classifier.run(x0 + classifier.delta(rgb))
        gains[comp, k] = float(np.mean(np.sum(np.square(z - z0), axis=1))) / std ** 2
    if not (gains > 0).all():
        raise FeatcompError("the model's output does not change when its input image does; "
                            "it cannot be used to learn tables")
    return gains[0].reshape(8, 8), gains[1].reshape(8, 8)


def learned_profile(g_luma: np.ndarray, g_chroma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """step ~ 1 / sqrt(g / n) (n = 2 chroma coefficients share each chroma step), scaled so that the luma
    profile's geometric mean equals Annex K's: scale 1 is then a mid-rate table, like quality 50."""
    luma, chroma = 1.0 / np.sqrt(g_luma), 1.0 / np.sqrt(g_chroma / 2.0)
    c = math.exp(float(np.mean(np.log(STANDARD_LUMA))) - float(np.mean(np.log(luma))))
    return luma * c, chroma * c


def search_scale(family: Tables, meets: Callable[[Tables], bool], iterations: int = 18, *,
                 finest: bool = False) -> Tables | None:
    """The coarsest member of the family (largest scale) that ``meets``, or with ``finest`` the finest one.

    Bisection on log(scale) for a monotone test: an accuracy test holds for fine tables and fails for
    coarse ones (ask for the coarsest); a rate budget holds for coarse ones (ask for the finest).
    None when no member in SCALE_RANGE meets it.
    """
    lo, hi = math.log(SCALE_RANGE[0]), math.log(SCALE_RANGE[1])
    good, bad = (hi, lo) if finest else (lo, hi)
    if meets(family.scaled(math.exp(bad))):
        return family.scaled(math.exp(bad))
    if not meets(family.scaled(math.exp(good))):
        return None
    for _ in range(iterations):
        mid = (good + bad) / 2
        if meets(family.scaled(math.exp(mid))):
            good = mid
        else:
            bad = mid
    return family.scaled(math.exp(good))


def learn(method: str, views: Sequence[np.ndarray], classifier: Classifier | None = None, *,
          target_bpp: float | None = None, max_drop: float | None = None, model_name: str | None = None,
          progress: Progress | None = None) -> Tables:
    """Tables for ``views`` (uint8 RGB as the model sees them) by ``method``, aimed at one target.

    target_bpp: the coarsest tables whose rate on the views is at most B bpp. max_drop: the coarsest
    whose top-1 agreement with the model on the uncompressed views stays within P points (needs the
    model). Without either: max_drop = 1. ``learned`` always needs the model.
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
    if classifier is None and (method == "learned" or max_drop is not None):
        raise FeatcompError(f"method {method} with --max-drop needs the model" if method == "deepn"
                            else "method learned needs the model")
    meta: dict[str, Any] = {"images": len(views), "size": [int(views[0].shape[1]), int(views[0].shape[0])]}
    if method == "deepn":
        luma, chroma, info = deepn_profile(views)
        meta["deepn"] = info
    else:
        assert classifier is not None
        g_luma, g_chroma = sensitivities(classifier, views, progress=progress)
        luma, chroma = learned_profile(g_luma, g_chroma)
        meta["learned"] = {"probe_std": PROBE_STD, "g_luma": np.round(g_luma, 6).tolist(),
                           "g_chroma": np.round(g_chroma, 6).tolist()}
    family = Tables.from_profile(luma, chroma, 1.0, method, model=model_name)
    if target_bpp is not None:
        found = search_scale(family, lambda t: rate(views, t) <= target_bpp, finest=True)
        if found is None:
            low = rate(views, family.scaled(SCALE_RANGE[1]))
            raise FeatcompError(f"--target-bpp {target_bpp:g} is below what JPEG can reach on these images: "
                                f"{low:.3f} bpp with every step at 255 (headers included)")
        target: dict[str, float] = {"target_bpp": target_bpp}
    else:
        assert classifier is not None and max_drop is not None
        classifier.check(views)
        reference = classifier.top1(views)
        need = math.ceil(len(views) * (1.0 - max_drop / 100.0) - 1e-9)
        found = search_scale(family, lambda t: int(np.sum(classifier.top1(code(views, t).decoded) == reference)) >= need)
        if found is None:  # even all-1 steps flip more than allowed: keep the finest, and say so
            found, meta["met"] = family.scaled(SCALE_RANGE[0]), False
        target = {"max_drop": max_drop}
    coded = code(views, found)
    meta.update(target=target, bpp=round(coded.bpp, 5))
    if classifier is not None:
        agree = float(np.mean(classifier.top1(coded.decoded) == classifier.top1(views)))
        meta["agreement"] = round(agree, 5)
    return Tables(found.luma, found.chroma, method=method, model=model_name, profile_luma=luma,
                  profile_chroma=chroma, scale=found.scale, meta=meta)
