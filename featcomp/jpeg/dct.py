"""The numpy reference of the learned-JPEG node: libjpeg's own integer arithmetic, so it is exact.

Why integer: the node must equal decoding the file Pillow writes. Pillow encodes and decodes with
libjpeg(-turbo) using its defaults: fixed-point RGB<->YCbCr (16 fraction bits), the "islow" integer
8x8 DCT and IDCT (13-bit constants, two passes with rounding shifts) and quantization that rounds
half away from zero. A float DCT differs from that by +-1 in a few coefficients near rounding
boundaries, and the pixels by a few levels. Every islow output is DESCALE(integer linear
combination of its 8 inputs), so each pass here is one integer 8x8 matrix product (matrices derived
from the C butterflies below) and a rounding shift; the ONNX body uses the same matrices in float64,
where all these integers are exact. Tests hold the quantized coefficients to the ones read from the
file (jpeglib) and the pixels to Pillow's decode.

Chroma is either kept at full size (4:4:4, Pillow's ``subsampling=0``) or halved both ways (4:2:0,
Pillow's default ``subsampling=2``), as the tables say; the writer and the node follow the same
setting. At 4:2:0 the encoder averages each 2x2 square with libjpeg's alternating rounding bias
(jcsample.c h2v2_downsample: 1, 2, 1, 2, ... along a row) and the decoder interpolates with its
"fancy" triangular filter (jdsample.c h2v2_fancy_upsample: 9/16, 3/16, 3/16, 1/16, biases 8 and 7),
which is what libjpeg-turbo uses when do_fancy_upsampling is on (its default, and Pillow's unless
draft mode is asked for; the merged upsampler is the non-fancy path). Images whose sides are not
multiples of 8 (16 for 4:2:0 luma MCUs) are padded by repeating the last row/column, as libjpeg
does, and cropped back after decoding; blocks that only fill out an MCU are "dummy" blocks no
decoder shows.
"""

from __future__ import annotations

import numpy as np

from featcomp.errors import FeatcompError

__all__ = [
    "DCT_ORTHO", "FDCT_PASS1", "FDCT_PASS2", "FDCT_SHIFT1", "FDCT_SHIFT2", "IDCT", "IDCT_SHIFT1", "IDCT_SHIFT2",
    "RGB_TO_YCC", "RGB_TO_YCC_OFFSET", "SUBSAMPLINGS", "YCC_TO_RGB", "chroma_size", "check_subsampling",
    "coefficients", "descale", "downsample", "forward_blocks", "from_ycc", "inverse_blocks", "pad8", "quantize",
    "roundtrip", "samples", "to_ycc", "upsample",
]

#: chroma settings featcomp writes and models: full-size chroma, or halved both ways (Pillow's default)
SUBSAMPLINGS = ("4:4:4", "4:2:0")

CONST_BITS, PASS1_BITS, SCALEBITS = 13, 2, 16


def _fix(x: float, bits: int) -> int:
    return int(x * (1 << bits) + 0.5)


# jfdctint.c / jidctint.c constants, FIX(x) with CONST_BITS = 13
F0298, F0390, F0541, F0765, F0899, F1175 = (_fix(v, CONST_BITS) for v in (0.298631336, 0.390180644, 0.541196100,
                                                                         0.765366865, 0.899976223, 1.175875602))
F1501, F1847, F1961, F2053, F2562, F3072 = (_fix(v, CONST_BITS) for v in (1.501321110, 1.847759065, 1.961570560,
                                                                         2.053119869, 2.562915447, 3.072711026))


def _fdct_butterfly(d: np.ndarray) -> np.ndarray:
    """jpeg_fdct_islow's 1-D step before its rounding shift, on the last axis.

    Outputs 0 and 4 are the plain even sums (libjpeg shifts them left in pass 1, right by PASS1_BITS
    in pass 2); the others are scaled by 2^CONST_BITS.
    """
    d = d.astype(np.int64)
    tmp0, tmp7 = d[..., 0] + d[..., 7], d[..., 0] - d[..., 7]
    tmp1, tmp6 = d[..., 1] + d[..., 6], d[..., 1] - d[..., 6]
    tmp2, tmp5 = d[..., 2] + d[..., 5], d[..., 2] - d[..., 5]
    tmp3, tmp4 = d[..., 3] + d[..., 4], d[..., 3] - d[..., 4]
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    out = np.empty_like(d)
    out[..., 0], out[..., 4] = tmp10 + tmp11, tmp10 - tmp11
    z1 = (tmp12 + tmp13) * F0541
    out[..., 2], out[..., 6] = z1 + tmp13 * F0765, z1 - tmp12 * F1847
    z1, z2, z3, z4 = tmp4 + tmp7, tmp5 + tmp6, tmp4 + tmp6, tmp5 + tmp7
    z5 = (z3 + z4) * F1175
    tmp4, tmp5, tmp6, tmp7 = tmp4 * F0298, tmp5 * F2053, tmp6 * F3072, tmp7 * F1501
    z1, z2, z3, z4 = -z1 * F0899, -z2 * F2562, -z3 * F1961 + z5, -z4 * F0390 + z5
    out[..., 7], out[..., 5] = tmp4 + z1 + z3, tmp5 + z2 + z4
    out[..., 3], out[..., 1] = tmp6 + z2 + z3, tmp7 + z1 + z4
    return out


