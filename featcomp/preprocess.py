"""The ``--preprocess`` spec: how a photo becomes the tensor a classifier was trained on.

Geometry follows torchvision's PIL path (``Resize(int)`` then ``CenterCrop``) exactly, because most
pretrained ONNX classifiers were exported from there and a one-pixel shift already costs accuracy.
"""

from __future__ import annotations

import math
import pathlib
import warnings
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from featcomp.errors import FeatcompError

__all__ = ["Preprocess"]

_FORM = (
    "expected comma-separated key=value pairs from resize=N|none, crop=N|none, order=rgb|bgr, "
    "mean=M or M/M/M, std=S or S/S/S, layout=nchw|nhwc "
    "(e.g. 'resize=256,crop=224,order=rgb,mean=128,std=128')"
)
_KEYS = ("resize", "crop", "order", "mean", "std", "layout")
# Bounds that keep a typo (resize=60000) from becoming a MemoryError: sides up to 8192 pixels, and a resized
# image (whose long side follows the aspect ratio) up to 64 megapixels (192 MB of RGB, Pillow's own
# decompression-bomb warning starts at 89).
MAX_SIDE = 8192
MAX_PIXELS = 8192 * 8192
Triple = tuple[float, float, float]


def _bad(part: str, why: str) -> FeatcompError:
    return FeatcompError(f"bad --preprocess part {part!r}: {why}; {_FORM}")


def _size(key: str, text: str) -> int | None:
    """Parse resize/crop: a positive integer, or 'none' to skip that step."""
    if text.lower() == "none":
        return None
    try:
        value = int(text)
    except ValueError:
        raise _bad(f"{key}={text}", "not a whole number or 'none'") from None
    if value <= 0:
        raise _bad(f"{key}={text}", "must be positive")
    return value


def _triple(key: str, text: str) -> Triple:
    """Parse mean/std: one number for all channels or three joined by '/'."""
    items = text.split("/")
    if len(items) not in (1, 3):
        raise _bad(f"{key}={text}", "give one number or three joined by '/'")
    try:
        values = [float(item) for item in items]
    except ValueError:
        raise _bad(f"{key}={text}", "not a number") from None
    if len(values) == 1:
        values *= 3
    return (values[0], values[1], values[2])


def _num(x: float) -> str:
    """Shortest text that float() reads back to exactly ``x``."""
    return str(int(x)) if x.is_integer() and abs(x) < 1e15 else repr(x)


def _fmt_triple(t: Triple) -> str:
    return _num(t[0]) if t[0] == t[1] == t[2] else "/".join(_num(v) for v in t)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; alpha is dropped (as torchvision's loader does)."""
    if image.mode.startswith("I;16"):
        # Pillow's own conversion clips 16-bit values at 255; scale the full range instead.
        wide = np.asarray(image).astype(np.uint32)
        image = Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8))
    elif image.mode in ("P", "PA") and "transparency" in image.info:
        image = image.convert("RGBA")  # Pillow warns on P+transparency straight to RGB
    elif image.mode == "La":
        image = image.convert("LA")
    return image.convert("RGB")  # always a new image, so it outlives the opened file


