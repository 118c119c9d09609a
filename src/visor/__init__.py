"""visor: self-hosted image recognition.

>>> import visor
>>> visor.classify("assets/bus.jpg").top
('school bus', 0.9...)
"""

from visor import faces, models
from visor.annotate import Annotator, annotate
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
from visor.version import __version__
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
