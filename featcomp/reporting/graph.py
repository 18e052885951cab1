"""The original network as plain data for the report's graph view: nodes, the activations between them,
and every site the model offers (compressed or not).

Why in the report: the HTML page draws the network from the JSON alone, so a page re-rendered from a
saved report shows the same graph; weights (initializers) are left out, only the data flow is kept.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import onnx

from featcomp.passes.sites import find_sites


def graph_of(original: onnx.ModelProto) -> dict[str, Any]:
    """{"inputs", "outputs", "nodes": [{"name", "op", "inputs", "outputs"}], "sites": [{"name", "shape"}]}.

    `original` is the uncompressed model (strip_pairs of the compressed one): its node and tensor names are
    the ones the report's sites use. `sites` lists every site find_sites sees, so a site the user excluded
    shows as "not compressed" rather than missing.
    """
    g = original.graph
    weights = {t.name for t in g.initializer}

    def activations(names: Iterable[str]) -> list[str]:
        return [n for n in names if n and n not in weights]

    nodes = [{"name": n.name or n.output[0], "op": n.op_type, "inputs": activations(n.input),
              "outputs": [o for o in n.output if o]} for n in g.node if n.op_type != "Constant"]
    return {
        "inputs": activations(i.name for i in g.input),
        "outputs": [o.name for o in g.output],
        "nodes": nodes,
        "sites": [{"name": s.name, "shape": list(s.shape)} for s in find_sites(original)],
    }
