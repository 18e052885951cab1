"""The operational table search: band parametrisation, descent on real bytes and logits, the learn entry."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from featcomp.errors import FeatcompError
from featcomp.jpeg import learn, search
from featcomp.jpeg.measure import Classifier, rate
from featcomp.jpeg.tables import STANDARD_CHROMA, STANDARD_LUMA, Tables, standard
from featcomp.preprocess import Preprocess

SPEC = Preprocess.parse("resize=32,crop=32,order=rgb,mean=128,std=128")


def _views(n: int = 4, seed: int = 0) -> list[np.ndarray]:
    """Textured colour photos, 32x32: luma detail at every frequency, and colour that varies."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32]
    return [np.clip(np.stack([np.sin(x / (1.5 + i) + 2 * c) * 60 + np.cos(y / (2 + c)) * 40 for c in range(3)], -1)
                    + 120 + rng.normal(0, 10, (32, 32, 3)), 0, 255).astype(np.uint8) for i in range(n)]


def _luma_only_model() -> Classifier:
    """'Logits' = the luma plane (BT.601 weights of the normalised RGB): blind to Cb and Cr."""
    w = numpy_helper.from_array(np.array([0.299, 0.587, 0.114], np.float32).reshape(1, 3, 1, 1), "w")
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["l"]), helper.make_node("Flatten", ["l"], ["y"])], "luma",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 1024])], [w])
    return Classifier(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), SPEC)


def test_bands_follow_the_diagonals() -> None:
    luma, chroma, n = search.band_index()
    assert n == max(search.BANDS_LUMA) + max(search.BANDS_CHROMA) + 2
    assert luma[0, 0] == 0 and luma[7, 7] == max(search.BANDS_LUMA) and chroma.min() == luma.max() + 1
    assert (luma == luma.T).all() and (chroma == chroma.T).all()
    theta = np.zeros(n)
    base_l, base_c = search.tables_from(theta, 1.0)
    np.testing.assert_array_equal(base_l, STANDARD_LUMA)
    np.testing.assert_array_equal(base_c, STANDARD_CHROMA)
    theta[3] = np.log(2.0)  # the u + v = 3 luma diagonal, nothing else
    got_l, got_c = search.tables_from(theta, 0.5)
    diagonal = np.add.outer(np.arange(8), np.arange(8))
    np.testing.assert_allclose(got_l[diagonal == 3], STANDARD_LUMA[diagonal == 3])
    np.testing.assert_allclose(got_l[diagonal != 3], STANDARD_LUMA[diagonal != 3] * 0.5)
    np.testing.assert_allclose(got_c, STANDARD_CHROMA * 0.5)
    with pytest.raises(FeatcompError, match="band offsets"):
        search.tables_from(np.zeros(3), 1.0)


def test_a_luma_only_model_gets_coarse_chroma_and_a_lower_cost() -> None:
    """Chroma costs bytes and, for this model, nothing else: the descent never refines a chroma band and
    coarsens the low ones (the highest band is all zeros already at Annex K x 1, so moving it changes
    nothing and is not taken); every accepted move lowers J = D + lambda R, so the end is below the start."""
    views = _views()
    luma, chroma, info = search.operational(_luma_only_model(), views, 1.0)
    n_luma = max(search.BANDS_LUMA) + 1
    assert info["tuned"] and info["accepted"] > 0
    chroma_theta = info["theta"][n_luma:]
    assert min(chroma_theta) >= 0 and min(chroma_theta[:3]) > 0, info["theta"]
    cost = lambda s: s["distortion"] + info["lambda"] * s["bpp"]  # noqa: E731
    assert cost(info["end"]) < cost(info["start"])
    tuned = Tables.from_profile(luma, chroma, 1.0, "operational")
    assert rate(views, tuned) == pytest.approx(info["end"]["bpp"])  # the reported rate is the real one
    assert (tuned.chroma >= np.clip(STANDARD_CHROMA, 1, 255)).all()


def test_operational_refuses_bad_settings() -> None:
    with pytest.raises(FeatcompError, match="positive start scale"):
        search.operational(_luma_only_model(), _views(1), 0.0)
    with pytest.raises(FeatcompError, match="move sizes"):
        search.operational(_luma_only_model(), _views(1), 1.0, steps=())


def test_learn_operational_hits_the_rate_target() -> None:
    views = _views(3)
    target = rate(views, standard(40))
    tables = learn.learn("operational", views, _luma_only_model(), target_bpp=target, model_name="luma")
    assert tables.method == "operational" and tables.model == "luma" and tables.sweepable
    assert tables.meta["bpp"] <= target and rate(views, tables) == pytest.approx(tables.meta["bpp"])
    assert tables.meta["operational"]["accepted"] > 0
    finer = tables.scaled(tables.scale * 0.9)  # type: ignore[operator]
    assert rate(views, finer) > target or (finer.luma == tables.luma).all()
    with pytest.raises(FeatcompError, match="needs the model"):
        learn.learn("operational", views, target_bpp=target)
    with pytest.raises(FeatcompError, match="below what JPEG can reach"):
        learn.learn("operational", views, _luma_only_model(), target_bpp=0.01)
