"""Fold a transform-VLC site's channel transform into the convolutions around it.

A site whose tensor is the direct output of a Conv and whose every consumer is a Conv (in MobileNetV2
and EfficientNet: the linear bottlenecks that feed only the next block's expansion) does not need the
transform in its codec ops:
- the producer computes the coefficients itself: W' = R W and b' = R b, with R = blockdiag(T_k) / 2**B
  the site's transform at orthonormal scale;
- the consumers read them: W_c' = W_c R^-1;
- the codec pair becomes a plain quantizer, the same site with G = 1: symbols = clip(round(z / (Delta s)))
  per coefficient channel, decoded as symbols * Delta s. The centres, ranges and code tables stay those of
  the calibrated site, because the channels are the same coefficients.
Channel mixing commutes with a convolution's spatial part (zero padding included), so the folded model
computes the unfolded one up to float rounding and the codec's own rounding of slightly different inputs
(tests/test_fold.py measures both). The runtime cost of the transform disappears; the conv weights keep
their size.

The original weights are kept as initializers under "fc/unfolded/<name>", so strip_pairs restores the
model exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from featcomp.errors import FeatcompError
from featcomp.ops.schemas import PAIRS
from featcomp.passes.edit import PassResult, copy_model, remove_where
from featcomp.passes.pairs import find_pairs

FOLD_KEY = "featcomp.folded"
UNFOLDED = "fc/unfolded/"


def _group(node: onnx.NodeProto) -> int:
    return next((int(a.i) for a in node.attribute if a.name == "group"), 1)


def foldable(model: onnx.ModelProto, site: str, decoded: str | None = None) -> str | None:
    """Why `site` cannot be folded (None when it can): producer and consumers must be plain Convs."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    producer = next((n for n in graph.node if site in n.output), None)
    read_by = decoded or site
    consumers = [n for n in graph.node if read_by in n.input]
    if producer is None or producer.op_type != "Conv" or _group(producer) != 1 or producer.input[1] not in inits:
        return "its producer is not a plain Conv with constant weights (an activation or another op comes between)"
    if any(o.name in (site, read_by) for o in graph.output):
        return "it is a model output"
    if not consumers or any(c.op_type != "Conv" or _group(c) != 1 or c.input[0] != read_by or c.input[1] not in inits
                            for c in consumers):
        return "not every consumer is a plain Conv with constant weights"
    return None


def fold(model: onnx.ModelProto) -> PassResult:
    """A copy of a compressed model with every foldable transform folded (notes: the folded sites)."""
    out = copy_model(model)
    graph = out.graph
    inits = {t.name: t for t in graph.initializer}
    folded: list[str] = []
    for pair in find_pairs(out):
        factors = pair.codec.fold_factors()
        if factors is None or foldable(out, pair.site, pair.decoded) is not None:
            continue
        rotate = _blockdiag(factors.blocks)
        unrotate = _blockdiag(np.linalg.inv(factors.blocks))
        producer = next(n for n in graph.node if pair.site in n.output)
        _rewrite(graph, inits, producer, lambda w: np.einsum("po,o...->p...", rotate, w), bias=rotate)
        for consumer in [n for n in graph.node if pair.decoded in n.input and n.op_type == "Conv"]:
            _rewrite(graph, inits, consumer, lambda w: np.einsum("qo...,op->qp...", w, unrotate), bias=None)
        plain = factors.plain
        enc_inputs, dec_inputs = list(pair.encode.input[1:]), list(pair.decode.input[1:])
        arrays = plain.side_arrays()
        enc_op, dec_op = PAIRS[plain.codec_name]
        for port, name in [*zip(enc_op.inputs[1:], enc_inputs), *zip(dec_op.inputs[1:], dec_inputs)]:
            inits[name].CopyFrom(numpy_helper.from_array(arrays[port.name], name))
        attrs = plain.attributes()
        del pair.encode.attribute[:]
        pair.encode.attribute.extend(helper.make_attribute(key, value) for key, value in attrs.items())
        folded.append(pair.site)
    if folded:
        entry = out.metadata_props.add()
        entry.key, entry.value = FOLD_KEY, json.dumps(folded)
    return PassResult(out, bool(folded), tuple(folded))


def unfold(model: onnx.ModelProto) -> PassResult:
    """Restore the original conv weights kept by fold (a model without folds comes back unchanged)."""
    out = copy_model(model)
    graph = out.graph
    kept = {t.name[len(UNFOLDED):]: t for t in graph.initializer if t.name.startswith(UNFOLDED)}
    if not kept:
        return PassResult(out, False)
    for t in graph.initializer:
        if t.name in kept:
            original = onnx.TensorProto()
            original.CopyFrom(kept[t.name])
            original.name = t.name
            t.CopyFrom(original)
    remove_where(graph.initializer, lambda t: t.name.startswith(UNFOLDED))
    remove_where(out.metadata_props, lambda m: m.key == FOLD_KEY)
    return PassResult(out, True, tuple(kept))


def _blockdiag(blocks: np.ndarray) -> np.ndarray:
    k, g, _ = blocks.shape
    out = np.zeros((k * g, k * g))
    for i in range(k):
        out[i * g:(i + 1) * g, i * g:(i + 1) * g] = blocks[i]
    return out


def _rewrite(graph: onnx.GraphProto, inits: dict[str, onnx.TensorProto], node: onnx.NodeProto,
             transform: Callable[[np.ndarray], np.ndarray], bias: np.ndarray | None) -> None:
    """Replace the node's weights (and, for the producer, its bias) keeping the originals for unfold."""
    name = node.input[1]
    if name.startswith(UNFOLDED) or any(t.name == UNFOLDED + name for t in graph.initializer):
        raise FeatcompError(f"conv weights '{name}' are shared with another folded site; fold needs its own weights")
    tensor = inits[name]
    graph.initializer.append(_renamed(tensor, UNFOLDED + name))
    w = numpy_helper.to_array(tensor).astype(np.float64)
    tensor.CopyFrom(numpy_helper.from_array(transform(w).astype(np.float32), name))
    if bias is None:
        return
    if len(node.input) > 2 and node.input[2]:
        b_name = node.input[2]
        b_tensor = inits[b_name]
        graph.initializer.append(_renamed(b_tensor, UNFOLDED + b_name))
        b_tensor.CopyFrom(numpy_helper.from_array((bias @ numpy_helper.to_array(b_tensor).astype(np.float64))
                                                  .astype(np.float32), b_name))


def _renamed(tensor: onnx.TensorProto, name: str) -> onnx.TensorProto:
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name = name
    return copy
