"""Calibration and evaluation inputs: image folders, .npz tensors, or any ORT-style data reader.

Every batch is checked against the model's input before it reaches ONNX Runtime, because ORT's own
shape/dtype errors do not say which file or which of the user's choices caused them.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from featcomp.errors import FeatcompError
from featcomp.preprocess import Preprocess

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageReader",
    "InputReader",
    "InputSpec",
    "NpzReader",
    "collect",
    "image_files",
    "open_inputs",
    "read_labels",
    "validate_batch",
]

_LOWER_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp", ".gif")
#: Compare with ``path.suffix.lower()``; upper-case forms are included for naive membership tests.
IMAGE_SUFFIXES: frozenset[str] = frozenset(_LOWER_SUFFIXES + tuple(s.upper() for s in _LOWER_SUFFIXES))


@runtime_checkable
class InputReader(Protocol):
    """ONNX Runtime's CalibrationDataReader protocol: a dict per batch, then None."""

    def get_next(self) -> dict[str, np.ndarray] | None: ...


@dataclass
class InputSpec:
    """The model's single image input; the first dim is the batch and may be symbolic."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: np.dtype

    def __post_init__(self) -> None:
        """Fixed non-batch dims are required: codecs are calibrated per feature-map shape."""
        self.shape = tuple(self.shape)
        self.dtype = np.dtype(self.dtype)
        if len(self.shape) < 2 or not all(
            isinstance(d, (int, np.integer)) and d > 0 for d in self.shape[1:]
        ):
            raise FeatcompError(
                f"model input {self.name!r} has shape {self.expected} but featcomp needs a batch "
                "dimension followed by fixed positive sizes; re-export the model with a fixed "
                "input size (e.g. 1x3x224x224)"
            )

    @property
    def expected(self) -> str:
        """The shape as users read it: symbolic batch shown as N, e.g. ``(N, 3, 224, 224)``."""
        dims = ["N" if not isinstance(d, (int, np.integer)) else str(d) for d in self.shape[:1]]
        dims += ["?" if not isinstance(d, (int, np.integer)) else str(d) for d in self.shape[1:]]
        return "(" + ", ".join(dims) + ")"


def image_files(folder: Path) -> list[Path]:
    """Images directly inside ``folder``, sorted by name; hidden files (e.g. macOS ``._x.jpg``) skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise FeatcompError(f"image folder {folder} {what}; pass a folder of images")
    found = _images_in(folder)
    if not found and (folder / "images").is_dir():
        found = _images_in(folder / "images")  # the common DATASET/images + DATASET/labels.txt layout
    if not found:
        raise FeatcompError(
            f"no image files in {folder} (looked for {', '.join(_LOWER_SUFFIXES)}, not in subfolders "
            "other than images/); put the images directly in that folder"
        )
    return found


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )


def read_labels(path: Path) -> dict[str, int]:
    """``FILENAME CLASS_INDEX`` per line (blank lines and ``#`` comments ignored) -> {filename: index}."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise FeatcompError(f"labels file {path} does not exist; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatcompError(f"cannot read labels file {path}: {exc}; it must be UTF-8 text") from None
    labels: dict[str, int] = {}
    for number, line in enumerate(lines, start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        parts = text.rsplit(None, 1)
        where = f"{path}:{number}"
        if len(parts) != 2 or not (parts[1].isascii() and parts[1].isdigit()):
            raise FeatcompError(
                f"{where}: bad label line {text!r}; expected 'FILENAME CLASS_INDEX' with a "
                "non-negative whole number"
            )
        name, index = parts[0], int(parts[1])
        if name in labels and labels[name] != index:
            raise FeatcompError(
                f"{where}: {name} is labelled {index} but earlier {labels[name]}; keep one line per file"
            )
        labels[name] = index
    if not labels:
        raise FeatcompError(f"labels file {path} has no 'FILENAME CLASS_INDEX' lines; fill it in")
    return labels


def validate_batch(
    batch: dict[str, np.ndarray], spec: InputSpec, *, role: str = "calibration"
) -> dict[str, np.ndarray]:
    """Check one batch against the model input and return it cast to the model's dtype."""
    if not isinstance(batch, dict):
        raise FeatcompError(
            f"a {role} reader's get_next() returned {type(batch).__name__}; "
            f"it must return {{'{spec.name}': array}} or None"
        )
    if spec.name not in batch or len(batch) != 1:
        raise FeatcompError(
            f"{role} batch has inputs {sorted(map(str, batch))} but the model's only input is "
            f"{spec.name!r}; key the array by that name"
        )
    try:
        array = np.asarray(batch[spec.name])
    except Exception as exc:  # arbitrary user objects: report, do not crash
        raise FeatcompError(f"{role} input {spec.name!r} is not an array: {exc}") from None
    label = f"{role} input {spec.name!r}"
    # dtype first: strings or objects are a dtype problem whatever their shape
    if not np.can_cast(array.dtype, spec.dtype, casting="same_kind"):
        raise FeatcompError(
            f"{label} has dtype {array.dtype} but the model expects {spec.dtype}; convert it first"
        )
    if array.ndim != len(spec.shape) or any(
        isinstance(want, (int, np.integer)) and got != want
        for got, want in zip(array.shape, spec.shape)
    ):
        raise FeatcompError(
            f"{label} has shape {tuple(array.shape)} but the model expects {spec.expected}"
        )
    if array.dtype.kind in "fc" and not np.isfinite(array).all():
        raise FeatcompError(f"{label} contains NaN or Inf values; fix the data that produced it")
    return {spec.name: np.ascontiguousarray(array, dtype=spec.dtype)}


