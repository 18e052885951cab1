"""Ordinary baseline JPEG files with given tables (Pillow), and their real size.

Writer settings, the same for standard and learned tables so that only the tables differ:
- ``qtables=[luma, chroma]`` (natural order) and the tables' chroma subsampling: ``subsampling=0`` (4:4:4)
  or ``2`` (4:2:0, Pillow's default); the node models both;
- ``optimize=True``: per-image Huffman tables (still baseline; any decoder opens them). Standard tables
  get the same, so the comparison is of quantization only.
Rate is always file bytes x 8 / pixels of the image that was encoded (headers and all).

Input policy (see docs/jpeg.md): greyscale, palette and 16-bit images are converted to RGB with a
warning, as the model's preprocessing would; CMYK is refused (its colours need an ICC profile we do
not have, and a CMYK JPEG is a different colour model); alpha is dropped.
"""

from __future__ import annotations

import io
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from featcomp.errors import FeatcompError
from featcomp.jpeg.tables import Tables
from featcomp.preprocess import Preprocess

__all__ = ["Encoded", "decode", "encode", "load_rgb", "model_view", "write_files"]

_CONVERTED = ("L", "LA", "La", "1", "P", "PA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class GreyscaleWarning(UserWarning):
    """A greyscale or palette image was converted to RGB."""


def load_rgb(path: str | Path) -> Image.Image:
    """An 8-bit RGB Pillow image from a file; the reason in one line when it is not a usable image."""
    from featcomp.preprocess import to_rgb

    p = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # EXIF / palette chatter
            with Image.open(p) as image:
                image.load()
                mode = image.mode
                if mode == "CMYK":
                    raise FeatcompError(f"{p} is a CMYK image; convert it to RGB with its colour profile first "
                                        "(featcomp does not guess CMYK colours)")
                rgb = to_rgb(image)
    except FileNotFoundError:
        raise FeatcompError(f"image file {p} does not exist; check the path") from None
    except IsADirectoryError:
        raise FeatcompError(f"{p} is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise FeatcompError(f"cannot decode image {p}: not a recognised image format") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        reason = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise FeatcompError(f"cannot decode image {p}: {reason}") from None
    if mode in _CONVERTED:
        warnings.warn(f"{p} is a greyscale or palette image (mode {mode}); converted to RGB", GreyscaleWarning,
                      stacklevel=2)
    if rgb.width < 8 or rgb.height < 8:
        raise FeatcompError(f"{p} is {rgb.width}x{rgb.height} pixels; JPEG coding here needs at least 8x8")
    return rgb


def model_view(image: Image.Image, preprocess: Preprocess | None) -> np.ndarray:
    """uint8 [H, W, 3] RGB of what the model sees: the preprocess geometry (resize, crop), no normalisation."""
    if preprocess is not None:
        image = preprocess._geometry(image)
    pixels = np.asarray(image, dtype=np.uint8)
    if pixels.shape[0] < 8 or pixels.shape[1] < 8:
        raise FeatcompError(f"the image becomes {pixels.shape[1]}x{pixels.shape[0]} pixels; JPEG needs at least 8x8")
    return pixels


#: Pillow's ``subsampling=`` code for each chroma setting
PILLOW_SUBSAMPLING = {"4:4:4": 0, "4:2:0": 2}

# With optimize=True libjpeg writes the whole file in one go into Pillow's output buffer, which Pillow sizes at
# 2 bytes per pixel for custom tables; a detailed photo with fine steps needs more (uniform noise at all-1
# steps: 2.9 B/px) and fails with "broken data stream when writing image file". Pillow (11-13) ignores a
# `bufsize=` save option for JPEG, so the buffer is raised through ImageFile.MAXBLOCK, its floor, during
# the save. 4 B/px first; the worst case (every coefficient at its longest code, 4:4:4) retried on failure.
_BYTES_PER_PIXEL = (4, 16)
_MAXBLOCK_LOCK = threading.Lock()


def _save_jpeg(image: Image.Image, buf: io.BytesIO, bufsize: int, **options: object) -> None:
    """Pillow's JPEG save with an output buffer of at least bufsize bytes."""
    from PIL import ImageFile

    with _MAXBLOCK_LOCK:
        saved = ImageFile.MAXBLOCK
        ImageFile.MAXBLOCK = max(saved, bufsize)
        try:
            image.save(buf, "JPEG", **options)
        finally:
            ImageFile.MAXBLOCK = saved


def encode(rgb: np.ndarray, tables: Tables) -> bytes:
    """A baseline JPEG file of an RGB uint8 [H, W, 3] image with these tables (their subsampling, optimised Huffman)."""
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), "RGB")
    for per_pixel in _BYTES_PER_PIXEL:
        buf = io.BytesIO()
        try:
            _save_jpeg(image, buf, per_pixel * image.width * image.height + 65536,
                       qtables=tables.qtables(), subsampling=PILLOW_SUBSAMPLING[tables.subsampling],
                       optimize=True)
            return buf.getvalue()
        except OSError:
            if per_pixel == _BYTES_PER_PIXEL[-1]:
                raise
    raise AssertionError("unreachable")


def decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


@dataclass(frozen=True)
class Encoded:
    source: Path
    output: Path
    width: int
    height: int
    bytes: int

    @property
    def bpp(self) -> float:
        return 8.0 * self.bytes / (self.width * self.height)


def write_files(paths: Sequence[str | Path], tables: Tables, outdir: str | Path,
                preprocess: Preprocess | None = None) -> list[Encoded]:
    """``outdir/<stem>.jpg`` per image; every input is read and checked before anything is written."""
    from featcomp.modelio import check_folder_output, write_bytes

    out = check_folder_output(outdir)
    if not paths:
        raise FeatcompError("no images given to encode")
    stems: dict[str, Path] = {}
    for p in map(Path, paths):
        if p.stem in stems:
            raise FeatcompError(f"{p} and {stems[p.stem]} would both be written as {p.stem}.jpg; rename one")
        stems[p.stem] = p
    views = [model_view(load_rgb(p), preprocess) for p in stems.values()]
    files = [encode(v, tables) for v in views]
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise FeatcompError(f"cannot create {out}: {exc.strerror or exc}") from None
    done = []
    for (stem, src), view, data in zip(stems.items(), views, files):
        target = write_bytes(out / f"{stem}.jpg", data)
        done.append(Encoded(src, target, view.shape[1], view.shape[0], len(data)))
    return done
