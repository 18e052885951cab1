"""The pass contract and the few graph edits every pass is made of.

Every pass takes a model and returns a `PassResult`: a new model (the input is never modified), whether the
pass changed anything, and notes naming what it changed (the sites it edited). The edits work on the
ONNX protobuf directly rather than through onnx-graphsurgeon (which passes/sites.py uses to read the
graph): round-tripping through graphsurgeon reorders and rewrites fields, and strip(insert(m)) must give
back m byte for byte.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import onnx

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)


@dataclass(frozen=True)
class PassResult:
    """What a pass gives back: the new model, whether it differs from the input, and what changed."""

    model: onnx.ModelProto
    changed: bool
    notes: tuple[str, ...] = ()


class Repeated(Protocol[T_contra]):
    """A repeated protobuf field (graph.node, graph.initializer, model.metadata_props, ...)."""

    def __iter__(self) -> Any: ...
    def __delitem__(self, key: slice) -> None: ...
    def extend(self, items: Iterable[T_contra]) -> None: ...


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    """A deep copy to edit: passes never change the model they are given."""
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def remove_where(container: Repeated[T], predicate: Callable[[T], bool]) -> None:
    """Delete the items of a repeated protobuf field that match, in place."""
    keep = [item for item in container if not predicate(item)]
    del container[:]
    container.extend(keep)


def replace_items(container: Repeated[T], items: Iterable[T]) -> None:
    """Make a repeated field hold exactly `items`, in that order (e.g. graph.node after an insertion)."""
    keep = list(items)
    del container[:]
    container.extend(keep)


def rewire(nodes: Iterable[onnx.NodeProto], names: Mapping[str, str]) -> None:
    """Make every node input named in `names` read the tensor it maps to instead, in place."""
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in names:
                node.input[i] = names[name]
