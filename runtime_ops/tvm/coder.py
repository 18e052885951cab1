"""The bitstream coders under TVM (transform-VLC and DCT-CM): the site arrays their TIR kernels
read, and the two ways to run them.

- `TirCoder`: one site's pack/unpack built on their own for a target, for tests and benchmarks
  against the numpy reference, and for a device that codes streams outside a model.
- `coded()`: inside a compiled model, symbols -> pack -> unpack -> symbols between an encode op and
  its decode op (convert.py calls it when the model is compiled with its coder), so the decoder
  reads what the packer wrote and the streams' lengths can be model outputs.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import onnx
import tvm
from featcomp.passes.coder import CoderNodes, insert_coder
from featcomp.passes.pairs import Pair, find_pairs
from featcomp.runtime_ops.tvm import coder_kernels as ck
from featcomp.runtime_ops.tvm import dctcm_coder_kernels as dk
from featcomp.runtime_ops.tvm import rans_coder_kernels as rk
from featcomp.runtime_ops.tvm.stream_tir import ENTRY, HEAD_FIXED, HEADER
from onnx import TensorProto, helper
from tvm import relax

from featcomp.codecs import bitstream, dctcm, rans, tvlc
from featcomp.codecs.dctcm import DctCmSite
from featcomp.codecs.tvlc import TvlcSite
from featcomp.errors import FeatcompError

Site = TvlcSite | DctCmSite
KERNELS = {TvlcSite: ("tvlc", ck), DctCmSite: ("dctcm", dk)}  # per site type: name, kernel module (own coder)
RANS_KERNELS = ("rans", rk)  # rANS-coded sites of either codec
KERNEL_CODECS = (TvlcSite.codec_name, DctCmSite.codec_name)


def _rans_of(site: Site) -> rans.RansCoder | None:
    """The site's rANS coder, or None when its own coder codes the slices."""
    coder = site.rans if isinstance(site, DctCmSite) else site.coder
    return coder if isinstance(coder, rans.RansCoder) else None


def kernels_of(site: Site) -> tuple[str, Any]:
    """(name, kernel module) of the TIR coder that writes and reads this site's slices."""
    return RANS_KERNELS if _rans_of(site) is not None else KERNELS[type(site)]

def _crc_table() -> np.ndarray:
    """zlib's CRC-32 tables for slicing-by-8 (reflected 0xEDB88320), [8, 256] u32: row 0 is the byte-at-a-time
    table (entry i is the CRC register after byte i from zero), row k the register after byte i and k zero bytes,
    so the kernels fold 8 bytes per step with 8 lookups instead of 8 dependent ones."""
    poly = np.uint32(0xEDB88320)
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ poly, table >> 1).astype(np.uint32)
    rows = [table]
    for _ in range(7):
        rows.append(((rows[-1] >> 8) ^ table[rows[-1] & 255]).astype(np.uint32))
    return np.stack(rows)


CRC_TABLE = _crc_table()


@dataclass(frozen=True, eq=False)
class CoderArrays:
    """What the kernels read for one site, in their parameter order, and the longest stream it can make."""

    site: Site
    max_bytes: int
    pack: dict[str, np.ndarray]
    unpack: dict[str, np.ndarray]

    @property
    def name(self) -> str:
        return kernels_of(self.site)[0]


def _head(site: Site, codec_id: int) -> np.ndarray:
    """The container's bytes that the site fixes (all before the payload length)."""
    empty = [b""] * (len(bitstream.bands(site.shape)) - 1)
    return np.frombuffer(bitstream.write(codec_id, site.param_id, site.shape, empty)[:HEAD_FIXED], np.uint8).copy()


