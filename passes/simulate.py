"""The search's stand-in for compress -> decompress pairs: the same decoded values from fewer ops.

The accuracy search and the sensitivity probes only read what each pair decodes, for about ten ONNX Runtime
passes over the calibration inputs. A real pair runs as ~20 ops (two MatMuls, an int16 Cast round trip,
four Reshapes and the shape arithmetic for them); on MobileNetV2 they made the compressed model ~5x slower
than the original. In zero-mask mode (dct-cm, G = 1: most sites) the transform and decode matrices are
1 x 1, or one scalar per channel, so each MatMul is a single exact product and the Cast round trip is exact
on the clipped integers: ten elementwise ops (eleven with per-channel ranges) give the same floats, bit for
bit for finite activations (tests/test_simulate.py; a NaN may clip differently). Other sites keep their
real pair. The result is only ever run, never written: insert_pairs makes the deliverable.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import helper, numpy_helper

from featcomp.codecs.base import SiteCodec
from featcomp.errors import FeatcompError
from featcomp.passes.edit import copy_model, replace_items, rewire
from featcomp.passes.insert import insert_pairs

# (v + 1.5 * 2^23) - 1.5 * 2^23 is v rounded half to even (ONNX Round) in float32 for |v| < 2^22, and ORT runs
# Add/Sub vectorised where its Round is a scalar loop. Beyond 2^22 the result is off by at most a few units but
# stays beyond 2^21, and every rounded value here is clipped next to a range far inside that (8-bit values,
# int16 coefficients), so the clipped values are the same.
MAGIC = 1.5 * 2.0 ** 23


def elementwise(codec: SiteCodec) -> bool:
    """Can this site's pair be run as elementwise ops with the same result? The dct-cm ops with a 1 x 1
    transform (zero-mask mode, G = 1), read from the op inputs alone (the codec protocol)."""
    return codec.codec_name == "dct-cm" and codec.side_arrays()["transform"].size == 1


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
        scalar_range = arrays["cmin"].size == 1  # one range for the site: a Clip, else per-channel Max/Min
        if scalar_range:
            arrays["cmin"], arrays["cmax"] = arrays["cmin"].reshape(()), arrays["cmax"].reshape(())
        arrays["magic"] = np.float32(MAGIC)
        arg = {key: prefix + "sim/" + key for key in arrays}
        for key, value in arrays.items():
            graph.initializer.append(numpy_helper.from_array(value, arg[key]))
        rounded = [("Add", [arg["magic"]]), ("Sub", [arg["magic"]])]  # Round, as two vectorised ops (see MAGIC)
        clamp = [("Clip", [arg["cmin"], arg["cmax"]])] if scalar_range else [("Max", [arg["cmin"]]),
                                                                              ("Min", [arg["cmax"]])]
        # encode: q = clip(round(x / scale)), coef = clamp(round(transform * q / step)); decode: decode * coef
        steps = [("Div", [site, arg["scale"]]), *rounded, ("Clip", [arg["qmin"], arg["qmax"]]),
                 ("Mul", [arg["transform"]]), ("Div", [arg["step"]]), *rounded, *clamp, ("Mul", [arg["decode"]])]
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
