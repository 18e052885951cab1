"""Rate-accuracy curves, BD-rate, and input bytes for the traffic report.

A curve is a list of points (bpp, top-1, agreement), one per table pair. Standard tables are Annex K
at libjpeg qualities; a learned or deepn family is swept by its scale, with each scale chosen (by
bisection on real bytes) to land on the rate of one standard point, so the curves cover the same
rates and the BD-rate integral has a wide common range.

BD-rate (Bjontegaard, VCEG-M33) with top-1 in place of PSNR: log-rate as a function of accuracy for
each curve, averaged over the accuracy range both curves cover; the result is the average rate
change of the test curve at equal accuracy (-40% means 40% fewer bytes). Two fits are reported:
the standard cubic polynomial, and piecewise-linear interpolation of each curve's monotone envelope
(top-1 on 100 images is noisy and not always monotone in rate; the envelope keeps the fit honest).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.errors import FeatcompError
from featcomp.jpeg.learn import search_scale
from featcomp.jpeg.measure import Classifier, Reference, code, rate
from featcomp.jpeg.tables import Tables, standard

__all__ = ["LOSSES", "InputBytes", "OperatingPoint", "Point", "bd_rate", "curve", "envelope", "input_bytes", "matched",
           "operating_points", "rate_at"]

QUALITIES = (10, 20, 30, 50, 75, 90)
Progress = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class Point:
    label: str
    method: str
    scale: float | None
    bpp: float
    top1: float | None
    agreement: float
    luma: list[list[int]]
    chroma: list[list[int]]
    quality: int | None = None
    rate_bpp: float | None = None  # the same tables on the rate set (e.g. Kodak at full size), if given
    expected: float | None = None  # expected top-1 under the uncompressed model's probabilities (label-free)
    bytes: float | None = None     # mean file bytes per image
    subsampling: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def matched(family: Tables, views: Sequence[np.ndarray], bpps: Sequence[float]) -> list[Tables]:
    """For each target rate, the family member whose real rate on ``views`` is closest at or below it."""
    found = []
    for target in bpps:
        tables = search_scale(family, lambda t: rate(views, t) <= target, iterations=14, finest=True)
        if tables is not None:
            found.append(tables)
    return found


def curve(classifier: Classifier, views: Sequence[np.ndarray], tables: Sequence[Tables], *,
          labels: np.ndarray | None = None, label_offset: int = 0, rate_views: Sequence[np.ndarray] | None = None,
          progress: Progress | None = None, reference: Reference | None = None) -> list[Point]:
    """One point per table pair: bpp on ``views``, top-1 (with labels), expected top-1 and agreement."""
    classifier.check(views)
    if reference is None:
        reference = Reference.of(classifier, views, labels, label_offset)
    points = []
    for t in (progress(tables) if progress is not None else tables):
        coded = code(views, t)
        scores = reference.scores(classifier.top1(coded.decoded))
        points.append(Point(t.label(), t.method, t.scale, coded.bpp, scores["top1"], float(scores["agreement"] or 0.0),
                            t.luma.tolist(), t.chroma.tolist(), t.meta.get("quality"),
                            None if rate_views is None else rate(rate_views, t), scores["expected"],
                            coded.bytes / len(views), t.subsampling))
    return points


LOSSES = (0.5, 1.0, 2.0)  # points of top-1 (or expected top-1) below the uncompressed input


@dataclass(frozen=True)
class OperatingPoint:
    """The rate a curve needs to stay within ``loss`` points of the uncompressed input, and standard's."""

    loss: float
    metric: str
    bpp: float | None                 # None: the curve never gets that close
    standard_bpp: float | None
    standard_quality: int | None      # the lowest measured standard quality within the loss
    below_range: bool = False         # the curve's coarsest point already meets it: bpp is an upper bound
    standard_below_range: bool = False

    @property
    def saving(self) -> float | None:
        """Fraction of standard's bytes saved (0.4 = 40% fewer bytes); None when either is not reached."""
        if self.bpp is None or self.standard_bpp is None:
            return None
        return 1.0 - self.bpp / self.standard_bpp

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "saving": self.saving}


def _needs(points: Sequence[Point], metric: str, target: float) -> tuple[float | None, bool]:
    rates = [p.bpp for p in points]
    values = [getattr(p, metric) for p in points]
    need = rate_at(rates, values, target)
    return need, bool(need is not None and need <= min(rates) and envelope(rates, values)[1][0] >= target)


