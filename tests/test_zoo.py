"""The embedded default model: a safe .pth reader, a valid ONNX graph, and really pretrained weights."""

from __future__ import annotations

import importlib.util
import os
import pickle
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from PIL import Image

import needs
from featcomp import zoo
from featcomp.errors import FeatcompError
from featcomp.zoo.torch_pickle import load_state_dict

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {504, 967, 968}  # coffee mug, espresso, cup


def preprocess(path: Path) -> np.ndarray:
    """RGB, short side to 256 (bilinear), centre crop 224, (x - 127) / 128, CHW float32."""
    image = Image.open(path).convert("RGB")
    scale = 256 / min(image.size)
    image = image.resize([max(256, round(s * scale)) for s in image.size], Image.Resampling.BILINEAR)
    left, top = (image.width - 224) // 2, (image.height - 224) // 2
    pixels = np.asarray(image.crop((left, top, left + 224, top + 224)), np.float32)
    return ((pixels - 127) / 128).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def model() -> onnx.ModelProto:
    return zoo.efficientnet_lite0()


@pytest.fixture(scope="module")
def session(model: onnx.ModelProto) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def logits(session: ort.InferenceSession, paths: list[Path]) -> np.ndarray:
    return session.run(["logits"], {"input": np.stack([preprocess(p) for p in paths])})[0]


def sample(name: str) -> Path:
    return next(p for p in zoo.sample_images() if p.name == name)


def _write_archive(path: Path, obj: object, persistent_id=None, storages: dict[str, bytes] | None = None) -> None:
    """A zip laid out like torch.save writes it: archive/data.pkl plus archive/data/<key>."""
    with zipfile.ZipFile(path, "w") as zf:
        with zf.open("archive/data.pkl", "w") as f:
            pickler = pickle.Pickler(f, protocol=2)
            pickler.persistent_id = persistent_id or (lambda _: None)
            pickler.dump(obj)
        for key, data in (storages or {}).items():
            zf.writestr(f"archive/data/{key}", data)


class _Evil:
    def __init__(self, victim: Path) -> None:
        self.victim = victim

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.remove, (str(self.victim),)


def test_reader_refuses_forbidden_globals(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("still here")
    _write_archive(tmp_path / "evil.pth", {"weight": _Evil(victim)})
    with pytest.raises(FeatcompError, match="refusing global (posix|nt|os).remove"):
        load_state_dict(tmp_path / "evil.pth")
    assert victim.read_text() == "still here"


def test_reader_rejects_files_that_are_not_state_dicts(tmp_path: Path) -> None:
    (tmp_path / "noise.pth").write_bytes(np.random.default_rng(0).bytes(1000))
    with pytest.raises(FeatcompError, match="noise.pth"):
        load_state_dict(tmp_path / "noise.pth")


def test_reader_rebuilds_strided_tensors_from_a_zip_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Without torch, stand-in modules let pickle write the same globals torch.save writes.
    torch, utils = types.ModuleType("torch"), types.ModuleType("torch._utils")
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})

    def _rebuild_tensor_v2(*args: object) -> None: ...

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)

    class Tensor:  # pickles like a torch tensor: a transposed 2x3 view of a 6-element storage at offset 1
        def __reduce__(self) -> tuple[object, tuple[object, ...]]:
            return utils._rebuild_tensor_v2, ("STORAGE", 1, (2, 3), (1, 2), False, {})

    storage = np.arange(7, dtype=np.float32)
    _write_archive(
        tmp_path / "ok.pth",
        {"w": Tensor()},
        persistent_id=lambda obj: ("storage", torch.FloatStorage, "0", "cpu", 7) if obj == "STORAGE" else None,
        storages={"0": storage.tobytes()},
    )
    state = load_state_dict(tmp_path / "ok.pth")
    np.testing.assert_array_equal(state["w"], storage[1:].reshape(3, 2).T)
    assert state["w"].flags.c_contiguous


def test_model_is_valid_onnx_and_runs_batched(model: onnx.ModelProto, session: ort.InferenceSession) -> None:
    onnx.checker.check_model(model, full_check=True)
    assert (model.ir_version, model.opset_import[0].version) == (8, 13)
    stem = next(n for n in model.graph.node if n.name == "conv_stem")
    assert list(next(a for a in stem.attribute if a.name == "pads").ints) == [0, 0, 1, 1]  # TensorFlow SAME

    paths = [sample("chelsea.png"), sample("coffee.png")]
    batch = logits(session, paths)
    assert batch.shape == (2, 1000) and batch.dtype == np.float32
    singles = np.concatenate([logits(session, [p]) for p in paths])
    np.testing.assert_allclose(batch, singles, rtol=1e-4, atol=1e-4)


def test_model_is_pretrained(session: ort.InferenceSession) -> None:
    # Measured: chelsea -> 282 tiger cat / 285 Egyptian cat (0.38 / 0.37); coffee -> 967 espresso (0.96).
    cat, coffee = logits(session, [sample("chelsea.png"), sample("coffee.png")])
    assert int(cat.argmax()) in CAT_CLASSES
    assert int(coffee.argmax()) in COFFEE_CLASSES


def test_sample_images_are_colour_images() -> None:
    images = zoo.sample_images()
    assert len(images) == 6 and {"chelsea.png", "coffee.png", "astronaut.png"} <= {p.name for p in images}
    for path in images:
        with Image.open(path) as image:
            assert image.mode == "RGB", path.name


def test_missing_weights_package_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name.startswith("efficientnet") else real_find_spec(name, *a)
    )
    with pytest.raises(FeatcompError, match=r"featcomp\[default-model\]"):
        zoo.efficientnet_lite0()


@pytest.mark.shared
@pytest.mark.slow
def test_top1_on_imagenet_val_100(session: ort.InferenceSession) -> None:
    folder = needs.shared("data", "imagenet-val-100")
    rows = [line.split() for line in (folder / "labels.txt").read_text().splitlines() if line.strip()]
    labels = np.array([int(label) for _, label in rows])
    predictions = np.concatenate(
        [logits(session, [folder / "images" / name for name, _ in rows[i : i + 25]]).argmax(1) for i in range(0, len(rows), 25)]
    )
    accuracy = float((predictions == labels).mean())
    assert accuracy >= 0.65, f"top-1 {accuracy:.2f} on {len(rows)} images (published EfficientNet-Lite0: 0.75)"
