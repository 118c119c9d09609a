"""What a batch run does to each input, shared by the local and the Ray engine.

A :class:`TaskSpec` is the picklable description of the work (task, model, options); its
:meth:`~TaskSpec.build` gives a :class:`Runner` holding the loaded model. A runner splits the
work in two:

* :meth:`Runner.prepare` (one input, thread-safe, in decode workers): read, decode and
  preprocess the image into what inference needs; a bad image raises its typed error;
* :meth:`Runner.infer` (a batch of prepared inputs): one ONNX Runtime call and the
  postprocessing, giving one result row, or a typed error, per input.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np

from visor.errors import ConfigError, VisorError
from visor.io import ImageLimits, open_image
from visor.models import preprocess as pp

TASKS = ("classify", "detect", "annotate")
#: Images inferred at once, over all concurrent inference calls, by default: ONNX Runtime's memory
#: grows with it (EfficientNet-Lite0 at 224 px: about 20-25 MB per image in flight; two calls of
#: 8 images peak near 0.5 GB for the whole process, two of 16 near 0.8-1 GB) while the throughput
#: hardly changes beyond 8 images per call.
IMAGES_IN_FLIGHT = {"classify": 16, "detect": 8, "annotate": 1}


def default_batch_size(task: str, concurrency: int) -> int:
    """The batch size that keeps :data:`IMAGES_IN_FLIGHT` images in inference over ``concurrency`` calls."""
    return max(1, IMAGES_IN_FLIGHT[task] // max(1, concurrency))


@dataclass(frozen=True)
class TaskSpec:
    """The work of a batch run, independent of the engine. Picklable (Ray actors build from it)."""

    task: str = "classify"
    model: str | None = None
    """Classifier (classify, annotate's labels) or detector (detect); None: the built-in default."""
    detector: str | None = None
    """annotate only: the detector for the ``objects`` feature."""
    features: tuple[str, ...] = ()
    """annotate only: the features to run (default: all but objects, as ``visor annotate``)."""
    top_k: int = 5
    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    agnostic: bool = False
    max_bytes: int = ImageLimits.max_bytes
    max_pixels: int = ImageLimits.max_pixels
    threads: int | None = None
    """ONNX Runtime intra-op threads (None: one per physical core)."""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; choose one of {', '.join(TASKS)}")
        if int(self.top_k) < 1:
            raise ConfigError(f"top_k must be at least 1, got {self.top_k}")
        if self.task == "annotate":
            from visor.annotate import FEATURES, check_features

            feats = self.features or tuple(f for f in FEATURES if f != "objects")
            object.__setattr__(self, "features", check_features(feats))
        elif self.features:
            raise ConfigError("features apply to --task annotate only")

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_bytes, max_pixels=self.max_pixels)

    def options(self) -> dict[str, Any]:
        """The options that change results (recorded in the output; a resume must match them)."""
        opts: dict[str, Any] = {"max_bytes": self.max_bytes, "max_pixels": self.max_pixels}
        if self.task in ("classify", "annotate"):
            opts["top_k"] = self.top_k
        if self.task == "detect":
            opts.update(conf=self.conf, iou=self.iou, max_det=self.max_det, agnostic=self.agnostic)
        if self.task == "annotate":
            opts["features"] = list(self.features)
            opts["detector"] = self.detector
        return opts

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["features"] = list(self.features)
        return d

    def build(self) -> Runner:
        return {"classify": ClassifyRunner, "detect": DetectRunner, "annotate": AnnotateRunner}[self.task](self)


# --------------------------------------------------------------------------- helpers


