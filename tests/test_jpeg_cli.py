"""`featcomp jpeg learn|insert|encode|eval` end to end on a tiny model, and every bad input: exit 1, one
line, no traceback, no output file left."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

import models
from conftest import PREPROCESS, Run
from featcomp.jpeg.encode import decode
from featcomp.jpeg.tables import Tables, standard
from featcomp.passes.jpeg_input import find_jpeg
from featcomp.runtime_ops import ort

Cli = Callable[..., Run]


def _bad(run: Run, *words: str) -> None:
    assert run.code == 1, run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("featcomp: error:"), run.err
    assert "Traceback" not in run.err
    for word in words:
        assert word in run.err, run.err


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """Five smooth 24x20 photos with labels (classes 0..3): JPEG-friendly, unlike random noise."""
    folder = tmp_path / "photos"
    folder.mkdir()
    y, x = np.mgrid[0:20, 0:24]
    lines = []
    for i in range(5):
        rgb = np.stack([np.sin(x / (2 + i) + c) * 70 + y * 5 for c in range(3)], -1) + 100
        Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
        lines.append(f"p{i}.png {i % 4}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_learn_insert_encode_eval(cli: Cli, model_file: Callable[..., str], photos: Path, tmp_path: Path) -> None:
    model = model_file(models.two_convs())
    tables = tmp_path / "tables.json"
    done = cli("jpeg", "learn", model, "--images", photos, "--preprocess", PREPROCESS, "--method", "deepn",
               "--target-bpp", "15", "-o", tables, "-q")
    assert done.code == 0, done.err
    learned = Tables.load(tables)
    assert learned.method == "deepn" and learned.meta["bpp"] <= 15.0 and "luma steps" in done.out

    done = cli("jpeg", "learn", model, "--images", photos, "--preprocess", PREPROCESS, "-o", tmp_path / "l.json", "-q")
    assert done.code == 0, done.err
    learned = Tables.load(tmp_path / "l.json")
    assert learned.method == "learned" and learned.meta["target"] == {"max_drop": 1.0, "metric": "top1"}
    assert learned.subsampling == "4:2:0"  # Pillow's default unless asked otherwise
    assert learned.meta["top1"] >= learned.meta["top1_uncompressed"]  # 5 labelled images: 1 point means none lost

    out = tmp_path / "with_jpeg.onnx"
    assert cli("jpeg", "insert", model, "--tables", tables, "--preprocess", PREPROCESS, "-o", out).code == 0
    inserted = onnx.load(str(out))
    assert find_jpeg(inserted) is not None
    ort.session(inserted)
    back = tmp_path / "back.onnx"
    assert cli("jpeg", "insert", out, "--remove", "-o", back).code == 0
    assert find_jpeg(onnx.load(str(back))) is None

    jpgs = tmp_path / "jpgs"
    done = cli("jpeg", "encode", photos, "--tables", tables, "-o", jpgs)
    assert done.code == 0, done.err
    files = sorted(jpgs.glob("*.jpg"))
    assert [f.stem for f in files] == [f"p{i}" for i in range(5)]
    total = sum(f.stat().st_size for f in files)
    assert f"{total} bytes" in done.out and f"{8 * total / (5 * 24 * 20):.3f} bpp" in done.out
    assert decode(files[0].read_bytes()).shape == (20, 24, 3)

    plot, result = tmp_path / "curve.png", tmp_path / "curve.json"
    done = cli("jpeg", "eval", model, "--images", photos, "--preprocess", PREPROCESS, "--tables", tables,
               "--quality", "10,30,50,90", "--plot", plot, "--json", result, "-q")
    assert done.code == 0, done.err
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(result.read_text())
    assert [p["quality"] for p in data["curves"]["standard"]] == [10, 30, 50, 90]
    assert "BD-rate vs standard on top1" in done.out
    bpps = [p["bpp"] for p in data["curves"]["standard"]]
    assert bpps == sorted(bpps)
    assert {p["subsampling"] for p in data["curves"]["standard"]} == {"4:2:0"}
    (ops,) = data["operating_points"].values()
    assert [o["loss"] for o in ops] == [0.5, 1.0, 2.0] and all(o["metric"] == "top1" for o in ops)
    assert "bytes needed" in done.out and "points of top-1 below the uncompressed" in done.out


def test_learn_operational(cli: Cli, model_file: Callable[..., str], photos: Path, tmp_path: Path) -> None:
    """The operational search from the command line: a rate target met on the photos, the search recorded."""
    model = model_file(models.two_convs())
    out = tmp_path / "op.json"
    done = cli("jpeg", "learn", model, "--images", photos, "--preprocess", PREPROCESS, "--method", "operational",
               "--target-bpp", "11", "-o", out, "-q")
    assert done.code == 0, done.err
    tables = Tables.load(out)
    assert tables.method == "operational" and tables.meta["bpp"] <= 11.0 and tables.sweepable
    assert tables.meta["operational"]["trials"] > 3 and len(tables.meta["operational"]["theta"]) == 16


def test_encode_with_quality_and_preprocess(cli: Cli, photos: Path, tmp_path: Path) -> None:
    done = cli("jpeg", "encode", photos / "p0.png", "--quality", "75", "--preprocess", PREPROCESS, "-o", tmp_path / "o")
    assert done.code == 0, done.err
    assert decode((tmp_path / "o" / "p0.jpg").read_bytes()).shape == (16, 16, 3)


def test_encode_subsampling(cli: Cli, photos: Path, tmp_path: Path) -> None:
    """--quality writes Pillow's default file (4:2:0); --subsampling 4:4:4 another; tables files keep theirs."""
    import io

    rgb = np.asarray(Image.open(photos / "p1.png").convert("RGB"))
    pillow = io.BytesIO()
    Image.fromarray(rgb).save(pillow, "JPEG", quality=60, optimize=True)
    assert cli("jpeg", "encode", photos / "p1.png", "--quality", "60", "-o", tmp_path / "a").code == 0
    assert (tmp_path / "a" / "p1.jpg").read_bytes() == pillow.getvalue()
    assert cli("jpeg", "encode", photos / "p1.png", "--quality", "60", "--subsampling", "4:4:4",
               "-o", tmp_path / "b").code == 0
    assert (tmp_path / "b" / "p1.jpg").read_bytes() != pillow.getvalue()
    old = tmp_path / "old.json"  # a tables file from before the field: 4:4:4
    data = standard(60).to_dict()
    del data["subsampling"]
    old.write_text(json.dumps(data))
    assert cli("jpeg", "encode", photos / "p1.png", "--tables", old, "-o", tmp_path / "c").code == 0
    assert (tmp_path / "c" / "p1.jpg").read_bytes() == (tmp_path / "b" / "p1.jpg").read_bytes()


