"""Calibration inputs: folders, labels, .npz files, user readers, and the checks on every batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from featcomp.data import (
    IMAGE_SUFFIXES,
    ImageReader,
    InputReader,
    InputSpec,
    NpzReader,
    collect,
    image_files,
    open_inputs,
    read_labels,
    validate_batch,
)
from featcomp.errors import FeatcompError
from featcomp.preprocess import Preprocess

SPEC = InputSpec("data_0", ("N", 3, 224, 224), np.dtype(np.float32))
SMALL = InputSpec("x", (None, 3, 8, 8), np.dtype(np.float32))
PRE = Preprocess.parse("resize=256,crop=224,mean=128,std=128")


def save_image(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> np.ndarray:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return pixels


class ListReader:
    """A user's ORT-style reader that reuses one buffer, as many real ones do."""

    def __init__(self, count: int, name: str = "x") -> None:
        self.count, self.name, self.buffer = count, name, np.zeros((1, 3, 8, 8), np.float64)

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.count == 0:
            return None
        self.count -= 1
        self.buffer[...] = self.count
        return {self.name: self.buffer}


# --- folders and labels ----------------------------------------------------------------------


def test_image_files_sorted_case_insensitive(tmp_path: Path) -> None:
    for name in ["b.JPG", "a.png", "c.JpEg", "d.webp", "notes.txt", ".hidden.jpg"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "e.jpg").write_bytes(b"x")
    assert [p.name for p in image_files(tmp_path)] == ["a.png", "b.JPG", "c.JpEg", "d.webp"]
    assert ".JPEG" in IMAGE_SUFFIXES and ".jpeg" in IMAGE_SUFFIXES


def test_image_files_errors(tmp_path: Path) -> None:
    with pytest.raises(FeatcompError, match=r"nowhere does not exist"):
        image_files(tmp_path / "nowhere")
    with pytest.raises(FeatcompError, match=r"no image files in .*empty"):
        (tmp_path / "empty").mkdir()
        image_files(tmp_path / "empty")
    (tmp_path / "file.jpg").write_bytes(b"x")
    with pytest.raises(FeatcompError, match=r"file\.jpg is not a folder"):
        image_files(tmp_path / "file.jpg")


