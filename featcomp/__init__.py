"""featcomp: calibrated feature-map compression for ONNX models.

    import featcomp
    result = featcomp.compress("model.onnx", "calib_images/", preprocess="resize=256,crop=224,order=rgb,mean=128,std=128")
    featcomp.save_model(result.model, "model.fc.onnx")
    print(featcomp.render(featcomp.report(result.model, "val_images/", preprocess=...), "table"))

Names are resolved on first use, so `import featcomp` (and the CLI's --help) stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "CompressResult": "featcomp.api", "EvalResult": "featcomp.api", "calibrate": "featcomp.api",
    "compress": "featcomp.api", "evaluate": "featcomp.api", "inspect": "featcomp.api", "report": "featcomp.api",
    "site_codecs": "featcomp.api", "strip": "featcomp.api",
    "CodecError": "featcomp.errors", "FeatcompError": "featcomp.errors",
    "load_model": "featcomp.modelio", "save_model": "featcomp.modelio",
    "Allocation": "featcomp.quality", "BitsPerValue": "featcomp.quality", "MaxDrop": "featcomp.quality",
    "OutputSnr": "featcomp.quality", "Sqnr": "featcomp.quality", "Step": "featcomp.quality",
    "Preprocess": "featcomp.preprocess", "render": "featcomp.reporting.render", "Report": "featcomp.reporting.schema",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'featcomp' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The public API first-class in dir(featcomp) and tab completion (the names load lazily)."""
    return sorted({*__all__, *(k for k in globals() if k.startswith("__"))})
