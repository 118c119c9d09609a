"""Faces: detection, landmarks, 128-d embeddings, comparison, collections and anonymisation (dlib).

dlib and SQLAlchemy are imported only when a model is loaded or a store opened.
"""

from visor.faces.anonymize import anonymize, sensitive_boxes
from visor.faces.collections import (
    CollectionExists,
    CollectionNotFound,
    FaceStore,
    PersonNotFound,
    default_db_path,
)
from visor.faces.detector import (
    DEFAULT_THRESHOLD,
    FaceAnalyzer,
    MultipleFaces,
    NoFaceFound,
    compare,
    default_models_dir,
)
from visor.types.faces import Faces

__all__ = [
    "DEFAULT_THRESHOLD",
    "CollectionExists",
    "CollectionNotFound",
    "FaceAnalyzer",
    "FaceStore",
    "Faces",
    "MultipleFaces",
    "NoFaceFound",
    "PersonNotFound",
    "anonymize",
    "compare",
    "default_db_path",
    "default_models_dir",
    "sensitive_boxes",
]
