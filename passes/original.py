"""What strip needs to give back the user's original model, byte for byte.

compress works on a prepared copy of the model (old opsets upgraded, IR raised, shapes inferred: the
inferred value_info alone are a hundred entries on MobileNetV2), so removing the pairs gives that copy,
not the file the user started from. The compressed model therefore carries the original's structure in
one metadata entry. Every large tensor that the compressed model still holds unchanged (all weights,
unless fold changed them) is stored there as a reference to its content, so the entry stays small.

The entry also records a fingerprint of the pair-free model it was made for. strip restores the
original only while the model outside the pairs is still that one; a model edited after compress
(e.g. `featcomp jpeg insert`) gets its pairs removed and keeps the edit, as before.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator

import onnx
from google.protobuf.message import DecodeError

ORIGINAL_KEY = "featcomp.original"
FORMAT = 1
MIN_REFERENCED_BYTES = 256  # smaller tensors are kept in the entry itself


def attach(compressed: onnx.ModelProto, original: onnx.ModelProto, stripped: onnx.ModelProto) -> None:
    """Record `original` in `compressed` (in place); `stripped` is what strip_pairs(compressed) gives."""
    skeleton = onnx.ModelProto()
    skeleton.CopyFrom(original)
    held = {_content(t) for _, t in _tensors(compressed)}
    refs = []
    for where, tensor in _tensors(skeleton):
        if tensor.ByteSize() < MIN_REFERENCED_BYTES:
            continue
        digest = _content(tensor)
        if digest in held:
            name = tensor.name
            tensor.Clear()
            tensor.name = name
            refs.append([where, digest])
    value = {"format": FORMAT, "stripped": _digest(_without_entry(stripped)), "refs": refs,
             "model": base64.b64encode(skeleton.SerializeToString()).decode("ascii")}
    _drop_entry(compressed)
    entry = compressed.metadata_props.add()
    entry.key, entry.value = ORIGINAL_KEY, json.dumps(value, separators=(",", ":"))


def restore(compressed: onnx.ModelProto, stripped: onnx.ModelProto) -> onnx.ModelProto | None:
    """The recorded original, or None when there is none or the model was edited after compress."""
    entry = next((m for m in compressed.metadata_props if m.key == ORIGINAL_KEY), None)
    if entry is None:
        return None
    try:
        value = json.loads(entry.value)
        if value.get("format") != FORMAT or value["stripped"] != _digest(_without_entry(stripped)):
            return None
        original = onnx.ModelProto()
        original.ParseFromString(base64.b64decode(value["model"]))
        held = {_content(t): t for _, t in _tensors(compressed)}
        slots = dict(_tensors(original))
        for where, digest in value["refs"]:
            tensor, source = slots[where], held[digest]
            name = tensor.name
            tensor.CopyFrom(source)
            tensor.name = name
    except (KeyError, ValueError, TypeError, DecodeError):
        return None  # an entry damaged by hand: fall back to removing the pairs
    return original


def remove_entry(model: onnx.ModelProto) -> None:
    """Drop the record (in place): the structural strip must not carry it."""
    _drop_entry(model)


def _tensors(model: onnx.ModelProto) -> Iterator[tuple[str, onnx.TensorProto]]:
    """(where, tensor) for the main graph's initializers and Constant-node values; `where` is stable."""
    for i, t in enumerate(model.graph.initializer):
        yield f"i{i}", t
    for j, node in enumerate(model.graph.node):
        for k, attr in enumerate(node.attribute):
            if attr.HasField("t"):
                yield f"n{j}.{k}", attr.t


def _content(tensor: onnx.TensorProto) -> str:
    """A digest of everything but the name (fold keeps original weights under another name)."""
    copy = onnx.TensorProto()
    copy.CopyFrom(tensor)
    copy.name = ""
    return hashlib.sha256(copy.SerializeToString()).hexdigest()


def _digest(model: onnx.ModelProto) -> str:
    return hashlib.sha256(model.SerializeToString()).hexdigest()


def _without_entry(model: onnx.ModelProto) -> onnx.ModelProto:
    if not any(m.key == ORIGINAL_KEY for m in model.metadata_props):
        return model
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    _drop_entry(copy)
    return copy


def _drop_entry(model: onnx.ModelProto) -> None:
    keep = [m for m in model.metadata_props if m.key != ORIGINAL_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
