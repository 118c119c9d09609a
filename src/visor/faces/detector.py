"""Face detection, landmarks and 128-d embeddings: YuNet (default) or dlib's detectors, dlib's embeddings.

Detectors (``detector=`` / ``model=``):

* ``"yunet"`` (the default): YuNet-n in ONNX Runtime (:mod:`visor.faces.yunet`; WIDER Face val
  easy/medium/hard AP 0.892/0.883/0.811), boxes, scores and 5 landmarks (right eye, left eye,
  nose tip, right and left mouth corner: the person's right and left). Finds small, turned and
  partly hidden faces; about 10-30 ms per photo on one core.
* ``"hog"``: dlib's HOG + linear SVM frontal face detector (frontal faces only);
* ``"cnn"``: dlib's CNN/MMOD detector (more poses, much slower without a GPU).

Embeddings are dlib's ResNet face descriptors, whose 128-d vectors of the same person lie within a
euclidean distance of 0.6 of each other: at that threshold dlib reports 99.38% accuracy on LFW.
dlib aligns the face chip with its 5-point shape predictor (eye corners, bottom of the nose); with
YuNet that predictor runs inside a square box derived from YuNet's (:func:`dlib_box`: the box dlib's
HOG detector gives for the same face, on average, the kind of box the predictor was trained in).
Measured on ``faces/`` (12 faces identified against 9 enrolled photos): every face named right with
this box, with YuNet's own box, and with a shape built from YuNet's 5 points mapped onto dlib's;
the mean margin (nearest other person minus own person) was 0.484, 0.477 and 0.455, and HOG's 0.485.
``landmarks=68`` adds dlib's 68-point predictor (run in the same box). All dlib weights come from the
``face_recognition_models`` package (CC0), located without importing it.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image

from visor.config import suggest
from visor.errors import ConfigError, InvalidInput, WeightsError
from visor.faces.yunet import DEFAULT_CONF, YuNetDetector
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, bounded_copy, describe_source, open_image
from visor.models.batching import is_batch
from visor.models.registry import DEFAULT_FACE_DETECTOR, builtin
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


def _check_detector(name: object) -> None:
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; use one of {', '.join(map(repr, DETECTORS))}."
                          f"{suggest(str(name), DETECTORS)}")


def _rectangle(xyxy: Sequence[float]) -> Any:
    """A dlib rectangle (inclusive corners) for an ``x1, y1, x2, y2`` box."""
    dlib = _import_dlib()
    x1, y1, x2, y2 = (round(float(v)) for v in xyxy)
    return dlib.rectangle(x1, y1, max(x1, x2 - 1), max(y1, y2 - 1))


def _points(shapes: Sequence[Any]) -> np.ndarray:
    return np.array([[(p.x, p.y) for p in s.parts()] for s in shapes], np.float64)


DETECTORS = ("yunet", "hog", "cnn")
"""The face detectors :class:`FaceAnalyzer` runs: YuNet (ONNX Runtime) and dlib's HOG and CNN."""
DEFAULT_DETECTOR = "yunet"

# dlib's shape predictors were trained inside the boxes of its HOG detector: square, about 1.12 x
# YuNet's width and 0.79 x its height, centred 0.06 x its height lower (mean over the 21 faces of
# faces/, fitted on faces/known alone: the same to 0.01).
_DLIB_BOX_WIDTH, _DLIB_BOX_HEIGHT, _DLIB_BOX_SHIFT = 1.12, 0.79, 0.06


