"""The --preprocess spec: parsing, geometry against an independent resize, colour handling, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from featcomp.errors import FeatcompError
from featcomp.preprocess import Preprocess

PLAIN = Preprocess(resize=None, crop=None, layout="nhwc")  # identity apart from RGB conversion


def gradient(width: int, height: int) -> Image.Image:
    """R grows along x, G along y, B along both: any misplaced pixel changes the numbers."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (3 * x + 5 * y) % 256], -1)
    return Image.fromarray(rgb.astype(np.uint8), "RGB")


def _weights(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's 8-bit bilinear coefficients (Resample.c precompute_coeffs + normalize_coeffs_8bpc)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = filterscale
    centers = (np.arange(out_size) + 0.5) * scale
    xmin = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    xmax = np.minimum((centers + support + 0.5).astype(np.int64), in_size)
    cols = np.arange(in_size)
    inside = (cols >= xmin[:, None]) & (cols < xmax[:, None])
    w = np.clip(1.0 - np.abs((cols - centers[:, None] + 0.5) / filterscale), 0.0, None) * inside
    w = w / w.sum(axis=1, keepdims=True)
    return (w * (1 << 22) + 0.5).astype(np.int64)  # all weights are >= 0 for bilinear


def _pass(pixels: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
    acc = np.moveaxis(np.tensordot(weights, pixels.astype(np.int64), axes=([1], [axis])), 0, axis)
    return np.clip((acc + (1 << 21)) >> 22, 0, 255).astype(np.uint8)


def pillow_bilinear(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pillow's BILINEAR resize (reducing_gap=None) redone in numpy: horizontal pass, then vertical."""
    horizontal = _pass(pixels, _weights(pixels.shape[1], width), axis=1)
    return _pass(horizontal, _weights(pixels.shape[0], height), axis=0)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_full_spec() -> None:
    p = Preprocess.parse("resize=256,crop=224,order=bgr,mean=104/117/123,std=1")
    assert p == Preprocess(256, 224, "bgr", (104.0, 117.0, 123.0), (1.0, 1.0, 1.0), "nchw")
    assert Preprocess.parse(" Resize = none , CROP=none, layout=NHWC ") == Preprocess(
        resize=None, crop=None, layout="nhwc"
    )
    assert Preprocess.parse("") == Preprocess()
    assert Preprocess.parse("mean=128,std=128").mean == (128.0, 128.0, 128.0)


def test_str_is_canonical() -> None:
    p = Preprocess.parse("std=58.4/57.1/57.4,mean=123.675/116.28/103.53")
    assert str(p) == (
        "resize=256,crop=224,order=rgb,mean=123.675/116.28/103.53,std=58.4/57.1/57.4,layout=nchw"
    )
    assert str(Preprocess(resize=None, mean=(128, 128, 128))).startswith("resize=none,crop=224")
    assert "mean=128," in str(Preprocess(mean=(128, 128, 128)))


finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6)
positive = st.floats(min_value=1e-6, max_value=1e6, allow_nan=False)


@st.composite
def preprocesses(draw: st.DrawFn) -> Preprocess:
    resize = draw(st.none() | st.integers(1, 4096))
    crop = draw(st.none() | st.integers(1, resize or 4096))
    triple = st.tuples(finite, finite, finite) | finite.map(lambda v: (v, v, v))
    stds = st.tuples(positive, positive, positive) | positive.map(lambda v: (v, v, v))
    return Preprocess(
        resize=resize,
        crop=crop,
        order=draw(st.sampled_from(["rgb", "bgr"])),
        mean=draw(triple),
        std=draw(stds),
        layout=draw(st.sampled_from(["nchw", "nhwc"])),
    )


@given(preprocesses())
def test_round_trip(p: Preprocess) -> None:
    text = str(p)
    again = Preprocess.parse(text)
    assert again == p
    assert str(again) == text


@pytest.mark.parametrize(
    ("spec", "names"),
    [
        ("resize=256,colour=rgb", "colour=rgb"),
        ("resize=big", "resize=big"),
        ("resize=-3", "resize=-3"),
        ("crop=22.5", "crop=22.5"),
        ("crop=0", "crop=0"),
        ("order=rbg", "order=rbg"),
        ("layout=chw", "layout=chw"),
        ("mean=1/2", "mean=1/2"),
        ("mean=a/b/c", "mean=a/b/c"),
        ("mean=nan", "mean=nan"),
        ("std=0", "std=0"),
        ("std=1/-1/1", "std=1/-1/1"),
        ("std=inf", "std=inf"),
        ("crop=224,crop=256", "crop given twice"),
        ("resize", "'resize'"),
        ("resize=", "'resize='"),
        ("resize=200,crop=224", "crop=224"),
        ("resize=60000", "resize=60000"),  # was a MemoryError on the first image
        ("resize=none,crop=9000", "crop=9000"),
    ],
)
def test_parse_errors_name_the_bad_part(spec: str, names: str) -> None:
    with pytest.raises(FeatcompError) as info:
        Preprocess.parse(spec)
    message = str(info.value)
    assert names in message
    assert "resize=N|none" in message  # the valid form is shown
    assert "\n" not in message


def test_constructor_validates_too() -> None:
    with pytest.raises(FeatcompError, match="std"):
        Preprocess(std=(1.0, 0.0, 1.0))
    with pytest.raises(FeatcompError, match="mean"):
        Preprocess(mean=(1.0, 2.0))  # type: ignore[arg-type]
    assert Preprocess(resize=np.int64(10), crop=None).resize == 10  # type: ignore[arg-type]


# --- geometry --------------------------------------------------------------------------------


def test_resize_and_centre_crop_match_numpy() -> None:
    image = gradient(300, 200)
    out = Preprocess.parse("resize=256,crop=224").apply(image)
    assert out.shape == (3, 224, 224) and out.dtype == np.float32
    # short side 200 -> 256, long side int(256 * 300 / 200) = 384; crop offsets (16, 80)
    resized = pillow_bilinear(np.asarray(image), 384, 256)
    expected = resized[16:240, 80:304].transpose(2, 0, 1).astype(np.float32)
    np.testing.assert_array_equal(out, expected)


def test_downscale_of_noise_matches_numpy_and_portrait_geometry() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (900, 700, 3), dtype=np.uint8)  # portrait, 7x downscale
    out = Preprocess(resize=100, crop=None, layout="nhwc").apply(Image.fromarray(pixels))
    assert out.shape == (128, 100, 3)  # int(100 * 900 / 700) = 128
    np.testing.assert_array_equal(out, pillow_bilinear(pixels, 100, 128))


def test_long_side_truncates_like_torchvision() -> None:
    out = Preprocess(resize=100, crop=None, layout="nhwc").apply(gradient(500, 300))
    assert out.shape == (100, 166, 3)  # 100 * 500 / 300 = 166.67 -> 166, not rounded


def test_crop_offsets_round_half_to_even() -> None:
    pixels = np.asarray(gradient(227, 225))
    out = Preprocess(resize=None, crop=224, layout="nhwc").apply(Image.fromarray(pixels))
    # left = round(1.5) = 2, top = round(0.5) = 0 (torchvision CenterCrop)
    np.testing.assert_array_equal(out, pixels[0:224, 2:226].astype(np.float32))


def test_crop_bigger_than_image_without_resize() -> None:
    with pytest.raises(FeatcompError, match=r"100x80 but crop=224.*resize=224"):
        Preprocess(resize=None, crop=224).apply(gradient(100, 80))


# --- colour ----------------------------------------------------------------------------------


def test_bgr_flips_channels() -> None:
    image = gradient(64, 48)
    rgb = Preprocess(resize=None, crop=None).apply(image)
    bgr = Preprocess(resize=None, crop=None, order="bgr").apply(image)
    np.testing.assert_array_equal(bgr, rgb[::-1])
    assert not np.array_equal(bgr, rgb)


def test_mean_std_in_model_channel_order() -> None:
    image = gradient(40, 30)
    p = Preprocess.parse("resize=none,crop=none,order=bgr,mean=104/117/123,std=2/4/8,layout=nhwc")
    pixels = np.asarray(image, dtype=np.float64)[..., ::-1]
    expected = (pixels - np.array([104, 117, 123])) / np.array([2, 4, 8])
    np.testing.assert_allclose(p.apply(image), expected, rtol=1e-6)
    nchw = Preprocess.parse("resize=none,crop=none,mean=128,std=128").apply(image)
    np.testing.assert_allclose(nchw, ((np.asarray(image) - 128.0) / 128.0).transpose(2, 0, 1))


def test_greyscale_becomes_three_equal_channels() -> None:
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    out = PLAIN.apply(Image.fromarray(grey, "L"))
    assert out.shape == (6, 8, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)
    la = PLAIN.apply(Image.fromarray(np.stack([grey, grey * 0], -1), "LA"))
    np.testing.assert_array_equal(la[..., 1], grey)


def test_rgba_drops_alpha() -> None:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., 0], rgba[..., 1], rgba[..., 2], rgba[..., 3] = 10, 20, 30, 0
    out = PLAIN.apply(Image.fromarray(rgba, "RGBA"))
    assert out.shape == (4, 5, 3)
    np.testing.assert_array_equal(out[0, 0], [10, 20, 30])


