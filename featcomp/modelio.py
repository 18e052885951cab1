"""Loading, validating and saving models, so every later step can trust what it gets.

Everything a user can get wrong about a model file becomes one FeatcompError line here, before any
calibration work starts; outputs are written to a temporary file and renamed, never half-written.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper, version_converter

from featcomp.data import InputSpec
from featcomp.errors import FeatcompError

MIN_OPSET, MAX_OPSET = 7, 26  # ONNX Runtime 1.31 runs default-domain opsets up to 26
UPGRADE_OPSET = 13            # models older than the ops featcomp inserts (Round: 11) are converted to this
MIN_IR = 8                    # model-local functions
CONV_OPS = frozenset({"Conv", "ConvTranspose"})  # a model needs one; passes.sites.LAYER_OPS builds on these


def load_model(path: str | os.PathLike[str]) -> onnx.ModelProto:
    p = Path(path)
    if not p.exists():
        raise FeatcompError(f"model file {p} does not exist")
    if not p.is_file():
        raise FeatcompError(f"model path {p} is not a file")
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise FeatcompError(f"cannot read model {p}: {exc.strerror or exc}") from None
    try:
        model = onnx.load_model_from_string(data)
    except (DecodeError, ValueError, RuntimeError):
        model = None
    if model is None or not model.graph.node:
        raise FeatcompError(f"{p} is not an ONNX model (no graph could be read from it)")
    _load_external_data(model, p)
    return model


def _load_external_data(model: onnx.ModelProto, path: Path) -> None:
    """Read tensors stored beside the model into it: their locations are relative to the model's folder, not
    the current directory, and once inline every output featcomp writes is self-contained."""
    if not uses_external_data(model):
        return
    folder = path.resolve().parent
    try:
        external_data_helper.load_external_data_for_model(model, str(folder))
    except Exception as exc:  # a missing file, a location outside the folder, a short read
        raise FeatcompError(
            f"cannot read the external data of {path} from its folder {folder}: {_first_line(exc)}; "
            "keep the data files next to the model"
        ) from None


def uses_external_data(model: onnx.ModelProto) -> bool:
    """True when any tensor of the graph (subgraphs and node attributes included) lives in another file."""
    return any(external_data_helper.uses_external_data(t) for t in _tensors(model.graph))


def _tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
                yield from _tensors(sub)


def default_opset(model: onnx.ModelProto) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def prepare(model: onnx.ModelProto, *, need_conv: bool = True) -> onnx.ModelProto:
    """Validate, upgrade old opsets, and infer shapes: the form every pass works on."""
    opset = default_opset(model)
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise FeatcompError(
            f"the model uses ONNX opset {opset}; featcomp supports opsets {MIN_OPSET} to {MAX_OPSET} "
            f"(re-export it with an opset in that range)"
        )
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        if any(not i.type.tensor_type.HasField("shape") for i in model.graph.input):
            input_spec(model)  # the checker's "Field 'shape' ... missing" does not say which input or what to do
        raise FeatcompError(f"the model is not valid ONNX: {_first_line(exc)}") from None
    if opset < 11:
        try:
            model = version_converter.convert_version(model, UPGRADE_OPSET)
        except Exception as exc:  # the converter raises bare RuntimeErrors/ValidationErrors
            raise FeatcompError(
                f"the model uses opset {opset} and could not be upgraded to {UPGRADE_OPSET}: {_first_line(exc)}"
            ) from None
    if model.ir_version < MIN_IR:  # on a copy: the caller's model stays as it was (strip gives it back)
        raised = onnx.ModelProto()
        raised.CopyFrom(model)
        raised.ir_version = MIN_IR
        model = raised
    if need_conv and not any(n.op_type in CONV_OPS for n in model.graph.node):
        raise FeatcompError("the model has no Conv layers: featcomp compresses feature maps between conv layers")
    input_spec(model)
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as exc:
        raise FeatcompError(f"ONNX shape inference failed on the model: {_first_line(exc)}") from None


def input_spec(model: onnx.ModelProto) -> InputSpec:
    """The model's single image input (initializers listed as inputs by old exporters are skipped)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise FeatcompError(f"featcomp needs a model with exactly one input (an image batch); this one has: {names}")
    tensor = inputs[0].type.tensor_type
    if not tensor.HasField("shape"):
        raise FeatcompError(
            f"model input '{inputs[0].name}' has no shape; re-export the model with a fixed input size (e.g. 1x3x224x224)"
        )
    dims: list[int | str | None] = []
    for d in tensor.shape.dim:
        dims.append(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else (d.dim_param or None))
    dtype = onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)
    return InputSpec(inputs[0].name, tuple(dims), dtype)


def check_writable(path: str | os.PathLike[str]) -> Path:
    """Fail before any work when an output cannot be written."""
    p = Path(path)
    parent = p.parent if str(p.parent) else Path(".")
    if p.is_dir():
        raise FeatcompError(f"output {p} is a directory; give a file name")
    if not parent.is_dir():
        raise FeatcompError(f"cannot write {p}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise FeatcompError(f"cannot write {p}: folder {parent} is not writable")
    return p


def check_folder_output(path: str | os.PathLike[str]) -> Path:
    """Fail before any work when files cannot be written into the folder `path` (made if missing). Same
    rule as check_writable: the parent folder must exist, missing parents are not created."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise FeatcompError(f"output {p} exists and is not a folder; give a folder")
    where = p if p.is_dir() else (p.parent if str(p.parent) else Path("."))
    if not where.is_dir():
        raise FeatcompError(f"cannot create {p}: folder {where} does not exist (create it first)")
    if not os.access(where, os.W_OK | os.X_OK):
        raise FeatcompError(f"cannot write into {p}: folder {where} is not writable")
    return p


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write via a temporary file in the same folder, then rename: no half-written outputs."""
    p = check_writable(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent if str(p.parent) else ".")
    except OSError as exc:
        raise FeatcompError(f"cannot write {p}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
        os.replace(tmp, p)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise FeatcompError(f"cannot write {p}: {exc.strerror or exc}") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def save_model(model: onnx.ModelProto, path: str | os.PathLike[str]) -> Path:
    return write_bytes(path, model.SerializeToString())


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
