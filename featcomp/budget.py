"""A label-free estimate of the top-1 points a compressed model loses: what `--max-drop P` aims at.

Without labels, the original model's own predictive distribution stands in for them: if its softmax p_i
is calibrated, p_i(c) is the chance that class c is the right label of input i. So the compressed model's
expected top-1 is mean_i p_i(c_i), c_i its top-1 class, and the original's is mean_i max p_i. Their
difference is a paired per-input quantity, d_i = p_i(argmax p_i) - p_i(c_i) >= 0: the mean estimates the
drop and the spread of the d_i gives its standard error (an unchanged prediction costs nothing; a flip
between two near-equal classes costs little; a flip away from a confident class costs a lot). Top-1
*agreement* counts every flip as a full error and, unlike the real drop, never lets a flip to a better
class cancel one to a worse class, so it spends far less of the budget than the user gave.

Temperature: T = 1, the model's own softmax. Fitting T needs labels (temperature scaling minimises their
log-loss); the label-free stand-in, the model's own top-1 as the label, drives T to 0 (every prediction
certain), so it is not used. `estimate` takes a T for users who fitted one on labelled data.
benchmarks/budget_validation.py checks T = 1 against labels (mean max p vs top-1) and the predicted
drops against measured ones (docs/budget.md).

The 95% interval covers the sampling noise of the calibration inputs, not a shift between them and the
images the model will see: on confident (e.g. training) images where no top-1 changes it is 0 ± 0.

That is the "flips" estimator (`estimate`). `smooth_estimate` ("smooth", `--budget-estimator smooth`) scores
each input's flip *probability* under Gaussian logit noise of the measured size instead of the flips seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.96  # two-sided 95% normal quantile for the confidence bound
SMOOTH_DRAWS = 512  # Monte Carlo draws per input: the MC error of a mean over N inputs is far below its s.e.
SMOOTH_CLASSES = 10  # the original's top classes the noise can move the top-1 between
PROBABILITY_TOLERANCE = 1e-3  # rows summing to 1 within this (float32 softmax) are probabilities already


def is_probabilities(y: np.ndarray) -> bool:
    """Are the rows of y [N, K] a distribution already (a model ending in Softmax) rather than logits?"""
    flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if flat.shape[1] < 2 or not np.all(np.isfinite(flat)) or np.any(flat < 0) or np.any(flat > 1):
        return False
    return bool(np.all(np.abs(flat.sum(axis=1) - 1.0) <= PROBABILITY_TOLERANCE))


def probabilities(y: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """The model's predictive distribution [N, K] from its logits or its probabilities, at `temperature`.

    Probabilities are tempered as softmax(log p / T) (the same as the logits at T, up to a shift).
    """
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if is_probabilities(flat):
        if temperature == 1.0:
            return flat / flat.sum(axis=1, keepdims=True)
        flat = np.log(np.maximum(flat, 1e-300))
    z = flat / temperature
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class DropEstimate:
    """The estimated top-1 drop in points (0..100), with its standard error over `inputs` paired inputs."""

    drop: float
    se: float
    inputs: int
    expected_top1_original: float  # fraction: mean max p_i
    expected_top1: float  # fraction: mean p_i(c_i)
    agreement: float  # fraction of inputs whose top-1 is unchanged
    temperature: float = 1.0

    @property
    def upper(self) -> float:
        """The top of the 95% interval: the point estimate plus 1.96 standard errors."""
        return self.drop + Z95 * self.se

    def describe(self) -> str:
        """One phrase for the compress output: what was estimated and how sure it is."""
        return describe(self.drop, self.se, self.inputs, self.changed)

    @property
    def changed(self) -> int:
        """Inputs whose top-1 changed: with none, the interval is 0 ± 0 and says nothing about other images."""
        return int(round((1.0 - self.agreement) * self.inputs))

    def as_dict(self) -> dict[str, Any]:
        return {"points": round(self.drop, 4), "ci95": round(Z95 * self.se, 4), "se": round(self.se, 4),
                "inputs": self.inputs, "expected_top1_original": round(self.expected_top1_original, 5),
                "expected_top1": round(self.expected_top1, 5), "agreement": round(self.agreement, 5),
                "changed": self.changed, "temperature": self.temperature}


def describe(drop: float, se: float, inputs: int, changed: int) -> str:
    """'estimated top-1 drop D ± C points (label-free, N inputs, K top-1 changed)', C the 95% half-width."""
    return (f"estimated top-1 drop {drop:.2f} ± {Z95 * se:.2f} points "
            f"(label-free, {inputs} inputs, {changed} top-1 changed)")


def estimate(reference: np.ndarray, classes: np.ndarray, temperature: float = 1.0) -> DropEstimate:
    """The estimated drop of predictions `classes` [N] against the original's outputs `reference` [N, K].

    `reference` may be logits or probabilities (detected per call, see is_probabilities).
    """
    p = probabilities(reference, temperature)
    classes = np.asarray(classes).reshape(-1)
    if len(classes) != len(p):
        raise ValueError(f"{len(classes)} predictions for {len(p)} reference rows")
    rows = np.arange(len(p))
    original = p.argmax(axis=1)
    kept, got = p[rows, original], p[rows, classes]
    d = 100.0 * (kept - got)
    n = len(d)
    se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    return DropEstimate(drop=float(np.mean(d)) if n else 0.0, se=se, inputs=n,
                        expected_top1_original=float(np.mean(kept)) if n else 0.0,
                        expected_top1=float(np.mean(got)) if n else 0.0,
                        agreement=float(np.mean(classes == original)) if n else 1.0, temperature=temperature)


def measured_drop(original: np.ndarray, compressed: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(top-1 drop in points, its paired standard error) of two predictions [N] against labels [N]."""
    d = 100.0 * ((np.asarray(original) == labels).astype(np.float64) - (np.asarray(compressed) == labels))
    n = len(d)
    return float(np.mean(d)) if n else 0.0, float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else 0.0


