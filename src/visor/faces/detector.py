"""Face detection, landmarks and 128-d embeddings with dlib.

Detectors: dlib's HOG + linear SVM frontal face detector (``model="hog"``, the default,
fast on a CPU) or its CNN/MMOD detector (``model="cnn"``, finds more poses and small faces,
much slower without a GPU). Landmarks come from dlib's 5- or 68-point shape predictor, and
embeddings from dlib's ResNet face recognition model, whose 128-d descriptors of the same
person lie within a euclidean distance of 0.6 of each other: at that threshold dlib reports
99.38% accuracy on the LFW benchmark. All weights come from the ``face_recognition_models``
package (CC0), located without importing it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from visor.errors import ConfigError, InvalidInput, WeightsError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, bounded_copy, describe_source, open_image
from visor.types.faces import Faces

#: Euclidean distance under which two dlib embeddings are the same person (99.38% on LFW).
DEFAULT_THRESHOLD = 0.6
EMBEDDING_SIZE = 128

_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "landmarks68": "shape_predictor_68_face_landmarks.dat",
    "recognition": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}


class NoFaceFound(InvalidInput):
    """An image that must show a face shows none (HTTP 400)."""

    code = "no_face"


class MultipleFaces(InvalidInput):
    """An image that must show exactly one face shows several (HTTP 400)."""

    code = "multiple_faces"


def default_models_dir() -> Path:
    """The ``models/`` folder of the installed ``face_recognition_models`` package.

    Found with ``importlib.util.find_spec`` rather than an import, since the package's
    ``__init__`` needs ``pkg_resources``, which recent setuptools no longer ship.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError("face models are missing: pip install face-recognition-models")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError:
        raise WeightsError("face analysis needs dlib: pip install dlib (or dlib-bin)") from None
    return dlib


class FaceAnalyzer:
    """Holds the dlib models, each loaded the first time it is needed.

    ``models_dir`` overrides the folder of the ``.dat`` files; ``limits`` caps the images decoded.
    ``max_pixels`` bounds the work per image: a larger image is detected (and embedded) on a copy
    box-downscaled to at most that many pixels, and its boxes and landmarks are scaled back to the
    original pixels (HOG with ``upsample=1`` on a 36 MP photo takes tens of seconds and GBs;
    ``None``: no bound). One analyzer may be shared by threads that use different images, but
    dlib's models are not documented as thread-safe: give each worker thread its own analyzer to be sure.
    """

    def __init__(self, *, models_dir: str | os.PathLike | None = None, limits: ImageLimits = DEFAULT_LIMITS,
                 max_pixels: int | None = None) -> None:
        if max_pixels is not None and int(max_pixels) < 1:
            raise ConfigError(f"max_pixels must be at least 1, got {max_pixels}")
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.limits = limits
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self._models: dict[str, Any] = {}

    def _model(self, key: str) -> Any:
        if key not in self._models:
            dlib = _import_dlib()
            if key == "hog":
                self._models[key] = dlib.get_frontal_face_detector()
                return self._models[key]
            path = (self.models_dir or default_models_dir()) / _FILES[key]
            if not path.is_file():
                raise WeightsError(f"face model file is missing: {path}")
            factory = {
                "landmarks5": dlib.shape_predictor,
                "landmarks68": dlib.shape_predictor,
                "recognition": dlib.face_recognition_model_v1,
                "cnn": dlib.cnn_face_detection_model_v1,
            }[key]
            self._models[key] = factory(os.fspath(path))
        return self._models[key]

    def decode(self, image: ImageSource) -> Image.Image:
        """Decode through :func:`visor.io.open_image` (size caps, EXIF, RGB, typed errors)."""
        return open_image(image, limits=self.limits)

    def detect(
        self,
        image: ImageSource,
        *,
        model: Literal["hog", "cnn"] = "hog",
        upsample: int = 1,
        landmarks: Literal[5, 68] = 5,
        embeddings: bool = True,
        threshold: float = 0.0,
    ) -> Faces:
        """Find the faces in one image.

        ``upsample`` doubles the image that many times before detecting (finds smaller faces,
        costs 4x per step). ``threshold`` is the detector's score cut-off: the HOG detector's
        SVM margin (dlib's default 0; lower finds more faces and more false ones) or the CNN
        detector's confidence. Boxes are in original pixels, clipped to the image; ``confidence``
        is the detector's score. Embeddings need landmarks and are computed from them.
        """
        if model not in ("hog", "cnn"):
            raise ConfigError(f"unknown face detector {model!r}; use 'hog' or 'cnn'")
        if landmarks not in (5, 68):
            raise ConfigError(f"landmarks must be 5 or 68, got {landmarks!r}")
        if int(upsample) < 0:
            raise ConfigError(f"upsample must be 0 or more, got {upsample}")
        img = self.decode(image)
        w, h = img.size
        arr = np.ascontiguousarray(np.asarray(bounded_copy(img, max_pixels=self.max_pixels)))
        sx, sy = w / arr.shape[1], h / arr.shape[0]  # detector pixels -> original pixels
        if model == "hog":
            rects, scores, _ = self._model("hog").run(arr, int(upsample), float(threshold))
            rects, scores = list(rects), [float(s) for s in scores]
        else:
            found = [d for d in self._model("cnn")(arr, int(upsample)) if d.confidence >= threshold]
            rects, scores = [d.rect for d in found], [float(d.confidence) for d in found]
        if not rects:
            return Faces.empty()
        xyxy = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float64)
        xyxy = np.clip(xyxy * [sx, sy, sx, sy], 0, [w, h, w, h]).astype(np.float32)
        predictor = self._model(f"landmarks{landmarks}")
        shapes = [predictor(arr, r) for r in rects]
        marks = np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], np.float64)
        marks = (marks.reshape(len(shapes), -1, 2) * [sx, sy]).astype(np.float32)
        if embeddings:
            rec = self._model("recognition")
            emb = np.array([np.asarray(rec.compute_face_descriptor(arr, s)) for s in shapes], np.float32)
        else:
            emb = np.zeros((len(rects), 0), np.float32)
        return Faces(xyxy, np.array(scores, np.float32), marks, emb)

    def embed_one(self, image: ImageSource, **detect_kwargs: Any) -> np.ndarray:
        """The embedding of the only face in ``image``.

        Raises :class:`NoFaceFound` or :class:`MultipleFaces` naming the image.
        """
        faces = self.detect(image, embeddings=True, **detect_kwargs)
        if len(faces) == 0:
            raise NoFaceFound(f"{describe_source(image)}: no face found")
        if len(faces) > 1:
            raise MultipleFaces(f"{describe_source(image)}: {len(faces)} faces found; expected exactly one")
        return faces.embeddings[0]

    def embed_largest(self, image: ImageSource, **detect_kwargs: Any) -> np.ndarray:
        """The embedding of the largest face in ``image``; :class:`NoFaceFound` if there is none."""
        faces = self.detect(image, embeddings=True, **detect_kwargs)
        if len(faces) == 0:
            raise NoFaceFound(f"{describe_source(image)}: no face found")
        wh = faces.xyxy[:, 2:] - faces.xyxy[:, :2]
        return faces.embeddings[int(np.argmax(wh[:, 0] * wh[:, 1]))]