@dataclass(frozen=True)
class Preprocess:
    """Resize short side, centre crop, channel order, ``(x - mean) / std`` in 0..255 units, layout."""

    resize: int | None = 256
    crop: int | None = 224
    order: Literal["rgb", "bgr"] = "rgb"
    mean: Triple = (0.0, 0.0, 0.0)
    std: Triple = (1.0, 1.0, 1.0)
    layout: Literal["nchw", "nhwc"] = "nchw"

    def __post_init__(self) -> None:
        """Reject values that would silently produce garbage tensors, whoever built the object."""
        for key in ("resize", "crop"):
            value = getattr(self, key)
            if value is None:
                continue
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value <= 0:
                raise _bad(f"{key}={value}", "must be a positive whole number or none")
            if value > MAX_SIDE:
                raise _bad(f"{key}={value}", f"larger than {MAX_SIDE} pixels (model inputs are far smaller)")
            object.__setattr__(self, key, int(value))
        if self.resize is not None and self.crop is not None and self.crop > self.resize:
            raise _bad(
                f"crop={self.crop}", f"larger than resize={self.resize}, so the crop would not fit"
            )
        if self.order not in ("rgb", "bgr"):
            raise _bad(f"order={self.order}", "must be rgb or bgr")
        if self.layout not in ("nchw", "nhwc"):
            raise _bad(f"layout={self.layout}", "must be nchw or nhwc")
        for key in ("mean", "std"):
            raw = getattr(self, key)
            if len(raw) != 3:
                raise _bad(f"{key}={raw}", "needs exactly three channel values")
            values: Triple = (float(raw[0]), float(raw[1]), float(raw[2]))
            if not all(math.isfinite(v) for v in values):
                raise _bad(f"{key}={_fmt_triple(values)}", "must be finite")
            if key == "std" and any(v <= 0 for v in values):
                raise _bad(f"std={_fmt_triple(values)}", "must be positive")
            object.__setattr__(self, key, values)

    @classmethod
    def parse(cls, spec: str) -> Preprocess:
        """Read a command-line spec; keys not given keep their defaults."""
        seen: dict[str, str] = {}
        for part in (p.strip() for p in spec.split(",")):
            if not part:
                continue
            key, sep, value = (s.strip() for s in part.partition("="))
            key = key.lower()
            if not sep or not value:
                raise _bad(part, "missing '=value'")
            if key not in _KEYS:
                raise _bad(part, f"unknown key {key!r}")
            if key in seen:
                raise _bad(part, f"{key} given twice (already {key}={seen[key]})")
            seen[key] = value
        kwargs: dict[str, object] = {}
        for key, value in seen.items():
            if key in ("resize", "crop"):
                kwargs[key] = _size(key, value)
            elif key in ("mean", "std"):
                kwargs[key] = _triple(key, value)
            else:
                kwargs[key] = value.lower()
        return cls(**kwargs)  # type: ignore[arg-type]

    def __str__(self) -> str:
        """Canonical spec: every key, in a fixed order; ``parse(str(p)) == p``."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("mean", "std"):
                text = _fmt_triple(value)
            else:
                text = "none" if value is None else str(value)
            parts.append(f"{f.name}={text}")
        return ",".join(parts)

    def _geometry(self, image: Image.Image) -> Image.Image:
        """torchvision Resize(int) + CenterCrop on a PIL image (truncating / round-half-even maths)."""
        if self.resize is not None:
            w, h = image.size
            if w <= h:
                size = (self.resize, int(self.resize * h / w))
            else:
                size = (int(self.resize * w / h), self.resize)
            if size[0] * size[1] > MAX_PIXELS:
                raise FeatcompError(f"resize={self.resize} makes this {w}x{h} image {size[0]}x{size[1]} pixels, more "
                                    f"than {MAX_PIXELS // 2**20} megapixels; crop the image or use a smaller resize")
            if size != image.size:
                image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=None)
        if self.crop is not None:
            w, h = image.size
            c = self.crop
            if w < c or h < c:
                raise FeatcompError(
                    f"image is {w}x{h} but crop={c} needs at least {c}x{c}; "
                    f"add resize={c} (or larger) to --preprocess"
                )
            top, left = int(round((h - c) / 2.0)), int(round((w - c) / 2.0))
            image = image.crop((left, top, left + c, top + c))
        return image

    def apply(self, image: Image.Image) -> np.ndarray:
        """Float32 ``[3,H,W]`` (``[H,W,3]`` for nhwc) from any Pillow image."""
        pixels = np.asarray(self._geometry(to_rgb(image)), dtype=np.float32)
        if self.order == "bgr":
            pixels = pixels[..., ::-1]
        pixels = ((pixels - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)).astype(np.float32)
        if self.layout == "nchw":
            pixels = pixels.transpose(2, 0, 1)
        return np.ascontiguousarray(pixels, dtype=np.float32)

    def load(self, path: pathlib.Path) -> np.ndarray:
        """Decode ``path`` and apply; decoding problems name the file."""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # EXIF / palette chatter is not the user's problem
                with Image.open(path) as image:
                    image.load()
                    rgb = to_rgb(image)
        except FileNotFoundError:
            raise FeatcompError(f"image file {path} does not exist; check the path") from None
        except UnidentifiedImageError:
            reason = "not a recognised image format"
            raise FeatcompError(
                f"cannot decode image {path}: {reason}; remove it or replace it with a valid image"
            ) from None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = (str(exc).splitlines() or [type(exc).__name__])[0]
            raise FeatcompError(
                f"cannot decode image {path}: {reason}; remove it or replace it with a valid image"
            ) from None
        try:
            return self.apply(rgb)
        except FeatcompError as exc:
            raise FeatcompError(f"{path}: {exc}") from None