def test_greyscale_is_converted_with_a_warning(cli: Cli, tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.fromarray(np.full((16, 16), 90, np.uint8)).save(grey)
    done = cli("jpeg", "encode", grey, "--quality", "50", "-o", tmp_path / "o")
    assert done.code == 0 and decode((tmp_path / "o" / "grey.jpg").read_bytes()).shape == (16, 16, 3)
    assert done.err == f"featcomp: warning: {grey} is a greyscale or palette image (mode L); converted to RGB\n"


def _tables_file(tmp_path: Path, luma: object) -> Path:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"luma": luma, "chroma": standard(50).chroma.tolist()}))
    return path


def test_bad_inputs(cli: Cli, model_file: Callable[..., str], photos: Path, tmp_path: Path) -> None:
    model = model_file(models.two_convs())
    out = tmp_path / "o"
    _bad(cli("jpeg", "encode", photos, "--tables", _tables_file(tmp_path, [[1] * 7] * 8), "-o", out), "8x8")
    _bad(cli("jpeg", "encode", photos, "--tables", _tables_file(tmp_path, [[0] * 8] * 8), "-o", out), "1..255")
    _bad(cli("jpeg", "encode", photos, "--tables", _tables_file(tmp_path, [[256] * 8] * 8), "-o", out), "1..255")
    (tmp_path / "notes.txt").write_text("hello")
    fake = tmp_path / "fake.png"
    fake.write_text("not a png")
    _bad(cli("jpeg", "encode", photos / "p0.png", fake, "--quality", "50", "-o", out), "cannot decode", "fake.png")
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 50, 100, 0)).save(cmyk)
    _bad(cli("jpeg", "encode", cmyk, "--quality", "50", "-o", out), "CMYK")
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (7, 30)).save(tiny)
    _bad(cli("jpeg", "encode", photos / "p0.png", tiny, "--quality", "50", "-o", out), "7x30", "8x8")
    assert not out.exists()  # nothing was written by any of the failed runs

    vector = helper.make_model(helper.make_graph(
        [helper.make_node("Relu", ["x"], ["y"])], "v", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])]), opset_imports=[helper.make_opsetid("", 13)],
        ir_version=8)
    target = tmp_path / "m.onnx"
    good_tables = tmp_path / "good.json"
    standard(50).save(good_tables)
    _bad(cli("jpeg", "insert", model_file(vector, "vector.onnx"), "--tables", good_tables, "--preprocess", PREPROCESS,
             "-o", target), "not a 3-channel")
    _bad(cli("jpeg", "learn", model_file(vector, "vector.onnx"), "--images", photos, "--preprocess", PREPROCESS,
             "-o", tmp_path / "t.json"), "not a 3-channel")
    _bad(cli("jpeg", "insert", model, "--tables", tmp_path / "missing.json", "--preprocess", PREPROCESS, "-o", target),
         "does not exist")
    _bad(cli("jpeg", "insert", model, "--tables", good_tables, "-o", target), "--preprocess")
    _bad(cli("jpeg", "learn", model, "--images", photos, "--preprocess", "resize=32,crop=32", "-o", tmp_path / "t.json"),
         "32x32", "16x16")
    _bad(cli("jpeg", "learn", model, "--images", tmp_path / "nowhere", "--preprocess", PREPROCESS, "-o",
             tmp_path / "t.json"), "does not exist")
    _bad(cli("jpeg", "learn", model, "--images", photos, "--preprocess", PREPROCESS, "--target-bpp", "0.01",
             "--method", "deepn", "-o", tmp_path / "t.json"), "below what JPEG can reach")
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    (unlabelled / "a.png").write_bytes((photos / "p0.png").read_bytes())
    _bad(cli("jpeg", "learn", model, "--images", unlabelled, "--preprocess", PREPROCESS, "--method", "deepn",
             "--metric", "top1", "-o", tmp_path / "t.json"), "needs labels")
    _bad(cli("jpeg", "eval", model, "--images", photos, "--preprocess", PREPROCESS, "--quality", "10,x"), "--quality")
    _bad(cli("jpeg", "eval", model, "--images", photos, "--preprocess", PREPROCESS, "--quality", "0"), "1..100")
    assert not target.exists() and not (tmp_path / "t.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("jpeg").code == 2
    assert cli("jpeg", "encode", "x.png", "-o", "d").code == 2  # --tables or --quality is required
    assert cli("jpeg", "learn", "--target-bpp", "1", "--max-drop", "1", "-o", "t.json").code == 2
    assert cli("jpeg", "encode", "x.png", "--quality", "50", "--subsampling", "4:1:1", "-o", "d").code == 2


# ---- detailed photos at the finest tables: Pillow's optimize=True output buffer (issue 11, item 3) -------------

NOISY = 256  # uniform noise at all-1 steps codes to ~2.9 bytes/pixel, past Pillow's own 2 bytes/pixel buffer
FINE = "resize=256,crop=256,order=rgb,mean=128,std=128"


@pytest.fixture
def noisy(tmp_path: Path) -> Path:
    """A folder with one detailed (noise) 256x256 RGB photo."""
    folder = tmp_path / "noisy"
    folder.mkdir()
    rgb = np.random.default_rng(7).integers(0, 256, (NOISY, NOISY, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(folder / "noise.png")
    return folder


def _all_ones(tmp_path: Path) -> Path:
    path = tmp_path / "ones.json"
    Tables(np.ones((8, 8), np.int64), np.ones((8, 8), np.int64)).save(path)
    return path


@pytest.mark.parametrize("subsampling", ["4:4:4", "4:2:0"])
def test_encode_function_on_a_detailed_photo_at_all_ones(subsampling: str) -> None:
    """Every Pillow save featcomp makes goes through encode.encode: both chroma settings Pillow is asked for."""
    from featcomp.jpeg.dct import roundtrip
    from featcomp.jpeg.encode import encode

    rgb = np.random.default_rng(7).integers(0, 256, (NOISY, NOISY, 3), dtype=np.uint8)
    tables = Tables(np.ones((8, 8), np.int64), np.ones((8, 8), np.int64), subsampling=subsampling)
    data = encode(rgb, tables)
    assert len(data) > (2 if subsampling == "4:4:4" else 1) * NOISY * NOISY  # past Pillow's own buffer at 4:4:4
    assert np.array_equal(decode(data), roundtrip(rgb, tables))  # the whole file was written, not a truncated one


def test_jpeg_encode_a_detailed_photo_at_all_ones(cli: Cli, noisy: Path, tmp_path: Path) -> None:
    done = cli("jpeg", "encode", noisy, "--tables", _all_ones(tmp_path), "-o", tmp_path / "o")
    assert done.code == 0, done.err
    assert decode((tmp_path / "o" / "noise.jpg").read_bytes()).shape == (NOISY, NOISY, 3)
    assert (tmp_path / "o" / "noise.jpg").stat().st_size > 2 * NOISY * NOISY


def test_jpeg_learn_on_a_detailed_photo(cli: Cli, model_file: Callable[..., str], noisy: Path, tmp_path: Path) -> None:
    """The rate search encodes the finest member (all-1 steps) first."""
    model = model_file(models.two_convs(dims=(1, 3, NOISY, NOISY)))
    done = cli("jpeg", "learn", model, "--images", noisy, "--preprocess", FINE, "--method", "deepn",
               "--target-bpp", "8", "-o", tmp_path / "t.json", "-q")
    assert done.code == 0, done.err
    assert Tables.load(tmp_path / "t.json").meta["bpp"] <= 8


def test_jpeg_eval_on_a_detailed_photo_at_quality_100(cli: Cli, model_file: Callable[..., str], noisy: Path,
                                                        tmp_path: Path) -> None:
    """Quality 100 is all-1 steps; --rate-images encodes the full-size photos too."""
    model = model_file(models.two_convs(dims=(1, 3, NOISY, NOISY)))
    done = cli("jpeg", "eval", model, "--images", noisy, "--preprocess", FINE, "--quality", "100",
               "--rate-images", noisy, "--tables", _all_ones(tmp_path), "--no-sweep")
    assert done.code == 0, done.err
    assert "standard q100" in done.out


@pytest.mark.parametrize(("change", "words"), [
    (lambda d: d["profile"].__setitem__("scale", "big"), ("profile.scale", "positive number")),
    (lambda d: d["profile"].__setitem__("scale", [1]), ("profile.scale",)),
    (lambda d: d["profile"].__setitem__("scale", True), ("profile.scale",)),
    (lambda d: d["profile"].__setitem__("scale", -2), ("profile.scale", "positive")),
    (lambda d: d.__setitem__("profile", [1, 2]), ("profile must be an object",)),
    (lambda d: d.__setitem__("meta", [1, 2]), ("meta must be an object",)),
    (lambda d: d.__setitem__("ladder", [1]), ("ladder must be an object",)),
    (lambda d: d.__setitem__("method", ["learned"]), ("method must be a string",)),
    (lambda d: d["profile"]["luma"][0].__setitem__(0, float("nan")), ("profile_luma", "finite")),
    (lambda d: d.__setitem__("luma", "16"), ("luma must be an 8x8 list",)),
], ids=["scale-str", "scale-list", "scale-bool", "scale-negative", "profile-list", "meta-list", "ladder-list",
        "method-list", "nan-profile", "luma-str"])
def test_tampered_tables_file_is_one_line(cli: Cli, photos: Path, tmp_path: Path, change: Callable[[dict], None],
                                          words: tuple[str, ...]) -> None:
    data = standard(50).to_dict()
    change(data)
    path = tmp_path / "tampered.json"
    path.write_text(json.dumps(data))
    _bad(cli("jpeg", "encode", photos / "p0.png", "--tables", path, "-o", tmp_path / "o"), "tampered.json", *words)
    assert not (tmp_path / "o").exists()


def test_preprocess_too_large_is_one_line(cli: Cli, photos: Path, tmp_path: Path) -> None:
    _bad(cli("jpeg", "encode", photos / "p0.png", "--quality", "50", "--preprocess", "resize=60000", "-o",
             tmp_path / "o"), "resize=60000", "8192")


def test_jpeg_help_lists_every_method(cli: Cli) -> None:
    from featcomp.jpeg.learn import METHODS

    done = cli("jpeg", "--help")
    assert done.code == 0
    actions = done.out.split("positional arguments:", 1)[1]
    learn_help = " ".join(actions.split(" learn ", 1)[1].split(" insert ", 1)[0].split())
    assert all(method in learn_help for method in METHODS), learn_help


def test_encode_into_an_unwritable_folder_is_one_line(cli: Cli, photos: Path, tmp_path: Path, read_only) -> None:
    locked = read_only(tmp_path / "locked")
    _bad(cli("jpeg", "encode", photos, "--quality", "50", "-o", locked / "o"), "not writable", str(locked))
    _bad(cli("jpeg", "encode", photos, "--quality", "50", "-o", locked), "not writable")
    _bad(cli("jpeg", "encode", photos, "--quality", "50", "-o", tmp_path / "missing" / "o"), "does not exist")
    assert list(locked.iterdir()) == []
