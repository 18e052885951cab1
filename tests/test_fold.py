"""Folding transform-VLC transforms into the convs around a site: only where producer and consumers are
plain Convs, numerically the unfolded model's computation, no transform left in the ops, exact strip."""

from __future__ import annotations

from pathlib import Path

import models
import numpy as np
import pytest
from featcomp.passes.fold import FOLD_KEY, fold, foldable
from featcomp.passes.insert import insert_pairs
from featcomp.passes.pairs import find_pairs
from featcomp.runtime_ops import ort
from onnx import TensorProto, numpy_helper

from featcomp import api
from featcomp.codecs.tvlc import TransformVlc
from featcomp.quality import OutputSnr


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3, models.SIZE, models.SIZE)).astype(np.float32)
    model = api._model(models.linear_bottleneck())
    feeds = [{models.INPUT: one[None]} for one in x]
    sites = [s for s in api.inspect(model)]
    stats = api.calibrate(model, feeds[:8], sites=sites, stats_options=TransformVlc().stats_options)
    family = TransformVlc(transform="pca", groups=(16,))
    codecs = {}
    for s in sites:
        front = family.candidates(stats[s.name])
        pca = [c for c in front if c.site.group == 16 and c.sqnr_db >= 30] if s.name == "proj" else []
        codecs[s.name] = (pca[0] if pca else front[-1]).site
    return model, codecs, feeds


def test_only_conv_to_conv_sites_fold(setup) -> None:
    model, codecs, _ = setup
    assert foldable(model, "proj") is None
    assert "producer" in (foldable(model, "relu1") or "")
    assert codecs["proj"].group == 16  # the low-rank site chose a PCA transform


def test_fold_factors_come_from_the_codec(setup) -> None:
    """The codec protocol gives fold an orthonormal transform and the plain site (dct-cm: nothing to fold)."""
    _, codecs, _ = setup
    factors = codecs["proj"].fold_factors()
    assert factors is not None
    k, g = codecs["proj"].cmin.shape
    assert factors.blocks.shape == (k, g, g)
    eye = np.einsum("kij,klj->kil", factors.blocks, factors.blocks)
    assert np.allclose(eye, np.eye(g), atol=0.05)  # integer transform: orthonormal up to its rounding
    assert factors.plain.codec_name == codecs["proj"].codec_name and factors.plain.fold_factors() is None
    assert all(c.fold_factors() is None for c in codecs.values() if c.group == 1)


def test_folded_matches_unfolded_and_strips_exactly(setup) -> None:
    model, codecs, feeds = setup
    unfolded = insert_pairs(model, codecs).model
    result = fold(unfolded)
    folded = result.model
    assert result.notes == ("proj",) and result.changed and any(m.key == FOLD_KEY for m in folded.metadata_props)
    pair = next(p for p in find_pairs(folded) if p.site == "proj")
    assert pair.codec.group == 1 and pair.codec.mode == "folded-pca16"
    inits = {t.name: numpy_helper.to_array(t) for t in folded.graph.initializer}
    assert inits[pair.encode.input[4]].shape == (1, 1, 1)  # no transform left in the op
    out = folded.graph.output[0].name
    names = [out, pair.symbols]
    a = ort.session(ort.with_outputs(unfolded, [pair.symbols], [TensorProto.INT16]))
    b = ort.session(ort.with_outputs(folded, [pair.symbols], [TensorProto.INT16]))
    same = total = 0
    for f in feeds:
        ya, sa = ort.run(a, f, names).values()
        yb, sb = ort.run(b, f, names).values()
        # the folded quantizer sees the exact coefficients, the unfolded one their 8-bit rounding first:
        # and its 8-bit clip (16 rounding errors of half an 8-bit step, through the transform): symbols
        # agree to within a step almost everywhere, and mostly exactly
        assert np.mean(np.abs(sa.astype(np.int32) - sb) <= 1) > 0.99
        same += int(np.sum(sa == sb))
        total += sa.size
        assert np.argmax(ya) == np.argmax(yb)
        np.testing.assert_allclose(yb, ya, atol=0.05 * float(np.abs(ya).max()))
    assert same / total > 0.75
    assert api.strip(folded).SerializeToString() == model.SerializeToString()


def test_fold_through_the_api_and_cli(cli, model_file, calib_npz: Path, tmp_path: Path) -> None:
    result = api.compress(models.linear_bottleneck(), calib_npz, codec="transform-vlc", quality=OutputSnr(30.0), fold=True)
    assert result.allocation.folded == ["proj"] and "folded" in result.allocation.as_dict()
    out = tmp_path / "f.onnx"
    run = cli("compress", model_file(models.linear_bottleneck()), "-o", out, "--codec", "transform-vlc", "--fold",
              "--calib", calib_npz, "--output-snr", "30", "--format", "csv")
    assert run.code == 0, run.err
    run = cli("compress", model_file(models.two_convs()), "-o", tmp_path / "x.onnx", "--fold", "--calib", calib_npz)
    assert run.code == 1 and "--fold" in run.err
