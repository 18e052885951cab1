"""The learned-JPEG input op: its schema and a function body of standard ONNX ops.

`ai.featcomp::LearnedJpeg` is what a JPEG file written with (luma, chroma) and decoded again does
to the model's input: denormalise to 8-bit pixels, libjpeg's RGB->YCbCr, 8x8 islow DCT, quantize,
dequantize, islow IDCT, YCbCr->RGB, normalise again. The body follows featcomp.jpeg.dct (the numpy
reference) matrix for matrix: all the integer maths runs in float64, where every intermediate
(< 2^40) is exact, and every rounding is an explicit Floor/Round. So ORT's output equals the
reference, and both equal Pillow's decode of the file, bit for bit.

Only MatMul, Reshape, Transpose, Gather, Pad, Slice, Concat, Add/Sub/Mul/Div, Floor, Round, Abs,
Sign, Clip and Cast: a later TVM lowering can import the body as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from featcomp.jpeg import dct
from featcomp.runtime_ops.schemas import DOMAIN, VERSION, OpSchema, Port

MIN_OPSET = 11  # Round, Clip and Pad with tensor inputs

LEARNED_JPEG = OpSchema(
    name="LearnedJpeg",
    doc=(
        "Baseline-JPEG round trip of a normalised image batch, bit-exact with libjpeg (4:4:4, islow DCT). "
        "pixels = clip(round(X[perm] * std + mean), 0, 255); libjpeg YCbCr; pad to multiples of 8 by edge "
        "repetition; per 8x8 block: islow FDCT, q = sign(c) * floor((|c| + 4T) / 8T) with T the luma table "
        "for Y and the chroma table for Cb/Cr; c' = q * T; islow IDCT; libjpeg RGB; crop; "
        "Y = ((rgb - mean) / std)[perm] in float32."
    ),
    inputs=(
        Port("X", "tensor(float) [N,3,H,W]", "the model's normalised input (NCHW)"),
        Port("luma", "tensor(float) [8,8]", "luma quantization steps, natural order, whole numbers 1..255"),
        Port("chroma", "tensor(float) [8,8]", "chroma quantization steps"),
        Port("mean", "tensor(float) [1,3,1,1]", "normalisation mean in R,G,B order, 0..255 units"),
        Port("std", "tensor(float) [1,3,1,1]", "normalisation std in R,G,B order"),
        Port("perm", "tensor(int64) [3]", "model channel order -> RGB: [0,1,2] (rgb) or [2,1,0] (bgr); self-inverse"),
        Port("pads", "tensor(int64) [8]", "Pad amounts: H and W up to multiples of 8"),
        Port("blocks", "tensor(int64) [6]", "[0, 0, H8/8, 8, W8/8, 8]: the padded planes as 8x8 blocks"),
        Port("plane", "tensor(int64) [4]", "[0, 0, H8, W8]"),
        Port("size", "tensor(int64) [2]", "[H, W]: the crop back after decoding"),
    ),
    outputs=(Port("Y", "tensor(float) [N,3,H,W]", "the decoded image in the model's normalisation"),),
)


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _descale(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(half, 2^-shift) as float64 arrays, so DESCALE(x) = Floor((x + half) * inv) exactly."""
    half = np.where(shift > 0, np.exp2(np.maximum(shift - 1, 0)), 0.0)
    return half.astype(np.float64), np.exp2(-shift.astype(np.float64))


