"""Graph-level layout for the conv schedules: convs read their weights as [I, KH, KW, O], so a
tile's output channels are one contiguous vector load. Done once on the constant weights before
legalization (a numpy transpose per conv, no per-layer transform at run time); activations stay
NCHW, which the featcomp kernels and a decode fused into its consumer expect.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tvm
from tvm import relax, tirx
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

KERNEL_LAYOUT = "IHWO"


def _even_width(call: relax.Call, kw: int) -> list[int]:
    """The conv's padding, with one more zero column on the right when a stride-2 depthwise conv's
    padded width is odd (SAME pads 0/1 or 1/2: EfficientNet-Lite0's): the output width is the same
    (the column is never read), and the schedule can then store the padded input as even/odd halves
    of equal length with no guard (conv_schedules._even_odd; 2.06 -> 0.47 ms for EfficientNet-Lite0's
    96x112x112 layer, 3.27 -> 0.41 ms for its 5x5 one on 144x56x56; benchmarks/tvm_schedule_ab.py)."""
    attrs = call.attrs
    pads = [int(p) for p in attrs.padding]
    x = call.args[0].ty
    if len(pads) != 4 or not isinstance(x, relax.TensorType) or x.shape is None:
        return pads
    c, w = int(x.shape.values[1]), int(x.shape.values[3])
    stride, dilation = int(attrs.strides[1]), int(attrs.dilation[1])
    width = w + pads[1] + pads[3]
    if stride != 2 or int(attrs.groups) != c or width % 2 == 0:
        return pads
    if (width - dilation * (kw - 1) - 1) // stride != (width + 1 - dilation * (kw - 1) - 1) // stride:
        return pads
    return [pads[0], pads[1], pads[2], pads[3] + 1]


def padded_channels(oc: int, groups: int, lanes: int) -> int:
    """Output channels to compute: OC itself, or OC rounded up to two vectors when no vector divides
    it and the padding costs at most 5% (SqueezeNet's 1000-channel conv on AVX-512: 1024). The tile
    rule (conv_schedules._channel_tile) otherwise falls back to half a vector of channels per
    broadcast input: that conv took 4.6 ms, 35% of the model, and 2.7 ms padded (1 thread)."""
    if lanes == 0 or groups != 1 or oc % lanes == 0:
        return oc
    padded = -(-oc // (2 * lanes)) * (2 * lanes)
    return padded if padded <= oc * 1.05 else oc


def _weights_o_last(call: relax.Call, lanes: int) -> relax.Expr:
    attrs = call.attrs
    if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
        return call
    weight = call.args[1].value.numpy()
    oc = weight.shape[0]
    padded = padded_channels(oc, int(attrs.groups), lanes)
    if padded != oc:  # zero output channels, sliced off right after the conv
        weight = np.concatenate([weight, np.zeros((padded - oc, *weight.shape[1:]), weight.dtype)])
    conv = relax.op.nn.conv2d(call.args[0], relax.const(np.ascontiguousarray(weight.transpose(1, 2, 3, 0))),
                              strides=attrs.strides, padding=_even_width(call, weight.shape[3]), dilation=attrs.dilation,
                              groups=attrs.groups, data_layout="NCHW", kernel_layout=KERNEL_LAYOUT,
                              out_layout="NCHW", out_dtype=attrs.out_dtype)
    return conv if padded == oc else relax.op.strided_slice(conv, axes=[1], begin=[0], end=[oc])


def weights_o_last(mod: tvm.IRModule, lanes: int = 0) -> tvm.IRModule:
    """NCHW convs with constant OIHW weights -> the same convs with IHWO weights (other convs
    unchanged); lanes > 0: output channels padded to whole vectors where that is cheap (padded_channels)."""
    main = rewrite_call(is_op("relax.nn.conv2d")(wildcard(), is_const()), lambda call, _m: _weights_o_last(call, lanes),
                        mod["main"])
    return tvm.IRModule({gv: main if gv.name_hint == "main" else func for gv, func in mod.functions_items()},
                        attrs=mod.attrs)


def _even_pool(call: relax.Call) -> relax.Expr:
    """A stride-2 max pool with an odd padded width -> the same pool with one more (never read)
    column of right padding, when the output shape stays the same (pool_schedules stores the band's
    input as even/odd halves of equal length)."""
    a = call.attrs
    x = call.args[0].ty
    if (a.layout != "NCHW" or a.out_layout != "NCHW" or int(a.strides[1]) != 2 or not isinstance(x, relax.TensorType)
            or x.shape is None or len(a.padding) != 4):
        return call
    pads = [int(p) for p in a.padding]
    if (int(x.shape.values[3]) + pads[1] + pads[3]) % 2 == 0:
        return call
    wider = relax.op.nn.max_pool2d(call.args[0], pool_size=a.pool_size, strides=a.strides, padding=[*pads[:3], pads[3] + 1],
                                   dilation=a.dilation, ceil_mode=False, count_include_pad=a.count_include_pad,
                                   layout="NCHW", out_layout="NCHW")
    before, after = relax.BlockBuilder().normalize(call).ty, relax.BlockBuilder().normalize(wider).ty
    # same output: every window of the original (ceil_mode or not) lies left of the new column
    if [int(d) for d in before.shape.values] != [int(d) for d in after.shape.values]:
        return call
    if a.ceil_mode and int(before.shape.values[3]) != (int(x.shape.values[3]) + pads[1] + pads[3]
                                                         - (int(a.pool_size[1]) - 1) * int(a.dilation[1]) - 1) // 2 + 1:
        return call  # ceil_mode made a partial last window: it would read the new column
    return wider


def even_pool_width(mod: tvm.IRModule) -> tvm.IRModule:
    """Every stride-2 max pool with an odd padded width gets one more right padding column (_even_pool)."""
    main = rewrite_call(is_op("relax.nn.max_pool2d")(wildcard()), lambda call, _m: _even_pool(call), mod["main"])
    return tvm.IRModule({gv: main if gv.name_hint == "main" else func for gv, func in mod.functions_items()},
                        attrs=mod.attrs)


# ------------------------------------------------------------------------ weights packed per channel block


def constant_params(mod: tvm.IRModule) -> dict[str, frozenset[int]]:
    """For each PrimFunc the module's Relax functions call: the parameters that get a constant at
    every call site (weights the schedule may repack, pack_weight_args); a call whose arguments are
    not a literal tuple counts as none constant. Empty when there is no Relax function."""
    found: dict[str, set[int]] = {}
    for _, func in mod.functions_items():
        if not isinstance(func, relax.Function):
            continue

        @relax.expr_functor.visitor
        class Calls(relax.PyExprVisitor):  # type: ignore[misc]
            def visit_call_(self, call: relax.Call) -> None:  # noqa: D102
                if call.op.same_as(tvm.ir.Op.get("relax.call_tir")) and isinstance(call.args[0], tvm.ir.GlobalVar):
                    fields = call.args[1].fields if isinstance(call.args[1], relax.Tuple) else []
                    consts = {i for i, a in enumerate(fields) if isinstance(a, tvm.ir.expr.Constant)}
                    name = call.args[0].name_hint
                    found[name] = found[name] & consts if name in found else consts

        Calls().visit_expr(func)
    return {name: frozenset(idx) for name, idx in found.items()}


def pack_weight_args(mod: tvm.IRModule, packed: dict[str, dict[int, int]]) -> tvm.IRModule:
    """The constants passed to params a schedule repacked ({function: {param: FI}}, weights
    [I, KH, KW, O] -> [O/FI, I, KH, KW, FI]: conv_schedules.schedule_dense), repacked once in numpy.
    The repacked functions get new GlobalVars: a GlobalVar keeps the signature it was made with."""
    if not packed:
        return mod
    funcs = {gv.name_hint: func for gv, func in mod.functions_items()}
    bb = relax.BlockBuilder(tvm.IRModule({gv: f for gv, f in mod.functions_items() if gv.name_hint not in packed},
                                         attrs=mod.attrs))
    callee = {name: bb.add_func(funcs[name], name) for name in packed}

    @relax.expr_functor.mutator
    class Repack(relax.PyExprMutator):  # type: ignore[misc]
        def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: D102
            call = super().visit_call_(call)
            if not (call.op.same_as(tvm.ir.Op.get("relax.call_tir")) and isinstance(call.args[0], tvm.ir.GlobalVar)
                    and call.args[0].name_hint in packed):
                return call
            name = call.args[0].name_hint
            args = list(call.args[1].fields)
            for i, fi in packed[name].items():
                w = args[i].value.numpy()
                ic, kh, kw, oc = w.shape
                args[i] = relax.const(np.ascontiguousarray(w.reshape(ic, kh, kw, oc // fi, fi).transpose(3, 0, 1, 2, 4)))
            return relax.Call(call.op, [callee[name], relax.Tuple(args), *call.args[2:]], call.attrs, call.ty_args)

    out = bb.get()
    for gv, func in list(out.functions_items()):
        if isinstance(func, relax.Function):
            out[gv] = Repack().visit_expr(func)
    return out


# ------------------------------------------------------------------------------ packed classifier GEMV

MATVEC = "matvec_packed"  # the block name conv_schedules.schedule_matvec looks for
PACK = 16                 # output channels per packed weight block: one AVX-512 vector, four NEON ones


def _int64(dims: tuple[int, ...]) -> list[tirx.IntImm]:
    """Shapes as int64, as Relax legalization writes them (FuseTIR requires equal buffer types)."""
    return [tirx.IntImm("int64", d) for d in dims]


def matvec_kernel(x_shape: tuple[int, ...], x_dtype: str, blocks: int, k: int, n: int) -> tirx.PrimFunc:
    """y[.., j] = sum_k x[k] * W[j // PACK, k, j % PACK] for j < n, W packed as [blocks, K, PACK]
    (zero past n). The product is computed over all blocks x PACK outputs into a small intermediate,
    then copied out, so the tile has no guard; a consumer (the bias add) inlines the copy."""
    from tvm import te

    x = te.placeholder(_int64(x_shape), x_dtype, name="x")
    w = te.placeholder(_int64((blocks, k, PACK)), "float32", name="w")
    r = te.reduce_axis((tirx.IntImm("int64", 0), tirx.IntImm("int64", k)), name="k")
    zeros = [tirx.IntImm("int64", 0)] * (len(x_shape) - 2)

    def load(kk: Any) -> Any:
        value = x[tuple([tirx.IntImm("int64", 0), kk, *zeros])]
        return value if x_dtype == "float32" else value.astype("float32")

    acc = te.compute(_int64((blocks * PACK,)), lambda j: te.sum(load(r) * w[j // PACK, r, j % PACK], axis=r), name=MATVEC)
    out = te.compute(_int64((1, n, *[1] * len(zeros))), lambda b, j, *_: acc[j], name="matvec_out")
    func = te.create_prim_func([x, w, out]).without_attr("global_symbol")  # private: the module names it
    return func.with_attr({"op_pattern": 4, "tirx.noalias": True})  # kOutEWiseFusable: the bias add fuses in


_FLOAT_OUT = ("", "None", "void", "float32")  # out_dtype unset (printed as any of the first three) or float32
_WEIGHT = is_const()
_TRANSPOSED = is_op("relax.permute_dims")(_WEIGHT)
_PATTERNS = (is_op("relax.matmul")(wildcard(), _WEIGHT), is_op("relax.matmul")(wildcard(), _TRANSPOSED),
             is_op("relax.nn.conv2d")(wildcard(), _WEIGHT))


def _matvec_operands(call: relax.Call, matches: Any) -> tuple[relax.Expr, np.ndarray] | None:
    """(x, weight as [N, K] float32) of a batch-1 GEMV with a constant weight: MatMul [1, K] x [K, N]
    (the weight maybe a transposed constant, as the importer writes Gemm), or a 1x1 conv of a 1x1
    map (a classifier written as a conv, e.g. MobileNetV2's); None otherwise."""
    x, w = call.args[0], matches[_WEIGHT]
    if not isinstance(x.ty, relax.TensorType) or x.ty.shape is None or str(w.value.dtype) != "float32":
        return None
    shape = tuple(int(d) for d in x.ty.shape.values)
    weight = w.value.numpy()
    if call.op.name == "relax.matmul":
        if _TRANSPOSED in matches:
            if [int(a) for a in matches[_TRANSPOSED].attrs.axes] != [1, 0]:
                return None
            weight = weight.T
        if len(shape) == 2 and shape[0] == 1 and weight.ndim == 2 and str(call.attrs.out_dtype) in _FLOAT_OUT:
            return x, np.ascontiguousarray(weight.T)
        return None
    a = call.attrs
    if (len(shape) == 4 and shape[0] == 1 and shape[2:] == (1, 1) and weight.shape[2:] == (1, 1)
            and a.groups == 1 and a.data_layout == "NCHW" and a.kernel_layout == "OIHW" and a.out_layout == "NCHW"
            and all(int(p) == 0 for p in a.padding) and str(a.out_dtype) in _FLOAT_OUT):
        return x, weight[:, :, 0, 0]
    return None


def pack_matvec(mod: tvm.IRModule) -> tvm.IRModule:
    """Every batch-1 GEMV with constant weights -> a call of matvec_kernel with the weight packed
    once here as [ceil(N / PACK), K, PACK]: each block's weights are one sequential stream and its
    PACK outputs one vector of accumulators (conv_schedules.schedule_matvec). TOPI's dense reads
    [K, N] a column at a time; the classifier (1280 x 1000) ran as a naive loop."""
    kernels: dict[tuple[Any, ...], tvm.ir.GlobalVar] = {}
    bb = relax.BlockBuilder(mod)  # gives the kernels GlobalVars typed as TIR callees

    def rewrite(call: relax.Call, matches: Any) -> relax.Expr:
        found = _matvec_operands(call, matches)
        if found is None:
            return call
        x, weight = found
        n, k = weight.shape
        blocks = -(-n // PACK)
        packed = np.zeros((blocks * PACK, k), np.float32)
        packed[:n] = weight
        packed = np.ascontiguousarray(packed.reshape(blocks, PACK, k).transpose(0, 2, 1))
        shape = tuple(int(d) for d in x.ty.shape.values)
        key = (shape, str(x.ty.dtype), blocks, k, n)
        if key not in kernels:
            kernels[key] = bb.add_func(matvec_kernel(shape, str(x.ty.dtype), blocks, k, n), MATVEC)
        out_shape = (1, n) if len(shape) == 2 else (1, n, 1, 1)
        return relax.call_tir(kernels[key], [x, relax.const(packed)], out_ty=relax.TensorType(out_shape, "float32"))

    main = mod["main"]
    for pattern in _PATTERNS:
        main = rewrite_call(pattern, rewrite, main)
    if not kernels:
        return mod
    out = bb.get()
    out["main"] = main
    return out
