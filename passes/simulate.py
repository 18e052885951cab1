"""The search's stand-in for compress -> decompress pairs: the same decoded values from fewer ops.

The accuracy search and the sensitivity probes only read what each pair decodes, for about ten ONNX Runtime
passes over the calibration inputs. A real pair runs as ~20 ops (two MatMuls, an int16 Cast round trip,
four Reshapes and the shape arithmetic for them); on MobileNetV2 they made the compressed model ~5x slower
than the original. In zero-mask mode (dct-cm, G = 1: most sites) the transform and decode matrices are
1 x 1, or one scalar per channel, so each MatMul is a single exact product and the Cast round trip is exact
on the clipped integers: nine elementwise ops give the same floats, bit for bit (tests/test_simulate.py).
Other sites keep their real pair. The result is only ever run, never written: insert_pairs makes the
deliverable.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from featcomp.codecs.base import SiteCodec
from featcomp.codecs.dctcm import DctCmSite
from featcomp.errors import FeatcompError
from featcomp.passes.edit import copy_model, replace_items, rewire
from featcomp.passes.insert import insert_pairs


def elementwise(codec: SiteCodec) -> bool:
    """Can this site's pair be run as elementwise ops with the same result (dct-cm zero-mask mode)?"""
    return isinstance(codec, DctCmSite) and codec.group == 1


def simulate_pairs(model: onnx.ModelProto, codecs: Mapping[str, SiteCodec]) -> onnx.ModelProto:
    """A copy of `model` whose tensors `fc/SITE/decoded` equal those of insert_pairs(model, codecs), bit for bit.

    The symbols of elementwise sites are not computed (nothing downstream reads them in a search).
    """
    fast = {name: codec for name, codec in codecs.items() if elementwise(codec)}
    rest = {name: codec for name, codec in codecs.items() if name not in fast}
    out = insert_pairs(model, rest).model if rest else copy_model(model)
    graph = out.graph
    producers = {o: i for i, n in enumerate(graph.node) for o in n.output}
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    for site, codec in fast.items():
        if site not in producers:
            raise FeatcompError(f"tensor '{site}' is not produced by any node of the model")
        prefix = f"fc/{site}/"
        decoded = prefix + "decoded"
        # the values the function bodies compute with: the stored side arrays, cast to float32
        arrays = {k: np.asarray(v, np.float32) for k, v in codec.side_arrays().items()}
        for key in ("scale", "qmin", "qmax", "transform", "step", "cmin", "cmax", "decode"):
            graph.initializer.append(numpy_helper.from_array(arrays[key], prefix + "sim/" + key))
        arg = {key: prefix + "sim/" + key for key in arrays}
        # encode: q = clip(round(x / scale)), coef = clamp(round(transform * q / step)); decode: decode * coef
        steps = [("Div", [site, arg["scale"]]), ("Round", []), ("Clip", [arg["qmin"], arg["qmax"]]),
                 ("Mul", [arg["transform"]]), ("Div", [arg["step"]]), ("Round", []), ("Max", [arg["cmin"]]),
                 ("Min", [arg["cmax"]]), ("Mul", [arg["decode"]])]
        nodes: list[onnx.NodeProto] = []
        last = ""
        for i, (op, args) in enumerate(steps):
            inputs = args if i == 0 else [last, *args]
            last = decoded if i == len(steps) - 1 else f"{prefix}sim/{i}"
            nodes.append(helper.make_node(op, inputs, [last], name=f"{prefix}sim/{op}{i}"))
        rewire(graph.node, {site: decoded})  # the new nodes are not in the graph yet: they still read the site
        new_nodes.setdefault(producers[site], []).extend(nodes)
    replace_items(graph.node, [n for i, node in enumerate(list(graph.node)) for n in [node, *new_nodes.get(i, [])]])
    return out
