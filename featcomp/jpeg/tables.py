"""JPEG quantization tables: the model, libjpeg's quality scaling, validation and the JSON file.

Layout: every table is 8x8 in *natural* row-major order, ``table[u][v]`` with ``u`` the vertical and
``v`` the horizontal frequency (``[0][0]`` is DC). That is the order Pillow's ``qtables=`` takes and
``Image.quantization`` returns (checked by tests against the DQT segment and libjpeg); the file's
DQT segment stores the same values in zig-zag order, which the encoder does for us.

A table pair also carries the chroma subsampling it is meant for (``4:4:4`` or ``4:2:0``): the same
steps cost different bytes and give different pixels at the two, so files, node, learning and
measurements all take it from the tables. Files without the field are 4:4:4 (all earlier ones were).

Baseline JPEG allows 8-bit steps, so every step is a whole number in 1..255: anything else is
refused with one line rather than clipped, because a silently changed table is a different codec.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from featcomp.errors import FeatcompError

__all__ = ["FORMAT", "STANDARD_CHROMA", "STANDARD_LUMA", "Tables", "scale_profile", "standard", "table", "validate"]

FORMAT = "featcomp.jpeg-tables/1"
SCALE_RANGE = (1e-3, 1e3)  # every profile scales to all-1 steps below the low end and all-255 above the high end

# ITU-T T.81 Annex K.1 (libjpeg's std_luminance/chrominance_quant_tbl), natural order.
STANDARD_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61,
    12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77,
    24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99], dtype=np.int64).reshape(8, 8)
STANDARD_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99,
    18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99,
    47, 66, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99], dtype=np.int64).reshape(8, 8)


def table(values: object, name: str = "table") -> np.ndarray:
    """An (8, 8) int64 table from 64 whole numbers in 1..255 (nested 8x8 or flat, natural order)."""
    try:
        array = np.asarray(values)
    except Exception:  # ragged nesting and other non-arrays
        array = np.asarray([], dtype=object)
    if array.dtype == object or array.size != 64 or array.shape not in ((64,), (8, 8)):
        shape = "x".join(map(str, array.shape)) if array.dtype != object else "ragged"
        raise FeatcompError(f"{name} must be 8x8 (or 64 values, natural row-major order), got shape {shape}")
    if array.dtype.kind == "b" or array.dtype.kind not in "iuf":
        raise FeatcompError(f"{name} must hold whole numbers, got {array.dtype} values")
    if array.dtype.kind == "f" and not (np.isfinite(array).all() and (array == np.round(array)).all()):
        raise FeatcompError(f"{name} must hold whole numbers (quantization steps), got fractional or non-finite values")
    ints = array.astype(np.int64).reshape(8, 8)
    if ints.min() < 1 or ints.max() > 255:
        bad = int(ints.min()) if ints.min() < 1 else int(ints.max())
        raise FeatcompError(f"{name} has step {bad}; baseline JPEG steps must be whole numbers in 1..255")
    return ints


def _quality_scale(quality: int) -> int:
    """libjpeg's jpeg_quality_scaling: percentage applied to the Annex K tables."""
    if isinstance(quality, bool) or not isinstance(quality, (int, np.integer)) or not 1 <= quality <= 100:
        raise FeatcompError(f"JPEG quality must be a whole number in 1..100, got {quality!r}")
    return 5000 // int(quality) if quality < 50 else 200 - 2 * int(quality)


def scale_profile(profile: np.ndarray, scale: float) -> np.ndarray:
    """Steps = clip(round_half_up(scale * profile), 1, 255): how every method's table family is swept."""
    if not (math.isfinite(scale) and scale > 0):
        raise FeatcompError(f"table scale must be a positive number, got {scale!r}")
    return np.clip(np.floor(np.asarray(profile, np.float64) * scale + 0.5), 1, 255).astype(np.int64).reshape(8, 8)


