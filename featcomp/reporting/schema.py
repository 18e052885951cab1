"""The traffic report: versioned JSON is the source of truth; table, CSV and Markdown render from it.

Conventions (also in the README): sizes are per inference at batch 1. `coded_bytes` are real
bitstream bytes (header included) from the numpy reference packer. Ratios and bits/value count
side information too (scales, tables, transform matrices the decoder reads once per inference):
ratio_vs_int8 = int8_bytes / (coded_bytes_mean + side_bytes).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from featcomp.errors import FeatcompError
from featcomp.reporting.deployed import Deployed

SCHEMA = "featcomp.report/1"


@dataclass
class SiteReport:
    name: str
    producer: str
    consumers: list[str]
    shape: list[int]
    values: int
    fp32_bytes: int
    int8_bytes: int
    coded_bytes_mean: float
    coded_bytes_max: int
    side_bytes: int
    bits_per_value: float
    ratio_vs_int8: float
    ratio_vs_fp32: float
    zero_fraction: float
    sqnr_db: float
    mode: str
    codec: str
    details: dict[str, Any] = field(default_factory=dict)
    # payload bits/value (coded bytes without side information) next to the order-0 empirical entropy of
    # each channel's symbols over all measured samples: the limit of a static per-channel symbol code for
    # this quantizer; their difference is the coder's overhead (negative when runs beat symbol-by-symbol)
    payload_bits_per_value: float = float("nan")
    entropy_bits_per_value: float = float("nan")
    coder: str = ""  # the entropy coder of the site's streams: rice (dct-cm), huffman (transform-vlc) or rans


@dataclass
class Totals:
    sites: int
    values: int
    fp32_bytes: int
    int8_bytes: int
    coded_bytes: float
    side_bytes: int
    bits_per_value: float
    ratio_vs_int8: float
    ratio_vs_fp32: float
    # whole-model traffic per inference at batch 1: every tensor written to memory is written once
    # and read by each consumer; weights and the input are read once
    activation_traffic_fp32: int
    activation_traffic_int8: int
    activation_traffic_compressed: float
    weight_bytes_fp32: int
    weight_bytes_int8: int
    input_bytes_fp32: int
    input_bytes_uint8: int
    total_traffic_int8: int
    total_traffic_compressed: float
    traffic_saving_vs_int8: float
    payload_bits_per_value: float = float("nan")
    entropy_bits_per_value: float = float("nan")
    # models with a learned-JPEG input node: the input's bytes raw, as standard JPEG and as learned JPEG
    # (real file bytes of the measured images, mean per image; featcomp.jpeg.evaluate.InputBytes)
    input_jpeg: dict[str, Any] | None = None


@dataclass
class Report:
    model: str
    codec: str
    samples: int
    sites: list[SiteReport]
    totals: Totals
    accuracy: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    # the original network, for drawing it (featcomp.reporting.graph.graph_of): optional, so reports written
    # before it existed still read under the same schema version
    graph: dict[str, Any] | None = None
    schema: str = SCHEMA
    # optional: what a compiled bundle stores and moves (`featcomp report --bundle`; featcomp.reporting.deployed)
    deployed: Deployed | None = None
    # optional: coded bytes (and the symbols' entropy) were counted on the first this many samples only; None: all
    bytes_samples: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> "Report":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FeatcompError(f"report is not JSON: {exc.msg} at line {exc.lineno}") from None
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else None
            raise FeatcompError(f"report schema is {found!r}; this featcomp reads {SCHEMA!r}")
        try:
            data["sites"] = [SiteReport(**s) for s in data["sites"]]
            data["totals"] = Totals(**data["totals"])
            if data.get("deployed") is not None:
                data["deployed"] = Deployed.from_dict(data["deployed"])
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise FeatcompError(f"report does not match schema {SCHEMA}: {exc}") from None
