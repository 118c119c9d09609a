"""What a batch run does to each input, shared by the local and the Ray engine.

A :class:`TaskSpec` is the picklable description of the work (task, model, options); its
:meth:`~TaskSpec.build` gives a :class:`Runner` holding the loaded model. A runner splits the
work in two:

* :meth:`Runner.prepare` (one input, thread-safe, in decode workers): read, decode and
  preprocess the image into what inference needs; a bad image raises its typed error;
* :meth:`Runner.infer` (a batch of prepared inputs): one ONNX Runtime call and the
  postprocessing, giving one result row, or a typed error, per input.

The ``--task`` values are the task registry's batch tasks (:mod:`visor.models.tasks`:
``classify``, ``detect``, ``segment``, and those of a custom registry passed as ``tasks=``) and ``annotate``.
For a registry task the registry names the predictor, its default model (``detect``: ``yolox_nano``,
``segment``: ``deeplabv3_voc``) and the options it takes; one :class:`PredictorRunner` runs any of them
(workers: decode + ``predictor.prepare``; inference: ``predictor.infer`` + ``predictor.postprocess``).

Classification has no special path any more: the runner that had the workers normalise straight into
the batch array (two passes, bit-identical) was not measurably faster than the generic one (2 busy
cores, imagenette-dev 224 px: resize + normalise 1.74 vs 1.85 ms of CPU per image, about 1% of the
11 ms an image costs with inference; end to end, alternating rounds, no difference above the noise).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from visor.batch.video import FrameItem
from visor.errors import ConfigError, VisorError
from visor.io import ImageLimits, open_image
from visor.models.tasks import TaskRegistry, builtin_tasks
from visor.models.tasks import TaskSpec as ModelTask

#: The task that runs several features per image (:mod:`visor.annotator`), beside the registry's batch tasks.
ANNOTATE = "annotate"
#: visor's ``--task`` values: the batch tasks of :func:`~visor.models.tasks.builtin_tasks`, then annotate.
TASKS = ("classify", "detect", "segment", ANNOTATE)
#: The task that tracks the objects of each video whole, in frame order (:func:`visor.video.track.track` with
#: the registry's detector for ``objects``, or ``model``); videos only, on the local engine. Not an engine's
#: prepare/infer work: :func:`visor.batch.run.run_batch` runs it video by video.
TRACK = "track"
#: Images inferred at once, over all concurrent inference calls, by default: ONNX Runtime's memory
#: grows with it (EfficientNet-Lite0 at 224 px: about 20-25 MB per image in flight; two calls of
#: 8 images peak near 0.5 GB for the whole process, two of 16 near 0.8-1 GB) while the throughput
#: hardly changes beyond 8 images per call. Other tasks: :data:`DEFAULT_IMAGES_IN_FLIGHT`.
IMAGES_IN_FLIGHT = {"classify": 16, "detect": 8, ANNOTATE: 1}
DEFAULT_IMAGES_IN_FLIGHT = 8
#: The :class:`TaskSpec` fields a registry task's options are read from (an option named in
#: ``ModelTask.options`` that is not one of them keeps the predictor's default).
OPTION_FIELDS = ("top_k", "conf", "iou", "max_det", "agnostic")


def batch_tasks(tasks: TaskRegistry | None = None) -> tuple[str, ...]:
    """The ``--task`` values a registry gives: its batch tasks, then ``annotate``."""
    return (*(tasks if tasks is not None else builtin_tasks()).batch_tasks(), ANNOTATE)


def default_batch_size(task: str, concurrency: int) -> int:
    """The batch size that keeps :data:`IMAGES_IN_FLIGHT` images in inference over ``concurrency`` calls."""
    return max(1, IMAGES_IN_FLIGHT.get(task, DEFAULT_IMAGES_IN_FLIGHT) // max(1, concurrency))


@dataclass(frozen=True)
class TaskSpec:
    """The work of a batch run, independent of the engine. Picklable (Ray actors build from it)."""

    task: str = "classify"
    """A batch task of the task registry (``classify``, ``detect``...) or ``annotate``."""
    model: str | None = None
    """The task's model (annotate: the classifier of ``labels``); None: the registry's default model."""
    detector: str | None = None
    """annotate only: the detector for the ``objects`` feature (None: the registry's default)."""
    segmenter: str | None = None
    """annotate only: the segmenter for the ``segmentation`` feature (None: the registry's default)."""
    features: tuple[str, ...] = ()
    """annotate only: the features to run (default: every feature of the task registry but the opt-in ones,
    :func:`visor.annotator.default_features`, as ``visor.annotate``)."""
    top_k: int = 5
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    agnostic: bool = False
    max_bytes: int = ImageLimits.max_bytes
    max_pixels: int = ImageLimits.max_pixels
    threads: int | None = None
    """ONNX Runtime intra-op threads (None: one per physical core)."""
    tasks: TaskRegistry | None = None
    """The task registry (None: :func:`~visor.models.tasks.builtin_tasks`)."""

    def __post_init__(self) -> None:
        if self.task not in (ANNOTATE, TRACK):
            try:
                self.model_task()
            except ConfigError:
                known = batch_tasks(self.tasks)
                from visor.config import suggest

                raise ConfigError(f"unknown task {self.task!r}.{suggest(str(self.task), known)} "
                                  f"Choose one of {', '.join(known)}") from None
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
        if self.task == ANNOTATE:
            from visor.annotator import check_features, default_features

            wanted = self.features or default_features(self.tasks)
            object.__setattr__(self, "features", check_features(wanted, self.tasks))
        elif self.features:
            raise ConfigError("features apply to --task annotate only")
        if self.segmenter is not None and self.task != ANNOTATE:
            raise ConfigError("segmenter applies to --task annotate only (--task segment takes --model)")

    @property
    def task_registry(self) -> TaskRegistry:
        return self.tasks if self.tasks is not None else builtin_tasks()

    def model_task(self) -> ModelTask:
        """The registry's entry for this batch task (:class:`ConfigError` for ``annotate``, or one it lacks)."""
        return self.task_registry.by_batch_task(self.task)

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels)

    def predict_options(self) -> dict[str, Any]:
        """The options the task's predictor takes (``ModelTask.options``) with this run's values."""
        return {name: getattr(self, name) for name in self.model_task().options if name in OPTION_FIELDS}

    def options(self) -> dict[str, Any]:
        """The options that change results (recorded in the output; a resume must match them)."""
        opts: dict[str, Any] = {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels}
        if self.task == ANNOTATE:
            opts["top_k"] = self.top_k
            opts["features"] = list(self.features)
            opts["detector"] = self.detector
            if "segmentation" in self.features:
                opts["segmenter"] = self.segmenter
        elif self.task == TRACK:
            opts["tracker"] = self.tracker_options().to_dict()
        else:
            opts.update(self.predict_options())
        return opts

    def tracker_options(self):
        """``--task track``: the tracker's options (:class:`visor.video.track.TrackerOptions`' defaults, with this
        run's ``iou`` for the detector's NMS; its own low ``conf`` so ByteTrack sees low-scoring boxes)."""
        from visor.video.track import TrackerOptions

        return TrackerOptions(iou=self.iou)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    def build(self) -> Runner:
        if self.task == ANNOTATE:
            return AnnotateRunner(self)
        if self.task == TRACK:
            return TrackRunner(self)
        return PredictorRunner(self)


