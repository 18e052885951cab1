"""The ops featcomp adds to a model: named once here, implemented by the numpy codecs, the ONNX
function bodies (functions.py) and, later, the TVM kernels. Tests hold all of them to these names.
"""

from __future__ import annotations

from dataclasses import dataclass

DOMAIN = "ai.featcomp"
VERSION = 1


@dataclass(frozen=True)
class Port:
    name: str
    type: str
    doc: str


@dataclass(frozen=True)
class OpSchema:
    name: str
    doc: str
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    attributes: tuple[Port, ...] = ()
    domain: str = DOMAIN
    version: int = VERSION

    @property
    def input_names(self) -> list[str]:
        return [p.name for p in self.inputs]


DCTCM_ENCODE = OpSchema(
    name="DctCmEncode",
    doc=(
        "DCT-CM encoder. q = clip(round(X / scale), qmin, qmax); per pixel, channels in groups of G: "
        "y = transform @ q; symbols = min(max(round(y / step), cmin), cmax), int16, same shape as X. "
        "transform is integer-valued, so the symbols are bit-exact across runtimes. The side arrays are stored in "
        "the narrowest type that holds their values exactly (int8/int16, float16) and cast to float first."
    ),
    inputs=(
        Port("X", "tensor(float) [N,C,H,W]", "activation"),
        Port("scale", "tensor(float) []", "8-bit quantization step"),
        Port("qmin", "tensor(float) []", "0 (uint8) or -127 (int8)"),
        Port("qmax", "tensor(float) []", "255 or 127"),
        Port("transform", "tensor(int8|int16|float) [G,G]", "integer channel transform (identity when G=1)"),
        Port("step", "tensor(float16|float) [G,1]", "per-frequency quantization step"),
        Port("cmin", "tensor(int8|int16|float) [G,1]", "per-frequency lower clip (integer)"),
        Port("cmax", "tensor(int8|int16|float) [G,1]", "per-frequency upper clip (integer)"),
    ),
    outputs=(Port("Y", "tensor(int16) [N,C,H,W]", "symbols: the integer payload the bitstream codes"),),
    attributes=(
        Port("kinds", "ints [C]", "coding of each channel: 0 drop, 1 dense, 2 mask (used by the bitstream packer)"),
        Port("rice_k", "ints [C]", "Golomb-Rice parameter of each channel (used by the bitstream packer)"),
        Port("shape", "ints [3]", "C, H, W of one sample (used by the bitstream header)"),
    ),
)

DCTCM_DECODE = OpSchema(
    name="DctCmDecode",
    doc="DCT-CM decoder. Per pixel, per group of G symbols: X = decode @ symbols (decode folds dequantization, "
        "the inverse transform and the 8-bit scale into one G x G matrix).",
    inputs=(
        Port("Y", "tensor(int16) [N,C,H,W]", "symbols from DctCmEncode"),
        Port("decode", "tensor(float16|float) [G,G]", "scale * inverse(transform) * diag(step)"),
    ),
    outputs=(Port("X", "tensor(float) [N,C,H,W]", "reconstructed activation"),),
)

TVLC_ENCODE = OpSchema(
    name="TvlcEncode",
    doc=(
        "Transform-VLC encoder (the transform and quantizer half; the variable-length code is the bitstream's). "
        "q = clip(round(X / scale), qmin, qmax); per pixel, channels in K = C/G groups of G: "
        "y_k = float(transform[k]) @ q_k (an integer approximation of the group's calibrated PCA basis, a DCT, or "
        "the identity, exact in float32); u = y / step; symbols = min(max(max(round(u - deadzone), "
        "min(round(u + deadzone), centre)), float(cmin)), float(cmax)), int16: a dead zone that rounds toward each "
        "coefficient's centre (round(u) exactly at deadzone = 0). The same arithmetic as DctCmEncode, with one "
        "transform per group, the dead zone, and integer side arrays stored as int16."
    ),
    inputs=(
        Port("X", "tensor(float) [N,C,H,W]", "activation"),
        Port("scale", "tensor(float) []", "8-bit quantization step"),
        Port("qmin", "tensor(float) []", "0 (uint8) or -127 (int8)"),
        Port("qmax", "tensor(float) []", "255 or 127"),
        Port("transform", "tensor(int16) [K,G,G]", "integer transform of each group of G channels"),
        Port("step", "tensor(float) []", "quantization step of every coefficient (rows of transform share one norm)"),
        Port("cmin", "tensor(int16) [K,G,1]", "per-coefficient lower clip"),
        Port("cmax", "tensor(int16) [K,G,1]", "per-coefficient upper clip (cmin == cmax: a constant, not coded)"),
        Port("centre", "tensor(int8|int16) [K,G,1] or [1,1,1]", "the coder's centre of each coefficient, which the "
             "dead zone rounds toward (any value at deadzone = 0); optional: absent in models written before it"),
        Port("deadzone", "tensor(int8|float16|float) []", "rounding offset in [0, 0.5): encoder only, the decoder "
             "and the bitstream do not depend on it; optional, absent means 0"),
    ),
    outputs=(Port("Y", "tensor(int16) [N,C,H,W]", "symbols: the integer payload the variable-length code codes"),),
    attributes=(
        Port("coder", "string", "the frozen entropy coder: per-channel centres, table classes and Huffman tables"),
        Port("transform_kind", "string", "pca, dct or none (informational)"),
        Port("shape", "ints [3]", "C, H, W of one sample (used by the bitstream header)"),
    ),
)

TVLC_DECODE = OpSchema(
    name="TvlcDecode",
    doc="Transform-VLC decoder. Per pixel, per group k of G symbols: X_k = (float(transform[k])^T * gain) @ symbols_k. "
        "The transform's rows are orthonormal times 2**B to within their integer rounding, so its transpose times "
        "gain = scale * step / 4**B inverts it; the decoder reads the encoder's int16 transform, not a float matrix.",
    inputs=(
        Port("Y", "tensor(int16) [N,C,H,W]", "symbols from TvlcEncode"),
        Port("transform", "tensor(int16) [K,G,G]", "the encoder's transform"),
        Port("gain", "tensor(float) []", "scale * step / 4**B"),
    ),
    outputs=(Port("X", "tensor(float) [N,C,H,W]", "reconstructed activation"),),
)

OPS: dict[str, OpSchema] = {op.name: op for op in (DCTCM_ENCODE, DCTCM_DECODE, TVLC_ENCODE, TVLC_DECODE)}

# Which op pair implements which codec, and which side arrays (SiteCodec.side_arrays keys) feed each op.
PAIRS: dict[str, tuple[OpSchema, OpSchema]] = {
    "dct-cm": (DCTCM_ENCODE, DCTCM_DECODE),
    "transform-vlc": (TVLC_ENCODE, TVLC_DECODE),
}