class ImageReader:
    """One preprocessed image per ``get_next()``, as ``{name: [1, ...]}``."""

    def __init__(
        self,
        paths: Sequence[Path],
        preprocess: Preprocess,
        spec: InputSpec,
        limit: int | None = None,
        *,
        role: str = "calibration",
    ) -> None:
        self.paths: list[Path] = [Path(p) for p in paths][: _check_limit(limit)]
        self.preprocess, self.spec, self.role = preprocess, spec, role
        self._next = 0
        self._check_fits()

    def _check_fits(self) -> None:
        """Fail before decoding anything when the spec cannot produce the model's input size."""
        crop, spec = self.preprocess.crop, self.spec
        if spec.dtype.kind not in "iuf":
            raise FeatcompError(f"model input {spec.name!r} has dtype {spec.dtype}, not an image type")
        if spec.dtype.kind in "iu" and (
            self.preprocess.mean != (0.0, 0.0, 0.0) or self.preprocess.std != (1.0, 1.0, 1.0)
        ):
            raise FeatcompError(
                f"model input {spec.name!r} takes {spec.dtype} pixels; use mean=0,std=1 in --preprocess"
            )
        if crop is None:
            return
        made = (3, crop, crop) if self.preprocess.layout == "nchw" else (crop, crop, 3)
        if len(spec.shape) != 4 or tuple(spec.shape[1:]) != made:
            raise FeatcompError(
                f"--preprocess '{self.preprocess}' makes images of shape {made} but the model "
                f"input {spec.name!r} expects {spec.expected}; change crop= or layout="
            )

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next image, or None when all have been read."""
        if self._next >= len(self.paths):
            return None
        path = self.paths[self._next]
        self._next += 1
        pixels = self.preprocess.load(path)[np.newaxis]
        if self.spec.dtype.kind in "iu":
            pixels = pixels.astype(self.spec.dtype)  # exact: mean=0,std=1 keeps 0..255 integers
        try:
            return validate_batch({self.spec.name: pixels}, self.spec, role=self.role)
        except FeatcompError as exc:
            raise FeatcompError(f"{path}: {exc}") from None

    def rewind(self) -> None:
        """Start again from the first image (calibration and evaluation both read the set)."""
        self._next = 0

    def __len__(self) -> int:
        return len(self.paths)


class NpzReader:
    """Batch-1 slices of an ``.npz`` holding one ``(N, ...)`` array or one keyed by the input name."""

    def __init__(
        self, path: Path, spec: InputSpec, limit: int | None = None, *, role: str = "calibration"
    ) -> None:
        self.path, self.spec, self.role = Path(path), spec, role
        self._data = _load_npz(self.path, spec)[: _check_limit(limit)]
        if len(self._data) == 0:
            raise FeatcompError(f"{self.path} holds zero samples; save at least one")
        try:
            validate_batch({spec.name: self._data[:1]}, spec, role=role)
        except FeatcompError as exc:
            raise FeatcompError(f"{self.path}: {exc}") from None
        self._next = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next sample as a batch of one, or None when all have been read."""
        if self._next >= len(self._data):
            return None
        index = self._next
        self._next += 1
        try:
            return validate_batch(
                {self.spec.name: self._data[index : index + 1]}, self.spec, role=self.role
            )
        except FeatcompError as exc:
            raise FeatcompError(f"{self.path} sample {index}: {exc}") from None

    def rewind(self) -> None:
        """Start again from the first sample."""
        self._next = 0

    def __len__(self) -> int:
        return len(self._data)


