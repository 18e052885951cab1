"""The numpy reference is libjpeg, bit for bit: quantized coefficients equal the ones in the file Pillow
writes (read back with jpeglib), and the reference's decoded pixels equal Pillow's decode (tolerance 0)."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import needs
from featcomp.errors import FeatcompError
from featcomp.jpeg import dct
from featcomp.jpeg.encode import decode, encode
from featcomp.jpeg.tables import Tables, standard



def _photo(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth synthetic photo with edges and noise: realistic coefficient statistics, no files needed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * x + c) * 80 + np.cos(9 * y * (c + 1)) * 40 for c in range(3)], axis=-1) + 128
    base[h // 3:, w // 2:] -= 60
    return np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


CASES = [
    ("q50 16x16", _photo(16, 16, 0), standard(50)),
    ("q10 odd size", _photo(37, 45, 1), standard(10)),
    ("q95 noise", np.random.default_rng(2).integers(0, 256, (24, 33, 3), dtype=np.uint8), standard(95)),
    ("all steps 1", _photo(40, 24, 3), Tables(np.ones((8, 8)), np.ones((8, 8)))),
    ("all steps 255", _photo(23, 17, 4), Tables(np.full((8, 8), 255), np.full((8, 8), 255))),
    ("ragged learned", _photo(64, 48, 5), Tables(np.random.default_rng(6).integers(1, 256, (8, 8)),
                                                 np.random.default_rng(7).integers(1, 256, (8, 8)))),
    ("extremes", np.where(np.indices((32, 32, 3)).sum(0) % 2 == 0, 0, 255).astype(np.uint8), standard(30)),
]


@pytest.mark.parametrize("name, rgb, tables", CASES, ids=[c[0] for c in CASES])
def test_coefficients_equal_the_file(tmp_path: Path, name: str, rgb: np.ndarray, tables: Tables) -> None:
    jpeglib = needs.module("jpeglib", "pip install 'featcomp[jpeg-check]'")
    path = tmp_path / "x.jpg"
    path.write_bytes(encode(rgb, tables))
    coded = jpeglib.read_dct(str(path))
    ours = dct.coefficients(rgb, tables)
    for plane, theirs in zip(ours, (coded.Y, coded.Cb, coded.Cr)):
        assert plane.shape == theirs.shape
        assert np.array_equal(plane, theirs)


@pytest.mark.parametrize("name, rgb, tables", CASES, ids=[c[0] for c in CASES])
def test_roundtrip_equals_pillow_decode(name: str, rgb: np.ndarray, tables: Tables) -> None:
    assert np.array_equal(dct.roundtrip(rgb, tables), decode(encode(rgb, tables)))


@pytest.mark.shared
def test_kodak_photo_is_exact() -> None:
    path = needs.shared("data", "kodak", "kodim23.png")
    rgb = np.asarray(Image.open(path).convert("RGB"))[:200, :300]
    for quality in (10, 50, 90):
        assert np.array_equal(dct.roundtrip(rgb, standard(quality)), decode(encode(rgb, standard(quality))))


def test_islow_is_close_to_the_orthonormal_dct() -> None:
    """Why the integer reference: islow is 8x the float DCT but not equal to it (the rounding differs)."""
    rng = np.random.default_rng(0)
    samples = rng.integers(0, 256, (64, 64))
    islow = dct.forward_blocks(samples) / 8.0
    blocks = (samples - 128.0).reshape(8, 8, 8, 8).swapaxes(1, 2)
    ortho = dct.DCT_ORTHO @ blocks @ dct.DCT_ORTHO.T
    assert np.abs(islow - ortho).max() < 0.3
    assert np.abs(islow - ortho).max() > 0


def test_descale_rounds_half_up_on_negatives() -> None:
    x = np.array([-6, -5, -4, -3, 3, 4, 5, 6])
    assert dct.descale(x, np.full(8, 2)).tolist() == [-1, -1, -1, -1, 1, 1, 1, 2]
    assert dct.descale(x, np.zeros(8, np.int64)).tolist() == x.tolist()


def test_quantize_rounds_half_away_from_zero() -> None:
    coef = np.array([-12, -11, -4, 3, 4, 11, 12]) * 8  # steps of 8 after the DCT's factor of 8: divisor 64
    assert dct.quantize(coef // 8 * 8, np.full(7, 8)).tolist() == [-2, -1, -1, 0, 1, 1, 2]


def test_colour_conversion_is_a_near_inverse() -> None:
    rgb = np.random.default_rng(1).integers(0, 256, (1000, 3))
    back = dct.from_ycc(dct.to_ycc(rgb))
    assert np.abs(back.astype(int) - rgb).max() <= 3


def test_tiny_images_are_refused() -> None:
    with pytest.raises(FeatcompError, match="at least 8x8"):
        dct.roundtrip(np.zeros((7, 20, 3), np.uint8), standard(50))


def test_file_is_baseline_and_opens_elsewhere() -> None:
    data = encode(_photo(16, 24, 9), standard(40))
    assert data[:2] == b"\xff\xd8" and b"\xff\xc0" in data and b"\xff\xc2" not in data  # SOF0: baseline
    with Image.open(io.BytesIO(data)) as im:
        assert im.size == (24, 16) and im.mode == "RGB"


# ------------------------------------------------------------------------------------------------ 4:2:0

CASES_420 = [(f"{name} 4:2:0", rgb, replace(tables, subsampling="4:2:0")) for name, rgb, tables in CASES] + [
    ("q75 224x224 4:2:0", _photo(224, 224, 10), standard(75, "4:2:0")),
    ("odd 9x31 4:2:0", _photo(9, 31, 11), standard(40, "4:2:0")),
    ("noise 100x131 4:2:0", np.random.default_rng(12).integers(0, 256, (100, 131, 3), dtype=np.uint8),
     standard(90, "4:2:0")),
]


@pytest.mark.parametrize("name, rgb, tables", CASES_420, ids=[c[0] for c in CASES_420])
def test_420_coefficients_equal_the_file(tmp_path: Path, name: str, rgb: np.ndarray, tables: Tables) -> None:
    """Downsampled chroma as libjpeg makes it: the chroma coefficients in the file, block for block (the file's
    arrays may add the MCU's dummy blocks at the right and bottom; those no decoder shows)."""
    jpeglib = needs.module("jpeglib", "pip install 'featcomp[jpeg-check]'")
    path = tmp_path / "x.jpg"
    path.write_bytes(encode(rgb, tables))
    coded = jpeglib.read_dct(str(path))
    ours = dct.coefficients(rgb, tables)
    assert ours[1].shape[:2] == tuple(-(-s // 8) for s in dct.chroma_size(*rgb.shape[:2]))
    for plane, theirs in zip(ours, (coded.Y, coded.Cb, coded.Cr)):
        assert np.array_equal(plane, theirs[: plane.shape[0], : plane.shape[1]])


@pytest.mark.parametrize("name, rgb, tables", CASES_420, ids=[c[0] for c in CASES_420])
def test_420_roundtrip_equals_pillow_decode(name: str, rgb: np.ndarray, tables: Tables) -> None:
    assert np.array_equal(dct.roundtrip(rgb, tables), decode(encode(rgb, tables)))


def test_420_is_pillows_default_file() -> None:
    """standard(q, "4:2:0") writes the bytes Pillow writes for quality=q with its default subsampling."""
    rgb = _photo(37, 45, 13)
    for quality in (10, 50, 75, 95):
        buf = io.BytesIO()
        Image.fromarray(rgb).save(buf, "JPEG", quality=quality, optimize=True)
        assert encode(rgb, standard(quality, "4:2:0")) == buf.getvalue()
        assert encode(rgb, standard(quality)) != buf.getvalue()  # 4:4:4 is another file


def test_downsample_bias_reaches_the_padding() -> None:
    """libjpeg averages the repeated edge columns with the alternating bias: padding the averaged plane would
    differ. A 2-row plane whose rows sum to an odd pair: bias 1 rounds down, bias 2 up."""
    plane = np.array([[10] * 8, [11] * 8])  # 2x8 -> 1x4 chroma, padded to 8 columns (16 full-size columns)
    got = dct.downsample(plane)
    assert got.shape == (8, 8)
    assert got[0].tolist() == [10, 11, 10, 11, 10, 11, 10, 11]
    assert (got == got[0]).all()  # rows below repeat the last averaged row


def test_fancy_upsampling_weights() -> None:
    """9/16, 3/16, 3/16, 1/16 inside, the edge sample repeated outside; a flat plane stays flat."""
    assert (dct.upsample(np.full((8, 8), 77), 15, 13) == 77).all()
    step = np.zeros((8, 8), np.int64)
    step[:, 2:] = 160
    row = dct.upsample(step, 16, 16)[5]
    assert row[:8].tolist() == [0, 0, 0, 40, 120, 160, 160, 160]  # 3/4 and 1/4 of 160 around the edge


def test_unknown_subsampling_is_refused() -> None:
    with pytest.raises(FeatcompError, match="4:2:2"):
        Tables(np.ones((8, 8)), np.ones((8, 8)), subsampling="4:2:2")
