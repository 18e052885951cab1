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

from dataclasses import replace
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from featcomp.jpeg import dct
from featcomp.jpeg.dct import check_subsampling
from featcomp.ops.schemas import DOMAIN, VERSION, OpSchema, Port

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

#: the same op with 4:2:0 chroma: the node says so in its ``subsampling`` attribute, and takes the chroma
#: planes' geometry as five more inputs (the body is the one written for that attribute value)
LEARNED_JPEG_420 = replace(
    LEARNED_JPEG,
    doc=(
        "Baseline-JPEG round trip with 4:2:0 chroma, bit-exact with libjpeg(-turbo) (islow DCT, h2v2 "
        "downsampling, fancy upsampling). As the 4:4:4 op for Y; Cb and Cr are edge-expanded to "
        "chroma_pads, averaged per 2x2 as (sum + bias) >> 2 with bias 1, 2, 1, 2, ... along the row, "
        "padded down to whole blocks (chroma_rows), coded with the chroma table, cropped to chroma_size "
        "and upsampled by libjpeg's triangular filter: per output sample (3 (3 near + far) + (3 near' + "
        "far') + 8 or 7) >> 4, edges repeated."
    ),
    inputs=LEARNED_JPEG.inputs + (
        Port("chroma_pads", "tensor(int64) [8]", "Pad amounts: chroma H to an even height, W to 16 x chroma blocks"),
        Port("chroma_rows", "tensor(int64) [8]", "Pad amounts: halved chroma H to whole blocks"),
        Port("chroma_blocks", "tensor(int64) [6]", "[0, 0, Hc8/8, 8, Wc8/8, 8]: the chroma planes as 8x8 blocks"),
        Port("chroma_plane", "tensor(int64) [4]", "[0, 0, Hc8, Wc8]"),
        Port("chroma_size", "tensor(int64) [2]", "[ceil(H/2), ceil(W/2)]: the real chroma samples"),
    ),
    attributes=(Port("subsampling", "string", "'4:2:0' (absent: 4:4:4, the op above)"),),
)


def _const(name: str, array: np.ndarray) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(array, name))


