"""One call for every recognition feature, like Cloud Vision's ``images:annotate``.

:class:`Annotator` holds one model per feature, created the first time that feature is
asked for, and returns one JSON-ready document per image. A feature that fails (no
model configured, a missing optional package) comes back as ``{"error": {...}}`` in its
own slot while the other features still return. The document's JSON schema is
``docs/annotate.schema.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from visor.config import suggest
from visor.errors import ConfigError, VisorError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource, describe_source, open_image

FEATURES: tuple[str, ...] = ("labels", "objects", "faces", "text", "moderation", "properties", "crop_hints")
#: Aspect ratios (width / height) crop hints are made for.
CROP_ASPECT_RATIOS: tuple[float, ...] = (1.0, 16 / 9, 4 / 5)


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
    """

    classifier: Any = "efficientnet_lite0"
    detector: Any = None
    top_k: int = 5
    crop_aspect_ratios: tuple[float, ...] = CROP_ASPECT_RATIOS
    limits: ImageLimits = DEFAULT_LIMITS
    _models: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ models, on first use

    def _model(self, feature: str) -> Any:
        if feature not in self._models:
            self._models[feature] = self._create(feature)
        return self._models[feature]

    def _create(self, feature: str) -> Any:
        import visor

        if feature == "labels":
            return self.classifier if not isinstance(self.classifier, str) else visor.load(self.classifier,
                                                                                            limits=self.limits)
        if feature == "objects":
            if self.detector is None:
                raise ConfigError("no object detector configured: pass detector= (a model folder or .onnx file)")
            return self.detector if not isinstance(self.detector, str) else visor.load(self.detector,
                                                                                        limits=self.limits)
        if feature == "faces":
            from visor.faces import FaceAnalyzer

            return FaceAnalyzer(limits=self.limits)
        if feature == "text":
            from visor.features.text import TextReader

            return TextReader(limits=self.limits)
        if feature == "moderation":
            from visor.features.moderation import Moderator

            return Moderator(limits=self.limits)
        raise AssertionError(feature)  # pragma: no cover

    # ------------------------------------------------------------------ features

    def _run(self, feature: str, image, results: dict[str, Any]) -> dict[str, Any]:
        if feature == "labels":
            return self._model("labels").classify(image, top_k=self.top_k).to_dict()
        if feature == "objects":
            return self._model("objects").detect(image).to_dict()
        if feature == "faces":
            faces = self._model("faces").detect(image, embeddings=False)
            results["_face_boxes"] = faces.xyxy.tolist()
            return faces.to_dict(embeddings=False)
        if feature == "text":
            lines = self._model("text").read(image)
            results["_text_boxes"] = lines.xyxy.tolist()
            return lines.to_dict()
        if feature == "moderation":
            return self._model("moderation").moderate(image).to_dict()
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

    def annotate(self, image: ImageSource, features: Sequence[str] = FEATURES) -> dict[str, Any]:
        """One document for one image: ``{"image", "width", "height", <feature>: result | {"error"}}``.

        A bad image raises its typed error; a failing feature is reported in its own slot.
        """
        wanted = check_features(features)
        img = open_image(image, limits=self.limits)
        doc: dict[str, Any] = {"image": describe_source(image), "width": img.width, "height": img.height}
        scratch: dict[str, Any] = {}
        # crop hints use the face and text boxes, so they run last
        for feature in sorted(wanted, key=lambda f: f == "crop_hints"):
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
