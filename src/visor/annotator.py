"""One call for every recognition feature, like Cloud Vision's ``images:annotate``.

:class:`Annotator` holds one model per feature, created the first time that feature is
asked for, and returns one JSON-ready document per image. A feature that fails (a model
that cannot be loaded, a missing optional package) comes back as ``{"error": {...}}`` in its
own slot while the other features still return. The document's JSON schema is
``docs/annotate.schema.json``.

What runs for a feature comes from the task registry (:mod:`visor.models.tasks`,
:meth:`~visor.models.tasks.TaskRegistry.by_feature`): the entry's predictor loaded with the model
given to the annotator, or the entry's ``default_model`` when none is (``labels``: the default
classifier, ``objects``: ``yolox_nano``, ``faces``: ``yunet``); model-less features build the entry's
feature class (``TextReader``, ``Moderator``) or call its function (``image_properties``,
``crop_hints``). A feature of a custom registry (``tasks=``) runs the same way: its predictor's
``predict(image)``, its feature class called on the image, or its function, each giving a result
whose ``to_dict()`` fills the slot.

``labels`` also gives the document's ``generic_labels``: the everyday labels above the ImageNet
classes ("Bus", "Motor vehicle", "Vehicle"), and above the detected objects' classes when
``objects`` is asked for in the same call, with scores (:func:`visor.features.labels.generic_labels`:
all of the classifier's probabilities, so the ImageNet sums are exact, whatever ``top_k`` is).

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
from visor.models import load
from visor.models.tasks import TaskRegistry, TaskSpec, builtin_tasks

#: The built-in features run by default (the annotate features of :func:`~visor.models.tasks.builtin_tasks` but
#: the :data:`OPT_IN_FEATURES`).
FEATURES: tuple[str, ...] = ("labels", "objects", "faces", "text", "moderation", "properties", "crop_hints")
#: Features run only when asked for by name (``--features segmentation``): a per-pixel model, and a bigger slot.
OPT_IN_FEATURES: tuple[str, ...] = ("segmentation",)
#: Aspect ratios (width / height) crop hints are made for.
CROP_ASPECT_RATIOS: tuple[float, ...] = (1.0, 16 / 9, 4 / 5)
#: Pixel budgets of the expensive features (see the module docstring).
LABELS_SIDE = 1024
FACE_PIXELS = 2_000_000
TEXT_SIDE = 2048
#: ``segmentation``: the mask is made for a copy at most this many pixels on its long side (the zoo's segmenter
#: sees 257x257, so nothing it finds is lost) and its RLE segments and areas are in that copy's pixels.
SEGMENTATION_SIDE = 512
#: Features whose models are used by one thread at a time (dlib, RapidOCR and nudenet keep state).
SERIAL_FEATURES: tuple[str, ...] = ("faces", "text", "moderation")
#: The face detectors of dlib, chosen by name instead of a face-detection model.
DLIB_FACE_DETECTORS: tuple[str, ...] = ("hog", "cnn")


def check_features(features: Sequence[str], tasks: TaskRegistry | None = None) -> tuple[str, ...]:
    """The features in order, each once; a feature the task registry does not know raises :class:`ConfigError`."""
    known = (tasks if tasks is not None else builtin_tasks()).features()
    for name in features:
        if name not in known:
            raise ConfigError(f"unknown feature {name!r}.{suggest(str(name), known)} Known: {', '.join(known)}")
    return tuple(dict.fromkeys(features))


def default_features(tasks: TaskRegistry | None = None) -> tuple[str, ...]:
    """The features run when none are named: every feature of the task registry but :data:`OPT_IN_FEATURES`."""
    known = (tasks if tasks is not None else builtin_tasks()).features()
    return tuple(f for f in known if f not in OPT_IN_FEATURES)


def _is_predictor_class(cls: type) -> bool:
    return hasattr(cls, "from_card") and hasattr(cls, "predict")


@dataclass
class Annotator:
    """Runs the requested features on images; reuse one for many images (models load once).

    ``classifier`` (labels), ``detector`` (objects), ``face_detector`` (faces) and ``segmenter``
    (segmentation) are registry names, model folders or ``.onnx`` files, or loaded models; None is the
    feature's default model in the task registry (``efficientnet_lite0``, ``yolox_nano``, ``yunet``,
    ``deeplabv3_voc``). ``face_detector`` may also be ``"hog"``
    or ``"cnn"`` (dlib's detectors). ``moderation_parts`` adds nudenet's part detector to open_nsfw, as
    :class:`~visor.features.moderation.Moderator`'s ``parts``: None (default, as ``visor.moderate``) when
    nudenet is installed, True requires it (the ``moderation`` extra), False never.
    ``text_languages`` (language codes, Cloud Vision's ``languageHints``) keeps only text in those languages'
    scripts (:class:`~visor.features.text.TextReader`'s ``lang``; None: its default).
    ``tasks`` is the task registry features are looked up in (default: visor's). Model objects are
    created lazily. One annotator may be used by several threads: the faces, text and moderation models
    each run one image at a time (``feature_lock(name)``), the other features concurrently.
    """

    classifier: Any = None
    detector: Any = None
    face_detector: Any = None
    segmenter: Any = None
    moderation_parts: bool | None = None
    top_k: int = 5
    crop_aspect_ratios: tuple[float, ...] = CROP_ASPECT_RATIOS
    text_languages: tuple[str, ...] | None = None
    limits: ImageLimits = DEFAULT_LIMITS
    tasks: TaskRegistry | None = None
    _models: dict[str, Any] = field(default_factory=dict, repr=False)
    # shared by dataclasses.replace() copies, like the models they guard
    _locks: dict[str, threading.Lock] = field(
        default_factory=lambda: {name: threading.Lock() for name in ("_create", *SERIAL_FEATURES)}, repr=False,
        compare=False)

    # ------------------------------------------------------------------ models, on first use

    @property
    def task_registry(self) -> TaskRegistry:
        return self.tasks if self.tasks is not None else builtin_tasks()

    def _model(self, feature: str) -> Any:
        with self._locks["_create"]:
            if feature not in self._models:
                self._models[feature] = self._create(feature)
            return self._models[feature]

    def model(self, feature: str) -> Any:
        """What runs ``feature`` (a loaded predictor, a feature reader such as ``FaceAnalyzer``, or a function),
        created on first use; the service preloads models and shares the face analyzer through this."""
        check_features([feature], self.tasks)
        return self._model(feature)

    def feature_lock(self, feature: str) -> threading.Lock:
        """The lock held while ``feature`` (one of :data:`SERIAL_FEATURES`) runs."""
        return self._locks[feature]

    def _predictor(self, spec: TaskSpec, model: Any) -> Any:
        """``model`` (None: the task's default model) as a loaded predictor of ``spec``'s task."""
        cls = spec.predictor_class()
        what = f"the {spec.annotate_feature} feature needs a {spec.name} model"
        if model is None:
            if spec.default_model is None:
                raise ConfigError(f"the {spec.name} task has no default model: {what}")
            model = spec.default_model
        if not isinstance(model, cls):
            if hasattr(model, "card") and hasattr(model, "predict"):  # a loaded model of another task
                raise ConfigError(f"{model.card.name} is a {model.card.task} model; {what}")
            model = load(model, limits=self.limits, tasks=self.tasks)
            if not isinstance(model, cls):
                raise ConfigError(f"{model.card.name} is a {model.card.task} model; {what}")
        return model

    def _create(self, feature: str) -> Any:
        spec = self.task_registry.by_feature(feature)
        if feature == "labels":
            return self._predictor(spec, self.classifier)
        if feature == "objects":
            return self._predictor(spec, self.detector)
        if feature == "segmentation":
            return self._predictor(spec, self.segmenter)
        if feature == "faces":
            from visor.faces import FaceAnalyzer

            if isinstance(self.face_detector, str) and self.face_detector in DLIB_FACE_DETECTORS:
                detector: Any = self.face_detector
            else:
                detector = self._predictor(spec, self.face_detector)
            return FaceAnalyzer(detector=detector, limits=self.limits, max_pixels=FACE_PIXELS)
        if spec.predictor is None:  # properties, crop_hints: a function of the image
            return spec.feature_function()
        cls = spec.predictor_class()
        if feature == "text":
            return cls(limits=self.limits, max_side=TEXT_SIDE)
        if feature == "moderation":
            return cls(parts=self.moderation_parts, limits=self.limits)
        if _is_predictor_class(cls):  # another registry's model feature: its default model
            return self._predictor(spec, None)
        return cls(limits=self.limits)  # another registry's model-less feature class

    # ------------------------------------------------------------------ features

    def _run(self, feature: str, image, results: dict[str, Any]) -> dict[str, Any]:
        model = self._model(feature)  # created outside the feature's lock
        if feature in SERIAL_FEATURES:
            with self._locks[feature]:
                return self._run_serial(feature, model, image, results, self.text_languages)
        if feature == "labels":
            return self._labels(model, image, results)
        if feature == "objects":
            detections = model.predict(image)
            results["_detections"] = detections
            return detections.to_dict()
        if feature == "segmentation":  # SegmentationMask JSON of a bounded copy: areas and one RLE per class
            return model.predict(bounded_copy(image, max_side=SEGMENTATION_SIDE)).to_dict()
        if feature == "properties":
            return model(image, limits=self.limits).to_dict()
        if feature == "crop_hints":
            from visor.types import CropHints

            salient = results.get("_face_boxes", []) + results.get("_text_boxes", [])
            ratios = list(self.crop_aspect_ratios)
            return CropHints(ratios, [model(image, r, salient_boxes=salient)[0] for r in ratios]).to_dict()
        if hasattr(model, "predict"):  # a custom registry's features
            return model.predict(image).to_dict()
        if self.task_registry.by_feature(feature).predictor is None:
            return model(image, limits=self.limits).to_dict()
        return model(image).to_dict()

    def _labels(self, model: Any, image, results: dict[str, Any]) -> dict[str, Any]:
        """The classifier's top ``top_k`` on a bounded copy; all its probabilities are kept for generic labels."""
        from visor.models.classifier import softmax
        from visor.types import Classifications

        batch, metas = model.prepare([bounded_copy(image, max_side=LABELS_SIDE)])
        logits = model.infer(batch)
        probabilities = softmax(logits, model.card.temperature)[0]
        results["_classifications"] = Classifications.from_probabilities(probabilities, model.labels,
                                                                         len(model.labels), model.name)
        return model.postprocess(logits, metas, top_k=self.top_k)[0].to_dict()

    @staticmethod
    def _run_serial(feature: str, model: Any, image, results: dict[str, Any],
                    text_languages: tuple[str, ...] | None) -> dict[str, Any]:
        if feature == "faces":  # FaceAnalyzer(max_pixels=FACE_PIXELS): boxes in original pixels
            faces = model.detect(image, embeddings=False)
            results["_face_boxes"] = faces.xyxy.tolist()
            return faces.to_dict(embeddings=False)
        if feature == "text":  # TextReader(max_side=TEXT_SIDE): boxes in original pixels
            lines = model.read(image, lang=text_languages)
            results["_text_boxes"] = lines.xyxy.tolist()
            return lines.to_dict()
        if feature == "moderation":
            return model.moderate(image).to_dict()
        raise AssertionError(feature)  # pragma: no cover

    @staticmethod
    def _generic_labels(results: dict[str, Any]) -> dict[str, Any]:
        """``{"type": "generic_labels", "model", "labels": [{"name", "score", "wnid"}]}``, best first."""
        from visor.features.labels import generic_labels

        classifications, detections = results["_classifications"], results.get("_detections")
        labels = generic_labels(classifications, detections)
        models = [classifications.model] + ([detections.model] if detections is not None else [])
        return {"type": "generic_labels", "model": "+".join(m for m in models if m),
                "labels": [g.to_dict() for g in labels]}

    def annotate(self, image: ImageSource, features: Sequence[str] = FEATURES, *,
                 check: Callable[[str], None] | None = None) -> dict[str, Any]:
        """One document for one image: ``{"image", "width", "height", <feature>: result | {"error"}}``,
        and ``generic_labels`` when ``labels`` succeeded.

        A bad image raises its typed error; a failing feature is reported in its own slot.
        ``check(feature)`` is called before each feature starts; what it raises stops the
        annotation and propagates (the service raises its 504 there once a deadline has passed).
        """
        wanted = check_features(features, self.tasks)
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
        if "_classifications" not in scratch:
            return doc
        generic = self._generic_labels(scratch)
        out: dict[str, Any] = {}
        for key, value in doc.items():  # generic labels right after labels
            out[key] = value
            if key == "labels":
                out["generic_labels"] = generic
        return out


def annotate(image: ImageSource, features: Sequence[str] = FEATURES, *, annotator: Annotator | None = None,
             **options: Any) -> dict[str, Any]:
    """Run the requested ``features`` on one image and return one JSON-ready document.

    ``options`` configure a new :class:`Annotator` (``classifier=``, ``detector=``, ``top_k=``...);
    pass ``annotator=`` to reuse loaded models across images.
    """
    return (annotator or Annotator(**options)).annotate(image, features)
