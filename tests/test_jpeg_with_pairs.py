"""A model with both the learned-JPEG input node and feature-map pairs: each pass removes only its own ops."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
from conftest import PREPROCESS
from featcomp.passes.jpeg_input import find_jpeg, insert_jpeg, strip_jpeg
from featcomp.runtime_ops import ort

from featcomp import api
from featcomp.jpeg.tables import standard
from featcomp.preprocess import Preprocess
from featcomp.quality import OutputSnr


def test_strip_pairs_keeps_the_jpeg_node_and_back(calib_npz: Path) -> None:
    base = api._model(models.two_convs())
    with_jpeg = insert_jpeg(base, standard(50), Preprocess.parse(PREPROCESS)).model
    compressed = api.compress(with_jpeg, calib_npz, quality=OutputSnr(25.0)).model
    assert find_jpeg(compressed) is not None and api.site_codecs(compressed)
    stripped = api.strip(compressed)
    assert find_jpeg(stripped) is not None and not api.site_codecs(stripped)
    x = np.load(calib_npz)[models.INPUT][:1]
    name = stripped.graph.output[0].name
    got = ort.run(ort.session(stripped), {models.INPUT: x}, [name])[name]
    want = ort.run(ort.session(with_jpeg), {models.INPUT: x}, [name])[name]
    np.testing.assert_array_equal(got, want)
    assert strip_jpeg(stripped).model.graph.node[0].op_type == base.graph.node[0].op_type


def test_report_shows_input_bytes_raw_standard_learned(images: Path, calib_npz: Path) -> None:
    from featcomp.jpeg.evaluate import input_bytes
    from featcomp.reporting.render import render

    base = api._model(models.two_convs())
    tables = standard(30)
    model = api.compress(insert_jpeg(base, tables, Preprocess.parse(PREPROCESS)).model, calib_npz, quality=OutputSnr(25.0)).model
    report = api.report(model, images, preprocess=PREPROCESS)
    j = report.totals.input_jpeg
    assert j is not None and j["images"] == 5
    want = input_bytes(sorted(p for p in images.iterdir() if p.suffix == ".png"), tables, preprocess=Preprocess.parse(PREPROCESS))
    assert j["learned"] == want.learned and j["raw"] == 16 * 16 * 3 and j["standard"] > 0
    assert "learned JPEG" in render(report, "table")
    assert api.report(api.compress(base, calib_npz, quality=OutputSnr(25.0)).model, images,
                      preprocess=PREPROCESS).totals.input_jpeg is None