def logits(y: np.ndarray) -> np.ndarray:
    """Logits [N, K] of a model output: log p for probabilities (softmax ignores the shift), else as given."""
    flat = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    return np.log(np.maximum(flat, 1e-30)) if is_probabilities(flat) else flat


def noise_sigma(reference: np.ndarray, compressed: np.ndarray, top: int = SMOOTH_CLASSES) -> float:
    """The per-class std of the compressed-vs-original logit error, on each input's top classes.

    The error is centred per input first (a common shift does not move the softmax), and only the original's
    `top` classes are pooled: they decide the top-1, and their error can differ from the tail's.
    """
    z, zc = logits(reference), logits(compressed)
    if z.shape != zc.shape:
        raise ValueError(f"compressed outputs {zc.shape} do not match the reference {z.shape}")
    err = zc - z
    err -= err.mean(axis=1, keepdims=True)
    k = min(top, z.shape[1])
    idx = np.argsort(-z, axis=1)[:, :k]
    picked = np.take_along_axis(err, idx, axis=1)
    return float(np.sqrt(np.mean(np.square(picked)))) if picked.size else 0.0


def smooth_estimate(reference: np.ndarray, compressed: np.ndarray, temperature: float = 1.0,
                    draws: int = SMOOTH_DRAWS, top: int = SMOOTH_CLASSES, seed: int = 0) -> DropEstimate:
    """The expected drop if the compressed logits were the original's plus Gaussian noise of the measured size.

    One fitted number (sigma, see noise_sigma) replaces the one realisation of the error the calibration
    inputs happen to show, so every input whose top-1 is near a flip counts with its flip probability
    instead of 0 or 1: the estimate is smooth and monotone in the codec noise, and a setting is not chosen
    because its few flips happened to land on lucky inputs. Per input i, P_i(c) = Pr(argmax(z_i + sigma n)
    = c) over the original's `top` classes (seeded Monte Carlo, `draws` draws), and
    d_i = max p_i - sum_c p_i(c) P_i(c); drop and s.e. as in `estimate`. `agreement` is the measured one.
    """
    z = logits(reference)
    p = probabilities(reference, temperature)
    zc = logits(compressed)
    if zc.shape != z.shape:
        raise ValueError(f"compressed outputs {zc.shape} do not match the reference {z.shape}")
    if draws < 1:
        raise ValueError(f"draws must be positive, got {draws}")
    n = len(z)
    if n == 0:
        return DropEstimate(0.0, 0.0, 0, 0.0, 0.0, 1.0, temperature)
    sigma = noise_sigma(z, zc, top)
    k = min(top, z.shape[1])
    idx = np.argsort(-z, axis=1)[:, :k]
    zt, pt = np.take_along_axis(z, idx, axis=1), np.take_along_axis(p, idx, axis=1)
    rng = np.random.default_rng(seed)
    wins = np.zeros((n, k))
    for start in range(0, draws, 64):  # chunks keep the [draws, N, k] noise small for big N
        m = min(64, draws - start)
        winner = np.argmax(zt[None] + sigma * rng.standard_normal((m, n, k)), axis=2)
        wins += np.sum(winner[..., None] == np.arange(k), axis=0)
    got = np.sum(pt * wins / draws, axis=1)
    kept = p.max(axis=1)
    d = 100.0 * (kept - got)
    se = float(np.std(d, ddof=1) / np.sqrt(n)) if n > 1 else 0.0
    agreement = float(np.mean(zc.argmax(axis=1) == z.argmax(axis=1)))
    return DropEstimate(drop=float(np.mean(d)), se=se, inputs=n, expected_top1_original=float(np.mean(kept)),
                        expected_top1=float(np.mean(got)), agreement=agreement, temperature=temperature)