def test_cmyk_becomes_rgb() -> None:
    cmyk = np.zeros((3, 3, 4), np.uint8)
    cmyk[0, 0] = (255, 0, 0, 0)  # pure cyan
    out = PLAIN.apply(Image.fromarray(cmyk, "CMYK"))
    assert out.shape == (3, 3, 3)
    np.testing.assert_array_equal(out[0, 0], [0, 255, 255])
    np.testing.assert_array_equal(out[1, 1], [255, 255, 255])


def test_palette_with_and_without_transparency() -> None:
    image = Image.new("P", (4, 2))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    image.putpixel((1, 0), 1)
    out = PLAIN.apply(image)
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])
    image.info["transparency"] = bytes([0] + [255] * 255)
    np.testing.assert_array_equal(PLAIN.apply(image)[0, 1], [0, 0, 255])


def test_sixteen_bit_greyscale_is_scaled_not_clipped() -> None:
    wide = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    out = PLAIN.apply(Image.fromarray(wide))
    assert Image.fromarray(wide).mode == "I;16"
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])


# --- files -----------------------------------------------------------------------------------


def test_load_matches_apply(tmp_path: Path) -> None:
    image = gradient(300, 200)
    image.save(tmp_path / "g.png")
    p = Preprocess()
    np.testing.assert_array_equal(p.load(tmp_path / "g.png"), p.apply(image))


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(FeatcompError, match=r"cannot decode image .*notes\.jpg: .*;"):
        Preprocess().load(text)
    gradient(50, 50).save(tmp_path / "cut.png")
    data = (tmp_path / "cut.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(FeatcompError, match=r"cannot decode image .*cut\.png"):
        Preprocess().load(tmp_path / "cut.png")
    with pytest.raises(FeatcompError, match=r"missing\.png does not exist"):
        Preprocess().load(tmp_path / "missing.png")
    gradient(20, 20).save(tmp_path / "small.png")
    with pytest.raises(FeatcompError, match=r"small\.png: image is 20x20"):
        Preprocess(resize=None).load(tmp_path / "small.png")


def test_a_resize_that_would_not_fit_in_memory_is_refused(tmp_path: Path) -> None:
    """A long strip at the largest allowed short side would still be gigapixels: one line, no MemoryError."""
    strip = tmp_path / "strip.png"
    Image.new("RGB", (4000, 8)).save(strip)
    with pytest.raises(FeatcompError, match=r"resize=8192 makes this 4000x8 image 4096000x8192 pixels"):
        Preprocess.parse("resize=8192,crop=none").load(strip)
    assert Preprocess.parse("resize=64,crop=none").load(strip).shape == (3, 64, 32000)
