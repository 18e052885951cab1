"""Graph-level layout for the conv schedules: convs read their weights as [I, KH, KW, O], so a
tile's output channels are one contiguous vector load. Done once on the constant weights before
legalization (a numpy transpose per conv, no per-layer transform at run time); activations stay
NCHW, which the featcomp kernels and a decode fused into its consumer expect.
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_const, is_op, rewrite_call, wildcard

KERNEL_LAYOUT = "IHWO"


def _weights_o_last(call: relax.Call, _matches: object) -> relax.Expr:
    attrs = call.attrs
    if attrs.data_layout != "NCHW" or attrs.kernel_layout != "OIHW" or attrs.out_layout != "NCHW":
        return call
    weight = call.args[1].value.numpy()
    return relax.op.nn.conv2d(call.args[0], relax.const(np.ascontiguousarray(weight.transpose(1, 2, 3, 0))),
                              strides=attrs.strides, padding=attrs.padding, dilation=attrs.dilation,
                              groups=attrs.groups, data_layout="NCHW", kernel_layout=KERNEL_LAYOUT,
                              out_layout="NCHW", out_dtype=attrs.out_dtype)


def weights_o_last(mod: tvm.IRModule) -> tvm.IRModule:
    """NCHW convs with constant OIHW weights -> the same convs with IHWO weights (other convs unchanged)."""
    main = rewrite_call(is_op("relax.nn.conv2d")(wildcard(), is_const()), _weights_o_last, mod["main"])
    return tvm.IRModule({gv: main if gv.name_hint == "main" else func for gv, func in mod.functions_items()},
                        attrs=mod.attrs)