def learned_jpeg(opset: int) -> onnx.FunctionProto:
    """The LearnedJpeg body for a model whose default-domain opset is ``opset`` (>= 11)."""
    f64 = np.float64
    h1, i1 = _descale(dct.FDCT_SHIFT1)
    h2, i2 = _descale(dct.FDCT_SHIFT2)
    hi1, ii1 = _descale(dct.IDCT_SHIFT1)
    hi2, ii2 = _descale(dct.IDCT_SHIFT2)
    consts = {
        "_ycc_m": dct.RGB_TO_YCC.T.astype(f64), "_ycc_off": (dct.RGB_TO_YCC_OFFSET.astype(f64)),
        "_rgb_m": dct.YCC_TO_RGB.T.astype(f64),
        "_fp1t": dct.FDCT_PASS1.T.astype(f64), "_fh1": h1, "_fi1": i1,
        "_fp2": dct.FDCT_PASS2.astype(f64), "_fh2": h2[:, None], "_fi2": i2[:, None],
        "_idct": dct.IDCT.astype(f64), "_idctt": dct.IDCT.T.astype(f64),
        "_ih1": hi1[:, None], "_ii1": ii1[:, None], "_ih2": hi2, "_ii2": ii2,
        "_inv16": np.array(2.0 ** -16, f64), "_half16": np.array(2.0 ** 15, f64),
        "_zero": np.array(0.0, f64), "_c255": np.array(255.0, f64), "_c128": np.array(128.0, f64),
        "_c8": np.array(8.0, f64), "_c4": np.array(4.0, f64),
        "_i0": np.array([0], np.int64), "_i1": np.array([1], np.int64), "_i3": np.array([3], np.int64),
        "_i23": np.array([2, 3], np.int64), "_i00": np.array([0, 0], np.int64),
    }
    nodes = [_const(name, value) for name, value in consts.items()]

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def descale(x: str, half: str, inv: str, out: str) -> str:
        return node("Floor", [node("Mul", [node("Add", [x, half], out + "_h"), inv], out + "_s")], out)

    double = TensorProto.DOUBLE
    # normalised input -> 8-bit RGB samples, exactly (the input came from whole pixels)
    x = node("Gather", [node("Cast", ["X"], "_x", to=double), "perm"], "_xrgb", axis=1)
    mean, std = node("Cast", ["mean"], "_mean", to=double), node("Cast", ["std"], "_std", to=double)
    pixels = node("Clip", [node("Round", [node("Add", [node("Mul", [x, std], "_xs"), mean], "_xm")], "_xr"),
                           "_zero", "_c255"], "_pix")
    padded = node("Pad", [pixels, "pads"], "_pad", mode="edge")
    # RGB -> YCbCr (jccolor.c), per pixel: floor((M @ rgb + offset) / 2^16)
    nhwc = node("Transpose", [padded], "_nhwc", perm=[0, 2, 3, 1])
    ycc = node("Floor", [node("Mul", [node("Add", [node("MatMul", [nhwc, "_ycc_m"], "_yccm"), "_ycc_off"], "_ycco"),
                                      "_inv16"], "_yccs")], "_ycc")
    centred = node("Sub", [node("Transpose", [ycc], "_yccn", perm=[0, 3, 1, 2]), "_c128"], "_ctr")
    blocks = node("Transpose", [node("Reshape", [centred, "blocks"], "_blk6")], "_blk", perm=[0, 1, 2, 4, 3, 5])
    # islow FDCT: rows then columns, each an integer matrix and a rounding shift
    rows = descale(node("MatMul", [blocks, "_fp1t"], "_r"), "_fh1", "_fi1", "_rows")
    coef = descale(node("MatMul", ["_fp2", rows], "_c"), "_fh2", "_fi2", "_coef")
    # quantize / dequantize with the per-component tables [3,1,1,8,8] (Y: luma; Cb, Cr: chroma)
    luma, chroma = node("Cast", ["luma"], "_luma", to=double), node("Cast", ["chroma"], "_chroma", to=double)
    steps = node("Reshape", [node("Concat", [luma, chroma, chroma], "_t3", axis=0),
                             node("Constant", [], "_tshape", value=numpy_helper.from_array(
                                 np.array([3, 1, 1, 8, 8], np.int64), "_tshape"))], "_steps")
    q8 = node("Mul", [steps, "_c8"], "_q8")
    mag = node("Floor", [node("Div", [node("Add", [node("Abs", [coef], "_abs"), node("Mul", [steps, "_c4"], "_q4")],
                                         "_num"), q8], "_div")], "_mag")
    dequant = node("Mul", [node("Mul", [mag, node("Sign", [coef], "_sign")], "_q"), steps], "_deq")
    # islow IDCT: columns then rows; samples = clip(x + 128, 0, 255)
    cols = descale(node("MatMul", ["_idct", dequant], "_ic"), "_ih1", "_ii1", "_cols")
    spatial = descale(node("MatMul", [cols, "_idctt"], "_ir"), "_ih2", "_ii2", "_sp")
    samples = node("Clip", [node("Add", [spatial, "_c128"], "_sp128"), "_zero", "_c255"], "_smp")
    planes = node("Reshape", [node("Transpose", [samples], "_ub", perm=[0, 1, 2, 4, 3, 5]), "plane"], "_planes")
    # YCbCr -> RGB (jdcolor.c): Y + floor((M @ (CbCr - 128) + 2^15) / 2^16), clipped to 0..255
    y = node("Slice", [planes, "_i0", "_i1", "_i1"], "_y")
    cbcr = node("Sub", [node("Slice", [planes, "_i1", "_i3", "_i1"], "_cbcr0"), "_c128"], "_cbcr")
    delta = node("MatMul", [node("Transpose", [cbcr], "_cbcrt", perm=[0, 2, 3, 1]), "_rgb_m"], "_drgb")
    delta = descale(delta, "_half16", "_inv16", "_dfl")
    rgb = node("Clip", [node("Add", [node("Transpose", [delta], "_dn", perm=[0, 3, 1, 2]), y], "_rgb0"),
                        "_zero", "_c255"], "_rgb")
    cropped = node("Slice", [rgb, "_i00", "size", "_i23"], "_crop")
    # back to the model's normalisation, in float32 like featcomp.preprocess
    norm = node("Div", [node("Sub", [node("Cast", [cropped], "_f32", to=TensorProto.FLOAT), "mean"], "_sub"), "std"],
                "_norm")
    node("Gather", [norm, "perm"], "Y", axis=1)
    return helper.make_function(
        domain=LEARNED_JPEG.domain, fname=LEARNED_JPEG.name, inputs=LEARNED_JPEG.input_names,
        outputs=[p.name for p in LEARNED_JPEG.outputs], nodes=nodes,
        opset_imports=[helper.make_opsetid("", max(opset, MIN_OPSET))], attributes=[],
        doc_string=LEARNED_JPEG.doc)


__all__ = ["DOMAIN", "LEARNED_JPEG", "MIN_OPSET", "VERSION", "learned_jpeg"]
