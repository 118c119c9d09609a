"""The task registry: one table from a task to everything that serves it.

Each :class:`TaskSpec` names, for one task, the predictor class that runs it, the result type it
gives, its default model, the card output formats its predictor reads, the keyword options
``predict`` takes, and how it is exposed: the top-level and CLI verb, the service route, the
``visor batch --task`` value, the annotate feature and the Google Cloud Vision feature types.
:func:`visor.load` finds a card's predictor here; the service, ``visor batch``, review,
annotate and the CLI read the same table instead of branching on task names.

Classes are named as ``"module:attribute"`` strings and imported only when asked for
(:meth:`TaskSpec.predictor_class`, :meth:`TaskSpec.result_type`), so this module imports nothing
above the models layer. A custom table is a :class:`TaskRegistry` of your own specs (or
``builtin_tasks().with_tasks(spec)``), passed where a ``tasks=`` argument is taken.

Model-less features (text, moderation, properties, crop hints) are entries too, so that annotate
and Cloud Vision look every feature up in one place: their ``predictor`` is a feature class called
once per image (``TextReader``, ``Moderator``), or their ``function`` is the one-call function.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from visor.config import suggest
from visor.errors import ConfigError
from visor.models.onnx_import import DETECTOR_FORMATS
from visor.models.registry import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR, DEFAULT_FACE_DETECTOR, DEFAULT_SEGMENTER


def import_object(reference: str, what: str = "object") -> Any:
    """The attribute named by ``"package.module:attribute"`` (imported now); :class:`ConfigError` if absent."""
    module_name, sep, attribute = reference.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what} must be named as 'module:attribute', got {reference!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ConfigError(f"the {what} {reference!r} cannot be imported: {e}") from None
    try:
        obj: Any = module
        for part in attribute.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise ConfigError(f"the {what} {reference!r} does not exist ({module_name} has no {attribute!r})") from None
    return obj


def _reference(value: str | None, name: str, field: str) -> None:
    if value is None:
        return
    module_name, sep, attribute = value.partition(":") if isinstance(value, str) else ("", "", "")
    if not sep or not all(p.isidentifier() for p in module_name.split(".")) or \
            not all(p.isidentifier() for p in attribute.split(".")):
        raise ConfigError(f"task {name!r}: {field} must be 'package.module:attribute', got {value!r}")


@dataclass(frozen=True)
class TaskSpec:
    """One task: what runs it, what it gives, and where it is exposed."""

    name: str
    """The task: a card's ``task`` (``"classification"``, ``"detection"``, ``"face_detection"``), or a
    model-less feature (``"text"``, ``"moderation"``, ``"properties"``)."""
    verb: str | None
    """The top-level function and CLI verb (``visor.classify`` / ``visor classify``), or None."""
    predictor: str | None
    """``"module:Class"``: the :class:`~visor.models.predictor.Predictor` subclass a card of this task
    loads into, or for a model-less feature the class called once per image."""
    result: str
    """``"module:Type"``: the result type one image gives."""
    default_model: str | None = None
    """The registry model used when none is named (``models.registry.DEFAULT_*``)."""
    output_formats: tuple[str, ...] = ()
    """``card.output_format`` values the predictor reads (checked by :func:`visor.load`)."""
    options: tuple[str, ...] = ()
    """Keyword options one prediction takes (``predict(images, **options)``)."""
    route: str | None = None
    """The service route (``"/v1/classify"``), or None."""
    batch_task: str | None = None
    """The ``visor batch --task`` value, or None."""
    annotate_feature: str | None = None
    """The annotate feature (``"labels"``, ``"objects"``...), or None."""
    cloud_vision: tuple[str, ...] = ()
    """Google Cloud Vision feature types answered by this task (``"LABEL_DETECTION"``...)."""
    function: str | None = None
    """``"module:function"``: the one-call function of a model-less feature that has no class, taking the
    image first (``image_properties(image, *, limits, colors, seed)``, ``crop_hints(image, aspect_ratio)``)."""
    description: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.isidentifier():
            raise ConfigError(f"a task name must be an identifier, got {self.name!r}")
        if self.verb is not None and not self.verb.isidentifier():
            raise ConfigError(f"task {self.name!r}: verb must be an identifier, got {self.verb!r}")
        if self.route is not None and not self.route.startswith("/"):
            raise ConfigError(f"task {self.name!r}: route must start with '/', got {self.route!r}")
        if self.predictor is None and self.function is None:
            raise ConfigError(f"task {self.name!r} needs a predictor or a function")
        _reference(self.predictor, self.name, "predictor")
        _reference(self.result, self.name, "result")
        _reference(self.function, self.name, "function")
        for field in ("output_formats", "options", "cloud_vision"):
            object.__setattr__(self, field, tuple(getattr(self, field)))

    def predictor_class(self) -> type:
        """The predictor (or feature) class, imported now."""
        if self.predictor is None:
            raise ConfigError(f"the {self.name} task has no predictor class (call its function {self.function})")
        return import_object(self.predictor, f"{self.name} predictor")

    def result_type(self) -> type:
        """The result type, imported now."""
        return import_object(self.result, f"{self.name} result type")

    def feature_function(self) -> Any:
        """The one-call function of a model-less feature, imported now."""
        if self.function is None:
            raise ConfigError(f"the {self.name} task has no function (use its predictor {self.predictor})")
        return import_object(self.function, f"{self.name} function")

    def check_output_format(self, card_name: str, output_format: str) -> None:
        """:class:`ConfigError` unless this task's predictor reads ``output_format``."""
        if self.output_formats and output_format not in self.output_formats:
            raise ConfigError(
                f"{card_name}: a {self.name} model's output_format must be one of {list(self.output_formats)}, "
                f"got {output_format!r}.{suggest(output_format, self.output_formats)}"
            )


