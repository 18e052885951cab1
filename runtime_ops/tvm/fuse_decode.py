"""Consumers read a site's stored symbols directly: no decoded tensor is ever written.

The encode is fused into the producing layer's output stage (FuseOps does that: it is elementwise),
so a site's only tensor in memory is its symbols, int8/uint8 where the codec's range fits
(codecs.base.storage_dtype). The decode is taken out of memory in two ways, per consumer:

1. **Folded into a conv's weights** (`fold_into_convs`, on the imported Relax module, before
   legalization). The decode is linear with no offset: x = D y, D block diagonal over the channels
   (per-channel scale for G = 1, the group's G x G matrix otherwise). A conv of x with weights W is
   the conv of y with W' = W D, exact up to float rounding; and the conv's zero padding of x is the
   zero padding of y (D 0 = 0). So `conv2d(decode(y), W)` becomes `conv2d(y, W D, out_dtype=f32)`,
   and TOPI's conv reads the 8-bit symbols, casting on load. Any conv (1x1, kxk, grouped, strided)
   whose conv groups hold whole codec groups; a depthwise conv takes only G = 1 sites.
2. **Fused into the consumer's function** (`merge_into_consumers`, after FuseOps, before FuseTIR)
   for the other consumers (a residual Add inside the next layer's epilogue, a pool): the decode's
   call is moved into each consumer's fused function (recomputed per consumer), FuseTIR makes one
   PrimFunc of them, and the default schedule inlines the elementwise G = 1 decode block into the
   block that reads it. A grouped (G > 1) decode is a reduction over the group and is not inlined:
   such a site keeps its decoded tensor, and says so.

FuseOps alone cannot do 2: left elementwise, the decode joins the *producer's* group (encode ->
decode is an elementwise chain) and that group writes the fp32 reconstruction; and FuseOps never
fuses a producer into a conv's input stage. So the decode kernel stays opaque (op_pattern 8) and
this module places it.

Every site gets an outcome (`SiteOutcome`): which consumers were folded, fused, or left reading a
decoded tensor and why; build.py puts them in the compile stats (the manifest's per-site rows).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tvm
from featcomp.runtime_ops.tvm import kernels
from featcomp.runtime_ops.tvm.kernels import OFFSET_ATTR, OP_ATTR, SITE_ATTR
from tvm import relax, tirx

_CALL_TIR = tvm.ir.Op.get("relax.call_tir")
_CONV2D = tvm.ir.Op.get("relax.nn.conv2d")
_RESHAPE = tvm.ir.Op.get("relax.reshape")
DECODE_OPS = ("DctCmDecode", "TvlcDecode")


@dataclass
class SiteOutcome:
    """Where one site's decode went. `decoded_tensor` is True when some consumer still reads a
    full decoded tensor (the reasons say which and why)."""

    site: str
    dtype: str
    shape: tuple[int, ...]
    group: int
    offset: int = 0          # the stored values are symbol - offset (uint8-range sites kept as int8)
    folded: int = 0          # conv consumers whose weights absorbed the decode
    fused: int = 0           # consumers whose function computes the decode inline
    reasons: list[str] = field(default_factory=list)

    @property
    def decoded_tensor(self) -> bool:
        return bool(self.reasons)

    @property
    def stored_bytes(self) -> int:
        return int(np.prod(self.shape)) * np.dtype(self.dtype).itemsize

    def as_dict(self) -> dict[str, Any]:
        return {"site": self.site, "stored": {"dtype": self.dtype, "shape": list(self.shape), "bytes": self.stored_bytes,
                                              "offset": self.offset},
                "group": self.group, "decode": "in consumers" if not self.reasons else "decoded tensor",
                "folded_into_convs": self.folded, "fused_into_consumers": self.fused, "fallback_reasons": self.reasons}


# ----------------------------------------------------------------------------------------- helpers


def _decode_func(mod: tvm.IRModule, callee: relax.Expr) -> tirx.PrimFunc | None:
    if not isinstance(callee, tvm.ir.GlobalVar) or callee not in mod.get_global_vars():
        return None
    func = mod[callee]
    if isinstance(func, tirx.PrimFunc) and func.attrs is not None and str(func.attrs.get(OP_ATTR, "")) in DECODE_OPS:
        return func
    return None


def _offset(func: tirx.PrimFunc) -> int:
    """The offset the decode adds back to the stored values (kernels.OFFSET_ATTR; 0 when absent)."""
    return int(func.attrs[OFFSET_ATTR]) if func.attrs is not None and OFFSET_ATTR in func.attrs else 0


def _site(func: tirx.PrimFunc, var: relax.Var) -> str:
    """The site a decode serves (its node's name), or the decoded var's name for unnamed nodes."""
    return str(func.attrs.get(SITE_ATTR, "") or "") or f"(unnamed) {var.name}"


def _bindings(func: relax.Function) -> dict[relax.Var, relax.Expr]:
    return {b.var: b.value for block in func.body.blocks for b in block.bindings if isinstance(b, relax.VarBinding)}


def _const(expr: relax.Expr, values: dict[relax.Var, relax.Expr]) -> np.ndarray | None:
    while isinstance(expr, relax.Var) and expr in values:
        expr = values[expr]
    return expr.value.numpy() if isinstance(expr, tvm.ir.expr.Constant) and hasattr(expr.value, "numpy") else None


def _shape(expr: relax.Expr) -> tuple[int, ...]:
    return tuple(int(d) for d in expr.ty.shape.values)


@dataclass
class _Decode:
    """One decode in the imported main: x = D y (y the stored symbols, D block diagonal [C, C])."""

    site: str
    symbols: relax.Expr
    matrix: np.ndarray  # [K, G, G]
    offset: int = 0  # x = D (y + offset): the stored y are symbol - offset
    op: str = "DctCmDecode"

    @property
    def group(self) -> int:
        return int(self.matrix.shape[-1])

    def dense(self) -> np.ndarray:
        """D as a [C, C] float64 matrix."""
        k, g, _ = self.matrix.shape
        d = np.zeros((k * g, k * g))
        for i in range(k):
            d[i * g:(i + 1) * g, i * g:(i + 1) * g] = self.matrix[i]
        return d


def _find_decodes(mod: tvm.IRModule, main: relax.Function) -> dict[relax.Var, _Decode]:
    """Vars of main bound to a decoded tensor: call_tir(decode, y, D) for G = 1, or
    reshape(call_tir(decode, reshape(y), D)) for G > 1 (convert.py's two forms)."""
    values = _bindings(main)
    found = {}
    for var, value in values.items():
        inner, grouped = value, False
        if isinstance(value, relax.Call) and value.op.same_as(_RESHAPE) and isinstance(value.args[0], relax.Var):
            inner, grouped = values.get(value.args[0]), True
        if not (isinstance(inner, relax.Call) and inner.op.same_as(_CALL_TIR)):
            continue
        func = _decode_func(mod, inner.args[0])
        if func is None:
            continue
        y, matrix = inner.args[1].fields[0], _const(inner.args[1].fields[1], values)
        if grouped:
            flat = values.get(y) if isinstance(y, relax.Var) else None
            if not (isinstance(flat, relax.Call) and flat.op.same_as(_RESHAPE)):
                continue
            y = flat.args[0]
        if matrix is None:
            continue
        found[var] = _Decode(_site(func, var), y, matrix.astype(np.float64), _offset(func), str(func.attrs[OP_ATTR]))
    return found


# ------------------------------------------------------------------------------ 1. fold into convs


def _folded_weight(decode: _Decode, weight: np.ndarray, groups: int) -> np.ndarray | None:
    """W' = W D per conv group, or None when D mixes channels of different conv groups (depthwise, G > 1)."""
    out_ch, per_group = weight.shape[:2]
    d = decode.dense()
    if d.shape[0] != per_group * groups:
        return None
    w = weight.astype(np.float64)
    folded = np.empty_like(w)
    per_out = out_ch // groups
    for gi in range(groups):
        block = slice(gi * per_group, (gi + 1) * per_group)
        rows = d[block]
        if np.any(np.delete(rows, np.arange(block.start, block.stop), axis=1)):
            return None
        outs = slice(gi * per_out, (gi + 1) * per_out)
        folded[outs] = np.einsum("oikl,ij->ojkl", w[outs], rows[:, block])
    return folded.astype(np.float32)


_PAD_READ = re.compile(r"T\.reads\(\w+\[v_i0, v_i1, v_i2(?: - T\.int64\((\d+)\))?, v_i3(?: - T\.int64\((\d+)\))?\]\)")


def _zero_pad_of(mod: tvm.IRModule, value: relax.Expr | None) -> tuple[relax.Var | None, tuple[int, ...]]:
    """(x, (top, left, bottom, right)) when value is TOPI's constant-zero pad of H and W of x (what the
    importer emits for a Conv with auto_pad SAME_*), else (None, zeros). The pad is read from its
    PrimFunc (emit_te leaves no op to match): block PadInput, zero fill, offsets in the read index."""
    none = (None, (0, 0, 0, 0))
    if not (isinstance(value, relax.Call) and value.op.same_as(_CALL_TIR) and len(value.args[1].fields) == 1):
        return none
    x = value.args[1].fields[0]
    func = mod[value.args[0]] if isinstance(value.args[0], tvm.ir.GlobalVar) else None
    if not (isinstance(x, relax.Var) and isinstance(func, tirx.PrimFunc) and len(_shape(x)) == 4):
        return none
    text = func.script()
    found = _PAD_READ.search(text)
    zero = f"T.{x.ty.dtype}(0.0))" if str(x.ty.dtype).startswith("float") else f"T.{x.ty.dtype}(0))"
    if 'T.sblock("PadInput")' not in text or zero not in text or found is None:
        return none
    n, c, h, w = _shape(x)
    on, oc, oh, ow = (int(d) for d in value.ty.shape.values)
    top, left = int(found.group(1) or 0), int(found.group(2) or 0)
    if (on, oc) != (n, c) or oh - h - top < 0 or ow - w - left < 0:
        return none
    return x, (top, left, oh - h - top, ow - w - left)


def fold_into_convs(mod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, SiteOutcome]]:
    """conv2d(decode(y), W) -> conv2d(y, W D) for every NCHW/OIHW conv with constant weights that reads a
    decoded site; the decode binding disappears when nothing else reads it. The importer's explicit
    zero pad before a conv (ONNX auto_pad SAME_*) of a decoded site or of the model's input becomes
    the conv's own padding, so no padded copy of it is written (models without pairs too). Returns
    the module and an outcome per site (folded counts filled in)."""
    main = mod["main"]
    decodes = _find_decodes(mod, main)
    values = _bindings(main)
    outcomes = {var: SiteOutcome(dec.site, str(dec.symbols.ty.dtype), _shape(dec.symbols), dec.group, dec.offset)
                for var, dec in decodes.items()}
    blocks = []
    changed = False
    bb = relax.BlockBuilder(mod)  # add_func gives the widening kernels' GlobalVars their types
    for block in main.body.blocks:
        bindings = []
        for b in block.bindings:
            new = _folded_conv(mod, b, values, decodes, outcomes) if isinstance(b, relax.VarBinding) else None
            shifted = next((d for d in decodes.values() if d.offset and isinstance(new, relax.Call)
                            and d.symbols.same_as(new.args[0])), None)
            if shifted is not None:  # a folded conv of a site stored as symbol - offset
                new, widen = _widened_input(bb, new, shifted, type(b.var))
                bindings.append(widen)
            bindings.append(b if new is None else relax.VarBinding(b.var, new))
            changed |= new is not None
        blocks.append(relax.DataflowBlock(bindings) if isinstance(block, relax.DataflowBlock) else relax.BindingBlock(bindings))
    if not changed:
        return mod, {o.site: o for o in outcomes.values()}
    mod = bb.get().clone()
    mod["main"] = relax.Function(main.params, relax.SeqExpr(blocks, main.body.body), main.ret_ty, main.is_pure, main.attrs)
    mod = relax.transform.Normalize()(mod)
    mod = relax.transform.DeadCodeElimination(["main"])(mod)
    return mod, {o.site: o for o in outcomes.values()}


def _folded_conv(mod: tvm.IRModule, b: relax.VarBinding, values: dict[relax.Var, relax.Expr],
                 decodes: dict[relax.Var, _Decode], outcomes: dict[relax.Var, SiteOutcome]) -> relax.Expr | None:
    """The new conv of one binding (decode folded and/or explicit zero pad absorbed), or None."""
    value = b.value
    if not (isinstance(value, relax.Call) and value.op.same_as(_CONV2D)):
        return None
    attrs = value.attrs
    if not (len(attrs.padding) == 4 and str(attrs.data_layout) == "NCHW" and str(attrs.kernel_layout) == "OIHW"
            and str(attrs.out_layout) == "NCHW"):
        return None
    source = value.args[0]
    extra: tuple[int, ...] = (0, 0, 0, 0)
    if isinstance(source, relax.Var) and source not in decodes:
        padded, widths = _zero_pad_of(mod, values.get(source))
        # only a pad of a decoded site or of a model input: folding every such pad changed
        # StaticPlanBlockMemory's greedy matches for the worse (MobileNetV2 original: 7.30 -> 8.64 MB)
        if padded is not None and (padded in decodes or any(padded.same_as(p) for p in mod["main"].params)):
            source, extra = padded, widths
    out_dtype = str(attrs.out_dtype) if attrs.out_dtype is not None else ""
    data, weight, out_dtype = source, value.args[1], out_dtype if out_dtype not in ("", "void", "None") else "float32"
    padding = [int(p) + e for p, e in zip(attrs.padding, extra)]
    if source in decodes:
        const = _const(value.args[1], values)
        folded = _folded_weight(decodes[source], const, int(attrs.groups)) if const is not None else None
        if folded is not None:
            # (a site stored as symbol - offset then reads through a widening: _widened_input)
            data, weight, out_dtype = decodes[source].symbols, relax.const(folded), "float32"
            outcomes[source].folded += 1
        elif extra == (0, 0, 0, 0):
            return None
    elif extra == (0, 0, 0, 0):
        return None
    return relax.op.nn.conv2d(data, weight, strides=attrs.strides, padding=padding, dilation=attrs.dilation,
                              groups=attrs.groups, data_layout="NCHW", kernel_layout="OIHW", out_layout="NCHW",
                              out_dtype=out_dtype)


def _widened_input(bb: relax.BlockBuilder, conv: relax.Call, decode: _Decode,
                   var_type: type) -> tuple[relax.Call, relax.VarBinding]:
    """A folded conv of a site stored as symbol - offset reads float(y) + offset (W D absorbed the rest,
    and the conv's zero padding is that of the symbols, as before). Adding the offset after the conv
    instead (offset * sum(W D) as a bias) was measured inexact: stored zeros are -128, so the conv
    sums large terms that the bias then cancels (MobileNetV2: max abs output difference 0.025 from
    the build with decode kernels, vs 0.008 with this). Returns the conv on the widened var and the
    widening's binding: a decode kernel with D = 1, which merge_into_consumers fuses into the conv."""
    y = decode.symbols
    n, c, h, w = _shape(y)
    kernel = kernels.decode_kernel(decode.op, n, c, h, w, 1, str(y.ty.dtype), decode.offset).with_attr(SITE_ATTR, decode.site)
    gv = bb.add_func(kernel, f"fc_decode_{n}x{c}x{h}x{w}_g1")
    ones = relax.const(np.ones((c, 1, 1), np.float32))
    widened = var_type("fc_widened", relax.TensorType((n, c, h, w), "float32"))
    binding = relax.VarBinding(widened, relax.call_tir(gv, [y, ones], out_ty=relax.TensorType((n, c, h, w), "float32")))
    a = conv.attrs
    new = relax.op.nn.conv2d(widened, conv.args[1], strides=a.strides, padding=a.padding, dilation=a.dilation, groups=a.groups,
                             data_layout="NCHW", kernel_layout="OIHW", out_layout="NCHW", out_dtype=str(a.out_dtype))
    return new, binding


# ------------------------------------------------------------------ 2. fuse into consumer functions


def _primitive(mod: tvm.IRModule, callee: relax.Expr) -> relax.Function | None:
    if isinstance(callee, tvm.ir.GlobalVar) and callee in mod.get_global_vars():
        func = mod[callee]
        if isinstance(func, relax.Function) and func.attrs is not None and "Primitive" in func.attrs:
            return func
    return None


def _uses(expr: relax.Expr, var: relax.Var) -> bool:
    return any(v.same_as(var) for v in relax.analysis.free_vars(expr)) if not isinstance(expr, relax.Var) else expr.same_as(var)


def _merged(func: relax.Function, args: list[relax.Expr], x: relax.Var, decode_call: relax.Call,
            symbols: relax.Expr, matrix: relax.Expr) -> tuple[relax.Function, list[relax.Expr]] | None:
    """The consumer's fused function with the decode computed inside: the param that received x is
    bound to the decode of two new params (symbols, matrix). None if x arrives more than once."""
    slots = [i for i, a in enumerate(args) if isinstance(a, relax.Var) and a.same_as(x)]
    if len(slots) != 1:
        return None
    i = slots[0]
    target = func.params[i]
    py = relax.Var("fc_symbols", symbols.ty)
    pm = relax.Var("fc_decode_matrix", matrix.ty)
    call = relax.Call(_CALL_TIR, [decode_call.args[0], relax.Tuple([py, pm])], decode_call.attrs, decode_call.ty_args)
    first = relax.VarBinding(target, call)
    blocks = list(func.body.blocks)
    if blocks and isinstance(blocks[0], relax.DataflowBlock):
        blocks[0] = relax.DataflowBlock([first, *blocks[0].bindings])
    else:
        blocks.insert(0, relax.DataflowBlock([first]))
    params = [p for j, p in enumerate(func.params) if j != i] + [py, pm]
    new = relax.Function(params, relax.SeqExpr(blocks, func.body.body), func.ret_ty, func.is_pure, func.attrs)
    return new, [a for j, a in enumerate(args) if j != i] + [symbols, matrix]


def _rearranges(mod: tvm.IRModule, call: relax.Call, out: relax.Var, x: relax.Var) -> bool:
    """Is this lone consumer an injective op (a reshape, a transpose) whose float32 output is as big as
    the decoded tensor? Decoding inside it would only move the decoded tensor to its output."""
    func = mod[call.args[0]]
    pattern = int(func.attrs["op_pattern"]) if func.attrs is not None and "op_pattern" in func.attrs else 8
    ty = out.ty
    return (pattern <= 2 and isinstance(ty, relax.TensorType) and str(ty.dtype) == "float32"
            and int(np.prod(_shape(out))) >= int(np.prod(_shape(x))))


def _wrapped(call: relax.Call, out_var: relax.Var) -> tuple[relax.Function, list[relax.Expr]]:
    """A lone call_tir consumer as a one-op primitive function (so the decode can join it)."""
    args = list(call.args[1].fields)
    params = [relax.Var(f"p{j}", a.ty) for j, a in enumerate(args)]
    out = relax.Var("gv", out_var.ty)
    body = relax.SeqExpr([relax.DataflowBlock([relax.VarBinding(out, relax.Call(
        _CALL_TIR, [call.args[0], relax.Tuple(params)], call.attrs, call.ty_args))])], out)
    func = relax.Function(params, body, out_var.ty, True).with_attr("Primitive", True)
    return func, args


def merge_into_consumers(mod: tvm.IRModule, outcomes: dict[str, SiteOutcome]) -> tvm.IRModule:
    """After FuseOps: every G = 1 decode still called from main moves into each consumer's function.
    Outcomes gain fused counts, or the reason a consumer still reads a decoded tensor."""
    done: list[relax.Var] = []  # decodes examined (the ones left in main keep their decoded tensor)
    while True:
        main = mod["main"]
        target = None
        for block in main.body.blocks:
            for b in block.bindings:
                value = b.value
                if (isinstance(b, relax.VarBinding) and isinstance(value, relax.Call) and value.op.same_as(_CALL_TIR)
                        and not any(b.var.same_as(v) for v in done)):
                    func = _decode_func(mod, value.args[0])
                    if func is not None:
                        target = (b.var, value, func)
                        break
            if target is not None:
                break
        if target is None:
            return mod
        x, call, func = target
        done.append(x)
        site = _site(func, x)
        symbols, matrix = call.args[1].fields
        group = _shape(matrix)[-1]
        outcome = outcomes.setdefault(site, SiteOutcome(site, str(symbols.ty.dtype), _shape(symbols), group, _offset(func)))
        if group > 1:
            outcome.reasons.append("grouped decode (G > 1) read by a consumer that is not a conv: a reduction "
                                   "over the group, kept as its own kernel")
            continue
        mod = _merge_one(mod, x, call, symbols, matrix, outcome)


def _merge_one(mod: tvm.IRModule, x: relax.Var, call: relax.Call, symbols: relax.Expr, matrix: relax.Expr,
               outcome: SiteOutcome) -> tvm.IRModule:
    main = mod["main"]
    if _uses(main.body.body, x):
        outcome.reasons.append("the decoded tensor is a model output")
        return mod
    plans: dict[relax.Var, tuple[relax.Function, list[relax.Expr], str]] = {}
    for block in main.body.blocks:
        for b in block.bindings:
            if b.var.same_as(x) or not _uses(b.value, x):
                continue
            value = b.value
            plan = None
            if isinstance(value, relax.Call):
                prim = _primitive(mod, value.op)
                if prim is not None:
                    plan = (prim, list(value.args))
                elif value.op.same_as(_CALL_TIR) and all(not isinstance(a, relax.Tuple) for a in value.args[1].fields):
                    if _rearranges(mod, value, b.var, x):
                        outcome.reasons.append(f"consumer {value.args[0].name_hint} only rearranges the decoded tensor: "
                                               "its float32 output would be a full copy of it")
                        return mod
                    plan = _wrapped(value, b.var)
            merged = _merged(plan[0], plan[1], x, call, symbols, matrix) if plan is not None else None
            if merged is None:
                what = "the model's outputs" if isinstance(value, relax.Tuple) else _describe(value)
                outcome.reasons.append(f"consumer {what} is not a fused call taking the decoded tensor once")
                return mod
            name = (value.op if isinstance(value.op, tvm.ir.GlobalVar) else value.args[0]).name_hint
            plans[b.var] = (*merged, f"{name}_fc_decode")  # fusion_stats reads fc_encode/fc_decode in the names
    bb = relax.BlockBuilder(mod)  # add_func gives the new GlobalVars their types
    blocks = []
    for block in main.body.blocks:
        bindings = []
        for b in block.bindings:
            if b.var in plans:
                func, args, name = plans[b.var]
                gv = bb.add_func(func, name)
                bindings.append(relax.VarBinding(b.var, relax.Call(gv, args)))
            elif not b.var.same_as(x):
                bindings.append(b)
        blocks.append(relax.DataflowBlock(bindings) if isinstance(block, relax.DataflowBlock) else relax.BindingBlock(bindings))
    bb.update_func(mod.get_global_var("main"),
                   relax.Function(main.params, relax.SeqExpr(blocks, main.body.body), main.ret_ty, main.is_pure, main.attrs))
    outcome.fused += len(plans)
    return relax.transform.Normalize()(bb.get())


def _describe(value: relax.Expr) -> str:
    if isinstance(value, relax.Call):
        op = value.op
        return getattr(op, "name_hint", None) or getattr(op, "name", None) or type(op).__name__
    return type(value).__name__


# ----------------------------------------------------------------------------- checking the result

_PARAM = re.compile(r"T\.Buffer\(\(([^()]*(?:\([^()]*\)[^()]*)*)\), \"(\w+)\"\)")
_ALLOC = re.compile(r"(?:sblock_)?alloc_buffer\(\(([^()]*(?:\([^()]*\)[^()]*)*)\), \"(\w+)\"")


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(d) for d in re.findall(r"(?:T\.int64\()?(\d+)\)?", text))


