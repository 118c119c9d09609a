"""Faces: detection (YuNet, or dlib's HOG/CNN), landmarks, 128-d embeddings (dlib), comparison,
collections and anonymisation.

The package is callable: ``visor.faces(image, model="yunet", ...)`` is :func:`detect_faces` (one
image gives a :class:`Faces`, a list gives a list), while ``visor.faces.FaceStore`` and
``import visor.faces.collections`` work as for any package. This uses Python's documented way to give
a module behaviour: its ``__class__`` is set to a :class:`types.ModuleType` subclass (the
"Customizing module attribute access" section of the data model reference).

dlib, ONNX Runtime and SQLAlchemy are imported only when a model is loaded or a store opened.
"""

import sys
import types
from collections.abc import Iterable
from typing import Any

from visor.faces.anonymize import anonymize, anonymize_people, hide_mask, people_mask, sensitive_boxes
from visor.faces.collections import (
    CollectionExists,
    CollectionNotFound,
    FaceStore,
    PersonNotFound,
    default_db_path,
)
from visor.faces.detector import (
    DEFAULT_DETECTOR,
    DEFAULT_THRESHOLD,
    DETECTORS,
    FaceAnalyzer,
    MultipleFaces,
    NoFaceFound,
    compare,
    default_models_dir,
    detect_faces,
    load_face_detector,
)
from visor.faces.indexed import (
    DEFAULT_MATCH_THRESHOLD,
    FACE_MODEL_VERSION,
    CollectionInfo,
    DetectedFace,
    FaceIndex,
    FaceNotFound,
    FaceRecord,
    IndexResult,
    InvalidPaginationToken,
)
from visor.faces.yunet import YuNetDetector
from visor.io import ImageSource
from visor.types.faces import Faces

__all__ = [
    "DEFAULT_DETECTOR",
    "DEFAULT_MATCH_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "DETECTORS",
    "FACE_MODEL_VERSION",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "DetectedFace",
    "FaceAnalyzer",
    "FaceIndex",
    "FaceNotFound",
    "FaceRecord",
    "FaceStore",
    "Faces",
    "IndexResult",
    "InvalidPaginationToken",
    "MultipleFaces",
    "NoFaceFound",
    "PersonNotFound",
    "YuNetDetector",
    "anonymize",
    "anonymize_people",
    "compare",
    "default_db_path",
    "default_models_dir",
    "detect_faces",
    "hide_mask",
    "load_face_detector",
    "people_mask",
    "sensitive_boxes",
]


class _FacesPackage(types.ModuleType):
    """The type of the :mod:`visor.faces` package: a module that can be called like :func:`detect_faces`."""

    def __call__(self, images: ImageSource | Iterable[ImageSource], **options: Any) -> Faces | list[Faces]:
        """``visor.faces(images, model="yunet", conf=None, landmarks=5, embeddings=False, ...)``:
        see :func:`visor.faces.detect_faces`."""
        return detect_faces(images, **options)


sys.modules[__name__].__class__ = _FacesPackage
