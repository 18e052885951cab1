"""Read a PyTorch state dict (.pth) into numpy arrays without torch.

Why: the default model's weights ship as a .pth file. Installing torch just to read them would cost
gigabytes, and a plain `pickle.load` would run whatever code the file names. This reader rebuilds
tensors only and refuses every other global. It understands both layouts torch has written: the zip
archive (torch >= 1.6: `data.pkl` + one file per storage) and the older flat file (a chain of pickles
followed by the raw storages).
"""

from __future__ import annotations

import collections
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from featcomp.errors import FeatcompError

__all__ = ["load_state_dict"]

_STORAGE_DTYPES: dict[str, type[np.generic]] = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001


@dataclass(frozen=True)
class _StorageType:
    """Stands in for `torch.FloatStorage` & co.: only its dtype matters."""

    dtype: np.dtype


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype


@dataclass(frozen=True)
class _TensorRef:
    """A tensor whose storage bytes may not have been read yet (legacy files put them last)."""

    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: _StorageRef, offset: int, shape: tuple[int, ...], stride: tuple[int, ...], *_: Any
) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage")
    return _TensorRef(storage, int(offset), tuple(map(int, shape)), tuple(map(int, stride)))


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves exactly the globals a state dict needs; anything else is an error, not a call."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__(file)
        self.storages: dict[str, np.dtype] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(np.dtype(_STORAGE_DTYPES[name]))
        raise pickle.UnpicklingError(f"refusing global {module}.{name}")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # zip: ("storage", type, key, location, numel); legacy adds view metadata (None unless a view).
        if not (
            isinstance(pid, tuple)
            and len(pid) in (5, 6)
            and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)
            and (len(pid) == 5 or pid[5] is None)
        ):
            raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
        ref = _StorageRef(str(pid[2]), pid[1].dtype)
        self.storages[ref.key] = ref.dtype
        return ref


def _resolve(obj: Any, storages: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise FeatcompError(f"expected a state dict, found a pickled {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for name, ref in obj.items():
        if not isinstance(ref, _TensorRef):
            raise FeatcompError(f"state dict entry {name!r} is a {type(ref).__name__}, not a tensor")
        flat = storages[ref.storage.key]
        extent = 0 if 0 in ref.shape else sum((d - 1) * s for d, s in zip(ref.shape, ref.stride)) + 1
        if ref.offset < 0 or min(ref.stride, default=0) < 0 or ref.offset + extent > flat.size:
            raise FeatcompError(f"tensor {name!r} reaches outside its storage")
        strides = tuple(s * flat.itemsize for s in ref.stride)
        view = np.lib.stride_tricks.as_strided(flat[ref.offset :], ref.shape, strides, writeable=False)
        out[str(name)] = np.ascontiguousarray(view)
    return out


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        pickles = [n for n in zf.namelist() if n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise FeatcompError(f"{path}: a zip, but not a PyTorch archive (no single data.pkl)")
        prefix = pickles[0][: -len("data.pkl")]
        if prefix + "byteorder" in zf.namelist() and zf.read(prefix + "byteorder") != b"little":
            raise FeatcompError(f"{path}: big-endian tensors are not supported")
        with zf.open(pickles[0]) as f:
            unpickler = _RestrictedUnpickler(f)
            obj = unpickler.load()
        storages = {
            key: np.frombuffer(zf.read(f"{prefix}data/{key}"), dtype)
            for key, dtype in unpickler.storages.items()
        }
    return _resolve(obj, storages)


def _load_legacy(path: Path) -> dict[str, np.ndarray]:
    with path.open("rb") as f:
        if _RestrictedUnpickler(f).load() != _LEGACY_MAGIC:
            raise FeatcompError(f"{path}: not a PyTorch file (neither a zip archive nor the legacy format)")
        if _RestrictedUnpickler(f).load() != _LEGACY_PROTOCOL:
            raise FeatcompError(f"{path}: unsupported legacy PyTorch protocol version")
        sys_info = _RestrictedUnpickler(f).load()
        if not (isinstance(sys_info, dict) and sys_info.get("little_endian")):
            raise FeatcompError(f"{path}: big-endian tensors are not supported")
        unpickler = _RestrictedUnpickler(f)
        obj = unpickler.load()
        keys = _RestrictedUnpickler(f).load()
        storages: dict[str, np.ndarray] = {}
        for key in keys:  # each storage: int64 element count, then the raw little-endian elements
            dtype = unpickler.storages[str(key)]
            numel = int(np.frombuffer(f.read(8), "<i8")[0])
            data = f.read(numel * dtype.itemsize)
            if numel < 0 or len(data) != numel * dtype.itemsize:
                raise FeatcompError(f"{path}: truncated (storage {key} is short)")
            storages[str(key)] = np.frombuffer(data, dtype)
    return _resolve(obj, storages)


def load_state_dict(path: Path) -> dict[str, np.ndarray]:
    """Tensors of a PyTorch state dict, by name, as numpy arrays (copies, C-contiguous)."""
    path = Path(path)
    try:
        return _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
    except FeatcompError:
        raise
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, OSError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, OverflowError, MemoryError) as exc:  # fmt: skip
        raise FeatcompError(f"{path}: cannot read as a PyTorch state dict: {exc}") from exc