def decoded_allocations(mod: tvm.IRModule, outcomes: dict[str, SiteOutcome]) -> dict[str, list[str]]:
    """For every site, where a full-size float32 or int16 tensor of its shape still exists in a
    (scheduled) module: a call of its decode kernel from main (a decoded tensor in the memory plan),
    or an allocation of the site's shape inside a PrimFunc that reads the site's symbols (a decode
    that the schedule did not inline). 0.27 has no Python TIR visitor: read the printed script."""
    found: dict[str, list[str]] = {site: [] for site in outcomes}
    main = mod["main"]
    for block in main.body.blocks:
        for b in block.bindings:
            value = b.value
            if isinstance(value, relax.Call) and value.op.same_as(_CALL_TIR):
                func = _decode_func(mod, value.args[0])
                if func is not None and SITE_ATTR in func.attrs and str(func.attrs[SITE_ATTR]) in found:
                    found[str(func.attrs[SITE_ATTR])].append(f"main calls {value.args[0].name_hint}")
    for gv, func in mod.functions_items():
        if not isinstance(func, tirx.PrimFunc) or (func.attrs is not None and OP_ATTR in func.attrs):
            continue
        text = func.script()
        params = {(_dims(d), t) for d, t in _PARAM.findall(text)}
        allocs = [(_dims(d), t) for d, t in _ALLOC.findall(text)]
        for site, o in outcomes.items():
            if (tuple(o.shape), o.dtype) not in params:
                continue
            full = int(np.prod(o.shape))
            for dims, dtype in allocs:
                if dtype in ("float32", "int16") and int(np.prod(dims)) >= full:
                    found[site].append(f"{gv.name_hint} allocates {dtype}{list(dims)}")
    return found
