"""Codecs: numpy reference implementations that define each bitstream.

The registry maps the names users type (`--codec dct-cm`) to calibration policies and frozen-site
classes; passes and runtimes look codecs up here and use them through the SiteCodec protocol (base.py),
never importing a codec module directly. tests/test_import_contract.py checks it; the TIR coders, which
re-implement the bitstreams in TVM, are the one exception.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from featcomp.codecs.base import ActivationStats, Codec, SiteCodec, sqnr_db
from featcomp.codecs.dctcm import DctCm, DctCmSite
from featcomp.codecs.tvlc import TransformVlc, TvlcSite
from featcomp.errors import FeatcompError

CODECS: dict[str, type] = {"dct-cm": DctCm, "transform-vlc": TransformVlc}
SITE_TYPES: dict[str, Any] = {"dct-cm": DctCmSite, "transform-vlc": TvlcSite}


def make_codec(name: str, **options: Any) -> Codec:
    if name not in CODECS:
        raise FeatcompError(f"unknown codec '{name}'; choose one of: {', '.join(CODECS)}")
    return CODECS[name](**options)


def site_codec_from_arrays(name: str, arrays: dict[str, np.ndarray], attributes: dict[str, Any]) -> SiteCodec:
    if name not in SITE_TYPES:
        raise FeatcompError(f"the model uses codec '{name}', which this featcomp does not know")
    return SITE_TYPES[name].from_arrays(arrays, attributes)


__all__ = ["ActivationStats", "Codec", "SiteCodec", "CODECS", "make_codec", "site_codec_from_arrays", "sqnr_db"]