def _slicing(site: Site, worst: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """(band [S + 1]: each slice's first value in a plane, room [S + 1]: where pack writes each slice before it
    moves them together, max_bytes) for the slices' worst-case byte counts `worst` [S]."""
    w = site.shape[2]
    band = (bitstream.bands(site.shape) * w).astype(np.int32)
    room = HEADER + ENTRY * len(worst) + np.concatenate([[0], np.cumsum(worst)])
    assert HEADER == bitstream.HEADER_BYTES and ENTRY == bitstream.ENTRY_BYTES
    return band, room.astype(np.int32), int(room[-1])


def coder_arrays(site: Site) -> CoderArrays:
    if _rans_of(site) is not None:
        return _rans_arrays(site)
    if isinstance(site, DctCmSite):
        return _dctcm_arrays(site)
    if isinstance(site, TvlcSite):
        return _tvlc_arrays(site)
    raise FeatcompError(f"no TIR coder for {type(site).__name__} sites")


def _dctcm_arrays(site: DctCmSite) -> CoderArrays:
    _, h, w = site.shape
    lo, hi = site.channel_ranges()
    kind, k = site.kinds.astype(np.int64), site.rice_k.astype(np.int64)
    mask = kind == dctcm.MASK
    umax = np.where(mask, np.maximum(np.abs(lo), np.abs(hi)) - 1, np.where(lo < 0, np.maximum(2 * hi, -2 * lo - 1), hi - lo))
    per_value = k + 1 + (np.maximum(umax, 0) >> k) + 2 * mask  # remainder, unary, bitmap and sign bits
    live = kind != dctcm.DROP
    rows = np.diff(bitstream.bands(site.shape))
    worst = np.array([int(np.sum(np.where(live, 1 + r * w * per_value, 0))) // 8 + 6 for r in rows])  # + padding
    band, room, max_bytes = _slicing(site, worst)
    i32 = lambda a: np.ascontiguousarray(a, np.int32)  # noqa: E731
    arrays = {"kind": i32(kind), "k": i32(k), "lo": i32(lo), "hi": i32(hi), "band": band}
    pack = {**arrays, "room": room, "head": _head(site, dctcm.CODEC_ID), "crc": CRC_TABLE}
    unpack = {**arrays, "head": _head(site, dctcm.CODEC_ID), "crc": CRC_TABLE}
    return CoderArrays(site, max_bytes, pack, unpack)


def _rans_arrays(site: Site) -> CoderArrays:
    """The rANS kernels' arrays: the coder's model (tables, groups, centres) and the channels' ranges."""
    coder = _rans_of(site)
    assert coder is not None
    c, _, w = site.shape
    lo, hi = site.channel_ranges() if isinstance(site, DctCmSite) else (site.cmin.reshape(c), site.cmax.reshape(c))
    lo, hi = lo.astype(np.int64), hi.astype(np.int64)
    a, b = lo - coder.centre, hi - coder.centre
    mode = np.where(a >= 0, 0, np.where(b <= 0, 1, 2))
    live = coder.live
    gbase = np.where(coder.group_of == rans.NO_GROUP, 0, coder.group_of.astype(np.int64) * coder.contexts)
    umax = coder._umax(lo, hi)
    raw = np.where(umax >= coder.direct, np.array([int(u).bit_length() for u in umax], np.int64) - 1 - rans.MANTISSA, 0)
    rows = np.diff(bitstream.bands(site.shape))
    worst = []
    for r in rows:
        n = int(r) * w
        lanes = rans.lanes_of(n)[0]
        worst.append(0 if not len(live) else 4 * lanes + 2 * len(live) * n + (n * int(raw.sum()) + 7) // 8 + 8)
    band, room, max_bytes = _slicing(site, np.array(worst, np.int64))
    i32 = lambda x: np.ascontiguousarray(np.asarray(x, np.int64).reshape(-1), np.int32)  # noqa: E731
    pad = lambda x: x if len(x) else np.zeros(1, x.dtype)  # noqa: E731  (kernels give empty arrays one slot)
    shared = {"lo": i32(lo), "hi": i32(hi), "rc": i32(coder.centre), "mode": i32(mode), "gbase": i32(gbase),
              "live": pad(i32(live)), "par": i32([coder.direct, coder.tokens, coder.context_mode, len(live)]),
              "freq": pad(i32(coder.freq)), "cum": pad(i32(coder.cum))}
    head = _head(site, site.codec_id)
    pack = {**shared, "rcp": pad(rk.recip_table(coder.freq).reshape(-1)), "band": band, "room": room, "head": head,
            "crc": CRC_TABLE}
    lookup = np.ascontiguousarray(coder.lookup().reshape(-1), np.uint8)
    unpack = {**shared, "lookup": pad(lookup), "band": band, "head": head, "crc": CRC_TABLE}
    return CoderArrays(site, max_bytes, pack, unpack)


def _tvlc_arrays(site: TvlcSite) -> CoderArrays:
    w = site.shape[2]
    coder = site.coder
    assert isinstance(coder, tvlc.Coder)
    classes = site.classes()
    rows = np.diff(bitstream.bands(site.shape))
    widths = np.zeros((len(rows) + 1, max(1, len(classes))), np.int64)  # per slice (the last row: unused)
    for s, r in enumerate(rows):
        widths[s, :len(classes)] = site.count_widths(classes, int(r) * w)
    tables = [coder.tables[j] for j, _ in classes]
    width = max([len(t.lengths) for t in tables], default=1)
    order = np.concatenate([planes for _, planes in classes]) if classes else np.zeros(0, np.int64)
    first = np.concatenate([[0], np.cumsum([len(planes) for _, planes in classes])]).astype(np.int32)
    if not classes:  # the kernels' one unused class slot: no planes, a 0-bit count
        first = np.zeros(2, np.int32)
    j_ = max(1, len(classes))
    code = np.zeros((j_, width), np.uint64)
    length = np.zeros((j_, width), np.int32)
    dfirst, dcount, dindex = (np.zeros((j_, ck.MAX_CODE + 1), np.int32) for _ in range(3))
    dsym = np.zeros((j_, width + 1), np.int32)
    fast = np.zeros((j_, 1 << ck.FAST_BITS), np.int32)
    escbits = np.zeros(j_, np.int32)
    longest = np.zeros(j_, np.int64)
    for i, t in enumerate(tables):
        bits, lens = t._encoder  # codeword per token index, escape and offset included
        code[i, :len(bits)] = bits.astype(np.uint64)
        length[i, :len(lens)] = lens
        longest[i] = lens.max()
        codes = np.append(t.codes, t.escape_code)
        all_len = np.append(t.lengths, t.escape_length)
        ranked = np.flatnonzero(all_len)
        ranked = ranked[np.lexsort((ranked, all_len[ranked]))]  # canonical order: (length, token)
        dsym[i, :len(ranked)] = ranked
        for token in ranked[all_len[ranked] <= ck.FAST_BITS]:  # a prefix code: these spans never overlap
            shift = ck.FAST_BITS - int(all_len[token])
            fast[i, int(codes[token]) << shift:(int(codes[token]) + 1) << shift] = (int(token) << 5) | int(all_len[token])
        for lv in range(1, ck.MAX_CODE + 1):
            at = np.flatnonzero(all_len[ranked] == lv)
            dcount[i, lv] = len(at)
            if len(at):
                dfirst[i, lv], dindex[i, lv] = codes[ranked[at[0]]], at[0]
        escbits[i] = t.escape_bits
    worst = np.array([(int(widths[s].sum()) + 7) // 8 + sum(
        (len(planes) * int(r) * w * int(longest[i]) + 7) // 8 for i, (_, planes) in enumerate(classes))
        for s, r in enumerate(rows)])
    band, room, max_bytes = _slicing(site, worst)
    head = _head(site, tvlc.CODEC_ID)
    i32 = lambda a: np.ascontiguousarray(np.asarray(a, np.int32).reshape(-1))  # noqa: E731
    pad = lambda a: a if len(a) else np.zeros(1, a.dtype)  # noqa: E731  (kernels give empty arrays one slot)
    shared = {
        "centre": i32(coder.centre), "order": pad(i32(order)), "first": i32(first),
        "hi": pad(i32([coder.hi(j) for j, _ in classes])), "lo": pad(i32([t.lo for t in tables])),
        "size": pad(i32([len(t.lengths) for t in tables])), "width": np.ascontiguousarray(widths, np.int32),
    }
    pack = {**shared, "code": code, "length": length, "band": band, "room": room, "head": head, "crc": CRC_TABLE}
    unpack = {**shared, "dfirst": dfirst, "dcount": dcount, "dindex": dindex, "dsym": dsym, "fast": fast, "escbits": escbits,
              "cmin": i32(site.cmin), "cmax": i32(site.cmax), "band": band, "head": head, "crc": CRC_TABLE}
    return CoderArrays(site, max_bytes, pack, unpack)


@functools.lru_cache(maxsize=None)
def task_scratch(site: Site) -> dict[str, int]:
    """Bytes one parallel task of this site's pack and unpack takes from TVM's workspace on its largest slice
    (each kernel module's task_scratch), and its slices: memory the planned activation memory does not see."""
    a = coder_arrays(site)
    pack, unpack = kernels_of(site)[1].task_scratch(a.pack)
    return {"pack_task_bytes": pack, "unpack_task_bytes": unpack, "slices": len(a.pack["band"]) - 1}


def scratch_summary(model: onnx.ModelProto) -> dict[str, Any]:
    """Per coded site its kernels' per-task scratch, and the most one thread holds at once. A worker thread
    keeps its workspace pool's pages, and the coder calls run one after another, so each thread running coder
    tasks holds at most `bytes_per_thread` on top of the planned activation memory (x threads in all)."""
    sites: list[dict[str, Any]] = []
    most = 0
    for p in find_pairs(model):
        if isinstance(p.codec, (TvlcSite, DctCmSite)):
            scratch = task_scratch(p.codec)
            sites.append({"site": p.site, **scratch})
            most = max(most, scratch["pack_task_bytes"], scratch["unpack_task_bytes"])
    return {"sites": sites, "bytes_per_thread": most}


def _library(target: str) -> Any:
    """Each codec's pack and unpack, built once per target: their sizes are symbolic, so every site shares them."""
    funcs = {f"{name}_{op}": getattr(kernels, f"{op}_kernel")().with_attr("global_symbol", f"{name}_{op}")
             for name, kernels in [*KERNELS.values(), RANS_KERNELS] for op in ("pack", "unpack")}
    return tvm.compile(tvm.IRModule(funcs), target=target)


class TirCoder:
    """One site's TIR pack and unpack, built for a target (run here: the host's llvm)."""

    def __init__(self, site: Site, n: int = 1, target: Any = "llvm") -> None:
        self.arrays = coder_arrays(site)
        self.n = n
        lib = _library(str(target))
        self._pack, self._unpack = lib[f"{self.arrays.name}_pack"], lib[f"{self.arrays.name}_unpack"]
        self._dev = tvm.cpu()
        to = lambda d: [tvm.runtime.tensor(v, self._dev) for v in d.values()]  # noqa: E731
        self._pack_args, self._unpack_args = to(self.arrays.pack), to(self.arrays.unpack)

    @cached_property
    def _shape(self) -> tuple[int, int, int]:
        c, h, w = self.arrays.site.shape
        return self.n, c, h * w

    def pack_raw(self, symbols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """int16 [n, C, H, W] -> (streams uint8 [n, max_bytes], lengths int32 [n]), as the kernel returns them."""
        out = tvm.runtime.tensor(np.zeros((self.n, self.arrays.max_bytes), np.uint8), self._dev)
        lengths = tvm.runtime.tensor(np.zeros(self.n, np.int32), self._dev)
        sym = tvm.runtime.tensor(np.ascontiguousarray(symbols, np.int16).reshape(self._shape), self._dev)
        self._pack(sym, *self._pack_args, out, lengths)
        return out.numpy(), lengths.numpy()

    def kernel_seconds(self, symbols: np.ndarray, *, number: int = 20, repeat: int = 5) -> tuple[float, float]:
        """Best seconds per call of the pack and of the unpack kernel on these symbols, buffers allocated once
        (what a device pays per inference; no Python conversions in the timed loop)."""
        import time

        out, lengths = self.pack_raw(symbols)
        sym = tvm.runtime.tensor(np.ascontiguousarray(symbols, np.int16).reshape(self._shape), self._dev)
        packed = [tvm.runtime.tensor(out, self._dev), tvm.runtime.tensor(lengths, self._dev)]
        back = [tvm.runtime.tensor(np.zeros(self._shape, np.int16), self._dev),
                tvm.runtime.tensor(np.zeros(self.n, np.int32), self._dev)]
        calls = ((self._pack, [sym, *self._pack_args, *packed]),
                 (self._unpack, [*packed, *self._unpack_args, *back]))
        best = []
        for fn, args in calls:
            times = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                for _ in range(number):
                    fn(*args)
                times.append((time.perf_counter() - t0) / number)
            best.append(min(times))
        return best[0], best[1]

    def pack(self, symbols: np.ndarray) -> list[bytes]:
        """One stream per sample, exactly the site's pack; a symbol the site cannot code is a FeatcompError
        (where numpy's DCT-CM pack would write a stream that its unpack then refuses)."""
        out, lengths = self.pack_raw(symbols)
        if np.any(lengths < 0):
            raise FeatcompError(f"{self.arrays.site.codec_name} symbols the site cannot code: encode them with this site")
        return [out[i, :k].tobytes() for i, k in enumerate(lengths)]

    def unpack(self, streams: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        """(symbols int16 [n, C, H, W], status int32 [n]): status 0 where the site's unpack decodes the stream."""
        if len(streams) != self.n:
            raise FeatcompError(f"this coder was built for {self.n} streams, got {len(streams)}")
        data = np.zeros((self.n, self.arrays.max_bytes), np.uint8)
        lengths = np.zeros(self.n, np.int32)
        for i, s in enumerate(streams):
            k = min(len(s), self.arrays.max_bytes)
            data[i, :k] = np.frombuffer(s[:k], np.uint8)
            lengths[i] = len(s) if len(s) <= self.arrays.max_bytes else self.arrays.max_bytes + 1
        sym = tvm.runtime.tensor(np.zeros(self._shape, np.int16), self._dev)
        status = tvm.runtime.tensor(np.zeros(self.n, np.int32), self._dev)
        self._unpack(tvm.runtime.tensor(data, self._dev), tvm.runtime.tensor(lengths, self._dev),
                            *self._unpack_args, sym, status)
        return sym.numpy().reshape(self.n, *self.arrays.site.shape), status.numpy()


def coded(bb: relax.BlockBuilder, site: Site, symbols: relax.Expr, n: int) -> tuple[relax.Expr, relax.Expr]:
    """symbols [n, C, H, W] (int16 or the site's 8-bit storage) -> (the symbols unpacked from the packed streams, the streams' lengths int32 [n])."""
    a = coder_arrays(site)
    c, h, w = site.shape
    consts = lambda d: [relax.const(v, str(v.dtype)) for v in d.values()]  # noqa: E731  (the dtype given: relax.const makes int64 arrays int32)
    kernels = kernels_of(site)[1]
    gp = bb.add_func(kernels.pack_kernel(), f"fc_{a.name}_pack")  # one PrimFunc per codec for every site (symbolic sizes)
    gu = bb.add_func(kernels.unpack_kernel(), f"fc_{a.name}_unpack")
    stored = str(symbols.ty.dtype)  # the coders read and write int16; 8-bit storage converts at their edges
    # a uint8-range site kept as int8 stores symbol - 128 (convert.stored_form): add it back for the coder
    offset = 128 if stored == "int8" and str(site.storage_dtype) == "uint8" else 0
    wide = symbols if stored == "int16" else bb.emit(relax.op.astype(symbols, "int16"))
    if offset:
        wide = bb.emit(relax.op.add(wide, relax.const(offset, "int16")))
    flat = bb.emit(relax.op.reshape(wide, (n, c, h * w)))
    packed = bb.emit(relax.call_tir(gp, [flat, *consts(a.pack)], out_ty=[
        relax.TensorType((n, a.max_bytes), "uint8"), relax.TensorType((n,), "int32")]))
    streams, lengths = bb.emit(relax.TupleGetItem(packed, 0)), bb.emit(relax.TupleGetItem(packed, 1))
    unpacked = bb.emit(relax.call_tir(gu, [streams, lengths, *consts(a.unpack)], out_ty=[
        relax.TensorType((n, c, h * w), "int16"), relax.TensorType((n,), "int32")]))
    out = bb.emit(relax.op.reshape(relax.TupleGetItem(unpacked, 0), (n, c, h, w)))
    if offset:
        out = bb.emit(relax.op.subtract(out, relax.const(offset, "int16")))
    if stored != "int16":  # exact: unpack refuses (zeros) any value outside the site's ranges
        out = bb.emit(relax.op.astype(out, stored))
    return out, lengths


# ------------------------------------------------------------------------------------ inside a model

CODER_OP, CODER_DOMAIN = "FeatcompTirCoder", "ai.featcomp.tvm"  # exists only between with_tir_coder and import
CODED_BYTES = "/coded_bytes"  # suffix of the per-site outputs: each sample's stream length in bytes


def with_tir_coder(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[int, Site]]:
    """A copy of a compressed model with a coder node between each encode and its decode, whose second
    output, the streams' lengths, is a model output named '<symbols>/coded_bytes'; and the sites by id.
    (The graph edit is passes/coder.py's.)"""
    other = [p.site for p in find_pairs(model) if p.codec.codec_name not in KERNEL_CODECS]
    if other:
        raise FeatcompError(f"the TIR coder codes dct-cm and transform-vlc sites; {len(other)} site(s) use another "
                            f"codec (first: '{other[0]}'): compile without --coder")
    sites: dict[int, Site] = {}

    def build(pair: Pair, unpacked: str) -> CoderNodes:
        site = pair.codec
        assert isinstance(site, (TvlcSite, DctCmSite))
        sites[site.param_id] = site
        lengths = f"{pair.symbols}{CODED_BYTES}"
        return CoderNodes(
            nodes=[helper.make_node(CODER_OP, [pair.symbols], [unpacked, lengths], name=f"{pair.encode.name}/coder",
                                    domain=CODER_DOMAIN, param_id=site.param_id)],
            outputs=[helper.make_tensor_value_info(lengths, TensorProto.INT32, [None])])

    coded = insert_coder(model, CODER_DOMAIN, build, why="or compile without the coder")
    return coded.model, sites


def converter(sites: dict[int, Site]) -> type:
    """The importer's converter for the coder node, bound to the sites of one model."""
    from tvm.relax.frontend.onnx import onnx_frontend as fe

    def impl(cls: type, bb: relax.BlockBuilder, inputs: list[relax.Expr], attr: dict[str, Any], params: Any) -> relax.Expr:
        symbols = bb.normalize(inputs[0])
        site = sites[int(attr["param_id"])]
        n = int(symbols.ty.shape.values[0])
        unpacked, lengths = coded(bb, site, symbols, n)
        return relax.Tuple([unpacked, lengths])

    return type(CODER_OP, (fe.OnnxOpConverter,), {"__doc__": "int16 symbols -> pack -> unpack -> symbols, lengths",
                                                  "_impl_v1": classmethod(impl)})
