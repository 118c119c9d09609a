"""visor: self-hosted image recognition.

>>> import visor
>>> visor.classify("assets/bus.jpg").top
('school bus', 0.9...)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from visor.version import __version__

# Each public name and the module that defines it, imported when the name is first used (PEP 562): every
# ``visor`` command and ``import visor.<module>`` imports this package first, and should pay only for what it
# uses (``import visor.errors`` alone 0.50 -> 0.03 s on the 2-core Xeon CI runs on).
_PUBLIC: dict[str, str] = {
    "faces": "visor.faces", "models": "visor.models",  # the subpackages themselves
    "Annotator": "visor.annotator", "annotate": "visor.annotator",
    **dict.fromkeys(["classify", "detect", "moderate", "predict", "properties", "read_text", "segment"], "visor.api"),
    **dict.fromkeys(["ConfigError", "CorruptImage", "ImageNotFound", "ImageTooLarge", "InvalidInput", "ModelNotFound",
                     "UnsupportedFormat", "VisorError", "WeightsError", "WeightsIntegrityError"], "visor.errors"),
    **dict.fromkeys(["ImageLimits", "load_image", "open_image"], "visor.io"),
    **dict.fromkeys(["Classifier", "Detector", "ModelCard", "Predictor", "load"], "visor.models"),
    **dict.fromkeys(["curate", "embed", "search"], "visor.retrieval"),
    **dict.fromkeys(["Classifications", "Detections"], "visor.types"),
    "track": "visor.video.track",
}


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'visor' has no attribute {name!r}")
    imported = importlib.import_module(module)
    value = imported if module == f"visor.{name}" else getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # what type checkers and IDEs see
    from visor import faces, models
    from visor.annotator import Annotator, annotate
    from visor.api import classify, detect, moderate, predict, properties, read_text, segment
    from visor.errors import (
        ConfigError,
        CorruptImage,
        ImageNotFound,
        ImageTooLarge,
        InvalidInput,
        ModelNotFound,
        UnsupportedFormat,
        VisorError,
        WeightsError,
        WeightsIntegrityError,
    )
    from visor.io import ImageLimits, load_image, open_image
    from visor.models import Classifier, Detector, ModelCard, Predictor, load
    from visor.retrieval import curate, embed, search
    from visor.types import Classifications, Detections
    from visor.video.track import track

__all__ = [
    "Annotator",
    "Classifications",
    "Classifier",
    "ConfigError",
    "CorruptImage",
    "Detections",
    "Detector",
    "ImageLimits",
    "ImageNotFound",
    "ImageTooLarge",
    "InvalidInput",
    "ModelCard",
    "ModelNotFound",
    "Predictor",
    "UnsupportedFormat",
    "VisorError",
    "WeightsError",
    "WeightsIntegrityError",
    "__version__",
    "annotate",
    "classify",
    "curate",
    "detect",
    "embed",
    "faces",
    "load",
    "load_image",
    "models",
    "moderate",
    "open_image",
    "predict",
    "properties",
    "read_text",
    "search",
    "segment",
    "track",
]