def _load(name: str | None, spec: TaskSpec, default: str | None = None):
    import visor

    # ONNX Runtime's idle threads sleep instead of spinning: decode workers share the cores with
    # inference. (The session may be called from several threads at once: the inference streams share it.)
    return visor.load(name or default, limits=spec.limits, threads=spec.threads, spin=False)


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

    #: ``(C, H, W)`` when :meth:`prepare` can write into a slot of a batch array (``prepare(path, out)``)
    #: and :meth:`infer` takes that array; None when inputs are prepared one by one.
    item_shape: ClassVar[tuple[int, ...] | None] = None

    def identity(self) -> dict[str, Any]:
        """Task, model and options: what a resumed run must share with the output."""
        return {"task": self.spec.task, "model": self.model_name, "model_sha256": self.model_sha256,
                "card_sha256": self.card_sha256, "options": self.spec.options()}

    def prepare(self, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def infer(self, items: Sequence[Any]) -> list[dict[str, Any] | VisorError]:  # pragma: no cover - abstract
        raise NotImplementedError


def _row(result: dict[str, Any], label=None, class_id=None, confidence=None, count=None,
         status: str = "ok") -> dict[str, Any]:
    return {"status": status, "label": label, "class_id": class_id, "confidence": confidence, "count": count,
            "result": result}


# --------------------------------------------------------------------------- classify


class ClassifyRunner(Runner):
    """Decode (JPEG draft), resize and normalize in the workers; one ONNX call per batch."""

    def __init__(self, spec: TaskSpec) -> None:
        from visor.models import Classifier

        super().__init__(spec)
        clf = _load(spec.model, spec, "efficientnet_lite0")
        if not isinstance(clf, Classifier):
            raise ConfigError(f"{clf.name} is a {clf.card.task} model; --task classify needs a classifier")
        self.model = clf
        self.model_name, self.model_sha256, self.card_sha256 = clf.name, weights_sha256(clf), card_sha256(clf)
        cfg = clf.card.preprocess
        self._cfg = cfg
        # The same float32 constants as visor.models.preprocess.normalize, laid out for CHW.
        self._mean = (np.asarray(cfg.mean, np.float32) * 255.0).reshape(3, 1, 1)
        self._inv_std = (1.0 / (np.asarray(cfg.std, np.float32) * 255.0)).reshape(3, 1, 1)
        self._fast: bool | None = None  # checked against the classifier's own preprocessing on first use
        self._fast_lock = threading.Lock()

    @property
    def item_shape(self) -> tuple[int, int, int]:
        h, w = self._cfg.input_size
        return (3, h, w)

    def _normalize(self, hwc: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``HxWx3`` uint8 to normalized ``3xHxW`` float32 (into ``out``) in two passes over cache-sized
        data: subtract from the transposed bytes, then scale in place. Elementwise the same float32
        operations as ``preprocess.normalize``, so the result is bit-identical (checked once)."""
        if out is None:
            out = np.empty((3, *hwc.shape[:2]), np.float32)
        np.subtract(hwc.transpose(2, 0, 1), self._mean, out=out, dtype=np.float32)
        np.multiply(out, self._inv_std, out=out)
        return out

    def prepare(self, path: str, out: np.ndarray | None = None) -> np.ndarray:
        """The normalized ``3xHxW`` input of one image, written into ``out`` (a slot of a batch) if given."""
        laps = self.timer.laps()
        image = self.model.decode(path)
        laps.lap("decode")
        if self._fast is None:
            with self._fast_lock:
                if self._fast is None:
                    reference = self.model.preprocess([image])[0]
                    self._fast = bool(np.array_equal(self._normalize(pp.resize(image, self._cfg)), reference))
        if self._fast:
            x = self._normalize(pp.resize(image, self._cfg), out)
        else:  # the classifier preprocesses differently now: use it as it is
            x = self.model.preprocess([image])[0]
            if out is not None:
                out[...] = x
        laps.lap("preprocess")
        return x

    def infer(self, items: Sequence[np.ndarray] | np.ndarray) -> list[dict[str, Any] | VisorError]:
        """Classify prepared inputs: a list of them, or a batch array they were prepared into."""
        laps = self.timer.laps()
        batch = items if isinstance(items, np.ndarray) else np.stack(items)
        laps.lap("stack")
        logits = self.model.logits(batch)
        laps.lap("inference")
        rows = []
        for c in self.model.postprocess(logits, self.spec.top_k):
            top = c.top
            rows.append(_row(c.to_dict(), top[0] if top else None, int(c.class_id[0]) if top else None,
                             float(c.confidence[0]) if top else None, len(c)))
        laps.lap("postprocess")
        return rows


# --------------------------------------------------------------------------- detect


class DetectRunner(Runner):
    """Decode and letterbox in the workers; one ONNX call per batch, then box decoding and NMS."""

    def __init__(self, spec: TaskSpec) -> None:
        import warnings

        from visor.models import Detector

        super().__init__(spec)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the CLI reports licence warnings once, before the run
            det = _load(spec.model or _default_detector(), spec)
        if not isinstance(det, Detector):
            raise ConfigError(f"{det.name} is a {det.card.task} model; --task detect needs a detection model")
        self.model = det
        self.model_name, self.model_sha256, self.card_sha256 = det.name, weights_sha256(det), card_sha256(det)

    def prepare(self, path: str):
        laps = self.timer.laps()
        image = self.model.decode(path)
        laps.lap("decode")
        batch, geometry = self.model.preprocess([image])
        laps.lap("preprocess")
        return batch[0], geometry[0]

    def infer(self, items):
        laps = self.timer.laps()
        output = self.model.infer(np.stack([x for x, _ in items]))
        laps.lap("inference")
        s = self.spec
        found = self.model.postprocess(output, [g for _, g in items], conf=s.conf, iou=s.iou, max_det=s.max_det,
                                       agnostic=s.agnostic)
        rows = []
        for d in found:
            doc = d.to_dict()
            best = doc["detections"][0] if doc["detections"] else None
            rows.append(_row(doc, best.get("class_name") if best else None, best["class_id"] if best else None,
                             float(d.confidence[0]) if best else None, len(d)))
        laps.lap("postprocess")
        return rows


def _default_detector() -> str:
    from visor import models

    for name in models.list():
        if models.get_card(name).task == "detection":
            return name
    raise ConfigError("no built-in detection model; pass --model (a model folder, card.json or .onnx file)")


# --------------------------------------------------------------------------- annotate


class AnnotateRunner(Runner):
    """Decode in the workers; the features run one image at a time (each model batches internally)."""

    def __init__(self, spec: TaskSpec) -> None:
        from visor.annotate import Annotator

        super().__init__(spec)
        clf = _load(spec.model, spec, "efficientnet_lite0") if "labels" in spec.features else None
        det = _load(spec.detector, spec) if "objects" in spec.features and spec.detector else None
        self.annotator = Annotator(classifier=clf or (spec.model or "efficientnet_lite0"), detector=det,
                                   top_k=spec.top_k, limits=spec.limits)
        models = [m for m in (clf, det) if m is not None]
        self.model_name = "+".join(m.name for m in models) or "annotate"
        self.model_sha256 = "+".join(weights_sha256(m) for m in models)
        self.card_sha256 = "+".join(card_sha256(m) for m in models)

    def prepare(self, path: str):
        laps = self.timer.laps()
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


def quarantine_row(path: str, error: BaseException) -> dict[str, Any]:
    if isinstance(error, VisorError):
        d = error.to_dict()
    else:  # pragma: no cover - engines pass typed errors only
        d = {"type": type(error).__name__, "code": "error", "message": str(error)}
    return {"path": path, "status": "quarantined", "error_type": d["type"], "code": d["code"],
            "message": d["message"]}