def test_read_labels(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_text("# name class\na.jpg 3\n\nmy photo.png   17\na.jpg 3\n")
    assert read_labels(path) == {"a.jpg": 3, "my photo.png": 17}


@pytest.mark.parametrize(
    ("text", "line"),
    [("a.jpg 1\nb.jpg\n", 2), ("a.jpg one\n", 1), ("a.jpg -1\n", 1), ("a.jpg 1\n\na.jpg 2\n", 3)],
)
def test_read_labels_bad_line_names_file_and_line(tmp_path: Path, text: str, line: int) -> None:
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(FeatcompError, match=rf"labels\.txt:{line}: "):
        read_labels(path)


def test_read_labels_missing_or_empty(tmp_path: Path) -> None:
    with pytest.raises(FeatcompError, match="nope.txt does not exist"):
        read_labels(tmp_path / "nope.txt")
    (tmp_path / "blank.txt").write_text("\n# nothing\n")
    with pytest.raises(FeatcompError, match="blank.txt has no"):
        read_labels(tmp_path / "blank.txt")


# --- InputSpec and validate_batch ------------------------------------------------------------


def test_input_spec() -> None:
    assert SPEC.expected == "(N, 3, 224, 224)"
    assert InputSpec("x", [1, 3, 8, 8], "float32").dtype == np.float32  # type: ignore[arg-type]
    with pytest.raises(FeatcompError, match=r"'img' has shape \(N, 3, \?, \?\)"):
        InputSpec("img", ("batch", 3, "h", "w"), np.dtype(np.float32))


def test_validate_batch_shape_message() -> None:
    batch = {"data_0": np.zeros((1, 3, 200, 200), np.float32)}
    with pytest.raises(FeatcompError) as info:
        validate_batch(batch, SPEC)
    assert str(info.value) == (
        "calibration input 'data_0' has shape (1, 3, 200, 200) but the model expects (N, 3, 224, 224)"
    )


@pytest.mark.parametrize(
    ("batch", "match"),
    [
        ({"input": np.zeros((1, 3, 8, 8), np.float32)}, r"\['input'\] .* only input is 'x'"),
        ({"x": np.zeros((1, 3, 8, 8)), "y": np.zeros(1)}, r"\['x', 'y'\]"),
        ({"x": np.zeros((3, 8, 8), np.float32)}, r"shape \(3, 8, 8\) but .* \(N, 3, 8, 8\)"),
        ({"x": np.zeros((1, 8, 8, 3), np.float32)}, r"shape \(1, 8, 8, 3\)"),
        ({"x": np.full((2, 3, 8, 8), np.nan, np.float32)}, "NaN or Inf"),
        ({"x": np.full((1, 3, 8, 8), np.inf)}, "NaN or Inf"),
        ({"x": np.full((1, 3, 8, 8), "a")}, r"dtype <U1 but the model expects float32"),
        ([np.zeros((1, 3, 8, 8))], "returned list"),
    ],
)
def test_validate_batch_errors(batch: object, match: str) -> None:
    with pytest.raises(FeatcompError, match=match):
        validate_batch(batch, SMALL)  # type: ignore[arg-type]


def test_validate_batch_casts_and_checks_fixed_batch() -> None:
    out = validate_batch({"x": np.ones((4, 3, 8, 8), np.float64)}, SMALL)["x"]
    assert out.dtype == np.float32 and out.shape == (4, 3, 8, 8)
    fixed = InputSpec("x", (1, 3, 8, 8), np.dtype(np.float32))
    with pytest.raises(FeatcompError, match=r"shape \(2, 3, 8, 8\) but the model expects \(1, 3, 8, 8\)"):
        validate_batch({"x": np.ones((2, 3, 8, 8), np.float32)}, fixed)
    uint8 = InputSpec("x", (1, 8, 8, 3), np.dtype(np.uint8))
    with pytest.raises(FeatcompError, match="dtype float32 but the model expects uint8"):
        validate_batch({"x": np.ones((1, 8, 8, 3), np.float32)}, uint8)
    with pytest.raises(FeatcompError, match="evaluation input"):
        validate_batch({"x": np.ones((1, 3, 9, 8), np.float32)}, SMALL, role="evaluation")


# --- ImageReader -----------------------------------------------------------------------------


def test_image_reader_yields_preprocessed_batches(tmp_path: Path) -> None:
    paths = [tmp_path / f"{i}.png" for i in range(3)]
    pixels = [save_image(p, 300, 200, seed=i) for i, p in enumerate(paths)]
    reader = ImageReader(paths, PRE, SPEC)
    assert isinstance(reader, InputReader) and len(reader) == 3 and reader.paths == paths
    batches = collect(reader)
    assert len(batches) == 3 and reader.get_next() is None
    for batch, original in zip(batches, pixels):
        assert batch["data_0"].shape == (1, 3, 224, 224) and batch["data_0"].dtype == np.float32
        np.testing.assert_array_equal(batch["data_0"][0], PRE.apply(Image.fromarray(original)))
    reader.rewind()
    np.testing.assert_array_equal(reader.get_next()["data_0"], batches[0]["data_0"])  # type: ignore[index]
    assert len(ImageReader(paths, PRE, SPEC, limit=2)) == 2


def test_image_reader_errors(tmp_path: Path) -> None:
    save_image(tmp_path / "good.png")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    reader = open_inputs(tmp_path, SPEC, PRE)
    with pytest.raises(FeatcompError, match=r"cannot decode image .*broken\.jpg"):
        collect(reader)
    with pytest.raises(FeatcompError, match=r"makes images of shape \(3, 224, 224\) .* \(N, 3, 299, 299\)"):
        ImageReader([tmp_path / "good.png"], PRE, InputSpec("x", ("N", 3, 299, 299), np.float32))
    nhwc = InputSpec("x", ("N", 224, 224, 3), np.dtype(np.float32))
    with pytest.raises(FeatcompError, match="layout="):
        ImageReader([tmp_path / "good.png"], PRE, nhwc)
    uncropped = Preprocess(resize=8, crop=None)
    with pytest.raises(FeatcompError, match=r"good\.png: .*shape \(1, 3, 8, 10\)"):
        ImageReader([tmp_path / "good.png"], uncropped, SMALL).get_next()


def test_image_reader_uint8_nhwc_model(tmp_path: Path) -> None:
    pixels = save_image(tmp_path / "a.png", 16, 16)
    spec = InputSpec("img", (1, 16, 16, 3), np.dtype(np.uint8))
    batch = ImageReader([tmp_path / "a.png"], Preprocess(None, None, layout="nhwc"), spec).get_next()
    assert batch is not None and batch["img"].dtype == np.uint8
    np.testing.assert_array_equal(batch["img"][0], pixels)
    with pytest.raises(FeatcompError, match="mean=0,std=1"):
        ImageReader([tmp_path / "a.png"], Preprocess(None, None, mean=(1, 1, 1), layout="nhwc"), spec)


# --- NpzReader -------------------------------------------------------------------------------


def test_npz_single_unnamed_array(tmp_path: Path) -> None:
    data = np.random.default_rng(1).normal(size=(5, 3, 8, 8))
    np.savez(tmp_path / "in.npz", data)
    reader = NpzReader(tmp_path / "in.npz", SMALL)
    batches = collect(reader)
    assert len(reader) == 5 and len(batches) == 5
    assert all(b["x"].shape == (1, 3, 8, 8) and b["x"].dtype == np.float32 for b in batches)
    np.testing.assert_allclose(np.concatenate([b["x"] for b in batches]), data, rtol=1e-6)
    assert len(NpzReader(tmp_path / "in.npz", SMALL, limit=2)) == 2


def test_npz_keyed_by_input_name(tmp_path: Path) -> None:
    data = np.arange(2 * 3 * 8 * 8, dtype=np.float32).reshape(2, 3, 8, 8)
    np.savez(tmp_path / "in.npz", labels=np.arange(2), x=data)
    batches = collect(open_inputs(tmp_path / "in.npz", SMALL, None))
    np.testing.assert_array_equal(batches[1]["x"][0], data[1])


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(FeatcompError, match=r"empty\.npz contains no arrays"):
        NpzReader(tmp_path / "empty.npz", SMALL)
    np.savez(tmp_path / "two.npz", a=np.zeros((1, 3, 8, 8)), b=np.zeros((1, 3, 8, 8)))
    with pytest.raises(FeatcompError, match=r"arrays \['a', 'b'\] but none named 'x'"):
        NpzReader(tmp_path / "two.npz", SMALL)
    np.savez(tmp_path / "shape.npz", np.zeros((4, 3, 9, 9)))
    with pytest.raises(FeatcompError, match=r"shape\.npz: .*\(1, 3, 9, 9\) but the model expects"):
        NpzReader(tmp_path / "shape.npz", SMALL)
    bad = np.zeros((3, 3, 8, 8))
    bad[2, 0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", bad)
    with pytest.raises(FeatcompError, match=r"nan\.npz sample 2: .*NaN"):
        collect(NpzReader(tmp_path / "nan.npz", SMALL))
    (tmp_path / "junk.npz").write_bytes(b"definitely not a zip")
    with pytest.raises(FeatcompError, match=r"cannot read .*junk\.npz as \.npz"):
        NpzReader(tmp_path / "junk.npz", SMALL)
    np.save(tmp_path / "single.npy", np.zeros((1, 3, 8, 8)))
    (tmp_path / "single.npy").rename(tmp_path / "single.npz")
    with pytest.raises(FeatcompError, match="single .npy array"):
        NpzReader(tmp_path / "single.npz", SMALL)
    np.savez(tmp_path / "none.npz", np.zeros((0, 3, 8, 8)))
    with pytest.raises(FeatcompError, match="zero samples"):
        NpzReader(tmp_path / "none.npz", SMALL)


# --- open_inputs, custom readers, collect ----------------------------------------------------


def test_open_inputs_dispatch_and_errors(tmp_path: Path) -> None:
    save_image(tmp_path / "a.png", 300, 200)
    assert isinstance(open_inputs(str(tmp_path), SPEC, PRE), ImageReader)
    with pytest.raises(FeatcompError, match="images need --preprocess"):
        open_inputs(tmp_path, SPEC, None)
    with pytest.raises(FeatcompError, match=r"ghost does not exist"):
        open_inputs(tmp_path / "ghost", SPEC, PRE)
    with pytest.raises(FeatcompError, match=r"a\.png is neither a folder of images nor a \.npz"):
        open_inputs(tmp_path / "a.png", SPEC, PRE)
    with pytest.raises(FeatcompError, match="object with get_next"):
        open_inputs(42, SPEC, PRE)  # type: ignore[arg-type]
    with pytest.raises(FeatcompError, match="limit must be a positive"):
        open_inputs(tmp_path, SPEC, PRE, limit=0)


def test_custom_reader_is_validated_and_copied() -> None:
    reader = open_inputs(ListReader(3), SMALL, None)
    batches = collect(reader)
    assert [float(b["x"][0, 0, 0, 0]) for b in batches] == [2.0, 1.0, 0.0]  # not one aliased buffer
    assert all(b["x"].dtype == np.float32 for b in batches)
    assert len(collect(open_inputs(ListReader(5), SMALL, None, limit=2))) == 2
    with pytest.raises(FeatcompError, match=r"\['data'\] but the model's only input is 'x'"):
        collect(open_inputs(ListReader(1, name="data"), SMALL, None))
    with pytest.raises(FeatcompError, match="no rewind"):
        open_inputs(ListReader(1), SMALL, None).rewind()  # type: ignore[attr-defined]


def test_collect_empty_and_with_spec() -> None:
    with pytest.raises(FeatcompError, match="the calibration set is empty: "):
        collect(ListReader(0))
    with pytest.raises(FeatcompError, match=r"the evaluation set is empty"):
        collect(ListReader(0), role="evaluation")
    batches = collect(ListReader(2), SMALL)
    assert batches[0]["x"].dtype == np.float32
    with pytest.raises(FeatcompError, match="has shape"):
        collect(ListReader(1), InputSpec("x", ("N", 3, 4, 4), np.dtype(np.float32)))
