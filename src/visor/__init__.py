"""visor: self-hosted image recognition.

>>> import visor
>>> visor.classify("assets/bus.jpg").top
('school bus', 0.9...)
"""

from visor import models
from visor.annotate import Annotator, annotate
from visor.api import classify
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
from visor.models import Classifier, ModelCard, load
from visor.retrieval import curate, embed, search
from visor.types import Classifications, Detections

__version__ = "0.1.0"

__all__ = [
    "Annotator",
    "Classifications",
    "Classifier",
    "ConfigError",
    "CorruptImage",
    "Detections",
    "ImageLimits",
    "ImageNotFound",
    "ImageTooLarge",
    "InvalidInput",
    "ModelCard",
    "ModelNotFound",
    "UnsupportedFormat",
    "VisorError",
    "WeightsError",
    "WeightsIntegrityError",
    "__version__",
    "annotate",
    "classify",
    "curate",
    "embed",
    "load",
    "load_image",
    "models",
    "open_image",
    "search",
]
