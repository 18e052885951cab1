"""Shared fixtures for the CLI tests: tiny models on disk, an .npz calibration set, labelled PNGs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import models
from featcomp.cli import main

PREPROCESS = "resize=16,crop=16,order=rgb,mean=128,std=128"


@dataclass
class Run:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., Run]:
    """Run ``featcomp ARGS...`` in-process and capture what it printed."""

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
