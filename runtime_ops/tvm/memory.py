"""What a compiled model keeps in memory, read from its Relax IR (no numbers modelled here).

- `stored_tensors(mod)`: per featcomp site (one per encode call in `main`, in call order), the tensors
  that hold the site between the encode side and the consumer side, as the IR declares them (dtype x
  shape of the call outputs): the encode's output, any reshape/pack/unpack on the way, and which
  call finally reads them. Nothing about the codecs is assumed (no int16, no kernel layout): a change
  of the stored dtype or a decode fused into its consumer shows up here by itself.
- `plan(model, target, shapes)`: the planned activation memory of a model (e.g. the original, pairs
  stripped) through the same import -> legalize -> schedule -> StaticPlanBlockMemory path, without
  building it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import tvm
from featcomp.runtime_ops.tvm.kernels import OP_ATTR
from tvm import relax, tirx

ENCODE = re.compile(r"fc_encode")  # an encode kernel, alone or fused into its producer
# calls that only move a site's compact form on (views, the bitstream coder): the chain goes through them
PASS_THROUGH = re.compile(r"^(fused_)?(reshape\d*|fc_\w*?_(un)?pack\d*)(_\d+)?$")
PACK = re.compile(r"^(fused_)?fc_\w*?_pack\d*(_\d+)?$")


@dataclass
class StoredTensor:
    """One tensor of a site's compact form as the compiled IR declares it."""

    call: str  # the PrimFunc that writes it
    dtype: str
    shape: list[int]
    bytes: int

    def as_dict(self) -> dict[str, Any]:
        return {"call": self.call, "dtype": self.dtype, "shape": self.shape, "bytes": self.bytes}


@dataclass
class StoredSite:
    """A site in the compiled model: the encode's output (`symbols`), the tensors after it up to the
    consumer side (`tensors`, views included), the compact form between them and who reads it."""

    encode_call: str
    symbols: StoredTensor
    tensors: list[StoredTensor] = field(default_factory=list)
    form: str = ""  # the symbols' stored dtype ("int8", "int16"), or "bitstream" when a pack kernel sits on the chain
    stored: StoredTensor | None = None
    reader: str = ""  # the first call past the chain (a decode, or a consumer with the decode fused)
    decode_fused: bool | None = None  # the reader is not a featcomp kernel alone (None: read by an output)

    def as_dict(self) -> dict[str, Any]:
        stored = self.stored or self.symbols
        return {"encode_call": self.encode_call, "form": self.form, "dtype": stored.dtype, "shape": stored.shape,
                "bytes": stored.bytes, "symbols": self.symbols.as_dict(),
                "tensors": [t.as_dict() for t in self.tensors], "reader": self.reader, "decode_fused": self.decode_fused}


def _tensor(call: str, ty: Any) -> StoredTensor | None:
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    shape = [int(d) for d in ty.shape.values]
    dtype = str(ty.dtype)
    bits = tvm.runtime.DataType(dtype).bits * tvm.runtime.DataType(dtype).lanes
    return StoredTensor(call, dtype, shape, (int(np.prod(shape, dtype=np.int64)) * bits + 7) // 8)


@dataclass
class _Binding:
    var: Any
    callee: str  # "" for bindings that are not call_tir
    args: list[Any]  # relax vars the binding reads
    index: int = -1  # TupleGetItem index (-1 otherwise)


def _bindings(func: relax.Function) -> list[_Binding]:
    call_tir = tvm.ir.Op.get("relax.call_tir")
    out = []
    for block in func.body.blocks:
        for b in block.bindings:
            value = b.value
            if isinstance(value, relax.Call) and value.op.same_as(call_tir):
                args = list(value.args[1].fields) if isinstance(value.args[1], relax.Tuple) else [value.args[1]]
                out.append(_Binding(b.var, value.args[0].name_hint, [a for a in args if isinstance(a, relax.Var)]))
            elif isinstance(value, relax.TupleGetItem):
                out.append(_Binding(b.var, "", [value.tuple_value], int(value.index)))
            elif isinstance(value, relax.Tuple):
                out.append(_Binding(b.var, "", [f for f in value.fields if isinstance(f, relax.Var)]))
            elif isinstance(value, relax.Var):
                out.append(_Binding(b.var, "", [value]))
            elif isinstance(value, relax.Call):  # other ops (R.reshape before lowering, ...): a reader
                args = [a for a in value.args if isinstance(a, relax.Var)]
                out.append(_Binding(b.var, str(getattr(value.op, "name", value.op)), args))
    return out


def _readers(bindings: list[_Binding], var: Any) -> list[_Binding]:
    return [b for b in bindings if any(a.same_as(var) for a in b.args)]


def stored_tensors(mod: tvm.IRModule) -> list[StoredSite]:
    """Per encode call in main (call order): the site's compact form as the IR holds it."""
    bindings = _bindings(mod["main"])
    alone = {gv.name_hint for gv, f in mod.functions_items()
             if isinstance(f, tirx.PrimFunc) and f.attrs is not None and OP_ATTR in f.attrs}
    sites = []
    for b in bindings:
        if not b.callee or not ENCODE.search(b.callee):
            continue
        symbols = _tensor(b.callee, b.var.ty)
        if symbols is None:  # a tuple out of a fused encode: its first integer tensor is the symbols
            fields = list(b.var.ty.fields) if isinstance(b.var.ty, relax.TupleType) else []
            found = [t for t in (_tensor(b.callee, f) for f in fields) if t is not None and "float" not in t.dtype]
            if not found:
                continue
            symbols = found[0]
        site = StoredSite(b.callee, symbols, [symbols], form=symbols.dtype)
        current = b
        while True:
            readers = _readers(bindings, current.var)
            if isinstance(current.var.ty, relax.TupleType):  # pack/unpack: follow field 0 (stream, symbols)
                readers = [r for r in readers if r.callee == "" and r.index == 0]
            if len(readers) != 1:
                site.reader = ", ".join(r.callee or "output" for r in readers) or "output"
                break
            nxt = readers[0]
            if nxt.callee and not PASS_THROUGH.match(nxt.callee):
                site.reader = nxt.callee
                break
            if nxt.callee == "" and nxt.index < 0:  # a tuple of outputs, or an alias
                site.reader = "output"
                break
            tensor = _tensor(nxt.callee or current.callee, nxt.var.ty)
            if tensor is not None:
                site.tensors.append(tensor)
                if nxt.index == 0 and PACK.search(current.callee):
                    site.form, site.stored = "bitstream", tensor
            current = nxt
        names = site.reader.split(", ") if site.reader else []
        if names and "output" not in names:  # several readers: fused only when each decodes in its own kernel
            site.decode_fused = all(n not in alone for n in names)
        sites.append(site)
    return sites


def plan(model: onnx.ModelProto, target: Any, shape_dict: dict[str, list[int]]) -> dict[str, int]:
    """Planned activation memory of a model, through compile_model's path up to the memory plan."""
    from featcomp.runtime_ops.tvm import build, convert, schedules

    build.check_supported(model)
    mod = convert.import_model(model, shape_dict)
    mod = schedules.schedule_kernels(mod, target)
    mod = build.legalize(mod, target)
    mod, _, _ = schedules.schedule_rest(mod, target)
    return build.planned_memory(mod, target)