class TaskRegistry:
    """An immutable table of :class:`TaskSpec` by name, with lookups by verb, route, batch task, annotate
    feature and Cloud Vision type. Names, verbs, routes, batch tasks, features and Cloud Vision types are
    each unique (a duplicate is a :class:`ConfigError`)."""

    def __init__(self, specs: Iterable[TaskSpec] = ()) -> None:
        self._specs: dict[str, TaskSpec] = {}
        self._by: dict[str, dict[str, TaskSpec]] = {k: {} for k in ("verb", "route", "batch task", "feature",
                                                                    "Cloud Vision type")}
        for spec in specs:
            if not isinstance(spec, TaskSpec):
                raise ConfigError(f"a task registry holds TaskSpec entries, got {type(spec).__name__}")
            if spec.name in self._specs:
                raise ConfigError(f"a task named {spec.name!r} is already registered")
            self._specs[spec.name] = spec
            keys = {"verb": [spec.verb], "route": [spec.route], "batch task": [spec.batch_task],
                    "feature": [spec.annotate_feature], "Cloud Vision type": list(spec.cloud_vision)}
            for kind, values in keys.items():
                for value in values:
                    if value is None:
                        continue
                    if value in self._by[kind]:
                        raise ConfigError(f"tasks {self._by[kind][value].name!r} and {spec.name!r} both claim the "
                                          f"{kind} {value!r}")
                    self._by[kind][value] = spec

    def with_tasks(self, *specs: TaskSpec) -> TaskRegistry:
        """A new registry with these specs added (this one is unchanged)."""
        return TaskRegistry([*self._specs.values(), *specs])

    def names(self) -> list[str]:
        return list(self._specs)

    def get(self, name: str) -> TaskSpec:
        """The spec of task ``name``; unknown -> :class:`ConfigError` naming the known tasks."""
        try:
            return self._specs[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown task {name!r}.{suggest(str(name), self._specs)} "
                              f"Tasks this visor knows: {', '.join(self._specs)}") from None

    def _lookup(self, kind: str, value: str) -> TaskSpec:
        table = self._by[kind]
        try:
            return table[value]
        except (KeyError, TypeError):
            raise ConfigError(f"no task has the {kind} {value!r}.{suggest(str(value), table)} "
                              f"Known: {', '.join(table)}") from None

    def by_verb(self, verb: str) -> TaskSpec:
        return self._lookup("verb", verb)

    def by_route(self, route: str) -> TaskSpec:
        return self._lookup("route", route)

    def by_batch_task(self, batch_task: str) -> TaskSpec:
        return self._lookup("batch task", batch_task)

    def by_feature(self, feature: str) -> TaskSpec:
        return self._lookup("feature", feature)

    def by_cloud_vision(self, feature_type: str) -> TaskSpec:
        return self._lookup("Cloud Vision type", feature_type)

    def verbs(self) -> list[str]:
        return list(self._by["verb"])

    def routes(self) -> list[str]:
        return list(self._by["route"])

    def batch_tasks(self) -> list[str]:
        return list(self._by["batch task"])

    def features(self) -> list[str]:
        return list(self._by["feature"])

    def __iter__(self) -> Iterator[TaskSpec]:
        return iter(list(self._specs.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"TaskRegistry({self.names()})"


_BUILTIN = (
    TaskSpec(
        name="classification",
        verb="classify",
        predictor="visor.models.classifier:Classifier",
        result="visor.types.classifications:Classifications",
        default_model=DEFAULT_CLASSIFIER,
        output_formats=("logits",),
        options=("top_k",),
        route="/v1/classify",
        batch_task="classify",
        annotate_feature="labels",
        cloud_vision=("LABEL_DETECTION",),
        description="image classification: top-k labels with probabilities",
    ),
    TaskSpec(
        name="detection",
        verb="detect",
        predictor="visor.models.detector:Detector",
        result="visor.types.detections:Detections",
        default_model=DEFAULT_DETECTOR,
        output_formats=DETECTOR_FORMATS,
        options=("conf", "iou", "max_det", "agnostic"),
        route="/v1/detect",
        batch_task="detect",
        annotate_feature="objects",
        cloud_vision=("OBJECT_LOCALIZATION",),
        description="object detection: boxes, scores and classes",
    ),
    TaskSpec(
        name="face_detection",
        verb="faces",
        predictor="visor.faces.yunet:YuNetDetector",
        result="visor.types.faces:Faces",
        default_model=DEFAULT_FACE_DETECTOR,
        output_formats=("yunet",),
        options=("conf", "iou", "max_det"),
        route="/v1/faces",
        annotate_feature="faces",
        cloud_vision=("FACE_DETECTION",),
        description="face detection: boxes, scores and five landmarks",
    ),
    TaskSpec(
        name="segmentation",
        verb="segment",
        predictor="visor.models.segmenter:Segmenter",
        result="visor.types.segmentation:SegmentationMask",
        default_model=DEFAULT_SEGMENTER,
        output_formats=("segmentation_logits",),
        options=("with_confidence",),
        route="/v1/segment",
        batch_task="segment",
        annotate_feature="segmentation",
        description="semantic segmentation: a class per pixel at the image's size, per-class areas",
    ),
    TaskSpec(
        name="embedding",
        verb="embed",
        predictor="visor.retrieval.embed:Embedder",
        result="numpy:ndarray",
        default_model=DEFAULT_CLASSIFIER,
        output_formats=("logits",),
        description="image embeddings: a classifier's L2-normalised pre-logit features (runs classification cards)",
    ),
    TaskSpec(
        name="text",
        verb="read_text",
        predictor="visor.features.text:TextReader",
        result="visor.types.text:TextLines",
        annotate_feature="text",
        cloud_vision=("TEXT_DETECTION", "DOCUMENT_TEXT_DETECTION"),
        description="text recognition (PP-OCRv4 detector + PP-OCRv6 small recogniser through RapidOCR)",
    ),
    TaskSpec(
        name="moderation",
        verb="moderate",
        predictor="visor.features.moderation:Moderator",
        result="visor.types.moderation:Moderation",
        annotate_feature="moderation",
        cloud_vision=("SAFE_SEARCH_DETECTION",),
        description="adult / racy likelihoods",
    ),
    TaskSpec(
        name="properties",
        verb="properties",
        predictor=None,
        function="visor.features.properties:image_properties",
        result="visor.types.properties:ImageProperties",
        options=("colors", "seed"),
        annotate_feature="properties",
        cloud_vision=("IMAGE_PROPERTIES",),
        description="dominant colours, brightness, sharpness, exposure",
    ),
    TaskSpec(
        name="crop_hints",
        verb=None,
        predictor=None,
        function="visor.features.properties:crop_hints",
        result="visor.types.properties:CropHints",
        annotate_feature="crop_hints",
        cloud_vision=("CROP_HINTS",),
        description="crop boxes for aspect ratios, around faces and text when found",
    ),
)


@functools.cache
def builtin_tasks() -> TaskRegistry:
    """visor's task table (immutable: extend it with :meth:`TaskRegistry.with_tasks`)."""
    return TaskRegistry(_BUILTIN)


__all__ = ["TaskRegistry", "TaskSpec", "builtin_tasks", "import_object"]
