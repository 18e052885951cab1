"""Insert the learned-JPEG node at the model input, and remove it again.

The model keeps its input signature: the node sits between the graph input and everything that
read it, so the same preprocessed tensors feed the model with and without it. NHWC models get a
Transpose on each side of the node (the op itself is NCHW). The tables' chroma subsampling picks the
body: 4:4:4 (the op as it always was) or 4:2:0 (attribute ``subsampling="4:2:0"`` and five chroma
geometry inputs). Like passes.insert, insertion only
appends (nodes in front, initializers, value_info, the function, the opset import, a metadata
entry), and strip_jpeg removes exactly that: strip_jpeg(insert_jpeg(m)) == m, byte for byte.
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from featcomp.errors import FeatcompError
from featcomp.jpeg.tables import Tables
from featcomp.passes.edit import PassResult, copy_model, remove_where, replace_items, rewire
from featcomp.preprocess import Preprocess
from featcomp.jpeg.dct import chroma_size
from featcomp.ops.jpeg import DOMAIN, LEARNED_JPEG, LEARNED_JPEG_420, MIN_OPSET, VERSION, learned_jpeg

__all__ = ["METADATA_KEY", "find_jpeg", "insert_jpeg", "jpeg_tables", "strip_jpeg"]

METADATA_KEY = "featcomp.jpeg"
PREFIX = "fc/jpeg/"
NODE = PREFIX + "node"


def _opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def image_input(model: onnx.ModelProto, layout: str) -> tuple[onnx.ValueInfoProto, int, int]:
    """The single float image input and its H, W; anything else is refused with the reason."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise FeatcompError(f"the JPEG node needs a model with one image input; this one has {len(inputs)}")
    value = inputs[0]
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if tensor.elem_type != TensorProto.FLOAT:
        kind = helper.tensor_dtype_to_np_dtype(tensor.elem_type) if tensor.elem_type else "unknown"
        raise FeatcompError(f"model input '{value.name}' is {kind}, not a float image; the JPEG node takes a "
                            "float32 [N,3,H,W] (or NHWC) image normalised as --preprocess says")
    channel = 1 if layout == "nchw" else 3
    if len(dims) != 4 or dims[channel] != 3:
        shape = "x".join("?" if d is None else str(d) for d in dims) or "scalar"
        raise FeatcompError(f"model input '{value.name}' has shape {shape}, not a 3-channel {layout.upper()} image; "
                            "the JPEG node needs an RGB image input (check layout= in --preprocess)")
    h, w = (dims[2], dims[3]) if layout == "nchw" else (dims[1], dims[2])
    if h is None or w is None:
        raise FeatcompError(f"model input '{value.name}' has no fixed height and width; re-export it with a fixed size")
    if h < 8 or w < 8:
        raise FeatcompError(f"model input '{value.name}' is {w}x{h} pixels; the JPEG node needs at least 8x8")
    return value, h, w


def find_jpeg(model: onnx.ModelProto) -> onnx.NodeProto | None:
    return next((n for n in model.graph.node if n.domain == DOMAIN and n.op_type == LEARNED_JPEG.name), None)