def operating_points(standard_points: Sequence[Point], points: Sequence[Point], uncompressed: float, metric: str,
                     losses: Sequence[float] = LOSSES) -> list[OperatingPoint]:
    """Per loss level: the bpp ``points`` need to keep ``metric`` >= uncompressed - loss/100, interpolated in
    log-rate on the curve's monotone envelope, next to the standard curve's and its lowest quality that does."""
    out = []
    for loss in losses:
        target = uncompressed - loss / 100.0 - 1e-9
        bpp, below = _needs(points, metric, target)
        std_bpp, std_below = _needs(standard_points, metric, target)
        qualities = [p.quality for p in standard_points if p.quality is not None and getattr(p, metric) >= target]
        out.append(OperatingPoint(loss, metric, bpp, std_bpp, min(qualities) if qualities else None, below, std_below))
    return out


def envelope(rates: Sequence[float], accs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Sorted by rate, accuracy made non-decreasing (the best accuracy reached at or below each rate)."""
    order = np.argsort(rates)
    r = np.asarray(rates, np.float64)[order]
    a = np.maximum.accumulate(np.asarray(accs, np.float64)[order])
    return r, a


def rate_at(rates: Sequence[float], accs: Sequence[float], target: float) -> float | None:
    """The rate at which a curve first reaches ``target`` accuracy (linear in log-rate); None if never."""
    r, a = envelope(rates, accs)
    if a[-1] < target:
        return None
    i = int(np.argmax(a >= target))
    if i == 0 or a[i] == a[i - 1]:
        return float(r[i])
    t = (target - a[i - 1]) / (a[i] - a[i - 1])
    return float(math.exp(math.log(r[i - 1]) + t * (math.log(r[i]) - math.log(r[i - 1]))))


def _linear_log_rate(rates: Sequence[float], accs: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy, log rate) knots of the envelope, accuracy strictly increasing (the cheapest rate per level)."""
    r, a = envelope(rates, accs)
    keep = np.concatenate([[True], a[1:] > a[:-1]])
    return a[keep], np.log(r[keep])


def bd_rate(ref: tuple[Sequence[float], Sequence[float]], test: tuple[Sequence[float], Sequence[float]],
            method: str = "cubic") -> float | None:
    """Average rate change (percent) of ``test`` vs ``ref`` at equal accuracy; each is (rates, accuracies).

    None when the curves share no accuracy range (or a cubic fit has fewer than 4 points).
    """
    (r1, a1), (r2, a2) = ref, test
    if method == "cubic":
        if len(r1) < 4 or len(r2) < 4:
            return None
        lo, hi = max(min(a1), min(a2)), min(max(a1), max(a2))
        if hi <= lo:
            return None
        with warnings.catch_warnings():  # tied accuracies make the fit poorly conditioned: the linear fit is the check
            warnings.simplefilter("ignore")
            p1 = np.polyint(np.polyfit(a1, np.log(r1), 3))
            p2 = np.polyint(np.polyfit(a2, np.log(r2), 3))
        diff = ((np.polyval(p2, hi) - np.polyval(p2, lo)) - (np.polyval(p1, hi) - np.polyval(p1, lo))) / (hi - lo)
    elif method == "linear":
        k1, l1 = _linear_log_rate(r1, a1)
        k2, l2 = _linear_log_rate(r2, a2)
        lo, hi = max(k1[0], k2[0]), min(k1[-1], k2[-1])
        if hi <= lo:
            return None
        grid = np.linspace(lo, hi, 512)
        diff = float(np.trapezoid(np.interp(grid, k2, l2) - np.interp(grid, k1, l1), grid)) / (hi - lo)
    else:
        raise FeatcompError(f"unknown BD-rate fit {method!r}; use cubic or linear")
    return float((math.exp(diff) - 1.0) * 100.0)


@dataclass(frozen=True)
class InputBytes:
    """Bytes of the model's input per inference: raw 8-bit RGB, standard JPEG, learned JPEG (mean per image)."""

    images: int
    width: int
    height: int
    raw: float
    standard: float
    learned: float
    quality: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def input_bytes(images: Sequence[str | Path] | Sequence[np.ndarray], tables: Tables, *, quality: int = 75,
                preprocess: Any = None) -> InputBytes:
    """What the input costs to move: raw uint8 RGB, JPEG at standard ``quality``, JPEG with ``tables``.

    ``images`` are paths (with ``preprocess``: the crop the model sees; without: the file as it is) or
    uint8 [H, W, 3] arrays. All three are mean bytes per image; JPEG bytes are real file sizes.
    """
    from featcomp.jpeg.encode import encode, load_rgb, model_view

    views = [np.asarray(i, dtype=np.uint8) if isinstance(i, np.ndarray) else model_view(load_rgb(i), preprocess)
             for i in images]
    if not views:
        raise FeatcompError("input_bytes needs at least one image")
    std = standard(quality)
    n = len(views)
    return InputBytes(n, int(views[0].shape[1]), int(views[0].shape[0]), sum(v.size for v in views) / n,
                      sum(len(encode(v, std)) for v in views) / n, sum(len(encode(v, tables)) for v in views) / n,
                      quality, tables.method)