def dlib_box(xyxy: np.ndarray) -> np.ndarray:
    """YuNet boxes ``(N, 4)`` as the square boxes dlib's HOG detector gives for the same faces."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    cx, cy = (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2 + _DLIB_BOX_SHIFT * h
    half = (_DLIB_BOX_WIDTH * w + _DLIB_BOX_HEIGHT * h) / 4
    return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


class FaceAnalyzer:
    """Holds the face models, each loaded the first time it is needed.

    ``detector`` is the default of :meth:`detect`'s ``model``: ``"yunet"`` (the default), ``"hog"``,
    ``"cnn"``, or a loaded :class:`~visor.faces.yunet.YuNetDetector` (another face-detection card,
    another ``max_side``). ``models_dir`` overrides the folder of dlib's ``.dat`` files; ``limits``
    caps the images decoded; ``threads`` is ONNX Runtime's thread count for YuNet (default: all cores).
    ``max_pixels`` bounds the work per image: a larger image is detected (and embedded) on a copy
    box-downscaled to at most that many pixels, and its boxes and landmarks are scaled back to the
    original pixels (HOG with ``upsample=1`` on a 36 MP photo takes tens of seconds and GBs;
    ``None``: no bound). YuNet analyses a copy at most 960 px long in any case (``max_side``), while
    dlib's landmarks and embeddings use the (bounded) image. One analyzer may be shared by threads that
    use different images, but dlib's models are not documented as thread-safe: give each worker
    thread its own analyzer to be sure.
    """

    def __init__(self, *, detector: str | YuNetDetector = DEFAULT_DETECTOR, models_dir: str | os.PathLike | None = None,
                 limits: ImageLimits = DEFAULT_LIMITS, max_pixels: int | None = None,
                 threads: int | None = None) -> None:
        if max_pixels is not None and int(max_pixels) < 1:
            raise ConfigError(f"max_pixels must be at least 1, got {max_pixels}")
        self._models: dict[str, Any] = {}
        if isinstance(detector, YuNetDetector):
            self._models["yunet"] = detector
            detector = "yunet"
        _check_detector(detector)
        self.detector = detector
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.limits = limits
        self.max_pixels = None if max_pixels is None else int(max_pixels)
        self.threads = threads

    def _model(self, key: str) -> Any:
        if key not in self._models:
            if key == "yunet":
                card = builtin().get(DEFAULT_FACE_DETECTOR)
                self._models[key] = YuNetDetector.from_card(card, limits=self.limits, threads=self.threads)
                return self._models[key]
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

    @property
    def yunet(self) -> YuNetDetector:
        """The YuNet detector (loaded on first use)."""
        return self._model("yunet")

    def decode(self, image: ImageSource) -> Image.Image:
        """Decode through :func:`visor.io.open_image` (size caps, EXIF, RGB, typed errors)."""
        return open_image(image, limits=self.limits)

    def detect(
        self,
        image: ImageSource,
        *,
        model: Literal["yunet", "hog", "cnn"] | None = None,
        upsample: int = 1,
        landmarks: Literal[5, 68] = 5,
        embeddings: bool = True,
        threshold: float | None = None,
    ) -> Faces:
        """Find the faces in one image.

        ``model``: ``"yunet"``, ``"hog"`` or ``"cnn"`` (default: the analyzer's ``detector``).
        ``threshold`` is the detector's score cut-off: YuNet's score (default 0.7, see
        :data:`visor.faces.yunet.DEFAULT_CONF`), the HOG detector's SVM margin (dlib's default 0; lower
        finds more faces and more false ones) or the CNN detector's confidence (default 0).
        ``upsample`` (dlib's detectors only) doubles the image that many times before detecting
        (finds smaller faces, costs 4x per step). Boxes are in original pixels, clipped to the image;
        ``confidence`` is the detector's score. ``landmarks=5`` gives YuNet's five points with YuNet
        (right eye, left eye, nose tip, right and left mouth corner) and dlib's with dlib's detectors
        (the corners of each eye, the bottom of the nose); ``landmarks=68`` dlib's 68 points either way.
        Embeddings are dlib's 128-d descriptors, aligned with dlib's 5-point predictor. The result's
        ``model`` names the detector.
        """
        model = self.detector if model is None else model
        _check_detector(model)
        if landmarks not in (5, 68):
            raise ConfigError(f"landmarks must be 5 or 68, got {landmarks!r}")
        if int(upsample) < 0:
            raise ConfigError(f"upsample must be 0 or more, got {upsample}")
        if model == "yunet" and threshold is not None and not 0 <= threshold <= 1:
            raise ConfigError(f"YuNet's threshold is a score between 0 and 1, got {threshold}")
        img = self.decode(image)
        w, h = img.size
        bounded = bounded_copy(img, max_pixels=self.max_pixels)
        arr = np.ascontiguousarray(np.asarray(bounded))
        sx, sy = w / arr.shape[1], h / arr.shape[0]  # detector pixels -> original pixels
        name = model
        if model == "yunet":
            yunet = self.yunet
            found = yunet.run([bounded], conf=DEFAULT_CONF if threshold is None else float(threshold))[0]
            boxes, scores, points, name = found.xyxy, found.confidence, found.landmarks, yunet.name
            rects = [_rectangle(b) for b in dlib_box(boxes)] if len(found) and (embeddings or landmarks == 68) else []
        elif model == "hog":
            found_rects, found_scores, _ = self._model("hog").run(arr, int(upsample), float(threshold or 0.0))
            rects, scores = list(found_rects), np.array(found_scores, np.float32)
            boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float64)
        else:
            dets = [d for d in self._model("cnn")(arr, int(upsample)) if d.confidence >= float(threshold or 0.0)]
            rects, scores = [d.rect for d in dets], np.array([d.confidence for d in dets], np.float32)
            boxes = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float64)
        if not len(boxes):
            return Faces.empty(model=name)
        n = len(boxes)
        xyxy = np.clip(np.asarray(boxes, np.float64).reshape(n, 4) * [sx, sy, sx, sy], 0, [w, h, w, h])
        shapes5 = [self._model("landmarks5")(arr, r) for r in rects] if embeddings or model != "yunet" else []
        if landmarks == 68:
            predictor = self._model("landmarks68")
            marks = _points([predictor(arr, r) for r in rects])
        elif model == "yunet":
            marks = np.asarray(points, np.float64)
        else:
            marks = _points(shapes5)
        marks = (marks.reshape(n, -1, 2) * [sx, sy]).astype(np.float32)
        if embeddings:
            rec = self._model("recognition")
            emb = np.array([np.asarray(rec.compute_face_descriptor(arr, s)) for s in shapes5], np.float32)
        else:
            emb = np.zeros((n, 0), np.float32)
        return Faces(xyxy.astype(np.float32), np.asarray(scores, np.float32), marks, emb, model=name)

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


def load_face_detector(model: str | os.PathLike | YuNetDetector = DEFAULT_FACE_DETECTOR, *,
                       limits: ImageLimits = DEFAULT_LIMITS, threads: int | None = None) -> YuNetDetector:
    """A loaded face-detection model: a registry name (default ``"yunet"``), a model folder or card file, or
    a loaded :class:`~visor.faces.yunet.YuNetDetector` (returned as it is). Another task's model raises
    :class:`ConfigError`."""
    if isinstance(model, YuNetDetector):
        return model
    registry = builtin()
    if isinstance(model, str) and model in registry:
        return YuNetDetector.from_card(registry.get(model), limits=limits, threads=threads)
    from visor.models import load

    loaded = load(model, limits=limits, threads=threads)
    if not isinstance(loaded, YuNetDetector):
        raise ConfigError(f"{loaded.card.name} is a {loaded.card.task} model; faces needs a face_detection model")
    return loaded


def detect_faces(
    images: ImageSource | Iterable[ImageSource],
    *,
    model: str | os.PathLike | YuNetDetector | FaceAnalyzer = DEFAULT_DETECTOR,
    conf: float | None = None,
    landmarks: Literal[5, 68] = 5,
    embeddings: bool = False,
    upsample: int = 1,
    limits: ImageLimits = DEFAULT_LIMITS,
    batch_size: int | None = None,
) -> Faces | list[Faces]:
    """The faces in one image (a :class:`Faces`) or in each of a list of images (a list), in original pixels.

    This is ``visor.faces(...)``. ``model``: ``"yunet"`` (the default) or another face-detection model
    (registry name, folder, or a loaded :class:`~visor.faces.yunet.YuNetDetector`), ``"hog"`` or ``"cnn"``
    (dlib's detectors), or a :class:`FaceAnalyzer` to reuse. ``conf``: the score threshold (YuNet 0.7;
    see :meth:`FaceAnalyzer.detect` for dlib's). ``landmarks``: YuNet's (or dlib's) 5 points, or dlib's
    68; ``embeddings=True`` adds dlib's 128-d descriptors (for :func:`compare` and collections);
    ``upsample``: dlib's detectors only. The first bad image raises its typed error.
    """
    if isinstance(model, FaceAnalyzer):
        analyzer = model
    elif isinstance(model, str) and model in ("hog", "cnn"):
        analyzer = FaceAnalyzer(detector=model, limits=limits)
    else:
        yunet = load_face_detector(model, limits=limits)
        if landmarks == 5 and not embeddings:  # YuNet alone: its own batched pipeline
            return yunet.predict(images, batch_size=batch_size, **({} if conf is None else {"conf": float(conf)}))
        analyzer = FaceAnalyzer(detector=yunet, limits=limits)

    def run(image: ImageSource) -> Faces:
        return analyzer.detect(image, landmarks=landmarks, embeddings=embeddings, threshold=conf, upsample=upsample)

    return [run(image) for image in images] if is_batch(images) else run(images)  # type: ignore[union-attr]