def insert_jpeg(model: onnx.ModelProto, tables: Tables, preprocess: Preprocess) -> PassResult:
    """A copy of ``model`` whose input passes through a LearnedJpeg node with ``tables`` (notes: the input)."""
    if find_jpeg(model) is not None:
        raise FeatcompError("the model already has a JPEG input node; remove it first ('featcomp jpeg insert --remove')")
    opset = _opset(model)
    if opset < MIN_OPSET:
        raise FeatcompError(f"the model uses opset {opset}; the JPEG node needs {MIN_OPSET}+ "
                            "(featcomp.modelio.prepare upgrades it)")
    value, h, w = image_input(model, preprocess.layout)
    out = copy_model(model)
    graph = out.graph
    perm = [2, 1, 0] if preprocess.order == "bgr" else [0, 1, 2]
    mean = np.asarray(preprocess.mean, np.float32)[perm].reshape(1, 3, 1, 1)
    std = np.asarray(preprocess.std, np.float32)[perm].reshape(1, 3, 1, 1)
    h8, w8 = h + (-h % 8), w + (-w % 8)
    arrays: dict[str, np.ndarray] = {
        "luma": tables.luma.astype(np.float32), "chroma": tables.chroma.astype(np.float32), "mean": mean, "std": std,
        "perm": np.array(perm, np.int64), "pads": np.array([0, 0, 0, 0, 0, 0, h8 - h, w8 - w], np.int64),
        "blocks": np.array([0, 0, h8 // 8, 8, w8 // 8, 8], np.int64), "plane": np.array([0, 0, h8, w8], np.int64),
        "size": np.array([h, w], np.int64),
    }
    schema, attrs = LEARNED_JPEG, {}
    if tables.subsampling == "4:2:0":
        hd, wd = chroma_size(h, w)
        hc, wc = hd + (-hd % 8), wd + (-wd % 8)
        arrays.update({
            "chroma_pads": np.array([0, 0, 0, 0, 0, 0, 2 * hd - h, 2 * wc - w], np.int64),
            "chroma_rows": np.array([0, 0, 0, 0, 0, 0, hc - hd, 0], np.int64),
            "chroma_blocks": np.array([0, 0, hc // 8, 8, wc // 8, 8], np.int64),
            "chroma_plane": np.array([0, 0, hc, wc], np.int64), "chroma_size": np.array([hd, wd], np.int64)})
        schema, attrs = LEARNED_JPEG_420, {"subsampling": "4:2:0"}
    ports = [PREFIX + p.name for p in schema.inputs[1:]]
    graph.initializer.extend(numpy_helper.from_array(a, PREFIX + k) for k, a in arrays.items())
    source, decoded = value.name, PREFIX + "decoded"
    rewire(graph.node, {source: decoded})
    for output in graph.output:
        if output.name == source:
            raise FeatcompError(f"model input '{source}' is also a graph output; the JPEG node cannot be put in front of it")
    front: list[onnx.NodeProto] = []
    batch = value.type.tensor_type.shape.dim[0]
    n: int | str = batch.dim_value if batch.HasField("dim_value") else (batch.dim_param or "N")
    if preprocess.layout == "nhwc":
        front.append(helper.make_node("Transpose", [source], [PREFIX + "nchw"], name=PREFIX + "to_nchw", perm=[0, 3, 1, 2]))
        front.append(helper.make_node(LEARNED_JPEG.name, [PREFIX + "nchw"] + ports, [PREFIX + "decoded_nchw"],
                                      name=NODE, domain=DOMAIN, **attrs))
        front.append(helper.make_node("Transpose", [PREFIX + "decoded_nchw"], [decoded], name=PREFIX + "to_nhwc",
                                      perm=[0, 2, 3, 1]))
        graph.value_info.extend([helper.make_tensor_value_info(PREFIX + "nchw", TensorProto.FLOAT, [n, 3, h, w]),
                                 helper.make_tensor_value_info(PREFIX + "decoded_nchw", TensorProto.FLOAT, [n, 3, h, w]),
                                 helper.make_tensor_value_info(decoded, TensorProto.FLOAT, [n, h, w, 3])])
    else:
        front.append(helper.make_node(LEARNED_JPEG.name, [source] + ports, [decoded], name=NODE, domain=DOMAIN,
                                      **attrs))
        graph.value_info.append(helper.make_tensor_value_info(decoded, TensorProto.FLOAT, [n, 3, h, w]))
    replace_items(graph.node, front + list(graph.node))
    if not any(o.domain == DOMAIN for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid(DOMAIN, VERSION))
    out.functions.append(learned_jpeg(opset, tables.subsampling))
    entry = out.metadata_props.add()
    entry.key = METADATA_KEY
    entry.value = json.dumps({"version": VERSION, "input": source, "layout": preprocess.layout,
                              "preprocess": str(preprocess), "tables": tables.to_dict()})
    return PassResult(out, True, (source,))


def jpeg_tables(model: onnx.ModelProto) -> Tables | None:
    """The tables of the model's JPEG node (None without one), from its metadata."""
    if find_jpeg(model) is None:
        return None
    entry = next((m for m in model.metadata_props if m.key == METADATA_KEY), None)
    if entry is None:
        raise FeatcompError(f"the model has a JPEG node but no '{METADATA_KEY}' metadata; it was edited by hand")
    return Tables.from_dict(json.loads(entry.value)["tables"], "model metadata")


def strip_jpeg(model: onnx.ModelProto) -> PassResult:
    """The exact inverse of insert_jpeg (notes: the input it freed)."""
    node = find_jpeg(model)
    if node is None:
        raise FeatcompError("the model has no JPEG input node to remove")
    out = copy_model(model)
    graph = out.graph
    entry = next((m for m in out.metadata_props if m.key == METADATA_KEY), None)
    source: str = json.loads(entry.value)["input"] if entry is not None else node.input[0]
    kept = [n for n in graph.node if not n.name.startswith(PREFIX)]
    rewire(kept, {PREFIX + "decoded": source})
    replace_items(graph.node, kept)
    remove_where(graph.initializer, lambda t: t.name.startswith(PREFIX))
    remove_where(graph.value_info, lambda v: v.name.startswith(PREFIX))
    remove_where(out.functions, lambda f: f.domain == DOMAIN and f.name == LEARNED_JPEG.name)
    if not any(n.domain == DOMAIN for n in graph.node):
        remove_where(out.opset_import, lambda o: o.domain == DOMAIN)
    remove_where(out.metadata_props, lambda m: m.key == METADATA_KEY)
    return PassResult(out, True, (source,))
