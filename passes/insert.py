"""Insert a calibrated compress -> decompress pair on each chosen site, and strip them again.

Insertion only appends: two nodes right after each site's producer, their parameters as
initializers, value_info for the two new tensors, the op functions and the opset import. Strip
removes exactly those, so strip(insert(m)) is m again, byte for byte. (compress inserts into a prepared
copy of the user's model; strip_to_original gives back the user's own, see passes/original.py.)
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import onnx
from onnx import TensorProto, helper, numpy_helper

from featcomp.codecs.base import SiteCodec
from featcomp.errors import FeatcompError
from featcomp.passes.edit import PassResult, copy_model, remove_where, replace_items, rewire
from featcomp.passes.original import ORIGINAL_KEY, restore
from featcomp.passes.pairs import find_pairs
from featcomp.ops.functions import function_for
from featcomp.ops.schemas import DOMAIN, PAIRS, VERSION

METADATA_KEY = "featcomp"


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def insert_pairs(model: onnx.ModelProto, codecs: Mapping[str, SiteCodec]) -> PassResult:
    """A copy of `model` with a pair on every tensor named in `codecs` (notes: those sites)."""
    out = copy_model(model)
    graph = out.graph
    if find_pairs(out):
        raise FeatcompError("the model already has featcomp pairs; run 'featcomp strip' first or start from the original")
    producers = {o: i for i, n in enumerate(graph.node) for o in n.output}
    batch = _batch_dim(graph)
    new_nodes: dict[int, list[onnx.NodeProto]] = {}
    used_ops: set[str] = set()
    for site, codec in codecs.items():
        if site not in producers:
            raise FeatcompError(f"tensor '{site}' is not produced by any node of the model")
        enc_schema, dec_schema = PAIRS[codec.codec_name]
        arrays = codec.side_arrays()
        prefix = f"fc/{site}/"
        for key, value in arrays.items():
            graph.initializer.append(numpy_helper.from_array(value, prefix + key))
        symbols, decoded = prefix + "symbols", prefix + "decoded"
        enc = helper.make_node(enc_schema.name, [site] + [prefix + p.name for p in enc_schema.inputs[1:]], [symbols],
                               name=prefix + "encode", domain=DOMAIN, **codec.attributes())
        dec = helper.make_node(dec_schema.name, [symbols] + [prefix + p.name for p in dec_schema.inputs[1:]], [decoded],
                               name=prefix + "decode", domain=DOMAIN)
        rewire(graph.node, {site: decoded})
        new_nodes.setdefault(producers[site], []).extend([enc, dec])
        shape = [batch, *codec.shape]
        graph.value_info.extend([
            helper.make_tensor_value_info(symbols, TensorProto.INT16, shape),
            helper.make_tensor_value_info(decoded, TensorProto.FLOAT, shape),
        ])
        used_ops.update({enc_schema.name, dec_schema.name})
    replace_items(graph.node, [n for i, node in enumerate(list(graph.node)) for n in [node, *new_nodes.get(i, [])]])
    out.opset_import.append(helper.make_opsetid(DOMAIN, VERSION))
    opset = default_opset(out)
    out.functions.extend(function_for(op, opset) for op in sorted(used_ops))
    entry = out.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps({"version": VERSION, "sites": list(codecs)})
    return PassResult(out, True, tuple(codecs))


def strip_pairs(model: onnx.ModelProto) -> PassResult:
    """The exact inverse of insert_pairs: the model as it was before compression (notes: the sites freed)."""
    from featcomp.passes.fold import unfold

    unfolded = unfold(model)  # transforms folded into conv weights go back first
    out = unfolded.model
    pairs = find_pairs(out)
    graph = out.graph
    restore_inputs = {p.decoded: p.site for p in pairs}
    drop_nodes = {id_ for p in pairs for id_ in (p.encode.name, p.decode.name)}
    drop_tensors = {t for p in pairs for t in p.side_tensors}
    drop_values = {t for p in pairs for t in (p.symbols, p.decoded)}
    kept = [n for n in graph.node if not (n.domain == DOMAIN and n.name in drop_nodes)]
    rewire(kept, restore_inputs)
    replace_items(graph.node, kept)
    remove_where(graph.initializer, lambda t: t.name in drop_tensors)
    remove_where(graph.value_info, lambda v: v.name in drop_values)
    symbols = {p.symbols for p in pairs}
    remove_where(graph.output, lambda v: v.name in symbols)  # a probe's extra outputs go with the pairs
    pair_ops = {op.name for pair in PAIRS.values() for op in pair}
    remove_where(out.functions, lambda f: f.domain == DOMAIN and f.name in pair_ops)
    if not any(n.domain == DOMAIN for n in graph.node):  # other featcomp ops (the JPEG input node) keep it
        remove_where(out.opset_import, lambda o: o.domain == DOMAIN)
    had_entry = any(m.key in (METADATA_KEY, ORIGINAL_KEY) for m in out.metadata_props)
    remove_where(out.metadata_props, lambda m: m.key in (METADATA_KEY, ORIGINAL_KEY))
    return PassResult(out, unfolded.changed or bool(pairs) or had_entry, tuple(p.site for p in pairs))


EXACT = "the original model, restored byte for byte"  # strip_to_original's note when it could


def strip_to_original(model: onnx.ModelProto) -> PassResult:
    """The original the user compressed, byte for byte, when the compressed model records it and was not
    edited since (passes/original.py; notes then hold EXACT); else strip_pairs' result."""
    stripped = strip_pairs(model)
    original = restore(model, stripped.model)
    if original is None:
        return stripped
    return PassResult(original, True, (*stripped.notes, EXACT))


def _batch_dim(graph: onnx.GraphProto) -> int | str:
    """The batch dimension of the image input: the first graph input that is not an initializer (IR-3 era
    exports list every initializer as a graph input, often before the image)."""
    inits = {t.name for t in graph.initializer}
    image = next((i for i in graph.input if i.name not in inits), None)
    dims = image.type.tensor_type.shape.dim if image is not None else []
    dim = dims[0] if len(dims) else None
    if dim is not None and dim.HasField("dim_param"):
        return dim.dim_param
    return int(dim.dim_value) if dim is not None and dim.dim_value > 0 else "N"
