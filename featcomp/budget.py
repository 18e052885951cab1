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
each input's flip *probability* instead of the flips seen: every input is scored under the margin changes
(top-1 minus runner-up logits, compressed vs original) measured on every calibration input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

Z95 = 1.96  # two-sided 95% normal quantile for the confidence bound
SMOOTH_CLASSES = 10  # the original's top classes the margin changes can move the top-1 between
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


def margin_changes(reference: np.ndarray, compressed: np.ndarray, top: int = SMOOTH_CLASSES
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(margins [N, k-1], their measured changes [N, k-1], the original's top-k classes [N, k]) per input.

    Margin r of input i is z_i(top-1) - z_i(r-th runner-up) in the original's ranking of its `top` classes;
    its change is the same difference in the compressed logits minus the original one. Differences of
    logits cancel whatever the codec error has in common across classes (a shift, or an error that moves
    every top class alike), which is what decides whether the top-1 flips.
    """
    z, zc = logits(reference), logits(compressed)
    if zc.shape != z.shape:
        raise ValueError(f"compressed outputs {zc.shape} do not match the reference {z.shape}")
    k = min(top, z.shape[1])
    idx = np.argsort(-z, axis=1, kind="stable")[:, :k]
    zt, zct = np.take_along_axis(z, idx, axis=1), np.take_along_axis(zc, idx, axis=1)
    margins = zt[:, :1] - zt[:, 1:]
    return margins, (zct[:, :1] - zct[:, 1:]) - margins, idx


def smooth_estimate(reference: np.ndarray, compressed: np.ndarray, temperature: float = 1.0,
                    top: int = SMOOTH_CLASSES, block: int = 256) -> DropEstimate:
    """The expected drop if any input could get any calibration input's measured margin changes.

    The calibration inputs show one realisation of the codec error each; scoring only the flips it happens to
    cause moves in steps of a whole input. Here every input i is scored against the margin changes measured
    on every input j (margin_changes: the runner-up of rank r of i gets j's change at rank r): i flips under
    j when some margin m_i(r) + delta_j(r) < 0, to the runner-up with the most negative one. With P_i(c) the
    fraction of the N noise samples under which c wins, d_i = max p_i - sum_c p_i(c) P_i(c), and the drop is
    mean_i d_i. Empirical rather than Gaussian: the measured changes keep the error's correlation across
    classes and its heavy tail (i.i.d. Gaussian noise of the same RMS put SqueezeNet's 8-bit base at 0.62 points
    against 0.12 from its margin changes: its logit error is large but moves the top classes together).

    The estimate is a mean over pairs (i, j), so its standard error has two parts: the spread of the per-input
    d_i (which inputs are near a flip) and that of the per-noise-sample means g_j (how much the measured
    noise itself varies), se^2 = var(d)/N + var(g)/N. `agreement` is the measured one.
    """
    p = probabilities(reference, temperature)
    margins, changes, idx = margin_changes(reference, compressed, top)
    n = len(margins)
    if n == 0:
        return DropEstimate(0.0, 0.0, 0, 0.0, 0.0, 1.0, temperature)
    pt = np.take_along_axis(p, idx, axis=1)
    cost = np.zeros((n, n))  # cost[i, j]: 100 (max p_i - p_i(winner)) when i gets j's margin changes
    for start in range(0, n, block):  # blocks keep the [block, N, k-1] margins small for big N
        part = margins[start:start + block, None, :] + changes[None, :, :]
        if part.shape[2] == 0:
            continue
        rank = np.where(part.min(axis=2) < 0, part.argmin(axis=2) + 1, 0)
        won = np.take_along_axis(pt[start:start + block], rank, axis=1)
        cost[start:start + block] = 100.0 * (pt[start:start + block, :1] - won)
    d, g = cost.mean(axis=1), cost.mean(axis=0)
    se = float(np.sqrt((np.var(d, ddof=1) + np.var(g, ddof=1)) / n)) if n > 1 else 0.0
    kept = p.max(axis=1)
    agreement = float(np.mean(logits(compressed).argmax(axis=1) == logits(reference).argmax(axis=1)))
    return DropEstimate(drop=float(np.mean(d)), se=se, inputs=n, expected_top1_original=float(np.mean(kept)),
                        expected_top1=float(np.mean(kept) - np.mean(d) / 100.0), agreement=agreement,
                        temperature=temperature)