def as_embedding(value: Any) -> np.ndarray | None:
    """``value`` as a float32 128-vector if it is one (array, list, dlib vector), else None."""
    if isinstance(value, (str, bytes, bytearray, memoryview, os.PathLike, Image.Image)) or hasattr(value, "read"):
        return None
    if isinstance(value, np.ndarray) and value.ndim != 1:
        return None
    if not isinstance(value, (np.ndarray, Sequence)) and type(value).__name__ != "vector":
        return None
    arr = np.asarray(value, dtype=np.float32).reshape(-1)
    return arr if arr.shape == (EMBEDDING_SIZE,) else None


def distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distance between embeddings; ``b`` may be one ``(128,)`` or many ``(M, 128)``."""
    return np.linalg.norm(np.asarray(b, np.float32) - np.asarray(a, np.float32), axis=-1)


def compare(
    a: ImageSource | np.ndarray | Sequence[float],
    b: ImageSource | np.ndarray | Sequence[float],
    *,
    threshold: float = DEFAULT_THRESHOLD,
    analyzer: FaceAnalyzer | None = None,
) -> tuple[float, bool]:
    """``(distance, same)`` for two faces, each given as an image or a 128-d embedding.

    For an image, its largest face is used (:class:`NoFaceFound` if it has none). ``same`` is
    ``distance <= threshold``; the default 0.6 is the threshold at which dlib's model scores
    99.38% on LFW. Lower it (e.g. 0.5) for fewer false matches, at the cost of more misses.
    """
    analyzer = analyzer or FaceAnalyzer()
    ea = as_embedding(a)
    eb = as_embedding(b)
    ea = analyzer.embed_largest(a) if ea is None else ea
    eb = analyzer.embed_largest(b) if eb is None else eb
    d = float(distance(ea, eb))
    return d, d <= threshold
