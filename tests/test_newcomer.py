"""What a newcomer meets first (issue 11): the README's code blocks run, and the public API is what it says.

The README's blocks use placeholder names (model.onnx, val_images/, my_calibration_reader); they run
here in a scratch folder where those exist, made from a tiny model built in code at the README's input
size (224) and a few random photos, so the check is fast and needs no ../shared.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import models
import needs
import numpy as np
import onnx
import pytest
from conftest import Run
from PIL import Image

from featcomp.cli import main
from featcomp.quality import BitsPerValue, MaxDrop, OutputSnr, Quality, Sqnr

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_PREPROCESS = "resize=256,crop=224,order=rgb,mean=128,std=128"
SIDE = 224


def blocks(lang: str) -> list[str]:
    """The fenced ```lang blocks of README.md, in order."""
    return re.findall(rf"```{lang}\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


class RandomReader:
    """The CalibrationDataReader protocol over a few random 224x224 inputs."""

    def __init__(self, count: int = 3) -> None:
        rng = np.random.default_rng(0)
        self.batches: Iterator[np.ndarray] = iter(
            rng.normal(size=(count, 1, 3, SIDE, SIDE)).astype(np.float32))

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self.batches, None)
        return None if x is None else {models.INPUT: x}


def _photos(folder: Path, count: int = 3) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(len(folder.name))
    lines = []
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (260, 300, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        lines.append(f"img{i}.png {i % 4}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder holding what the README's placeholders name: model.onnx and image folders."""
    models.save(models.two_convs(dims=(1, 3, SIDE, SIDE)), tmp_path / "model.onnx")
    for name in ("val_images", "images", "other_images", "DIR", "VAL"):
        _photos(tmp_path / name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_readme_has_a_python_block() -> None:
    assert blocks("python"), "README.md has no ```python block"


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_readme_python_block_runs(workdir: Path, index: int, capsys: pytest.CaptureFixture[str]) -> None:
    code = blocks("python")[index]
    namespace: dict[str, object] = {"__name__": "__readme__", "my_calibration_reader": RandomReader()}
    exec(compile(code, f"README.md python block {index}", "exec"), namespace)
    if "featcomp.report(" in code:
        assert "sites" in capsys.readouterr().out  # the rendered table was printed
    if "model.fc.onnx" in code:
        assert (workdir / "model.fc.onnx").stat().st_size > 0


def _commands() -> list[str]:
    """Each `featcomp ...` command of the README's bash blocks (continuations joined, comments dropped)."""
    found = []
    for block in blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line.startswith("featcomp "):
                found.append(line)
    return found


def _runnable(command: str) -> list[str]:
    """The README's notation made concrete: '[optional]' dropped, 'a|b' -> a, '…' -> the preprocess spec."""
    command = re.sub(r"\s*\[[^\]]*\]", "", command)
    command = command.replace("…", shlex.quote(README_PREPROCESS))
    command = re.sub(r"(\w+)(\|\w+)+", r"\1", command)
    return shlex.split(command)[1:]


def test_readme_has_featcomp_commands() -> None:
    assert len(_commands()) >= 5


@pytest.mark.parametrize("command", _commands(), ids=[f"{i}-{c.split()[1]}" for i, c in enumerate(_commands())])
def test_readme_featcomp_command_runs(workdir: Path, cli, command: str) -> None:
    # the commands build on each other (compress writes what report, eval and strip read): run the ones before
    before = _commands()[:_commands().index(command)]
    for earlier in before:
        assert main(_runnable(earlier)) == 0, earlier
    result: Run = cli(*_runnable(command))
    assert result.code == 0, f"{command}\n{result.err}"


def _fresh(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize("first", ["import featcomp", "import featcomp.reporting.render",
                                   "from featcomp import api", "import featcomp.cli"])
def test_public_names_are_never_shadowed_by_submodules(first: str) -> None:
    """`import pkg.sub` sets the attribute `sub` on pkg: no public name may be a submodule's name, in any order."""
    code = (f"{first}\nimport importlib, pkgutil, types, featcomp\n"
            "for m in pkgutil.walk_packages(featcomp.__path__, 'featcomp.'):\n"
            "    if not m.name.startswith(('featcomp.runtime_ops.tvm', 'featcomp.deploy', 'featcomp.__main__')):\n"
            "        importlib.import_module(m.name)\n"
            "bad = [n for n in featcomp.__all__ if isinstance(getattr(featcomp, n), types.ModuleType)]\n"
            "print(bad, callable(featcomp.report), featcomp.report.__module__)")
    assert _fresh(code) == "[] True featcomp.api"


def test_dir_shows_the_public_api() -> None:
    import featcomp

    names = dir(featcomp)
    for name in ("compress", "report", "render", "strip", "evaluate", "FeatcompError", "save_model"):
        assert name in names
    assert set(featcomp.__all__) <= set(names)


def test_default_job_output_is_ignored_by_git(tmp_path: Path) -> None:
    """The .gitignore, checked in a fresh repository, so the test also holds in a copy of the tree without .git."""
    git = needs.tool("git", "apt-get install git")
    (tmp_path / ".gitignore").write_bytes((ROOT / ".gitignore").read_bytes())
    subprocess.run([git, "init", "-q", str(tmp_path)], check=True, capture_output=True)
    paths = ["featcomp-out/efficientnet-lite0.fc.onnx", "featcomp-out/efficientnet-lite0.report.json"]
    done = subprocess.run([git, "-c", "core.excludesFile=/dev/null", "check-ignore", *paths], cwd=tmp_path,
                          capture_output=True, text=True)
    assert done.stdout.split() == paths, "featcomp-out/ (the default job's output) is not in .gitignore"


# --- valid models that crashed (issue 11, item 13) -------------------------------------------------------

def _feeds(model: onnx.ModelProto, count: int = 2, seed: int = 0) -> list[dict[str, np.ndarray]]:
    from featcomp.modelio import input_spec

    spec = input_spec(model)
    rng = np.random.default_rng(seed)
    shape = tuple(d if isinstance(d, int) else 1 for d in spec.shape)
    return [{spec.name: rng.normal(size=shape).astype(np.float32)} for _ in range(count)]


class ListReader:
    """get_next() over a list of feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.items = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.items, None)


def _runs_in_ort(model: onnx.ModelProto, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
    from featcomp.runtime_ops import ort

    sess = ort.session(model)
    return next(iter(ort.run(sess, feeds[0]).values()))


MODES = [OutputSnr(20.0), MaxDrop(1.0), BitsPerValue(3.0), Sqnr(20.0)]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: type(m).__name__)
@pytest.mark.parametrize("build", [models.initializers_as_inputs, models.single_output,
                                   lambda: models.single_output(constant=True)],
                         ids=["initializers-as-inputs", "single-output", "constant-output"])
def test_valid_models_compress_in_every_mode(build, mode: Quality) -> None:
    import featcomp

    model = build()
    feeds = _feeds(model, 3)
    result = featcomp.compress(model, ListReader(feeds), quality=mode)
    assert len(result.sites) == 2
    assert np.all(np.isfinite(_runs_in_ort(result.model, feeds)))


def test_a_single_score_output_is_not_centred_away() -> None:
    """One output per sample has no softmax shift to remove: its power is the signal, not zero."""
    from featcomp import allocate
    from featcomp.modelio import prepare

    model = prepare(models.single_output())
    assert allocate.output_power(model, _feeds(model)) > 0


LIGHT = sorted((Path(onnx.__file__).parent / "backend/test/data/light").glob("*.onnx"))


def _random_weights(model: onnx.ModelProto, seed: int = 0) -> onnx.ModelProto:
    """The light zoo models make every weight with ConstantOfShape (one value): random initializers instead
    (He-scaled for kernels; each per-channel vector a positive spread around its value, as BN variances need)."""
    from onnx import numpy_helper

    rng = np.random.default_rng(seed)
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept, weights = [], []
    for node in out.graph.node:
        if node.op_type != "ConstantOfShape" or node.input[0] not in inits:
            kept.append(node)
            continue
        shape = tuple(int(d) for d in inits[node.input[0]])
        value = float(numpy_helper.to_array(node.attribute[0].t).reshape(-1)[0])
        if len(shape) >= 2:
            array = rng.normal(0.0, np.sqrt(2.0 / max(1, int(np.prod(shape[1:])))), shape)
        else:
            array = value * rng.uniform(0.5, 1.5, shape)
        out.graph.initializer.append(numpy_helper.from_array(array.astype(np.float32), node.output[0]))
        weights.append(onnx.helper.make_tensor_value_info(node.output[0], onnx.TensorProto.FLOAT, list(shape)))
    del out.graph.node[:]
    out.graph.node.extend(kept)
    inputs = list(out.graph.input)  # IR 3: every initializer is a graph input too, here before the image
    del out.graph.input[:]
    out.graph.input.extend([*weights, *inputs])
    return out


def test_the_light_zoo_is_there() -> None:
    assert len(LIGHT) == 9, [p.name for p in LIGHT]


FAST = ("light_squeezenet",)  # the rest take 10-100 s each on a loaded 2-core machine (slow)


@pytest.mark.parametrize("path", [pytest.param(p, marks=[] if p.stem in FAST else [pytest.mark.slow])
                                  for p in LIGHT], ids=[p.stem.removeprefix("light_") for p in LIGHT])
def test_light_zoo_models_compress(path: Path) -> None:
    """IR-3 era models (initializers listed as graph inputs before the image) compress and run in ORT."""
    import featcomp

    model = _random_weights(onnx.load(str(path)))
    feeds = _feeds(model, 2)
    result = featcomp.compress(model, ListReader(feeds), quality=featcomp.Sqnr(20.0))
    assert result.sites
    y = _runs_in_ort(result.model, feeds)
    assert y.shape[0] == 1 and np.all(np.isfinite(y))


# --- external data (issue 11, item 12) ---------------------------------------------------------------------

def _external_model(folder: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """two_convs saved as folder/model.onnx with every weight in folder/weights.bin; returns its weights."""
    from onnx import numpy_helper

    folder.mkdir()
    model = models.two_convs()
    weights = {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}
    onnx.save_model(model, str(folder / "model.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="weights.bin", size_threshold=0)
    assert (folder / "weights.bin").is_file()
    return folder / "model.onnx", weights


@pytest.mark.parametrize("decoy", [False, True], ids=["plain", "decoy-in-cwd"])
def test_external_data_is_read_from_the_models_folder(cli, tmp_path: Path, calib_npz: Path,
                                                      monkeypatch: pytest.MonkeyPatch, decoy: bool) -> None:
    from onnx import numpy_helper

    path, weights = _external_model(tmp_path / "models")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if decoy:  # a same-named file of the same size in the current directory: it must not be read
        size = (path.parent / "weights.bin").stat().st_size
        (elsewhere / "weights.bin").write_bytes(np.full(size // 4, 0.5, np.float32).tobytes())
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.chdir(elsewhere)
    result = cli("compress", path, "-o", out / "model.fc.onnx", "--calib", calib_npz, "--output-snr", "20", "-q")
    assert result.code == 0, result.err
    stripped = cli("strip", out / "model.fc.onnx", "-o", out / "model.onnx")
    assert stripped.code == 0, stripped.err
    monkeypatch.chdir(tmp_path)  # outputs are self-contained: they load from anywhere, with the model's weights
    for written in (out / "model.fc.onnx", out / "model.onnx"):
        loaded = onnx.load(str(written), load_external_data=False)
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in loaded.graph.initializer)
        got = {t.name: numpy_helper.to_array(t) for t in loaded.graph.initializer}
        for name, value in weights.items():
            np.testing.assert_array_equal(got[name], value)
        assert np.all(np.isfinite(_runs_in_ort(loaded, _feeds(loaded))))


def test_missing_external_data_is_one_line(cli, tmp_path: Path, calib_npz: Path) -> None:
    path, _ = _external_model(tmp_path / "models")
    (path.parent / "weights.bin").unlink()
    result = cli("compress", path, "-o", tmp_path / "out.fc.onnx", "--calib", calib_npz)
    assert result.code == 1 and "Traceback" not in result.err
    assert result.err.startswith("featcomp: error: cannot read the external data") and "weights.bin" in result.err
    assert not (tmp_path / "out.fc.onnx").exists()