def _load_npz(path: Path, spec: InputSpec) -> np.ndarray:
    """The array to slice: the one keyed by the input name, else the only one."""
    try:
        archive = np.load(path, allow_pickle=False)
        if not isinstance(archive, np.lib.npyio.NpzFile):
            raise FeatcompError(f"{path} is a single .npy array, not an .npz; save it with np.savez")
        with archive:
            keys = list(archive.files)
            if not keys:
                raise FeatcompError(f"{path} contains no arrays; save the inputs with np.savez")
            if spec.name in archive.files:
                key = spec.name
            elif len(keys) == 1:
                key = keys[0]
            else:
                raise FeatcompError(
                    f"{path} has arrays {keys} but none named {spec.name!r}; save a single array "
                    f"or key it by the model's input name"
                )
            return np.asarray(archive[key])
    except FeatcompError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise FeatcompError(
            f"cannot read {path} as .npz: {exc}; write it with np.savez (no object arrays)"
        ) from None


class _Validated:
    """Wraps a user's reader so each batch is checked (and copied: readers often reuse buffers)."""

    def __init__(self, inner: InputReader, spec: InputSpec, limit: int | None, role: str) -> None:
        self.inner, self.spec, self.role = inner, spec, role
        self.limit, self._count = _check_limit(limit), 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The inner reader's next batch, validated; None at its end or at the limit."""
        if self.limit is not None and self._count >= self.limit:
            return None
        batch = self.inner.get_next()
        if batch is None:
            return None
        self._count += 1
        checked = validate_batch(batch, self.spec, role=self.role)
        return {name: array.copy() for name, array in checked.items()}

    @property
    def paths(self) -> list[Path]:
        """The inner reader's image paths (within the limit), so labels can be matched; [] if it has none."""
        paths = list(getattr(self.inner, "paths", []))
        return paths if self.limit is None else paths[: self.limit]

    def rewind(self) -> None:
        """Rewind the inner reader if it can; ORT readers often cannot."""
        rewind = getattr(self.inner, "rewind", None)
        if not callable(rewind):
            raise FeatcompError(
                f"this {self.role} reader has no rewind() method; give it one or pass a fresh reader"
            )
        rewind()
        self._count = 0


def _check_limit(limit: int | None) -> int | None:
    if limit is not None and (not isinstance(limit, (int, np.integer)) or limit <= 0):
        raise FeatcompError(f"limit must be a positive whole number, got {limit!r}")
    return limit


def open_inputs(
    source: str | os.PathLike[str] | InputReader,
    spec: InputSpec,
    preprocess: Preprocess | None,
    limit: int | None = None,
    *,
    role: str = "calibration",
) -> InputReader:
    """A folder of images, an ``.npz`` file, or a user's reader -> a validating reader."""
    if not isinstance(source, (str, os.PathLike)):
        if not callable(getattr(source, "get_next", None)):
            raise FeatcompError(
                f"{role} data must be a folder, an .npz file or an object with get_next(); "
                f"got {type(source).__name__}"
            )
        return _Validated(source, spec, limit, role)
    path = Path(source)
    if path.is_dir():
        if preprocess is None:
            raise FeatcompError(
                f"images need --preprocess to become tensors (e.g. --preprocess "
                f"'resize=256,crop=224,order=rgb,mean=128,std=128'); none given for {path}"
            )
        return ImageReader(image_files(path), preprocess, spec, limit, role=role)
    if not path.exists():
        raise FeatcompError(f"{role} data {path} does not exist; pass a folder of images or a .npz file")
    if path.suffix.lower() == ".npz":
        return NpzReader(path, spec, limit, role=role)
    raise FeatcompError(f"{role} data {path} is neither a folder of images nor a .npz file")


def validated(reader: InputReader, spec: InputSpec, role: str = "calibration") -> Iterator[dict[str, np.ndarray]]:
    """Batches of a reader, each checked against the model input (lazily, one at a time)."""
    while (batch := reader.get_next()) is not None:
        yield validate_batch(batch, spec, role=role)


def collect(
    reader: InputReader, spec: InputSpec | None = None, *, role: str = "calibration"
) -> list[dict[str, np.ndarray]]:
    """Drain ``reader`` into memory (validated against ``spec`` when given); empty is an error."""
    batches: list[dict[str, np.ndarray]] = []
    while (batch := reader.get_next()) is not None:
        if spec is not None:
            batch = validate_batch(batch, spec, role=role)
        elif not isinstance(batch, dict):
            raise FeatcompError(
                f"a {role} reader's get_next() returned {type(batch).__name__}; it must return a dict or None"
            )
        batches.append(batch)
    if not batches:
        raise FeatcompError(
            f"the {role} set is empty: the reader returned no batches; check the folder, .npz or --limit"
        )
    return batches