def _idct_butterfly(z: np.ndarray) -> np.ndarray:
    """jpeg_idct_islow's 1-D step before its rounding shift (every output scaled by 2^CONST_BITS)."""
    z = z.astype(np.int64)
    a1 = (z[..., 2] + z[..., 6]) * F0541
    tmp2, tmp3 = a1 - z[..., 6] * F1847, a1 + z[..., 2] * F0765
    tmp0, tmp1 = (z[..., 0] + z[..., 4]) << CONST_BITS, (z[..., 0] - z[..., 4]) << CONST_BITS
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    o0, o1, o2, o3 = z[..., 7], z[..., 5], z[..., 3], z[..., 1]
    z1, z2, z3, z4 = o0 + o3, o1 + o2, o0 + o2, o1 + o3
    z5 = (z3 + z4) * F1175
    o0, o1, o2, o3 = o0 * F0298, o1 * F2053, o2 * F3072, o3 * F1501
    z1, z2, z3, z4 = -z1 * F0899, -z2 * F2562, -z3 * F1961 + z5, -z4 * F0390 + z5
    o0, o1, o2, o3 = o0 + z1 + z3, o1 + z2 + z4, o2 + z2 + z3, o3 + z1 + z4
    return np.stack([tmp10 + o3, tmp11 + o2, tmp12 + o1, tmp13 + o0,
                     tmp13 - o0, tmp12 - o1, tmp11 - o2, tmp10 - o3], axis=-1)


_EYE = np.eye(8, dtype=np.int64)
_FB = _fdct_butterfly(_EYE).T            # [k, j]: pre-shift output k per input j
_EVEN = np.isin(np.arange(8), (0, 4))
#: pass 1 (rows): out = descale(FDCT_PASS1 @ row, FDCT_SHIFT1); even outputs are shifted left by PASS1_BITS
FDCT_PASS1 = np.where(_EVEN[:, None], _FB << PASS1_BITS, _FB)
FDCT_SHIFT1 = np.where(_EVEN, 0, CONST_BITS - PASS1_BITS)
#: pass 2 (columns)
FDCT_PASS2 = _FB
FDCT_SHIFT2 = np.where(_EVEN, PASS1_BITS, CONST_BITS + PASS1_BITS)
#: both IDCT passes: out = descale(IDCT @ column, shift); pass 2 also removes the DCT's factor of 8
IDCT = _idct_butterfly(_EYE).T
IDCT_SHIFT1 = np.full(8, CONST_BITS - PASS1_BITS)
IDCT_SHIFT2 = np.full(8, CONST_BITS + PASS1_BITS + 3)

# jccolor.c rgb_ycc_convert and jdcolor.c ycc_rgb_convert, fixed point with SCALEBITS = 16
_Y = [_fix(0.29900, SCALEBITS), _fix(0.58700, SCALEBITS), _fix(0.11400, SCALEBITS)]
RGB_TO_YCC = np.array([_Y, [-_fix(0.16874, SCALEBITS), -_fix(0.33126, SCALEBITS), _fix(0.5, SCALEBITS)],
                       [_fix(0.5, SCALEBITS), -_fix(0.41869, SCALEBITS), -_fix(0.08131, SCALEBITS)]], dtype=np.int64)
_HALF = 1 << (SCALEBITS - 1)
RGB_TO_YCC_OFFSET = np.array([_HALF, (128 << SCALEBITS) + _HALF - 1, (128 << SCALEBITS) + _HALF - 1], dtype=np.int64)
#: [R, G, B] = Y + floor((YCC_TO_RGB @ [Cb-128, Cr-128] + half) / 2^16)
YCC_TO_RGB = np.array([[0, _fix(1.40200, SCALEBITS)],
                       [-_fix(0.34414, SCALEBITS), -_fix(0.71414, SCALEBITS)],
                       [_fix(1.77200, SCALEBITS), 0]], dtype=np.int64)

