"""Which activation tensors are worth compressing: the ones a deployed CNN writes to memory between
conv layers.

The rule, in the terms of the graph as exported:

1. *Layers* are Conv, ConvTranspose, Gemm and MatMul (a classifier is a 1x1 conv layer too).
2. *Epilogue* ops (BatchNormalization, activations, Add/Sum/Mul, Concat, Identity, Dropout) are what a
   deployment fuses into the output stage of the layer before them. A tensor whose every consumer is
   an epilogue op is never written to memory, so it is not a site; the epilogue's output is.
3. A site is a float tensor of rank 4 with static C, H, W that comes *from* a layer (walking back
   through epilogue, pooling (LRN too) and reshaping ops reaches one) and flows *toward* a layer (walking
   forward through the same ops reaches one), and that is written to memory (rule 2).

So in conv -> BN -> ReLU -> conv the site is the ReLU output; in a residual block, the Add output;
in SqueezeNet's fire modules, the Concat output; a ReLU output that feeds a MaxPool is a site, and
so is the pooled tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import onnx
import onnx_graphsurgeon as gs

from featcomp.modelio import CONV_OPS

LAYER_OPS = CONV_OPS | {"Gemm", "MatMul"}
EPILOGUE_OPS = frozenset({
    "BatchNormalization", "Relu", "Clip", "LeakyRelu", "PRelu", "Sigmoid", "HardSigmoid", "HardSwish",
    "Tanh", "Elu", "Selu", "Softplus", "Mish", "Gelu", "Add", "Sum", "Mul", "Concat", "Identity", "Dropout",
})
PASS_OPS = EPILOGUE_OPS | frozenset({
    "MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool", "LRN", "Pad", "Reshape", "Flatten",
    "Squeeze", "Unsqueeze", "Resize", "Upsample", "Transpose", "Split", "Slice", "DepthToSpace", "SpaceToDepth",
})


@dataclass(frozen=True)
class Site:
    """One activation tensor that a pass may compress."""

    name: str
    producer: str
    producer_op: str
    consumers: tuple[str, ...]
    shape: tuple[int, int, int]  # C, H, W of one sample

    @property
    def values(self) -> int:
        return int(np.prod(self.shape))


SiteFilter = Callable[[Site], bool]


def find_sites(model: onnx.ModelProto) -> list[Site]:
    """All sites of a shape-inferred model, in graph order."""
    graph = gs.import_onnx(model)
    sites = []
    for node in graph.nodes:
        for tensor in node.outputs:
            site = _as_site(tensor, node)
            if site is not None:
                sites.append(site)
    return sites


def no_sites_reason(model: onnx.ModelProto) -> str:
    """Why a model has no site at all, in terms of what the user can change (for the error line)."""
    inits = {t.name: len(t.dims) for t in model.graph.initializer}
    ranks = {inits[n.input[1]] - 2 for n in model.graph.node
             if n.op_type in ("Conv", "ConvTranspose") and len(n.input) > 1 and n.input[1] in inits}
    if ranks and 2 not in ranks:
        dims = "/".join(f"{r}-D" for r in sorted(ranks))
        return (f"the model has no compressible sites: its convolutions are {dims}, and featcomp compresses "
                "2-D feature maps (N x C x H x W) between conv layers")
    return ("the model has no compressible sites: no float N x C x H x W tensor with static C, H, W is written "
            "between its layers ('featcomp inspect' shows what was found)")


def select(sites: Sequence[Site], include: Iterable[str] | SiteFilter | None = None,
           op_types: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Site]:
    """Keep sites by name (include), by producer op type, or by a callable; then drop the excluded."""
    chosen = list(sites)
    if callable(include):
        chosen = [s for s in chosen if include(s)]
    elif include is not None:
        wanted = set(include)
        chosen = [s for s in chosen if s.name in wanted]
    if op_types is not None:
        kinds = set(op_types)
        chosen = [s for s in chosen if s.producer_op in kinds]
    dropped = set(exclude)
    return [s for s in chosen if s.name not in dropped]


def _as_site(tensor: gs.Tensor, node: gs.Node) -> Site | None:
    if not isinstance(tensor, gs.Variable) or tensor.dtype is None or np.dtype(tensor.dtype) != np.float32:
        return None
    shape = tensor.shape
    if shape is None or len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        return None
    consumers = list(tensor.outputs)
    if not consumers or all(c.op in EPILOGUE_OPS for c in consumers):
        return None
    if not (_reaches_layer(node, backward=True) and any(_reaches_layer(c, backward=False) for c in consumers)):
        return None
    return Site(
        name=tensor.name, producer=node_label(node), producer_op=node.op,
        consumers=tuple(node_label(c) for c in consumers), shape=(int(shape[1]), int(shape[2]), int(shape[3])),
    )


def node_label(node: gs.Node) -> str:
    """A node's name, or 'Op->first output' for the unnamed nodes some exporters write."""
    if node.name:
        return node.name
    return f"{node.op}->{node.outputs[0].name}" if node.outputs else node.op


def _reaches_layer(start: gs.Node, backward: bool) -> bool:
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.op in LAYER_OPS:
            return True
        if node.op not in PASS_OPS:
            continue
        tensors = node.inputs if backward else node.outputs
        for t in tensors:
            if isinstance(t, gs.Constant):
                continue
            stack.extend(t.inputs if backward else t.outputs)
    return False


def consumer_weights(model: onnx.ModelProto, name: str, channels: int) -> np.ndarray | None:
    """[C] sensitivity of each channel of tensor `name` seen from the layers that read it: the energy of the
    weights each input channel feeds, summed over the consumers (white noise of variance s in channel c
    adds s * w[c] to the consumers' output energy per pixel). None unless every consumer is a Conv with
    constant weights reading the tensor as its input, so that the weighting is the whole story."""
    weights = {t.name: t for t in model.graph.initializer}
    consts = {n.output[0]: n.attribute[0].t for n in model.graph.node if n.op_type == "Constant" and n.attribute}
    total = np.zeros(channels)
    found = False
    for node in model.graph.node:
        if name not in node.input:
            continue
        if node.op_type != "Conv" or list(node.input).index(name) != 0 or len(node.input) < 2:
            return None
        tensor = weights.get(node.input[1], consts.get(node.input[1]))
        if tensor is None:
            return None
        w = onnx.numpy_helper.to_array(tensor).astype(np.float64)
        group = next((int(a.i) for a in node.attribute if a.name == "group"), 1)
        if w.ndim < 2 or w.shape[1] * group != channels or w.shape[0] % group:
            return None
        per = channels // group
        out = w.shape[0] // group
        energy = np.square(w).reshape(group, out, per, -1).sum(axis=(1, 3))  # [group, per]
        total += energy.reshape(channels)
        found = True
    return total if found else None
