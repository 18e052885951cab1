"""What quality compress aims for (one typed policy), and what it chose (a typed Allocation).

A policy is one of five dataclasses; `featcomp compress` maps its mutually exclusive quality flags onto them
one to one (--max-drop, --max-drop-agreement: MaxDrop; --output-snr: OutputSnr; --sqnr: Sqnr;
--bits-per-value: BitsPerValue; --step: Step). api.compress dispatches on the type instead of probing
keyword options, and records the outcome as an `Allocation`, whose `as_dict()` is what the report's
meta["allocation"] holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from featcomp.errors import FeatcompError

METRICS = ("expected", "agreement", "top1")  # what MaxDrop is measured on (featcomp.allocate.search)
BOUNDS = ("estimate", "upper")
ESTIMATORS = ("flips", "smooth")  # the label-free drop estimators (featcomp.budget); the first is the default


@dataclass(frozen=True)
class MaxDrop:
    """The fewest bits whose top-1 loss on the calibration inputs stays within `points` of the model given.

    metric: None (top1 with labels, else "expected": label-free, featcomp.budget), "expected", "agreement"
    (the strict form: top-1 agreement with the original >= 1 - points/100) or "top1" (needs labels).
    bound: "upper" holds the top of the estimate's 95% interval to `points`, "estimate" the point estimate.
    estimator (label-free metric "expected"): "flips" scores the top-1 changes the calibration inputs show
    (featcomp.budget.estimate), "smooth" the flip probability under the top-1 margin changes measured
    on all calibration inputs (featcomp.budget.smooth_estimate; docs/budget.md compares them).
    """

    points: float = 1.0
    metric: str | None = None
    bound: str = "upper"
    estimator: str = ESTIMATORS[0]

    def check(self, labelled: bool) -> None:
        if not 0 <= self.points <= 100:
            raise FeatcompError(f"max drop must be between 0 and 100 points, got {self.points}")
        if self.metric not in (None, *METRICS):
            raise FeatcompError(f"unknown drop metric {self.metric!r}; choose one of {', '.join(METRICS)}")
        if self.metric == "top1" and not labelled:
            raise FeatcompError("the top1 drop metric needs labels for the calibration images")
        if self.bound not in BOUNDS:
            raise FeatcompError(f"unknown drop bound {self.bound!r}; choose estimate or upper")
        if self.estimator not in ESTIMATORS:
            raise FeatcompError(f"unknown budget estimator {self.estimator!r}; choose {' or '.join(ESTIMATORS)}")


@dataclass(frozen=True)
class OutputSnr:
    """Sensitivity-weighted site targets for this logit SNR (featcomp.allocate), no search."""

    db: float


@dataclass(frozen=True)
class Sqnr:
    """The same minimum SQNR at every site, in dB (the codec family's own calibrate)."""

    db: float


@dataclass(frozen=True)
class BitsPerValue:
    """Sensitivity-weighted site targets whose estimated average bits/value (side information included)
    is at most `bits`."""

    bits: float

    def check(self) -> None:
        if not self.bits > 0:
            raise FeatcompError(f"bits per value must be positive, got {self.bits}")


@dataclass(frozen=True)
class Step:
    """transform-vlc only: the same quantizer step at every site, in units of its 8-bit step."""

    step: float


Quality = MaxDrop | OutputSnr | Sqnr | BitsPerValue | Step


def codec_option(quality: Quality) -> dict[str, float]:
    """The codec-family option a uniform policy sets (Sqnr: sqnr_db, Step: step); {} for the others."""
    if isinstance(quality, Sqnr):
        return {"sqnr_db": quality.db}
    if isinstance(quality, Step):
        return {"step": quality.step}
    return {}


@dataclass
class Allocation:
    """How compress chose each site's codec: the policy and what the allocation estimated or measured.

    Fields that do not apply to the policy stay None. For MaxDrop: `metric` as resolved, the label-free drop
    estimate at the chosen and at the finest setting (DropEstimate.as_dict()), and per metric its value at
    both and the bound it had to meet.
    """

    quality: Quality
    output_snr_db: float | None = None  # the logit SNR the sites were allocated for (sensitivity methods)
    estimated_bits_per_value: float | None = None  # BitsPerValue
    met: bool | None = None
    metric: str | None = None
    calibration_agreement: float | None = None
    estimated_drop: dict[str, Any] | None = None
    base_estimated_drop: dict[str, Any] | None = None
    required: float | None = None
    base_agreement: float | None = None
    calibration_top1: float | None = None
    original_top1: float | None = None
    base_top1_drop: float | None = None
    folded: list[str] | None = None  # with fold: the sites whose transform went into the convs

    @property
    def method(self) -> str:
        return "uniform" if isinstance(self.quality, (Sqnr, Step)) else "sensitivity"

    def as_dict(self) -> dict[str, Any]:
        """The report's meta["allocation"]: only the keys that apply to the policy, as the JSON has them."""
        q = self.quality
        out: dict[str, Any] = {"method": self.method}
        if isinstance(q, (Sqnr, Step)):
            out.update(codec_option(q))
        elif isinstance(q, OutputSnr):
            out["output_snr_db"] = q.db
        elif isinstance(q, BitsPerValue):
            out.update(bits_per_value=q.bits, output_snr_db=self.output_snr_db,
                       estimated_bits_per_value=self.estimated_bits_per_value, met=self.met)
        else:
            out.update(max_drop=q.points, metric=self.metric, output_snr_db=self.output_snr_db, met=self.met,
                       calibration_agreement=self.calibration_agreement)
            if self.estimated_drop is not None:
                out["estimated_drop"] = self.estimated_drop
            if self.base_estimated_drop is not None:
                out["base_estimated_drop"] = self.base_estimated_drop
            if self.metric == "expected":
                out.update(bound=q.bound, estimator=q.estimator)
            elif self.metric == "agreement":
                out.update(required=self.required, base_agreement=self.base_agreement)
            else:
                out.update(required=self.required, calibration_top1=self.calibration_top1,
                           original_top1=self.original_top1)
                if self.base_top1_drop is not None:
                    out["base_top1_drop"] = self.base_top1_drop
        if self.folded is not None:
            out["folded"] = self.folded
        return out