# --------------------------------------------------------------------------- helpers


def _load(name: str, spec: TaskSpec):
    from visor.models import load

    # ONNX Runtime's idle threads sleep instead of spinning: decode workers share the cores with
    # inference. (The session may be called from several threads at once: the inference streams share it.)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the CLI reports licence warnings once, before the run
        return load(name, limits=spec.limits, threads=spec.threads, spin=False, tasks=spec.tasks)


def _model_name(given: str | None, task: ModelTask, flag: str = "--model") -> str:
    """The model named, else the registry's default for the task."""
    if given:
        return given
    if task.default_model is None:
        raise ConfigError(f"the {task.name} task has no default model: pass {flag} (a registry name, model folder, "
                          "card.json or .onnx file)")
    return task.default_model


def weights_sha256(model) -> str:
    """The sha256 of a loaded model's weights (the card's, else the ONNX file's)."""
    sha = model.card.weights.sha256
    if sha:
        return sha
    from visor.models.weights import sha256_file

    return sha256_file(model.session.path)


def card_sha256(model) -> str:
    """A digest of what in a model's card shapes its predictions (labels, preprocessing, output...)."""
    d = model.card.to_dict()
    for key in ("metrics", "description", "license", "source", "reference", "name"):
        d.pop(key, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


class _Timer:
    """Seconds spent per stage, summed over the threads doing it: wall time, and the CPU time of
    those threads (``time.thread_time``; ONNX Runtime's own pool threads, when it has more than one
    intra-op thread, are not counted)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    def add(self, stage: str, seconds: float, cpu: float = 0.0) -> None:
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu

    def laps(self) -> _Laps:
        return _Laps(self)


class _Laps:
    """``lap(stage)`` charges the time since the previous lap (or the start) to ``stage``."""

    def __init__(self, timer: _Timer) -> None:
        self.timer = timer
        self.wall, self.cpu = time.perf_counter(), time.thread_time()

    def lap(self, stage: str) -> None:
        wall, cpu = time.perf_counter(), time.thread_time()
        self.timer.add(stage, wall - self.wall, cpu - self.cpu)
        self.wall, self.cpu = wall, cpu


@dataclass
class Runner:
    """A task with its model loaded: :meth:`prepare` one input (decode workers, thread-safe), :meth:`infer`
    a batch of prepared inputs (inference streams, thread-safe), and the identity an output records."""

    spec: TaskSpec
    model_name: str = ""
    model_sha256: str = ""
    card_sha256: str = ""
    timer: _Timer = field(default_factory=_Timer)

    def identity(self) -> dict[str, Any]:
        """Task, model and options: what a resumed run must share with the output."""
        return {"task": self.spec.task, "model": self.model_name, "model_sha256": self.model_sha256,
                "card_sha256": self.card_sha256, "options": self.spec.options()}

    def prepare(self, path: str | FrameItem) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def infer(self, items: Sequence[Any]) -> list[dict[str, Any] | VisorError]:  # pragma: no cover - abstract
        raise NotImplementedError


def _row(result: dict[str, Any], label=None, class_id=None, confidence=None, count=None,
         status: str = "ok") -> dict[str, Any]:
    return {"status": status, "label": label, "class_id": class_id, "confidence": confidence, "count": count,
            "result": result}


def result_row(result: Any) -> dict[str, Any]:
    """The output row of one result: its JSON, and the best item's label, class id and confidence (the one
    scoring highest: the top class, the best box) with the number of items, where the result type has them.
    A segmentation mask: :func:`segmentation_row`."""
    if getattr(result, "TYPE", None) == "segmentation":
        return segmentation_row(result)
    count = len(result) if hasattr(result, "__len__") else None
    confidence = getattr(result, "confidence", None)
    label = class_id = best_confidence = None
    if confidence is not None and len(confidence):
        best = int(np.argmax(np.asarray(confidence, np.float64)))
        best_confidence = float(confidence[best])
        ids = getattr(result, "class_id", None)
        class_id = int(ids[best]) if ids is not None else None
        labels = getattr(result, "label", None)
        if labels is None:
            labels = (getattr(result, "data", None) or {}).get("class_name")
        label = str(labels[best]) if labels is not None else None
    return _row(result.to_dict(), label, class_id, best_confidence, count)


def segmentation_row(mask: Any) -> dict[str, Any]:
    """The output row of a :class:`~visor.types.segmentation.SegmentationMask`: its JSON (the size, class names
    and per present class its area in pixels and COCO RLE), ``count`` = the classes present, ``label`` /
    ``class_id`` = the class covering most pixels, a class named ``background`` only when nothing else is
    present (ties: the lower class id), ``confidence`` None (a mask has no single score)."""
    doc = mask.to_dict()
    segments = doc["segments"]
    label = class_id = None
    if segments:
        def rank(seg: dict[str, Any]) -> tuple[bool, int, int]:
            return (str(seg["label"]).lower() != "background", int(seg["area"]), -int(seg["class_id"]))

        best = max(segments, key=rank)
        label, class_id = str(best["label"]), int(best["class_id"])
    return _row(doc, label, class_id, None, len(segments))


# --------------------------------------------------------------------------- any registry task


class PredictorRunner(Runner):
    """A registry task run by its :class:`~visor.models.predictor.Predictor`: decode and ``prepare`` (the
    card's resize / letterbox and normalisation) in the workers; per batch one ``infer`` (ONNX Runtime)
    and ``postprocess`` with the task's options."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        task = spec.model_task()
        if task.predictor is None or not hasattr(task.predictor_class(), "from_card"):
            raise ConfigError(f"the {task.name} task runs no model; --task {spec.task} cannot run in a batch")
        model = _load(_model_name(spec.model, task), spec)
        if not isinstance(model, task.predictor_class()):
            raise ConfigError(f"{model.name} is a {model.card.task} model; --task {spec.task} needs a {task.name} "
                              "model")
        self.model = model
        self.options = spec.predict_options()
        self.model_name, self.model_sha256, self.card_sha256 = model.name, weights_sha256(model), card_sha256(model)

    def prepare(self, path: str | FrameItem) -> tuple[np.ndarray, Any]:
        """One image's (or video frame's) model input and geometry."""
        laps = self.timer.laps()
        image = path.pixels() if isinstance(path, FrameItem) else self.model.decode(path)
        laps.lap("decode")
        batch, metas = self.model.prepare([image])
        laps.lap("preprocess")
        return batch[0], metas[0]

    def infer(self, items: Sequence[tuple[np.ndarray, Any]]) -> list[dict[str, Any] | VisorError]:
        laps = self.timer.laps()
        batch = np.stack([x for x, _ in items])
        laps.lap("stack")
        outputs = self.model.infer(batch)
        laps.lap("inference")
        rows: list[dict[str, Any] | VisorError] = [
            result_row(r) for r in self.model.postprocess(outputs, [m for _, m in items], **self.options)]
        laps.lap("postprocess")
        return rows


# --------------------------------------------------------------------------- annotate


class AnnotateRunner(Runner):
    """Decode in the workers; the features run one image at a time (each model batches internally).
    The classifier (``labels``), detector (``objects``) and segmenter (``segmentation``) are the registry's
    defaults unless named."""

    def __init__(self, spec: TaskSpec) -> None:
        from visor.annotator import Annotator

        super().__init__(spec)
        registry = spec.task_registry
        clf = det = None
        if "labels" in spec.features:
            clf = _load(_model_name(spec.model, registry.by_feature("labels")), spec)
        if "objects" in spec.features:
            det = _load(_model_name(spec.detector, registry.by_feature("objects"), "--detector"), spec)
        seg = None
        if "segmentation" in spec.features:
            seg = _load(_model_name(spec.segmenter, registry.by_feature("segmentation"), "--segmenter"), spec)
        self.annotator = Annotator(classifier=clf, detector=det, segmenter=seg, top_k=spec.top_k,
                                   limits=spec.limits, tasks=spec.tasks)
        models = [m for m in (clf, det, seg) if m is not None]
        self.model_name = "+".join(m.name for m in models) or ANNOTATE
        self.model_sha256 = "+".join(weights_sha256(m) for m in models)
        self.card_sha256 = "+".join(card_sha256(m) for m in models)

    def prepare(self, path: str | FrameItem):
        laps = self.timer.laps()
        if isinstance(path, FrameItem):
            image, path = path.pixels(), path.path
        else:
            image = open_image(path, limits=self.spec.limits)
        laps.lap("decode")
        return path, image

    def infer(self, items):
        rows: list[dict[str, Any] | VisorError] = []
        laps = self.timer.laps()
        for path, image in items:
            try:
                doc = self.annotator.annotate(image, self.spec.features)
            except VisorError as e:
                rows.append(e)
                continue
            doc["image"] = path
            labels = doc.get("labels") or {}
            best = (labels.get("predictions") or [None])[0]
            partial = any(isinstance(v, dict) and "error" in v for v in doc.values())
            rows.append(_row(doc, best["label"] if best else None, best["class_id"] if best else None,
                             best["confidence"] if best else None, None, "partial" if partial else "ok"))
        laps.lap("inference")
        return rows


# --------------------------------------------------------------------------- track


class TrackRunner(Runner):
    """``--task track``: the detector loaded once; each video tracked whole by :meth:`track` (a fresh tracker
    per video). Not run through :meth:`prepare` / :meth:`infer`: tracking needs the frames in order."""

    def __init__(self, spec: TaskSpec) -> None:
        from visor.models.detector import Detector

        super().__init__(spec)
        model = _load(_model_name(spec.model, spec.task_registry.by_feature("objects")), spec)
        if not isinstance(model, Detector):
            raise ConfigError(f"{model.name} is a {model.card.task} model; --task track needs an object detector")
        self.model = model
        self.tracker_options = spec.tracker_options()
        self.model_name, self.model_sha256, self.card_sha256 = model.name, weights_sha256(model), card_sha256(model)

    def track(self, path: str, *, stride: int):
        """The :class:`~visor.video.track.TrackStream` of one video (opening errors raised, typed)."""
        from visor.io.video import VideoLimits
        from visor.video.track import track

        return track(path, model=self.model, options=self.tracker_options, stride=stride,
                     limits=VideoLimits(max_pixels=self.spec.max_pixels), threads=self.spec.threads)

    def prepare(self, path):  # pragma: no cover - not used for tracking
        raise ConfigError("--task track runs video by video, not through prepare/infer")

    infer = prepare


def tracked_row(tracked: Any) -> dict[str, Any]:
    """The output row of a :class:`~visor.video.track.TrackedFrame`: the best detection's label, class id and
    confidence, ``count`` = detections on confirmed tracks, and as result the frame's JSON (frame, timestamp_s,
    scene, scene_cut, detections each with ``tracker_id`` and ``class_name``, analytics)."""
    row = result_row(tracked.detections)
    row["result"] = {"type": "tracked_frame", **tracked.to_dict()}
    return row


def quarantine_row(path: str, error: BaseException) -> dict[str, Any]:
    if isinstance(error, VisorError):
        d = error.to_dict()
    else:  # pragma: no cover - engines pass typed errors only
        d = {"type": type(error).__name__, "code": "error", "message": str(error)}
    return {"path": path, "status": "quarantined", "error_type": d["type"], "code": d["code"],
            "message": d["message"]}
