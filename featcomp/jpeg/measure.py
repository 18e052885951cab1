"""The two measurements everything else is built on: real JPEG bytes, and what the model says.

Rate: the images are encoded by Pillow (featcomp.jpeg.encode), bpp = total file bytes x 8 / total
pixels of the images as encoded. Accuracy: the decoded files go through the model's normalisation
(the --preprocess spec without its geometry, same float32 arithmetic as featcomp.preprocess) and the
model in ONNX Runtime. Decoding the real file and running the LearnedJpeg node give the same tensor
bit for bit (tests), so either can stand for the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx

from featcomp.errors import FeatcompError
from featcomp.jpeg.encode import decode, encode
from featcomp.jpeg.tables import Tables
from featcomp.preprocess import Preprocess

__all__ = ["METRICS", "Classifier", "Coded", "Reference", "code", "rate"]

#: what "top-1 within P points of the uncompressed input" is measured by: top-1 against labels; the
#: expected top-1 under the uncompressed model's own probabilities (label-free); or agreement with the
#: uncompressed model's top-1 (label-free, and stricter: a flip between two near-equal classes counts fully)
METRICS = ("top1", "expected", "agreement")


@dataclass(frozen=True)
class Coded:
    """A set of images coded with one table pair: total bytes, total pixels and the decoded pixels."""

    tables: Tables
    bytes: int
    pixels: int
    decoded: list[np.ndarray] = field(repr=False)

    @property
    def bpp(self) -> float:
        return 8.0 * self.bytes / self.pixels


def rate(views: Sequence[np.ndarray], tables: Tables) -> float:
    """bpp of the images coded with ``tables`` (real file bytes)."""
    total = sum(len(encode(v, tables)) for v in views)
    return 8.0 * total / sum(v.shape[0] * v.shape[1] for v in views)


def code(views: Sequence[np.ndarray], tables: Tables) -> Coded:
    files = [encode(v, tables) for v in views]
    return Coded(tables, sum(map(len, files)), sum(v.shape[0] * v.shape[1] for v in views), [decode(f) for f in files])


class Classifier:
    """A model in ORT with its normalisation: uint8 RGB views in, logits / top-1 classes out."""

    def __init__(self, model: onnx.ModelProto, preprocess: Preprocess, name: str = "model") -> None:
        from featcomp.allocate import logits_name
        from featcomp.modelio import input_spec, prepare
        from featcomp.passes.jpeg_input import image_input
        from featcomp.runtime_ops import ort

        model = prepare(model, need_conv=False)
        _, self.height, self.width = image_input(model, preprocess.layout)
        self.name, self.preprocess, self.model = name, preprocess, model
        spec = input_spec(model)
        self.input = spec.name
        self.batch = 16 if not isinstance(spec.shape[0], (int, np.integer)) else int(spec.shape[0])
        self.output, self.logit = model.graph.output[0].name, logits_name(model)
        self.session = ort.session(ort.with_outputs(model, [self.logit]))
        order = [2, 1, 0] if preprocess.order == "bgr" else [0, 1, 2]
        self._order = np.array(order)
        self._mean = np.asarray(preprocess.mean, np.float32)
        self._std = np.asarray(preprocess.std, np.float32)

    def check(self, views: Sequence[np.ndarray]) -> None:
        for v in views:
            if v.shape[:2] != (self.height, self.width):
                raise FeatcompError(f"images become {v.shape[1]}x{v.shape[0]} with --preprocess '{self.preprocess}' but "
                                    f"{self.name} takes {self.width}x{self.height}; change resize=/crop=")

    def inputs(self, views: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Model tensors [N, ...] from uint8 [N, H, W, 3] RGB, exactly as Preprocess.apply computes them."""
        pixels = np.asarray(views, dtype=np.float32)[..., self._order]
        x = ((pixels - self._mean) / self._std).astype(np.float32)
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2) if self.preprocess.layout == "nchw" else x)

    def delta(self, rgb_delta: np.ndarray) -> np.ndarray:
        """A change of the RGB pixels (float [N, H, W, 3]) as a change of the model's input tensor."""
        d = (rgb_delta[..., self._order] / self._std).astype(np.float32)
        return np.ascontiguousarray(d.transpose(0, 3, 1, 2) if self.preprocess.layout == "nchw" else d)

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(top-1 class per sample, centred float64 logits [N, K]) for model tensors x."""
        from featcomp.allocate import centered_logits
        from featcomp.runtime_ops import ort

        classes, logits = [], []
        for start in range(0, len(x), self.batch):
            got = ort.run(self.session, {self.input: x[start:start + self.batch]}, [self.output, self.logit])
            y = got[self.output]
            classes.append(y.reshape(len(y), -1).argmax(axis=1))
            logits.append(centered_logits(got[self.logit]))
        return np.concatenate(classes), np.concatenate(logits)

    def top1(self, views: Sequence[np.ndarray]) -> np.ndarray:
        return self.run(self.inputs(views))[0]


@dataclass(frozen=True)
class Reference:
    """What the model says on the uncompressed views, and the labels if any: the baseline every loss is from.

    Expected top-1 of a prediction c on image i is p_i(c), p_i the uncompressed model's softmax: if the
    model is calibrated, that is the chance c is the right label. Uncompressed it is the mean of max p_i,
    so its drop estimates the top-1 drop without labels (a flip to a near-equal class costs little).
    """

    classes: np.ndarray
    probs: np.ndarray
    labels: np.ndarray | None = None
    label_offset: int = 0

    @classmethod
    def of(cls, classifier: Classifier, views: Sequence[np.ndarray], labels: np.ndarray | None = None,
           label_offset: int = 0) -> Reference:
        classes, logits = classifier.run(classifier.inputs(views))
        if labels is not None and len(labels) != len(views):
            raise FeatcompError(f"{len(labels)} labels for {len(views)} images")
        return cls(classes, _softmax(logits), None if labels is None else np.asarray(labels), label_offset)

    def scores(self, classes: np.ndarray) -> dict[str, float | None]:
        """top1 (None without labels), expected and agreement of predictions ``classes`` (fractions 0..1)."""
        top1 = None if self.labels is None else float(np.mean(classes - self.label_offset == self.labels))
        expected = float(np.mean(self.probs[np.arange(len(classes)), classes]))
        return {"top1": top1, "expected": expected, "agreement": float(np.mean(classes == self.classes))}

    @property
    def uncompressed(self) -> dict[str, float | None]:
        return self.scores(self.classes)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)
