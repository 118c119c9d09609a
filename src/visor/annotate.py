"""One call for every recognition feature, like Cloud Vision's ``images:annotate``.

:class:`Annotator` holds one model per feature, created the first time that feature is
asked for, and returns one JSON-ready document per image. A feature that fails (no
model configured, a missing optional package) comes back as ``{"error": {...}}`` in its
own slot while the other features still return. The document's JSON schema is
``docs/annotate.schema.json``.

Pixel budgets: the image is decoded once at full size, then each expensive feature works on a
box-downscaled copy and its boxes come back in the original image's pixels: ``labels`` at most
:data:`LABELS_SIDE` px on the long side (the classifier sees 224 px anyway), ``faces`` at most
:data:`FACE_PIXELS` pixels, ``text`` at most :data:`TEXT_SIDE` px on the long side, ``properties``
at most :data:`~visor.features.properties.PROPERTIES_SIDE` px. ``objects`` letterboxes the full
image (as ``visor detect`` does) and ``crop_hints`` measure edges at 256 px.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from visor.config import suggest
from visor.errors import ConfigError, VisorError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, bounded_copy, describe_source, open_image

FEATURES: tuple[str, ...] = ("labels", "objects", "faces", "text", "moderation", "properties", "crop_hints")
#: Aspect ratios (width / height) crop hints are made for.
CROP_ASPECT_RATIOS: tuple[float, ...] = (1.0, 16 / 9, 4 / 5)
#: Pixel budgets of the expensive features (see the module docstring).
LABELS_SIDE = 1024
FACE_PIXELS = 2_000_000
TEXT_SIDE = 2048
#: Features whose models are used by one thread at a time (dlib, RapidOCR and nudenet keep state).
SERIAL_FEATURES: tuple[str, ...] = ("faces", "text", "moderation")


def check_features(features: Sequence[str]) -> tuple[str, ...]:
    for name in features:
        if name not in FEATURES:
            raise ConfigError(f"unknown feature {name!r}.{suggest(name, FEATURES)} Known: {', '.join(FEATURES)}")
    return tuple(dict.fromkeys(features))


@dataclass
class Annotator:
    """Runs the requested features on images; reuse one for many images (models load once).

    ``classifier`` and ``detector`` are registry names, model folders or ``.onnx`` files (or
    loaded models); ``objects`` needs a ``detector``. Model objects are created lazily.
    One annotator may be used by several threads: the faces, text and moderation models each
    run one image at a time (``feature_lock(name)``), the other features concurrently.
    """

    classifier: Any = "efficientnet_lite0"
    detector: Any = None
    top_k: int = 5
    crop_aspect_ratios: tuple[float, ...] = CROP_ASPECT_RATIOS
    limits: ImageLimits = DEFAULT_LIMITS
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    # shared by dataclasses.replace() copies, like the models they guard
    _locks: dict[str, threading.Lock] = field(
        default_factory=lambda: {name: threading.Lock() for name in ("_create", *SERIAL_FEATURES)}, repr=False,
        compare=False)

    # ------------------------------------------------------------------ models, on first use

    def _model(self, feature: str) -> Any:
        with self._locks["_create"]:
            if feature not in self._models:
                self._models[feature] = self._create(feature)
            return self._models[feature]

    def feature_lock(self, feature: str) -> threading.Lock:
        """The lock held while ``feature`` (one of :data:`SERIAL_FEATURES`) runs."""
        return self._locks[feature]

    def _create(self, feature: str) -> Any:
        import visor

        if feature == "labels":
            model = self.classifier if not isinstance(self.classifier, str) else visor.load(self.classifier,
                                                                                             limits=self.limits)
            if not isinstance(model, visor.Classifier):  # a detector used to end in AttributeError
                raise ConfigError(f"{model.name} is a {model.card.task} model; labels need a classifier")
            return model
        if feature == "objects":
            if self.detector is None:
                raise ConfigError("no object detector configured: pass detector= (a model folder or .onnx file)")
            model = self.detector if not isinstance(self.detector, str) else visor.load(self.detector,
                                                                                         limits=self.limits)
            if not isinstance(model, visor.models.Detector):
                raise ConfigError(f"{model.name} is a {model.card.task} model; objects need a detector")
            return model
        if feature == "faces":
            from visor.faces import FaceAnalyzer

            return FaceAnalyzer(limits=self.limits, max_pixels=FACE_PIXELS)
        if feature == "text":
            from visor.features.text import TextReader

            return TextReader(limits=self.limits, max_side=TEXT_SIDE)
        if feature == "moderation":
            from visor.features.moderation import Moderator

            return Moderator(limits=self.limits)
        raise AssertionError(feature)  # pragma: no cover

    # ------------------------------------------------------------------ features

    def _run(self, feature: str, image, results: dict[str, Any]) -> dict[str, Any]:
        if feature in SERIAL_FEATURES:
            model = self._model(feature)  # created outside the feature's lock
            with self._locks[feature]:
                return self._run_serial(feature, model, image, results)
        if feature == "labels":
            return self._model("labels").classify(bounded_copy(image, max_side=LABELS_SIDE), top_k=self.top_k).to_dict()
        if feature == "objects":
            return self._model("objects").detect(image).to_dict()
        if feature == "properties":
            from visor.features.properties import image_properties

            return image_properties(image, limits=self.limits).to_dict()
        if feature == "crop_hints":
            from visor.features.properties import crop_hints

            salient = results.get("_face_boxes", []) + results.get("_text_boxes", [])
            hints = [{"aspect_ratio": round(r, 6), "box": [float(v) for v in crop_hints(image, r,
                                                                                         salient_boxes=salient)[0]]}
                     for r in self.crop_aspect_ratios]
            return {"type": "crop_hints", "hints": hints}
        raise AssertionError(feature)  # pragma: no cover

    @staticmethod
    def _run_serial(feature: str, model: Any, image, results: dict[str, Any]) -> dict[str, Any]:
        if feature == "faces":  # FaceAnalyzer(max_pixels=FACE_PIXELS): boxes in original pixels
            faces = model.detect(image, embeddings=False)
            results["_face_boxes"] = faces.xyxy.tolist()
            return faces.to_dict(embeddings=False)
        if feature == "text":  # TextReader(max_side=TEXT_SIDE): boxes in original pixels
            lines = model.read(image)
            results["_text_boxes"] = lines.xyxy.tolist()
            return lines.to_dict()
        if feature == "moderation":
            return model.moderate(image).to_dict()
        raise AssertionError(feature)  # pragma: no cover

    def annotate(self, image: ImageSource, features: Sequence[str] = FEATURES, *,
                 check: Callable[[str], None] | None = None) -> dict[str, Any]:
        """One document for one image: ``{"image", "width", "height", <feature>: result | {"error"}}``.

        A bad image raises its typed error; a failing feature is reported in its own slot.
        ``check(feature)`` is called before each feature starts; what it raises stops the
        annotation and propagates (the service raises its 504 there once a deadline has passed).
        """
        wanted = check_features(features)
        img = open_image(image, limits=self.limits)
        doc: dict[str, Any] = {"image": describe_source(image), "width": img.width, "height": img.height}
        scratch: dict[str, Any] = {}
        # crop hints use the face and text boxes, so they run last
        for feature in sorted(wanted, key=lambda f: f == "crop_hints"):
            if check is not None:
                check(feature)
            try:
                doc[feature] = self._run(feature, img, scratch)
            except VisorError as e:
                doc[feature] = {"error": e.to_dict()}
        return doc


def annotate(image: ImageSource, features: Sequence[str] = FEATURES, *, annotator: Annotator | None = None,
             **options: Any) -> dict[str, Any]:
    """Run the requested ``features`` on one image and return one JSON-ready document.

    ``options`` configure a new :class:`Annotator` (``classifier=``, ``detector=``, ``top_k=``...);
    pass ``annotator=`` to reuse loaded models across images.
    """
    return (annotator or Annotator(**options)).annotate(image, features)