#: orthonormal 8-point DCT-II matrix; islow's coefficients are about 8x these (1x after quantization's /8)
DCT_ORTHO = np.array([[np.sqrt((1 if k == 0 else 2) / 8) * np.cos((2 * n + 1) * k * np.pi / 16) for n in range(8)]
                      for k in range(8)])


def descale(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """libjpeg's DESCALE: round half up, then arithmetic shift right (shift 0 leaves x alone)."""
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    return np.right_shift(x + half, shift)


def to_ycc(rgb: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> int64 [..., 3] YCbCr, bit-exact with libjpeg's encoder."""
    x = np.asarray(rgb).astype(np.int64)
    return np.right_shift(x @ RGB_TO_YCC.T + RGB_TO_YCC_OFFSET, SCALEBITS)


def from_ycc(ycc: np.ndarray) -> np.ndarray:
    """int [..., 3] YCbCr samples (0..255) -> uint8 [..., 3] RGB, bit-exact with libjpeg's decoder."""
    ycc = np.asarray(ycc).astype(np.int64)
    chroma = ycc[..., 1:] - 128
    rgb = ycc[..., :1] + np.right_shift(chroma @ YCC_TO_RGB.T + _HALF, SCALEBITS)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def pad8(image: np.ndarray) -> np.ndarray:
    """[H, W, C] -> sides rounded up to multiples of 8 by repeating the last row/column (libjpeg's edge)."""
    h, w = image.shape[:2]
    if h < 8 or w < 8:
        raise FeatcompError(f"image is {w}x{h}; the JPEG node needs at least 8x8 pixels (one DCT block)")
    return np.pad(image, ((0, -h % 8), (0, -w % 8), (0, 0)), mode="edge")


def check_subsampling(subsampling: object) -> str:
    """The subsampling name, or one line saying which ones exist."""
    if subsampling not in SUBSAMPLINGS:
        raise FeatcompError(f"chroma subsampling {subsampling!r} is not supported; use {' or '.join(SUBSAMPLINGS)}")
    return str(subsampling)


def chroma_size(h: int, w: int) -> tuple[int, int]:
    """Height and width of a 4:2:0 chroma plane of an h x w image (libjpeg's downsampled_height/width)."""
    return -(-h // 2), -(-w // 2)


def downsample(plane: np.ndarray) -> np.ndarray:
    """Full-size chroma samples [..., H, W] -> 4:2:0 samples padded to whole blocks, bit-exact with libjpeg.

    libjpeg first repeats the last column out to twice the padded chroma width and the last row to an even
    height, averages each 2x2 square as (sum + bias) >> 2 with bias 1, 2, 1, 2, ... along the row, then
    repeats the last averaged row down to a whole block row. The columns past the image are averaged too,
    so the alternating bias reaches the padding: it is not the same as padding the averaged plane.
    """
    plane = np.asarray(plane).astype(np.int64)
    *lead, h, w = plane.shape
    hd, wd = chroma_size(h, w)
    wc = -(-wd // 8) * 8
    edge = [(0, 0)] * len(lead)
    full = np.pad(plane, edge + [(0, 2 * hd - h), (0, 2 * wc - w)], mode="edge")
    sums = full[..., 0::2, 0::2] + full[..., 0::2, 1::2] + full[..., 1::2, 0::2] + full[..., 1::2, 1::2]
    averaged = np.right_shift(sums + np.where(np.arange(wc) % 2 == 0, 1, 2), 2)
    return np.pad(averaged, edge + [(0, -hd % 8), (0, 0)], mode="edge")


def upsample(plane: np.ndarray, h: int, w: int) -> np.ndarray:
    """Decoded 4:2:0 chroma [..., >=H/2, >=W/2] -> [..., h, w]: libjpeg's fancy (triangular) upsampling.

    Each output sample is 3/4 the nearer and 1/4 the farther input, vertically then horizontally (the
    vertical sums stay exact): out = (3 a + b + 8) >> 4 on the left, (3 a + b + 7) >> 4 on the right,
    a, b the vertical sums 3 near + far. Edges repeat the last real chroma sample (not the block padding).
    """
    hd, wd = chroma_size(h, w)
    x = np.asarray(plane).astype(np.int64)[..., :hd, :wd]
    lead = [(0, 0)] * (x.ndim - 2)
    x = np.pad(x, lead + [(1, 1), (1, 1)], mode="edge")
    out = np.empty((*x.shape[:-2], 2 * hd, 2 * wd), np.int64)
    for v, far in ((0, x[..., :-2, :]), (1, x[..., 2:, :])):
        sums = 3 * x[..., 1:-1, :] + far                                   # [..., hd, wd + 2]
        centre = 3 * sums[..., 1:-1]
        out[..., v::2, 0::2] = np.right_shift(centre + sums[..., :-2] + 8, 4)
        out[..., v::2, 1::2] = np.right_shift(centre + sums[..., 2:] + 7, 4)
    return out[..., :h, :w]


def _blocks(plane: np.ndarray) -> np.ndarray:
    """[..., H, W] -> [..., H/8, W/8, 8, 8] (block rows, block columns, row in block, column in block)."""
    *lead, h, w = plane.shape
    return plane.reshape(*lead, h // 8, 8, w // 8, 8).swapaxes(-3, -2)


def _unblocks(blocks: np.ndarray) -> np.ndarray:
    *lead, bh, bw, _, _ = blocks.shape
    return blocks.swapaxes(-3, -2).reshape(*lead, bh * 8, bw * 8)


def forward_blocks(samples: np.ndarray) -> np.ndarray:
    """Level-shifted islow FDCT of [..., H, W] samples 0..255 -> [..., H/8, W/8, 8, 8], natural [u][v], 8x scaled."""
    b = _blocks(np.asarray(samples).astype(np.int64) - 128)
    rows = descale(b @ FDCT_PASS1.T, FDCT_SHIFT1)                          # [.., r, k]: horizontal
    return descale(FDCT_PASS2 @ rows, FDCT_SHIFT2[:, None])                   # [.., u, v]: vertical


def inverse_blocks(dequantized: np.ndarray) -> np.ndarray:
    """islow IDCT of dequantized [..., H/8, W/8, 8, 8] coefficients -> [..., H, W] samples 0..255."""
    z = np.asarray(dequantized).astype(np.int64)
    cols = descale(IDCT @ z, IDCT_SHIFT1[:, None])                                # [.., n, v]: vertical
    pixels = descale(cols @ IDCT.T, IDCT_SHIFT2)                                  # [.., n, m]
    return np.clip(_unblocks(pixels) + 128, 0, 255)


def quantize(coef: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """libjpeg's quantizer for islow: round(|c| / 8q) half up, sign restored (the /8 undoes the FDCT's scale)."""
    q8 = np.asarray(steps, dtype=np.int64) * 8
    mag = (np.abs(coef) + q8 // 2) // q8
    return np.where(coef < 0, -mag, mag)


def _steps(tables: object) -> tuple[np.ndarray, np.ndarray]:
    luma = np.asarray(getattr(tables, "luma"), np.int64).reshape(8, 8)
    chroma = np.asarray(getattr(tables, "chroma"), np.int64).reshape(8, 8)
    return luma, chroma


def samples(rgb: np.ndarray, subsampling: str = "4:4:4") -> list[np.ndarray]:
    """The three component planes libjpeg transforms, padded to whole blocks: Y, Cb, Cr (int64 0..255).

    4:4:4: all [H8, W8]; 4:2:0: Y [H8, W8] and the chroma planes downsampled (see ``downsample``).
    """
    rgb = np.asarray(rgb)
    if check_subsampling(subsampling) == "4:4:4":
        ycc = to_ycc(pad8(rgb))
        return [ycc[..., c] for c in range(3)]
    ycc = to_ycc(rgb)
    return [pad8(ycc[..., :1])[..., 0]] + [downsample(ycc[..., c]) for c in (1, 2)]


def coefficients(rgb: np.ndarray, tables: object) -> list[np.ndarray]:
    """Quantized coefficients of an RGB uint8 [H, W, 3] image as libjpeg writes them (the tables' subsampling).

    One int64 array [blocks down, blocks across, 8, 8] per component (Y, Cb, Cr), natural order in each
    block; at 4:2:0 the chroma arrays cover the halved planes (MCU dummy blocks are not included).
    """
    luma, chroma = _steps(tables)
    planes = samples(rgb, getattr(tables, "subsampling", "4:4:4"))
    return [quantize(forward_blocks(p), luma if c == 0 else chroma) for c, p in enumerate(planes)]


def roundtrip(rgb: np.ndarray, tables: object) -> np.ndarray:
    """What a decoder shows for the file written with ``tables``: RGB uint8 [H, W, 3] -> the same shape."""
    rgb = np.asarray(rgb)
    h, w = rgb.shape[:2]
    luma, chroma = _steps(tables)
    planes = [inverse_blocks(q * (luma if c == 0 else chroma)) for c, q in enumerate(coefficients(rgb, tables))]
    if getattr(tables, "subsampling", "4:4:4") == "4:2:0":
        planes = [planes[0][:h, :w]] + [upsample(p, h, w) for p in planes[1:]]
    return from_ycc(np.stack(planes, axis=-1)[:h, :w])
