"""The typed quality policy: each compress flag maps to one policy, and Allocation.as_dict() keeps the keys the
report's meta["allocation"] has always had for it."""

from __future__ import annotations

import argparse
from pathlib import Path

import models
import pytest

from featcomp import api
from featcomp.cli import quality_of
from featcomp.errors import FeatcompError
from featcomp.quality import (
    Allocation,
    BitsPerValue,
    MaxDrop,
    OutputSnr,
    Quality,
    Sqnr,
    Step,
)

FLAGS = ("max_drop", "max_drop_agreement", "output_snr", "sqnr", "bits_per_value", "step")


@pytest.mark.parametrize("flag, policy", [
    ("max_drop", MaxDrop(2.0)), ("max_drop_agreement", MaxDrop(2.0, metric="agreement")),
    ("output_snr", OutputSnr(2.0)), ("sqnr", Sqnr(2.0)), ("bits_per_value", BitsPerValue(2.0)), ("step", Step(2.0)),
])
def test_each_quality_flag_is_one_policy(flag: str, policy: Quality) -> None:
    args = argparse.Namespace(**{f: (2.0 if f == flag else None) for f in FLAGS})
    assert quality_of(args) == policy


def test_no_quality_flag_leaves_the_api_default() -> None:
    assert quality_of(argparse.Namespace(**dict.fromkeys(FLAGS))) is None


def test_allocation_records_the_keys_of_its_policy() -> None:
    assert Allocation(Sqnr(30.0)).as_dict() == {"method": "uniform", "sqnr_db": 30.0}
    assert Allocation(Step(4.0), folded=["a"]).as_dict() == {"method": "uniform", "step": 4.0, "folded": ["a"]}
    assert Allocation(OutputSnr(20.0)).as_dict() == {"method": "sensitivity", "output_snr_db": 20.0}
    rate = Allocation(BitsPerValue(3.0), output_snr_db=21.0, estimated_bits_per_value=2.9, met=True).as_dict()
    assert rate == {"method": "sensitivity", "bits_per_value": 3.0, "output_snr_db": 21.0,
                    "estimated_bits_per_value": 2.9, "met": True}
    drop = Allocation(MaxDrop(1.0), output_snr_db=18.0, met=True, metric="expected", calibration_agreement=0.9,
                      required=0.5).as_dict()
    assert drop == {"method": "sensitivity", "max_drop": 1.0, "metric": "expected", "output_snr_db": 18.0,
                    "met": True, "calibration_agreement": 0.9, "bound": "upper",
                    "estimator": "flips"}  # no 'required' for expected


@pytest.mark.parametrize("policy, message", [
    (MaxDrop(101.0), "between 0 and 100"), (BitsPerValue(0.0), "must be positive"),
    (Step(2.0), "belongs to --codec transform-vlc"),
])
def test_bad_policies_are_one_line_errors(calib_npz: Path, policy: Quality, message: str) -> None:
    with pytest.raises(FeatcompError, match=message):
        api.compress(models.two_convs(), calib_npz, quality=policy)
