"""Shared fixtures for the CLI tests: tiny models on disk, an .npz calibration set, labelled PNGs."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import models
from featcomp.cli import main
from featcomp.codecs.base import ActivationStats
from featcomp.codecs.dctcm import DctCm, DctCmSite

PREPROCESS = "resize=16,crop=16,order=rgb,mean=128,std=128"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Run ``featcomp ARGS...`` in-process and capture what it printed.

    Captured stderr is not a terminal, so the CLI would print plain progress lines there; they are turned
    off here so tests can hold stderr to exactly what they check (tests/test_cli.py covers the lines).
    """
    monkeypatch.setattr("featcomp.cli_common.PLAIN_PROGRESS", False)

    def run(*argv: object) -> Run:
        capsys.readouterr()
        code = main([str(a) for a in argv])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


@pytest.fixture
def model_file(tmp_path: Path) -> Callable[..., str]:
    """Save a ModelProto as tmp_path/NAME and return the path."""

    def save(model: onnx.ModelProto, name: str = "model.onnx") -> str:
        return models.save(model, tmp_path / name)

    return save


@pytest.fixture
def calib_npz(tmp_path: Path) -> Path:
    """Four [3,16,16] float32 samples keyed by the tiny models' input name."""
    path = tmp_path / "calib.npz"
    data = np.random.default_rng(0).normal(size=(4, 3, models.SIZE, models.SIZE)).astype(np.float32)
    np.savez(path, **{models.INPUT: data})
    return path


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Five 20x20 random PNGs and a labels.txt (classes 0..3, as the tiny models output four)."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(1)
    lines = []
    for i in range(5):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"img{i}.png")
        lines.append(f"img{i}.png {i % 4}")
    (folder / "labels.txt").write_text("\n".join(lines) + "\n")
    return folder


# --- synthetic activations and calibrated dct-cm sites (codec, bitstream and ORT tests) -----------

SITE_SHAPE = (16, 8, 8)  # C, H, W: small, and 8 samples x 64 pixels all fit in ActivationStats' sample


def relu_sparse(rng: np.random.Generator, n: int, shape: tuple[int, int, int] = SITE_SHAPE,
                keep: float = 0.08) -> np.ndarray:
    """Post-ReLU, very sparse: about `keep` of the values are nonzero, with a heavy right tail."""
    x = rng.standard_normal((n, *shape)) * rng.uniform(0.5, 2.0, (1, shape[0], 1, 1))
    threshold = np.quantile(x, 1.0 - keep)
    return (np.maximum(x - threshold, 0.0) * 3.0).astype(np.float32)


def relu_lowrank(rng: np.random.Generator, n: int, shape: tuple[int, int, int] = SITE_SHAPE,
                 rank: int = 4) -> np.ndarray:
    """Post-ReLU with channel correlation: a rank-`rank` mix of smooth spatial fields, then ReLU."""
    c, h, w = shape
    fields = rng.standard_normal((n, rank, h, w))
    fields = (fields + np.roll(fields, 1, axis=-1) + np.roll(fields, 1, axis=-2)) / 3.0
    mix = rng.standard_normal((rank, c))
    return np.maximum(np.einsum("nkhw,kc->nchw", fields, mix) + 0.1, 0.0).astype(np.float32)


def signed_smooth(rng: np.random.Generator, n: int, shape: tuple[int, int, int] = SITE_SHAPE) -> np.ndarray:
    """Signed and dense, smooth along the channel axis (low channel frequencies dominate): DCT territory."""
    c, h, w = shape
    t = (np.arange(c) + 0.5) / c
    basis = np.stack([np.ones(c), np.cos(np.pi * t), np.cos(2 * np.pi * t)]) * np.array([[3.0], [1.2], [0.5]])
    fields = rng.standard_normal((n, 3, h, w))
    x = np.einsum("nkhw,kc->nchw", fields, basis) + 0.05 * rng.standard_normal((n, c, h, w))
    return x.astype(np.float32)


def signed_gated(rng: np.random.Generator, n: int, shape: tuple[int, int, int] = SITE_SHAPE) -> np.ndarray:
    """signed_smooth where ~70% of the pixels are inactive (all channels zero): DCT with masked frequencies."""
    x = signed_smooth(rng, n, shape)
    return (x * (rng.random((n, 1, *shape[1:])) < 0.3)).astype(np.float32)


def activation_stats(name: str, x: np.ndarray, spatial_values: int = 0) -> ActivationStats:
    """Statistics as calibration collects them, one sample per update."""
    stats = ActivationStats(name, tuple(x.shape[1:]), spatial_values=spatial_values)
    for sample in x:
        stats.update(sample[None])
    return stats


@dataclass(frozen=True)
class SiteCase:
    """A calibrated site with the data it was calibrated on and held-out data of the same kind."""

    name: str
    site: DctCmSite
    calib: np.ndarray
    fresh: np.ndarray
    target_db: float


DATA_KINDS: dict[str, Callable[..., np.ndarray]] = {
    "sparse": relu_sparse, "lowrank": relu_lowrank, "smooth": signed_smooth, "gated": signed_gated,
}
SQNR_TARGETS = (12.0, 24.0, 36.0)


@pytest.fixture(scope="session")
def site_cases() -> list[SiteCase]:
    """Sites calibrated at several SQNR targets on each kind of data in DATA_KINDS, plus G=1-only, G=8 and
    lossless sites; between them both modes (mask, dct) and all three frequency kinds occur."""
    cases = []
    for seed, (kind, make) in enumerate(DATA_KINDS.items()):
        rng = np.random.default_rng(100 + seed)
        calib, fresh = make(rng, 8), make(rng, 4)
        stats = activation_stats(kind, calib)
        policies = {f"{t:g}dB": DctCm(sqnr_db=t) for t in SQNR_TARGETS}
        policies["g1-24dB"] = DctCm(sqnr_db=24.0, groups=(1,))
        policies["g8-30dB"] = DctCm(sqnr_db=30.0, groups=(8,))
        policies["lossless"] = DctCm(groups=())
        for label, policy in policies.items():
            cases.append(SiteCase(f"{kind}-{label}", policy.calibrate(stats), calib, fresh, policy.sqnr_db))
    return cases


@pytest.fixture
def read_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Path], Path]]:
    """Make a folder read-only. chmod does not stop root, so for root os.access also answers as it does on a
    read-only mount (access(2) reports EROFS to root too); featcomp's checks use os.access."""
    import os

    locked: list[Path] = []
    real_access = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if mode & os.W_OK and any(Path(str(path)).resolve() == p for p in locked):
            return False
        return real_access(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    def lock(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        locked.append(folder.resolve())
        if os.geteuid() == 0:
            monkeypatch.setattr(os, "access", access)
        return folder

    yield lock
    for folder in locked:
        folder.chmod(0o755)
