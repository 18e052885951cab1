"""Quantization tables: validation, JSON, libjpeg quality scaling, and Pillow's table order."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featcomp.errors import FeatcompError
from featcomp.jpeg.encode import encode
from featcomp.jpeg.tables import STANDARD_LUMA, Tables, scale_profile, standard, table

ZIGZAG = np.array([
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14, 21,
    28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60, 61,
    54, 47, 55, 62, 63])  # T.81 Figure A.6: the k-th value in a DQT segment is natural index ZIGZAG[k]


def _dqt(data: bytes) -> dict[int, np.ndarray]:
    """The 8-bit quantization tables of a JPEG file, straight from its DQT segments, in natural order."""
    found, i = {}, 2
    while i < len(data):
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if marker == 0xDB:
            seg = data[i + 4:i + 2 + length]
            while seg:
                assert seg[0] >> 4 == 0, "8-bit tables only"
                natural = np.zeros(64, np.int64)
                natural[ZIGZAG] = np.frombuffer(seg[1:65], np.uint8)
                found[seg[0] & 15], seg = natural.reshape(8, 8), seg[65:]
        if marker == 0xDA:
            break
        i += 2 + length
    return found


@pytest.mark.parametrize("bad, why", [
    (np.ones((8, 7)), "shape 8x7"), (np.ones(63), "shape 63"), ([[1] * 8] * 7 + [[1] * 7], "ragged"),
    (np.zeros((8, 8)), "step 0"), (np.full((8, 8), 256), "step 256"), (np.full((8, 8), 1.5), "fractional"),
    (np.full((8, 8), np.nan), "fractional or non-finite"), (np.ones((8, 8), bool), "whole numbers"),
    (np.array([["a"] * 8] * 8), "whole numbers"),
])
def test_bad_tables_are_refused(bad: object, why: str) -> None:
    with pytest.raises(FeatcompError, match=why):
        table(bad, "luma")


def test_flat_and_whole_float_tables_are_accepted() -> None:
    flat = np.arange(1, 65)
    assert (table(flat) == flat.reshape(8, 8)).all()
    assert table(np.full((8, 8), 7.0)).dtype == np.int64


def test_json_round_trip(tmp_path: Path) -> None:
    t = Tables.from_profile(np.linspace(2, 90, 64), np.linspace(5, 200, 64), 0.7, "learned", model="m",
                            meta={"bpp": 0.5})
    back = Tables.load(t.save(tmp_path / "t.json"))
    assert (back.luma == t.luma).all() and (back.chroma == t.chroma).all()
    assert back.method == "learned" and back.model == "m" and back.scale == 0.7 and back.meta == {"bpp": 0.5}
    assert np.allclose(back.profile_luma, t.profile_luma, atol=1e-6)  # type: ignore[arg-type]
    assert (back.scaled(0.7).luma == t.luma).all()


@pytest.mark.parametrize("content, why", [
    ("{", "not JSON"), ("[1, 2]", "JSON object"), ('{"luma": [[1]]}', "missing 'chroma'"),
    ('{"luma": ' + json.dumps([[1] * 8] * 8) + ', "chroma": ' + json.dumps([[300] * 8] * 8) + "}", "chroma table has step 300"),
    ('{"format": "other/9", "luma": 1, "chroma": 1}', "is not"),
])
def test_bad_tables_files(tmp_path: Path, content: str, why: str) -> None:
    path = tmp_path / "t.json"
    path.write_text(content)
    with pytest.raises(FeatcompError, match=why):
        Tables.load(path)
    with pytest.raises(FeatcompError, match="does not exist"):
        Tables.load(tmp_path / "missing.json")


@pytest.mark.parametrize("quality", [1, 10, 25, 50, 75, 90, 100])
def test_standard_tables_equal_pillow_quality(quality: int) -> None:
    """Our libjpeg quality scaling gives Pillow's tables, and then the very same file bytes."""
    rgb = np.random.default_rng(quality).integers(0, 256, (24, 40, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=0, optimize=True)
    ours = standard(quality)
    file_tables = _dqt(buf.getvalue())
    assert (file_tables[0] == ours.luma).all() and (file_tables[1] == ours.chroma).all()
    assert encode(rgb, ours) == buf.getvalue()


def test_qtables_are_natural_order() -> None:
    """A table with distinct values lands in the file where T.81 says (zig-zag in DQT = our natural order)."""
    luma = np.arange(1, 65).reshape(8, 8)
    chroma = np.arange(100, 164).reshape(8, 8)
    data = encode(np.zeros((8, 8, 3), np.uint8), Tables(luma, chroma))
    found = _dqt(data)
    assert (found[0] == luma).all() and (found[1] == chroma).all()
    with Image.open(io.BytesIO(data)) as im:
        assert list(im.quantization[0]) == luma.reshape(-1).tolist()  # type: ignore[attr-defined]


def test_scaling() -> None:
    assert (scale_profile(STANDARD_LUMA, 1.0) == STANDARD_LUMA).all()
    assert scale_profile(STANDARD_LUMA, 1e-3).max() == 1 and scale_profile(STANDARD_LUMA, 1e3).min() == 255
    with pytest.raises(FeatcompError, match="quality"):
        standard(0)
    with pytest.raises(FeatcompError, match="scale"):
        scale_profile(STANDARD_LUMA, -1.0)
    with pytest.raises(FeatcompError, match="no profile"):
        Tables(np.ones((8, 8)), np.ones((8, 8))).scaled(2.0)