def _descale(shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(half, 2^-shift) as float64 arrays, so DESCALE(x) = Floor((x + half) * inv) exactly."""
    half = np.where(shift > 0, np.exp2(np.maximum(shift - 1, 0)), 0.0)
    return half.astype(np.float64), np.exp2(-shift.astype(np.float64))


def learned_jpeg(opset: int, subsampling: str = "4:4:4") -> onnx.FunctionProto:
    """The LearnedJpeg body for a model whose default-domain opset is ``opset`` (>= 11).

    4:4:4 codes the three full-size planes together. 4:2:0 codes Y at full size and Cb, Cr halved: the
    2x2 sums come from SpaceToDepth, libjpeg's alternating bias (1, 2) is added on a [..., W/2, 2] view,
    and fancy upsampling is edge Pad, Slices and the 3/4-1/4 sums, interleaved back by DepthToSpace.
    """
    check_subsampling(subsampling)
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
    if subsampling == "4:2:0":
        consts.update({
            "_c3": np.array(3.0, f64), "_c7": np.array(7.0, f64), "_quarter": np.array(0.25, f64),
            "_sixteenth": np.array(1.0 / 16.0, f64), "_bias": np.array([1.0, 2.0], f64),
            "_pairs": np.array([0, 0, 0, -1, 2], np.int64), "_unpairs": np.array([0, 0, 0, -1], np.int64),
            "_edge1": np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64),
            "_i2": np.array([2], np.int64), "_i4": np.array([4], np.int64), "_i5": np.array([5], np.int64),
            "_i6": np.array([6], np.int64), "_i8": np.array([8], np.int64), "_im1": np.array([-1], np.int64),
            "_im2": np.array([-2], np.int64), "_iend": np.array([np.iinfo(np.int64).max], np.int64),
        })
    nodes = [_const(name, value) for name, value in consts.items()]

    def node(op: str, inputs: list[str], output: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attrs))
        return output

    def descale(x: str, half: str, inv: str, out: str) -> str:
        return node("Floor", [node("Mul", [node("Add", [x, half], out + "_h"), inv], out + "_s")], out)

    def code(centred: str, blocks: str, steps: str, plane: str, p: str) -> str:
        """Centred sample planes [N,C,H8,W8] -> decoded samples, same shape: FDCT, quantize, dequantize, IDCT."""
        blk = node("Transpose", [node("Reshape", [centred, blocks], p + "_blk6")], p + "_blk", perm=[0, 1, 2, 4, 3, 5])
        # islow FDCT: rows then columns, each an integer matrix and a rounding shift
        rows = descale(node("MatMul", [blk, "_fp1t"], p + "_r"), "_fh1", "_fi1", p + "_rows")
        coef = descale(node("MatMul", ["_fp2", rows], p + "_c"), "_fh2", "_fi2", p + "_coef")
        # q = sign(c) floor((|c| + 4T) / 8T); c' = q T
        q8 = node("Mul", [steps, "_c8"], p + "_q8")
        mag = node("Floor", [node("Div", [node("Add", [node("Abs", [coef], p + "_abs"),
                                                       node("Mul", [steps, "_c4"], p + "_q4")], p + "_num"), q8],
                                  p + "_div")], p + "_mag")
        dequant = node("Mul", [node("Mul", [mag, node("Sign", [coef], p + "_sign")], p + "_q"), steps], p + "_deq")
        # islow IDCT: columns then rows; samples = clip(x + 128, 0, 255)
        cols = descale(node("MatMul", ["_idct", dequant], p + "_ic"), "_ih1", "_ii1", p + "_cols")
        spatial = descale(node("MatMul", [cols, "_idctt"], p + "_ir"), "_ih2", "_ii2", p + "_sp")
        samples = node("Clip", [node("Add", [spatial, "_c128"], p + "_sp128"), "_zero", "_c255"], p + "_smp")
        return node("Reshape", [node("Transpose", [samples], p + "_ub", perm=[0, 1, 2, 4, 3, 5]), plane], p + "_planes")

    double = TensorProto.DOUBLE
    # normalised input -> 8-bit RGB samples, exactly (the input came from whole pixels)
    x = node("Gather", [node("Cast", ["X"], "_x", to=double), "perm"], "_xrgb", axis=1)
    mean, std = node("Cast", ["mean"], "_mean", to=double), node("Cast", ["std"], "_std", to=double)
    pixels = node("Clip", [node("Round", [node("Add", [node("Mul", [x, std], "_xs"), mean], "_xm")], "_xr"),
                           "_zero", "_c255"], "_pix")
    luma, chroma = node("Cast", ["luma"], "_luma", to=double), node("Cast", ["chroma"], "_chroma", to=double)

    def to_ycc(rgb: str, p: str) -> str:
        """RGB -> YCbCr (jccolor.c), per pixel: floor((M @ rgb + offset) / 2^16), NCHW in and out."""
        nhwc = node("Transpose", [rgb], p + "_nhwc", perm=[0, 2, 3, 1])
        ycc = node("Floor", [node("Mul", [node("Add", [node("MatMul", [nhwc, "_ycc_m"], p + "_yccm"), "_ycc_off"],
                                               p + "_ycco"), "_inv16"], p + "_yccs")], p + "_ycc")
        return node("Transpose", [ycc], p + "_yccn", perm=[0, 3, 1, 2])

    if subsampling == "4:4:4":
        padded = node("Pad", [pixels, "pads"], "_pad", mode="edge")
        centred = node("Sub", [to_ycc(padded, ""), "_c128"], "_ctr")
        # per-component tables [3,1,1,8,8] (Y: luma; Cb, Cr: chroma)
        steps = node("Reshape", [node("Concat", [luma, chroma, chroma], "_t3", axis=0),
                                 node("Constant", [], "_tshape", value=numpy_helper.from_array(
                                     np.array([3, 1, 1, 8, 8], np.int64), "_tshape"))], "_steps")
        planes = code(centred, "blocks", steps, "plane", "")
        y = node("Slice", [planes, "_i0", "_i1", "_i1"], "_y")
        cbcr = node("Sub", [node("Slice", [planes, "_i1", "_i3", "_i1"], "_cbcr0"), "_c128"], "_cbcr")
    else:
        ycc = to_ycc(pixels, "")
        # luma: full size, padded to whole blocks by edge repetition, as at 4:4:4
        y_pad = node("Pad", [node("Slice", [ycc, "_i0", "_i1", "_i1"], "_y_in"), "pads"], "_y_pad", mode="edge")
        y_planes = code(node("Sub", [y_pad, "_c128"], "_y_ctr"), "blocks", luma, "plane", "_y")
        y = node("Slice", [y_planes, "_i00", "size", "_i23"], "_y")
        # chroma: edge-expand, 2x2 sums, + bias 1, 2, 1, 2, ... along the row, >> 2; repeat the last row
        full = node("Pad", [node("Slice", [ycc, "_i1", "_i3", "_i1"], "_c_in"), "chroma_pads"], "_c_full",
                    mode="edge")
        phases = node("SpaceToDepth", [full], "_c_s2d", blocksize=2)
        quarter = [node("Slice", [phases, a, b, "_i1"], f"_c_ph{k}")
                   for k, (a, b) in enumerate((("_i0", "_i2"), ("_i2", "_i4"), ("_i4", "_i6"), ("_i6", "_i8")))]
        sums = node("Add", [node("Add", [quarter[0], quarter[1]], "_c_s01"),
                            node("Add", [quarter[2], quarter[3]], "_c_s23")], "_c_sum")
        biased = node("Reshape", [node("Add", [node("Reshape", [sums, "_pairs"], "_c_pairs"), "_bias"], "_c_biased"),
                                  "_unpairs"], "_c_unpaired")
        down = node("Floor", [node("Mul", [biased, "_quarter"], "_c_avg")], "_c_down")
        c_pad = node("Pad", [down, "chroma_rows"], "_c_pad", mode="edge")
        c_planes = code(node("Sub", [c_pad, "_c128"], "_c_ctr"), "chroma_blocks", chroma, "chroma_plane", "_c")
        # fancy upsampling: vertical sums 3 near + far (far: the row above for even output rows, below for odd),
        # then (3 centre + left + 8) >> 4 and (3 centre + right + 7) >> 4; edges repeat the last real sample
        real = node("Slice", [c_planes, "_i00", "chroma_size", "_i23"], "_c_real")
        ext = node("Pad", [real, "_edge1"], "_c_ext", mode="edge")
        near3 = node("Mul", [node("Slice", [ext, "_i1", "_im1", "_i2"], "_c_near"), "_c3"], "_c_near3")
        outs = []
        for v, (a, b) in enumerate((("_i0", "_im2"), ("_i2", "_iend"))):
            col = node("Add", [near3, node("Slice", [ext, a, b, "_i2"], f"_c_far{v}")], f"_c_col{v}")
            centre = node("Mul", [node("Slice", [col, "_i1", "_im1", "_i3"], f"_c_mid{v}"), "_c3"], f"_c_mid3{v}")
            for h, (a2, b2, bias) in enumerate((("_i0", "_im2", "_c8"), ("_i2", "_iend", "_c7"))):
                side = node("Slice", [col, a2, b2, "_i3"], f"_c_side{v}{h}")
                total = node("Add", [node("Add", [centre, side], f"_c_t{v}{h}"), bias], f"_c_tb{v}{h}")
                outs.append(node("Floor", [node("Mul", [total, "_sixteenth"], f"_c_ts{v}{h}")], f"_c_up{v}{h}"))
        up = node("DepthToSpace", [node("Concat", outs, "_c_phases", axis=1)], "_c_up", blocksize=2, mode="DCR")
        chroma_up = node("Slice", [up, "_i00", "size", "_i23"], "_c_crop")
        cbcr = node("Sub", [chroma_up, "_c128"], "_cbcr")
    # YCbCr -> RGB (jdcolor.c): Y + floor((M @ (CbCr - 128) + 2^15) / 2^16), clipped to 0..255
    delta = node("MatMul", [node("Transpose", [cbcr], "_cbcrt", perm=[0, 2, 3, 1]), "_rgb_m"], "_drgb")
    delta = descale(delta, "_half16", "_inv16", "_dfl")
    rgb = node("Clip", [node("Add", [node("Transpose", [delta], "_dn", perm=[0, 3, 1, 2]), y], "_rgb0"),
                        "_zero", "_c255"], "_rgb")
    cropped = node("Slice", [rgb, "_i00", "size", "_i23"], "_crop")
    # back to the model's normalisation, in float32 like featcomp.preprocess
    norm = node("Div", [node("Sub", [node("Cast", [cropped], "_f32", to=TensorProto.FLOAT), "mean"], "_sub"), "std"],
                "_norm")
    node("Gather", [norm, "perm"], "Y", axis=1)
    schema = LEARNED_JPEG_420 if subsampling == "4:2:0" else LEARNED_JPEG
    return helper.make_function(
        domain=schema.domain, fname=schema.name, inputs=schema.input_names,
        outputs=[p.name for p in schema.outputs], nodes=nodes,
        opset_imports=[helper.make_opsetid("", max(opset, MIN_OPSET))],
        attributes=[a.name for a in schema.attributes], doc_string=schema.doc)


__all__ = ["DOMAIN", "LEARNED_JPEG", "LEARNED_JPEG_420", "MIN_OPSET", "VERSION", "learned_jpeg"]
