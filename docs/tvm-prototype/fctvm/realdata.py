"""Real activations for the kernel tests: the inputs of every DctCmEncode node of a compressed model,
from ONNX Runtime on real validation images, plus each site's numpy reference codec."""
from __future__ import annotations
import numpy as np, onnx
import featcomp
from featcomp.api import _reader
from featcomp.data import collect
from featcomp.modelio import input_spec
from featcomp.runtime_ops import ort as fort

PRE = "resize=256,crop=224,order=rgb,mean=128,std=128"
VAL = str(__import__("pathlib").Path(__file__).resolve().parents[4] / "shared/data/imagenet-val-100")


def inputs(model: onnx.ModelProto, limit: int = 2) -> list[dict[str, np.ndarray]]:
    return collect(_reader(model, VAL, PRE, limit, "calibration"), input_spec(model))


def encode_nodes(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    return [n for n in model.graph.node if n.op_type == "DctCmEncode"]


def activations(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """X of each DctCmEncode node (by node input name) and the ORT symbols (by output name)."""
    nodes = encode_nodes(model)
    names = [n.input[0] for n in nodes] + [n.output[0] for n in nodes]
    dtypes = [onnx.TensorProto.FLOAT] * len(nodes) + [onnx.TensorProto.INT16] * len(nodes)
    sess = fort.session(fort.with_outputs(model, names, dtypes))
    return fort.run(sess, feeds, names)


def sites(model: onnx.ModelProto) -> dict[str, object]:
    """DctCmEncode input tensor name -> DctCmSite (numpy reference)."""
    codecs = featcomp.site_codecs(model) if hasattr(featcomp, "site_codecs") else __import__("featcomp.api").api.site_codecs(model)
    return dict(codecs)