@dataclass(frozen=True)
class Tables:
    """A luma and a chroma table plus where they came from.

    ``profile_luma``/``profile_chroma`` are the unscaled step shapes of the method (for standard tables,
    Annex K); the tables are ``scale_profile(profile, scale)``. Keeping the shape lets ``eval`` sweep the
    same family over rates. ``meta`` records the method's inputs and measurements (target, bpp, ...).
    """

    luma: np.ndarray
    chroma: np.ndarray
    method: str = "custom"
    model: str | None = None
    profile_luma: np.ndarray | None = None
    profile_chroma: np.ndarray | None = None
    scale: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    ladder: np.ndarray | None = None  # [L, 2, 8, 8] (luma, chroma) from finest to coarsest, for methods without a profile
    subsampling: str = "4:4:4"  # chroma: full size, or halved both ways (Pillow's and cameras' default)

    def __post_init__(self) -> None:
        from featcomp.jpeg.dct import check_subsampling

        check_subsampling(self.subsampling)
        object.__setattr__(self, "luma", table(self.luma, "luma table"))
        object.__setattr__(self, "chroma", table(self.chroma, "chroma table"))
        for key in ("profile_luma", "profile_chroma"):
            value = getattr(self, key)
            if value is None:
                continue
            array = np.asarray(value, dtype=np.float64)
            if array.size != 64 or not np.isfinite(array).all() or (array <= 0).any():
                raise FeatcompError(f"{key} must be 64 positive finite numbers")
            object.__setattr__(self, key, array.reshape(8, 8))
        if self.ladder is not None:
            rungs = np.asarray(self.ladder)
            if rungs.ndim != 4 or rungs.shape[1:] != (2, 8, 8) or len(rungs) < 1:
                raise FeatcompError("ladder must be a list of [luma 8x8, chroma 8x8] pairs")
            object.__setattr__(self, "ladder", np.stack([table(r, "ladder table") for r in rungs.reshape(-1, 8, 8)])
                               .reshape(-1, 2, 8, 8))

    @classmethod
    def from_profile(cls, luma: np.ndarray, chroma: np.ndarray, scale: float, method: str,
                     **kwargs: Any) -> Tables:
        """The profile pair at ``scale``; keyword arguments are the other fields (model, meta, subsampling)."""
        return cls(scale_profile(luma, scale), scale_profile(chroma, scale), method=method,
                   profile_luma=np.asarray(luma, np.float64), profile_chroma=np.asarray(chroma, np.float64),
                   scale=float(scale), **kwargs)

    @property
    def sweepable(self) -> bool:
        return (self.profile_luma is not None and self.profile_chroma is not None) or self.ladder is not None

    def member(self, t: float) -> Tables:
        """The family member at position t in [0, 1], finest (0) to coarsest (1): a rung of the ladder, or
        the profile at a log-spaced scale in SCALE_RANGE."""
        t = min(max(float(t), 0.0), 1.0)
        if self.ladder is not None:
            i = int(round(t * (len(self.ladder) - 1)))
            return replace(self, luma=self.ladder[i, 0], chroma=self.ladder[i, 1], scale=float(i), meta={})
        lo, hi = (math.log(v) for v in SCALE_RANGE)
        return self.scaled(math.exp(lo + t * (hi - lo)))

    def scaled(self, scale: float) -> Tables:
        """The same family at another scale (larger scale: coarser steps, fewer bytes)."""
        if self.profile_luma is None or self.profile_chroma is None:
            raise FeatcompError(f"these {self.method} tables carry no profile, so they cannot be rescaled")
        return replace(self, luma=scale_profile(self.profile_luma, scale),
                       chroma=scale_profile(self.profile_chroma, scale), scale=float(scale), meta={})

    def qtables(self) -> list[list[int]]:
        """Pillow's ``qtables=`` argument: [luma, chroma], 64 ints each in natural order."""
        return [self.luma.reshape(-1).tolist(), self.chroma.reshape(-1).tolist()]

    def label(self) -> str:
        if self.method == "standard" and "quality" in self.meta:
            return f"standard q{self.meta['quality']}"
        if self.ladder is not None and self.scale is not None:
            return f"{self.method} rung {int(self.scale)}"
        return f"{self.method} x{self.scale:.3g}" if self.scale is not None else self.method

    # ---------------------------------------------------------------------------------------- JSON

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": FORMAT,
            "order": "natural row-major: table[u][v], u = vertical frequency, v = horizontal; [0][0] is DC",
            "method": self.method, "model": self.model, "subsampling": self.subsampling,
            "luma": self.luma.tolist(), "chroma": self.chroma.tolist(),
        }
        if self.profile_luma is not None and self.profile_chroma is not None:
            data["profile"] = {"luma": np.round(self.profile_luma, 6).tolist(),
                               "chroma": np.round(self.profile_chroma, 6).tolist(), "scale": self.scale}
        if self.ladder is not None:
            data["ladder"] = {"order": "finest to coarsest; scale is the rung of luma/chroma", "rung": self.scale,
                              "tables": self.ladder.tolist()}
        data["meta"] = self.meta
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1) + "\n"

    @classmethod
    def from_dict(cls, data: object, where: str = "tables") -> Tables:
        data = validate(data, where)
        profile = data.get("profile") or {}
        ladder = data.get("ladder") or {}
        scale = profile.get("scale", ladder.get("rung"))
        try:
            return cls(table(data["luma"], f"{where}: luma table"), table(data["chroma"], f"{where}: chroma table"),
                       method=data.get("method") or "custom", model=data.get("model"),
                       profile_luma=profile.get("luma"), profile_chroma=profile.get("chroma"),
                       scale=None if scale is None else float(scale),
                       meta=dict(data.get("meta") or {}), ladder=ladder.get("tables"),
                       subsampling=data.get("subsampling", "4:4:4"))
        except FeatcompError as exc:
            text = str(exc)
            raise FeatcompError(text if text.startswith(where) else f"{where}: {text}") from None

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Tables:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FeatcompError(f"tables file {p} does not exist; make one with 'featcomp jpeg learn'") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise FeatcompError(f"cannot read tables file {p}: {exc}") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise FeatcompError(f"tables file {p} is not JSON ({exc.msg} at line {exc.lineno})") from None
        return cls.from_dict(data, str(p))

    def save(self, path: str | os.PathLike[str]) -> Path:
        from featcomp.modelio import write_bytes

        return write_bytes(path, self.to_json().encode("utf-8"))


