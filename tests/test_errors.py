"""Bad input gets one clear line on stderr, exit code 1, no traceback and no (partial) output file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import models
from conftest import PREPROCESS, Run


def assert_fails(result: Run, *named: object, output: Path | None = None) -> None:
    """The error contract: one `featcomp: error:` line naming the problem; nothing written."""
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("featcomp: error: ")
    for thing in named:
        assert str(thing) in lines[0], lines[0]
    if output is not None:
        assert not output.exists()
        if output.parent.is_dir():
            assert not [p for p in output.parent.iterdir() if p.name.endswith(".tmp")]


@pytest.fixture
def compress(cli: Callable[..., Run], tmp_path: Path, calib_npz: Path) -> Callable[..., tuple[Run, Path]]:
    """`featcomp compress MODEL -o tmp/out.fc.onnx --calib calib.npz ...extra` -> (result, output path)."""

    def run(model: str, *extra: object, calib: object = calib_npz) -> tuple[Run, Path]:
        output = tmp_path / "out" / "out.fc.onnx"
        output.parent.mkdir(exist_ok=True)
        return cli("compress", model, "-o", output, "--calib", calib, *extra), output

    return run


def test_missing_model_file(compress, tmp_path: Path) -> None:
    result, output = compress(str(tmp_path / "nope.onnx"))
    assert_fails(result, "nope.onnx", "does not exist", output=output)


def test_model_path_is_a_folder(compress, tmp_path: Path) -> None:
    # root can read chmod-000 files, so an unreadable model is simulated by a folder
    (tmp_path / "folder.onnx").mkdir()
    result, output = compress(str(tmp_path / "folder.onnx"))
    assert_fails(result, "folder.onnx", "not a file", output=output)


def test_not_onnx(compress, tmp_path: Path) -> None:
    path = tmp_path / "random.onnx"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    result, output = compress(str(path))
    assert_fails(result, "random.onnx", "not an ONNX model", output=output)


def test_model_without_conv(compress, model_file) -> None:
    result, output = compress(model_file(models.no_conv()))
    assert_fails(result, "no Conv layers", output=output)


def test_dynamic_input_shape(compress, model_file) -> None:
    result, output = compress(model_file(models.dynamic_input()))
    assert_fails(result, "'input'", "(N, 3, ?, ?)", "fixed", output=output)


def test_missing_input_shape(compress, model_file) -> None:
    result, output = compress(model_file(models.no_input_shape()))
    assert_fails(result, "'input'", "has no shape", output=output)


def test_two_inputs(compress, model_file) -> None:
    result, output = compress(model_file(models.two_inputs()))
    assert_fails(result, "exactly one input", "input, other", output=output)


@pytest.mark.parametrize("opset", [6, 27])
def test_unsupported_opset(compress, model_file, opset: int) -> None:
    model = models.old_opset(6)
    model.opset_import[0].version = opset
    result, output = compress(model_file(model))
    assert_fails(result, f"opset {opset}", output=output)


def test_image_that_does_not_decode(compress, model_file, images: Path) -> None:
    (images / "broken.jpg").write_text("this is not a JPEG")
    result, output = compress(model_file(models.two_convs()), "--preprocess", PREPROCESS, calib=images)
    assert_fails(result, "broken.jpg", "cannot decode", output=output)


def test_empty_calibration_folder(compress, model_file, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result, output = compress(model_file(models.two_convs()), "--preprocess", PREPROCESS, calib=tmp_path / "empty")
    assert_fails(result, "empty", "no image files", output=output)


def test_calibration_shape_mismatch(compress, model_file, tmp_path: Path) -> None:
    path = tmp_path / "big.npz"
    np.savez(path, input=np.zeros((2, 3, 20, 20), np.float32))
    result, output = compress(model_file(models.two_convs()), calib=path)
    assert_fails(result, "big.npz", "(1, 3, 20, 20)", "(1, 3, 16, 16)", output=output)


@pytest.mark.parametrize("array", [np.full((2, 3, 16, 16), "7"), np.zeros((2, 3, 16, 16), np.complex64)],
                         ids=["strings", "complex"])
def test_calibration_dtype_mismatch(compress, model_file, tmp_path: Path, array: np.ndarray) -> None:
    path = tmp_path / "typed.npz"
    np.savez(path, input=array)
    result, output = compress(model_file(models.two_convs()), calib=path)
    assert_fails(result, "typed.npz", f"dtype {array.dtype}", "float32", output=output)


def test_nan_in_calibration_input(compress, model_file, tmp_path: Path) -> None:
    data = np.zeros((2, 3, 16, 16), np.float32)
    data[1, 0, 3, 3] = np.nan
    path = tmp_path / "nan.npz"
    np.savez(path, input=data)
    result, output = compress(model_file(models.two_convs()), calib=path)
    assert_fails(result, "nan.npz", "sample 1", "NaN or Inf", output=output)


def test_inf_activations(compress, model_file, tmp_path: Path) -> None:
    path = tmp_path / "ones.npz"
    np.savez(path, input=np.ones((2, 3, 16, 16), np.float32))
    result, output = compress(model_file(models.two_convs(first_weight=1e38)), calib=path)
    assert_fails(result, "activation 'relu1'", "NaN or Inf", output=output)


def test_output_folder_missing(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    output = tmp_path / "missing" / "out.fc.onnx"
    result = cli("compress", model_file(models.two_convs()), "-o", output, "--calib", calib_npz)
    assert_fails(result, "missing", "does not exist", output=output)


def test_output_is_a_folder(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    output = tmp_path / "taken.onnx"
    output.mkdir()
    result = cli("compress", model_file(models.two_convs()), "-o", output, "--calib", calib_npz)
    assert_fails(result, "taken.onnx", "is a directory")
    assert output.is_dir() and not any(output.iterdir())


def test_report_output_checked_before_work(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    output = tmp_path / "out.fc.onnx"
    result = cli("compress", model_file(models.two_convs()), "-o", output, "--calib", calib_npz,
                 "--report", tmp_path / "nowhere" / "r.json")
    assert_fails(result, "nowhere", output=output)


def test_wrong_preprocess_spec(compress, model_file, images: Path) -> None:
    result, output = compress(model_file(models.two_convs()), "--preprocess", "resize=big,crop=16", calib=images)
    assert_fails(result, "--preprocess", "resize=big", output=output)


def test_preprocess_size_mismatch(compress, model_file, images: Path) -> None:
    result, output = compress(model_file(models.two_convs()), "--preprocess", "resize=32,crop=24", calib=images)
    assert_fails(result, "crop=", "(1, 3, 16, 16)", output=output)


def test_images_without_preprocess(compress, model_file, images: Path) -> None:
    result, output = compress(model_file(models.two_convs()), calib=images)
    assert_fails(result, "--preprocess", output=output)


def test_compress_model_needs_output_and_calib(cli, model_file) -> None:
    assert_fails(cli("compress", model_file(models.two_convs())), "-o OUT", "--calib SRC")


def test_unknown_site_name(compress, model_file) -> None:
    result, output = compress(model_file(models.two_convs()), "--sites", "relu1,relu9")
    assert_fails(result, "relu9", "featcomp inspect", output=output)


def test_empty_selection(compress, model_file) -> None:
    result, output = compress(model_file(models.two_convs()), "--op-types", "Softmax")
    assert_fails(result, "selection is empty", output=output)


def test_bad_limit(compress, model_file) -> None:
    result, output = compress(model_file(models.two_convs()), "--limit", "0")
    assert_fails(result, "limit", output=output)


def test_report_on_model_without_pairs(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    output = tmp_path / "report.json"
    result = cli("report", model_file(models.two_convs(), "plain.onnx"), "--calib", calib_npz,
                 "--format", "json", "-o", output)
    assert_fails(result, "plain.onnx", "no featcomp pairs", output=output)


def test_strip_model_without_pairs(cli, model_file, tmp_path: Path) -> None:
    output = tmp_path / "stripped.onnx"
    result = cli("strip", model_file(models.two_convs(), "plain.onnx"), "-o", output)
    assert_fails(result, "plain.onnx", "no featcomp pairs", output=output)


def test_eval_label_missing_for_an_image(cli, model_file, images: Path, tmp_path: Path) -> None:
    labels = images / "labels.txt"
    labels.write_text("\n".join(line for line in labels.read_text().splitlines() if not line.startswith("img3")))
    output = tmp_path / "eval.json"
    result = cli("eval", model_file(models.two_convs()), "--images", images, "--preprocess", PREPROCESS,
                 "--format", "json", "-o", output)
    assert_fails(result, "img3.png", "no label", output=output)


def test_eval_labels_file_missing(cli, model_file, images: Path) -> None:
    (images / "labels.txt").unlink()
    result = cli("eval", model_file(models.two_convs()), "--images", images, "--preprocess", PREPROCESS)
    assert_fails(result, "labels.txt", "does not exist")


def test_usage_errors_exit_2(cli) -> None:
    """argparse's own errors (unknown flag, missing required flag) keep its usage text and exit 2."""
    assert cli().code == 2
    assert cli("inspect", "m.onnx", "--no-such-flag").code == 2
    assert cli("eval", "m.onnx", "--images", "x").code == 2


def test_default_job_output_folder_blocked(cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked before the default model is even built: a file where featcomp-out/ should go."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "featcomp-out").write_text("in the way")
    assert_fails(cli("compress"), "featcomp-out")


def test_interrupt_exits_130_and_bugs_keep_their_traceback(cli, model_file, monkeypatch: pytest.MonkeyPatch) -> None:
    from featcomp import api

    path = model_file(models.two_convs())

    def interrupted(model: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(api, "inspect", interrupted)
    assert cli("inspect", path).code == 130

    def buggy(model: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "inspect", buggy)
    with pytest.raises(RuntimeError, match="a bug"):
        cli("inspect", path)


def test_npz_of_strings_is_a_dtype_problem(compress, model_file, tmp_path: Path) -> None:
    path = tmp_path / "strings.npz"
    np.savez(path, input=np.array(["a", "b", "c"]))
    result, output = compress(model_file(models.two_convs()), calib=path)
    assert_fails(result, "has dtype <U1", output=output)
    assert "shape" not in result.err
