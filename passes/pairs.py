"""Reading the compress -> decompress pairs back out of a model (for reports, strip and runtimes)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import helper, numpy_helper

from featcomp.codecs import site_codec_from_arrays
from featcomp.codecs.base import SiteCodec
from featcomp.errors import FeatcompError
from featcomp.ops.schemas import DOMAIN, PAIRS


@dataclass(frozen=True)
class Pair:
    site: str            # the original activation tensor (the encoder's input)
    codec_name: str
    encode: onnx.NodeProto
    decode: onnx.NodeProto
    codec: SiteCodec

    @property
    def symbols(self) -> str:
        return self.encode.output[0]

    @property
    def decoded(self) -> str:
        return self.decode.output[0]

    @property
    def side_tensors(self) -> list[str]:
        return list(self.encode.input[1:]) + list(self.decode.input[1:])


def find_pairs(model: onnx.ModelProto) -> list[Pair]:
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    decoders = {n.input[0]: n for n in graph.node if n.domain == DOMAIN and n.input}
    pairs = []
    for node in graph.node:
        if node.domain != DOMAIN:
            continue
        codec_name = next((name for name, (enc, _) in PAIRS.items() if enc.name == node.op_type), None)
        if codec_name is None:
            continue
        enc_schema, dec_schema = PAIRS[codec_name]
        dec = decoders.get(node.output[0])
        if dec is None or dec.op_type != dec_schema.name:
            raise FeatcompError(f"featcomp encoder '{node.name}' has no matching {dec_schema.name}; the model is damaged")
        arrays = {}
        for schema, n in ((enc_schema, node), (dec_schema, dec)):
            for port, tensor in zip(schema.inputs[1:], n.input[1:]):
                if tensor not in inits:
                    raise FeatcompError(f"featcomp op '{n.name}' input '{tensor}' is not an initializer")
                arrays[port.name] = numpy_helper.to_array(inits[tensor])
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        codec = site_codec_from_arrays(codec_name, arrays, attrs)
        pairs.append(Pair(site=node.input[0], codec_name=codec_name, encode=node, decode=dec, codec=codec))
    return pairs
