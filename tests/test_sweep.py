"""`featcomp sweep` on a small model built in code: one point per codec and SNR, each measured for real
(bits from the report, top-1 from evaluate), a JSON that parses back, a PNG, and clean errors."""

from __future__ import annotations

import json
from pathlib import Path

import models
from conftest import PREPROCESS


def test_sweep_writes_curve_and_plot(cli, model_file, images: Path, tmp_path: Path) -> None:
    path = model_file(models.residual())
    out, png = tmp_path / "curve.json", tmp_path / "curve.png"
    run = cli("sweep", path, "--calib", images, "--images", images, "--preprocess", PREPROCESS,
              "--snr", "10,30", "-o", out, "--plot", png)
    assert run.code == 0, run.err
    data = json.loads(out.read_text())
    assert data["schema"] == "featcomp.sweep/1"
    points = data["points"]
    assert [(p["codec"], p["output_snr_db"]) for p in points] == [
        ("dct-cm", 10.0), ("dct-cm", 30.0), ("transform-vlc", 10.0), ("transform-vlc", 30.0)]
    for p in points:
        assert p["bits_per_value"] >= p["payload_bits_per_value"] > 0
        assert 0 <= p["top1"] <= 1 and 0 <= p["agreement"] <= 1
    for codec in ("dct-cm", "transform-vlc"):  # a higher SNR target costs more bits
        lo, hi = [p for p in points if p["codec"] == codec]
        assert hi["bits_per_value"] > lo["bits_per_value"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "transform-vlc" in run.out


def test_sweep_bad_input_is_one_line(cli, model_file, images: Path, tmp_path: Path) -> None:
    path = model_file(models.two_convs())
    out = tmp_path / "curve.json"
    run = cli("sweep", path, "--calib", images, "--images", images, "--preprocess", PREPROCESS, "--snr", "ten",
              "-o", out)
    assert run.code == 1 and "--snr" in run.err and "Traceback" not in run.err and not out.exists()
    run = cli("sweep", path, "--codec", "zip", "--calib", images, "--images", images, "--preprocess", PREPROCESS,
              "-o", out)
    assert run.code == 1 and "unknown codec" in run.err and not out.exists()