# The tables file's schema, in one place: key -> (accepted JSON types, what to write). Values are then checked by
# Tables/table() (8x8 shapes, steps 1..255, positive finite profiles). Keys not listed here are ignored.
_NUMBER = (int, float)
_TOP: dict[str, tuple[tuple[type, ...], str]] = {
    "format": ((str,), f"the string {FORMAT!r}"), "order": ((str,), "a string"),
    "method": ((str,), "a string"), "model": ((str, type(None)), "a string or null"),
    "luma": ((list,), "an 8x8 list of steps"), "chroma": ((list,), "an 8x8 list of steps"),
    "profile": ((dict, type(None)), "an object with luma, chroma and scale"),
    "ladder": ((dict, type(None)), "an object with tables and rung"),
    "meta": ((dict, type(None)), "an object"), "subsampling": ((str,), "'4:4:4' or '4:2:0'"),
}
_PROFILE = {"luma": ((list,), "an 8x8 list of positive numbers"), "chroma": ((list,), "an 8x8 list of positive numbers"),
            "scale": ((*_NUMBER, type(None)), "a positive number")}
_LADDER = {"tables": ((list,), "a list of [luma 8x8, chroma 8x8] pairs"), "rung": ((*_NUMBER, type(None)), "a number"),
           "order": ((str,), "a string")}


def _check_keys(obj: dict[str, Any], schema: dict[str, tuple[tuple[type, ...], str]], where: str, prefix: str) -> None:
    for key, (types, what) in schema.items():
        if key in obj and (not isinstance(obj[key], types) or isinstance(obj[key], bool)):
            raise FeatcompError(f"{where}: {prefix}{key} must be {what}, got {json.dumps(obj[key])[:40]}")


def validate(data: object, where: str = "tables") -> dict[str, Any]:
    """The JSON of a tables file checked against its schema (one line naming the first bad key)."""
    if not isinstance(data, dict):
        raise FeatcompError(f"{where}: expected a JSON object with 'luma' and 'chroma' 8x8 tables")
    if data.get("format", FORMAT) != FORMAT:
        raise FeatcompError(f"{where}: format {data.get('format')!r} is not {FORMAT!r}; re-create it with 'featcomp jpeg learn'")
    missing = [k for k in ("luma", "chroma") if k not in data]
    if missing:
        raise FeatcompError(f"{where}: missing {' and '.join(repr(k) for k in missing)} (8x8 tables of steps 1..255)")
    _check_keys(data, _TOP, where, "")
    for key, schema in (("profile", _PROFILE), ("ladder", _LADDER)):
        if data.get(key) is not None:
            _check_keys(data[key], schema, where, f"{key}.")
    for key in ("profile", "ladder"):
        number = (data.get(key) or {}).get("scale" if key == "profile" else "rung")
        if number is not None and not (math.isfinite(number) and (number > 0 if key == "profile" else number >= 0)):
            raise FeatcompError(f"{where}: {key}.{'scale' if key == 'profile' else 'rung'} must be a "
                                f"{'positive' if key == 'profile' else 'non-negative'} finite number, got {number}")
    return data


def standard(quality: int, subsampling: str = "4:4:4") -> Tables:
    """Annex K tables at a libjpeg quality, exactly as ``jpeg_set_quality(q, force_baseline=TRUE)``.

    With ``subsampling="4:2:0"`` they write the very file Pillow's defaults write (``quality=q``).
    """
    s = _quality_scale(quality)
    luma = np.clip((STANDARD_LUMA * s + 50) // 100, 1, 255)
    chroma = np.clip((STANDARD_CHROMA * s + 50) // 100, 1, 255)
    return Tables(luma, chroma, method="standard", profile_luma=STANDARD_LUMA.astype(np.float64),
                  profile_chroma=STANDARD_CHROMA.astype(np.float64), scale=s / 100.0, meta={"quality": int(quality)},
                  subsampling=subsampling)
