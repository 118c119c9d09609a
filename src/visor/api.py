"""Top-level verbs, one per task, all alike.

Each takes the same image sources (a path, bytes, a binary file object, a numpy array, a PIL
image, or a list of them): one image gives one result, a list gives a list, and the first bad
image raises its typed error. ``model=`` is a registry name, a model folder, or an already
loaded predictor (pass a loaded one when calling repeatedly: loading costs more than predicting);
model-less features take their loaded reader (``TextReader``, ``Moderator``) there instead.
What each verb runs comes from the task registry (:mod:`visor.models.tasks`); :func:`predict` is
the generic form (``predict("detection", image)``).

``visor.faces(image)`` (face detection) is the callable :mod:`visor.faces` package, which
runs the ``face_detection`` task the same way.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource
from visor.models import load
from visor.models.batching import is_batch
from visor.models.tasks import TaskRegistry, TaskSpec, builtin_tasks
from visor.types import Classifications, Detections


def _predictor(spec: TaskSpec, model: Any, limits: ImageLimits, tasks: TaskRegistry | None) -> Any:
    """``model`` as a loaded predictor of ``spec``'s task: loaded now when a name or folder is given."""
    cls = spec.predictor_class()
    if model is None:
        if spec.default_model is None:
            raise ConfigError(f"the {spec.name} task has no default model: pass model=")
        model = spec.default_model
    if isinstance(model, cls):
        return model
    if hasattr(model, "card") and hasattr(model, "predict"):  # a loaded predictor of another task
        raise ConfigError(f"{model.card.name} is a {model.card.task} model; {spec.verb or spec.name} needs a "
                          f"{spec.name} model")
    loaded = load(model, limits=limits, tasks=tasks)
    if not isinstance(loaded, cls):
        raise ConfigError(f"{loaded.card.name} is a {loaded.card.task} model; {spec.verb or spec.name} needs a "
                          f"{spec.name} model")
    return loaded


def predict(
    task: str,
    images: ImageSource | Iterable[ImageSource],
    *,
    model: Any = None,
    limits: ImageLimits = DEFAULT_LIMITS,
    batch_size: int | None = None,
    tasks: TaskRegistry | None = None,
    **options: Any,
) -> Any:
    """Run ``task`` (a task name of the registry) on one image (one result) or a list (a list of results).

    Model tasks load ``model`` (default: the task's default model) and call its ``predict``;
    model-less features (text, moderation, properties) run their reader or function per image.
    """
    spec = (tasks or builtin_tasks()).get(task)
    if spec.predictor is None:  # a feature function, e.g. image_properties(image, *, limits, ...)
        if model is not None:
            raise ConfigError(f"the {spec.name} task takes no model")
        function = spec.feature_function()
        return _each(images, lambda image: function(image, limits=limits, **options))
    cls = spec.predictor_class()
    if not hasattr(cls, "from_card"):  # a model-less feature class, e.g. TextReader: built once, called per image
        runner = model if model is not None else cls(limits=limits)
        return _each(images, lambda image: runner(image, **options))
    predictor = _predictor(spec, model, limits, tasks)
    return predictor.predict(images, batch_size=batch_size, **options)


def _each(images: ImageSource | Iterable[ImageSource], run: Any) -> Any:
    return [run(image) for image in images] if is_batch(images) else run(images)


def classify(
    images: ImageSource | Iterable[ImageSource],
    *,
    top_k: int = 5,
    model: Any = None,
    batch_size: int = 32,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Classifications | list[Classifications]:
    """Classify one image or a list of images: :class:`Classifications` (top ``top_k``) per image.

    ``model``: a registry name (default ``models.registry.DEFAULT_CLASSIFIER``), a model folder,
    or a loaded :class:`~visor.models.Classifier`.
    """
    return predict("classification", images, model=model, limits=limits, batch_size=batch_size, top_k=top_k)


def detect(
    images: ImageSource | Iterable[ImageSource],
    *,
    conf: float = 0.25,
    iou: float = 0.45,
    max_det: int = 300,
    agnostic: bool = False,
    model: Any = None,
    batch_size: int = 8,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Detections | list[Detections]:
    """Detect objects in one image or a list of images: :class:`Detections` per image, in its pixels.

    ``model``: a registry name (default ``models.registry.DEFAULT_DETECTOR``), a model folder, an
    ``.onnx`` file, or a loaded :class:`~visor.models.Detector`. ``conf``, ``iou``, ``max_det``,
    ``agnostic`` as :meth:`~visor.models.Detector.detect`.
    """
    return predict("detection", images, model=model, limits=limits, batch_size=batch_size, conf=conf, iou=iou,
                   max_det=max_det, agnostic=agnostic)


def segment(
    images: ImageSource | Iterable[ImageSource],
    *,
    with_confidence: bool = False,
    model: Any = None,
    batch_size: int = 8,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Any:
    """Segment one image or a list of images: a ``SegmentationMask`` per image (a class per pixel at the
    image's own size, class names, per-class areas; ``with_confidence=True`` adds the per-pixel probability).

    ``model``: a registry name (default ``models.registry.DEFAULT_SEGMENTER``, ``deeplabv3_voc``), a
    ``visor train segment`` run folder, or a loaded :class:`~visor.models.segmenter.Segmenter`.
    """
    return predict("segmentation", images, model=model, limits=limits, batch_size=batch_size,
                   with_confidence=with_confidence)


def read_text(
    images: ImageSource | Iterable[ImageSource],
    *,
    model: Any = None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Any:
    """Read the text in one image or a list of images: ``TextLines`` per image (PP-OCR).

    ``model``: a loaded :class:`~visor.features.text.TextReader` to reuse (default: a new one).
    """
    return predict("text", images, model=model, limits=limits)


def moderate(
    images: ImageSource | Iterable[ImageSource],
    *,
    model: Any = None,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Any:
    """Adult / racy likelihoods of one image or a list of images: ``Moderation`` per image.

    ``model``: a loaded :class:`~visor.features.moderation.Moderator` to reuse (default: a new one).
    """
    return predict("moderation", images, model=model, limits=limits)


def properties(
    images: ImageSource | Iterable[ImageSource],
    *,
    colors: int = 5,
    seed: int = 0,
    limits: ImageLimits = DEFAULT_LIMITS,
) -> Any:
    """Dominant colours, brightness, sharpness and exposure of one image or a list: ``ImageProperties`` each."""
    return predict("properties", images, limits=limits, colors=colors, seed=seed)


__all__ = ["classify", "detect", "moderate", "predict", "properties", "read_text", "segment"]
