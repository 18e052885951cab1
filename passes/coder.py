"""Put a bitstream coder between every encode and decode op of a compressed model.

A compressed model feeds its encoders' symbols straight to the decoders: the coder is lossless, so the
model's outputs do not depend on it. A runtime that runs the coder itself (runtime_ops/ort_coder.py with
onnxruntime-extensions kernels, runtime_ops/tvm/coder.py with TIR kernels) inserts its own nodes there
with this pass, so the decoder really reads what the packer wrote. The runtime says which nodes; the pass
does the graph edit, the same for both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import onnx
from featcomp.passes.edit import PassResult, copy_model, replace_items
from featcomp.passes.pairs import Pair, find_pairs
from onnx import helper

from featcomp.errors import FeatcompError

UNPACKED = "/unpacked"  # suffix of the tensor each decoder reads once the coder is in place


@dataclass(frozen=True)
class CoderNodes:
    """What a runtime puts between one pair: nodes (inserted in order, just before the decoder) that read the
    pair's symbols and write `unpacked`, plus value_info and graph outputs they add."""

    nodes: list[onnx.NodeProto]
    value_info: list[onnx.ValueInfoProto] = field(default_factory=list)
    outputs: list[onnx.ValueInfoProto] = field(default_factory=list)


CoderBuilder = Callable[[Pair, str], CoderNodes]


def unpacked_name(pair: Pair) -> str:
    """The tensor the decoder of `pair` reads once the coder is in place."""
    return pair.symbols + UNPACKED


def insert_coder(model: onnx.ModelProto, domain: str, build: CoderBuilder, *, why: str = "") -> PassResult:
    """A copy of a compressed model with `build(pair, unpacked)`'s nodes between each encode and decode, and
    the opset import of their `domain`. Notes: the sites coded. A model without pairs is refused (`why` is
    appended to the message: what to do instead)."""
    pairs = find_pairs(model)
    if not pairs:
        raise FeatcompError("the model has no featcomp pairs: compress it first" + (f", {why}" if why else ""))
    out = copy_model(model)
    nodes = list(out.graph.node)
    for pair in pairs:
        unpacked = unpacked_name(pair)
        coder = build(pair, unpacked)
        i = next(k for k, n in enumerate(nodes) if n.name == pair.decode.name)
        nodes[i].input[0] = unpacked
        nodes[i:i] = coder.nodes
        out.graph.value_info.extend(coder.value_info)
        out.graph.output.extend(coder.outputs)
    replace_items(out.graph.node, nodes)
    out.opset_import.append(helper.make_opsetid(domain, 1))
    return PassResult(out, True, tuple(p.site for p in pairs))
