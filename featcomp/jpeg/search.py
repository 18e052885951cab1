"""Operational table search: the table shape tuned against real Pillow bytes and the model's real output.

``learned`` predicts rate and distortion per frequency and adds them up; both predictions are
approximations (JPEG codes runs of zeros, not separate coefficients; a network's response to many
quantized frequencies at once is not the sum of its responses to each). This search measures both
instead, for whole table pairs:

- R: real file bytes of the images encoded by Pillow with the tables (bpp, headers included);
- D: the mean squared change of the model's centred logits (as featcomp.allocate measures a feature
  site) between the decoded images and the uncompressed ones, from ONNX Runtime. It is smooth in the
  tables where top-1 agreement on a few dozen images is a step function.

Parameters: the tables are a reference shape (Annex K) times exp(theta_g) per *band*: the luma
frequencies grouped by their diagonal u+v (the last ones merged), the chroma frequencies in fewer,
wider bands. Few parameters keep each sweep cheap (one model run per trial) and the result robust
on a few dozen images. The search starts from Annex K at the operating point (the scale whose rate
is the target) and does coordinate descent on J = D + lambda R, lambda being the slope -dD/dR of the
Annex K family there: every accepted move lowers J, so the result lies below the standard curve's
tangent at that point -- it saves bytes at equal D, or lowers D at equal bytes, on the images it saw.
The tuned tables then become a profile (``Tables.from_profile``), swept by one scale like deepn's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from featcomp.errors import FeatcompError
from featcomp.jpeg.measure import Classifier, code
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables, scale_profile

__all__ = ["BANDS_CHROMA", "BANDS_LUMA", "Trial", "band_index", "operational", "tables_from"]

# bands by diagonal u + v (0..14): luma 0, 1, ..., 7, then 8-9, 10-11, 12-14; chroma 0, 1, 2, 3-4, 5-14
BANDS_LUMA = (0, 1, 2, 3, 4, 5, 6, 7, 8, 8, 9, 9, 10, 10, 10)
BANDS_CHROMA = (0, 1, 2, 3, 3, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4)
STEPS = (0.3, 0.15)  # coordinate-descent moves in log-step, coarse to fine

Progress = Callable[[Iterable[Any]], Iterable[Any]]


def band_index() -> tuple[np.ndarray, np.ndarray, int]:
    """(luma band [8,8], chroma band [8,8] offset past the luma bands, number of bands)."""
    diagonal = np.add.outer(np.arange(8), np.arange(8))
    luma = np.asarray(BANDS_LUMA)[diagonal]
    chroma = np.asarray(BANDS_CHROMA)[diagonal] + luma.max() + 1
    return luma, chroma, int(chroma.max()) + 1


def tables_from(theta: np.ndarray, scale: float, base_luma: np.ndarray = STANDARD_LUMA,
                base_chroma: np.ndarray = STANDARD_CHROMA) -> tuple[np.ndarray, np.ndarray]:
    """Profiles (float [8,8] luma, chroma) = base x scale x exp(theta of each frequency's band)."""
    luma_band, chroma_band, n = band_index()
    theta = np.asarray(theta, np.float64)
    if theta.shape != (n,):
        raise FeatcompError(f"theta must hold {n} band offsets, got shape {theta.shape}")
    return (np.asarray(base_luma, np.float64) * scale * np.exp(theta[luma_band]),
            np.asarray(base_chroma, np.float64) * scale * np.exp(theta[chroma_band]))


@dataclass(frozen=True)
class Trial:
    bpp: float
    distortion: float


@dataclass
class _Objective:
    """Measures (bpp, D) of table pairs on fixed images, cached by the integer tables."""

    classifier: Classifier
    views: Sequence[np.ndarray]
    z0: np.ndarray
    subsampling: str = "4:4:4"
    cache: dict[bytes, Trial] = field(default_factory=dict)

    def __call__(self, luma: np.ndarray, chroma: np.ndarray) -> Trial:
        t = Tables(scale_profile(luma, 1.0), scale_profile(chroma, 1.0), subsampling=self.subsampling)
        key = t.luma.tobytes() + t.chroma.tobytes()
        if key not in self.cache:
            coded = code(self.views, t)
            _, z = self.classifier.run(self.classifier.inputs(coded.decoded))
            self.cache[key] = Trial(coded.bpp, float(np.mean(np.sum(np.square(z - self.z0), axis=1))))
        return self.cache[key]


def operational(classifier: Classifier, views: Sequence[np.ndarray], scale: float, *,
                steps: Sequence[float] = STEPS, sweeps: int = 2, progress: Progress | None = None,
                subsampling: str = "4:4:4") -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Tuned profiles (luma, chroma) at the Annex K operating point ``scale``, and what the search did.

    ``scale`` is the multiplier of the Annex K tables where the search starts (libjpeg quality 50 is 1).
    """
    if not steps or min(steps) <= 0:
        raise FeatcompError("operational search needs positive move sizes")
    if not (math.isfinite(scale) and scale > 0):
        raise FeatcompError(f"operational search needs a positive start scale, got {scale!r}")
    classifier.check(views)
    _, z0 = classifier.run(classifier.inputs(views))
    measure = _Objective(classifier, views, z0, subsampling)
    _, _, n = band_index()
    theta = np.zeros(n)
    start = measure(*tables_from(theta, scale))
    # lambda: the slope of the Annex K family at the start, from one coarser member
    factor = math.exp(steps[0])
    coarser = measure(*tables_from(theta, scale * factor))
    finer = measure(*tables_from(theta, scale / factor))
    slope = (coarser.distortion - finer.distortion) / max(finer.bpp - coarser.bpp, 1e-9)
    lam = max(slope, 1e-12)
    if not coarser.distortion > finer.distortion:  # flat here (all steps clipped at 1, or a model that ignores
        steps = ()                                  # its input): no slope to trade against, keep Annex K

    def cost(trial: Trial) -> float:
        return trial.distortion + lam * trial.bpp

    best, accepted = start, 0
    rounds = [(step, sweep) for step in steps for sweep in range(sweeps)]
    settled: set[float] = set()  # move sizes whose last sweep gained nothing
    for step, _ in (progress(rounds) if progress is not None else rounds):
        if step in settled:
            continue
        gained = False
        for g in range(n):
            for sign in (1.0, -1.0):
                trial_theta = theta.copy()
                trial_theta[g] += sign * step
                trial = measure(*tables_from(trial_theta, scale))
                if cost(trial) < cost(best) - 1e-12 * abs(cost(best)):
                    theta, best, gained, accepted = trial_theta, trial, True, accepted + 1
                    break  # the other direction of this band cannot also lower J from here
        if not gained:
            settled.add(step)
    luma, chroma = tables_from(theta, scale)
    info = {"start_scale": scale, "lambda": lam, "tuned": bool(steps), "theta": np.round(theta, 4).tolist(),
            "start": {"bpp": start.bpp, "distortion": start.distortion},
            "end": {"bpp": best.bpp, "distortion": best.distortion},
            "trials": len(measure.cache), "accepted": accepted}
    return luma, chroma, info
