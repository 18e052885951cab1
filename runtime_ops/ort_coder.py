"""The bitstream coder as ONNX Runtime kernels: onnxruntime-extensions Python ops, for running a compressed
model with real bitstreams between its encode and decode ops.

A compressed model normally feeds the encoder's symbols straight to the decoder: the coder is lossless, so
accuracy does not depend on it, and reports account its bits exactly from the symbols (SiteCodec.coded_bytes).
`with_coder` inserts the coder itself, so the decoder really reads what the packer wrote:
    symbols -> ai.onnx.contrib::FeatcompPack -> bytes (uint8) -> ai.onnx.contrib::FeatcompUnpack -> symbols
Each kernel is the numpy reference coder (vectorised, bit-exact by definition). onnxruntime-extensions only
runs Python ops in its own domain (see the toolchain notes), and its ops are process-global, so sites are
looked up by their parameter id in a registry this module fills; `session()` does both steps.

Batch layout of the bytes tensor: u32 sample count, u32 length of each stream, then the streams.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

import numpy as np
import onnx
from featcomp.passes.coder import CoderNodes, insert_coder
from featcomp.passes.pairs import Pair

if TYPE_CHECKING:
    from onnxruntime import InferenceSession
from onnx import TensorProto, helper

from featcomp.codecs.base import SiteCodec
from featcomp.errors import CodecError, FeatcompError

CONTRIB = "ai.onnx.contrib"
PACK, UNPACK = "FeatcompPack", "FeatcompUnpack"
_SITES: dict[int, SiteCodec] = {}
_REGISTERED = False


def _register_ops() -> None:
    global _REGISTERED
    if _REGISTERED:
        return
    try:
        from onnxruntime_extensions import PyCustomOpDef, onnx_op
    except ImportError:
        raise FeatcompError("running the bitstream coder inside ONNX Runtime needs onnxruntime-extensions: "
                            "pip install 'featcomp[coder]'") from None

    @onnx_op(op_type=PACK, inputs=[PyCustomOpDef.dt_int16], outputs=[PyCustomOpDef.dt_uint8],
             attrs={"param_id": PyCustomOpDef.dt_int64})  # type: ignore[untyped-decorator]
    def pack(symbols: np.ndarray, **attrs: object) -> np.ndarray:
        site = _site(attrs)
        streams = [site.pack(one) for one in symbols]
        head = struct.pack(f"<{1 + len(streams)}I", len(streams), *map(len, streams))
        return np.frombuffer(head + b"".join(streams), np.uint8)

    @onnx_op(op_type=UNPACK, inputs=[PyCustomOpDef.dt_uint8], outputs=[PyCustomOpDef.dt_int16],
             attrs={"param_id": PyCustomOpDef.dt_int64})  # type: ignore[untyped-decorator]
    def unpack(data: np.ndarray, **attrs: object) -> np.ndarray:
        site = _site(attrs)
        raw = data.tobytes()
        if len(raw) < 4:
            raise CodecError("coded batch is truncated")
        (n,) = struct.unpack_from("<I", raw)
        if len(raw) < 4 * (n + 1):
            raise CodecError("coded batch is truncated")
        lengths = struct.unpack_from(f"<{n}I", raw, 4)
        at, out = 4 * (n + 1), []
        for length in lengths:
            out.append(site.unpack(raw[at:at + length]))
            at += length
        return np.stack(out)

    _REGISTERED = True


def _site(attrs: dict[str, object]) -> SiteCodec:
    value = attrs["param_id"]
    if not isinstance(value, (int, np.integer)):
        raise FeatcompError(f"a featcomp coder op has a param_id that is not an integer ({value!r})")
    pid = int(value) & 0xFFFFFFFF
    if pid not in _SITES:
        raise FeatcompError("a featcomp coder op refers to a site this process has not registered (use ort_coder.session)")
    return _SITES[pid]


def with_coder(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of a compressed model whose decoders read real bitstreams (pack -> unpack between each pair),
    with its sites registered for the kernels (the graph edit is passes/coder.py's)."""
    return _with_coder(model)[0]


def _with_coder(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[str]]:
    """with_coder's model and the coded tensors ('<symbols>/coded'), one per pair in find_pairs order."""
    coded_names: list[str] = []

    def build(pair: Pair, unpacked: str) -> CoderNodes:
        pid = pair.codec.param_id
        _SITES[pid] = pair.codec
        coded = f"{pair.symbols}/coded"
        coded_names.append(coded)
        signed = pid - (1 << 32) if pid >= 1 << 31 else pid
        return CoderNodes(
            nodes=[helper.make_node(PACK, [pair.symbols], [coded], name=f"{pair.encode.name}/pack", domain=CONTRIB,
                                    param_id=signed),
                   helper.make_node(UNPACK, [coded], [unpacked], name=f"{pair.decode.name}/unpack", domain=CONTRIB,
                                    param_id=signed)],
            value_info=[helper.make_tensor_value_info(coded, TensorProto.UINT8, None),
                        helper.make_tensor_value_info(unpacked, TensorProto.INT16, None)])

    return insert_coder(model, CONTRIB, build).model, coded_names


def session(model: onnx.ModelProto, threads: int | None = None, coded_outputs: bool = False) -> InferenceSession:
    """An InferenceSession running `with_coder(model)` with the coder kernels registered.

    coded_outputs also returns each site's coded batch, as `<symbols>/coded` (uint8).
    """
    _register_ops()
    import onnxruntime as ort
    from onnxruntime_extensions import get_library_path

    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.register_custom_ops_library(get_library_path())
    if threads:
        options.intra_op_num_threads = threads
    coded, names = _with_coder(model)
    if coded_outputs:
        from featcomp.runtime_ops.ort import with_outputs

        coded = with_outputs(coded, names, [TensorProto.UINT8] * len(names))
    try:
        return ort.InferenceSession(coded.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FeatcompError(f"ONNX Runtime cannot load the model with its coder: {first}") from None
