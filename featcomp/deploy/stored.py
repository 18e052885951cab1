"""Per-site stored bytes of a compiled model, named: the compiled IR lists the sites' compact forms per
encode call (featcomp.runtime_ops.tvm.memory, no names there); this matches them to the model's
sites. No TVM import.

Matching: the importer and the fusion passes keep the model's topological order of the encode calls,
so each call takes the first unmatched site (model order) with as many values as its symbols; a
reordering among sites of one size could swap two names of the same size, never their bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _values(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n


def name_sites(stored: list[dict[str, Any]], sites: Mapping[str, tuple[str, list[int]]], batch: int) -> list[dict[str, Any]]:
    """stored: compile stats' "stored_sites" (call order); sites: name -> (codec, [C, H, W]) in model order.
    Returns one row per site of the model, in model order; a site the IR shows no encode for says so."""
    free = list(sites)
    named: dict[str, dict[str, Any]] = {}
    for entry in stored:
        values = _values(entry["symbols"]["shape"])
        match = next((name for name in free if batch * _values(sites[name][1]) == values), None)
        if match is None:
            continue
        free.remove(match)
        named[match] = entry
    rows = []
    for name, (codec, shape) in sites.items():
        if name not in named:
            rows.append({"site": name, "codec": codec, "form": "unknown", "bytes": None,
                         "reason": "no encode call of this size in the compiled IR"})
            continue
        rows.append({"site": name, "codec": codec, **named[name]})
    return rows


NIBBLE_LEVELS = 16  # a uint4x2 byte holds two codes of 16 levels each


def subbyte_fallback(cmin: Any, cmax: Any) -> str:
    """Why a site keeps 8-bit (or wider) stored codes instead of two 4-bit codes per byte ("uint4x2"):
    its symbols span more than 16 levels, or, when they would fit, that this build has no packed
    4-bit form yet (the producer's fused encode writes one code per element)."""
    import numpy as np

    levels = int(round(float(np.max(cmax)) - float(np.min(cmin)))) + 1
    if levels > NIBBLE_LEVELS:
        return f"uint4x2 needs <= {NIBBLE_LEVELS} levels; the symbols span {levels}"
    return f"fits uint4x2 ({levels} levels) but the compiled encode writes one code per byte"


def total_bytes(rows: list[dict[str, Any]]) -> int:
    return sum(int(r["bytes"]) for r in rows if r.get("bytes") is not None)
