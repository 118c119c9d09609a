"""The models behind the service: loading, readiness, and micro-batched inference.

Routes never touch models directly: they call a :class:`ModelManager`, which the app
factory receives (tests and embedders can inject their own). Decoding and preprocessing
run in the caller's worker thread (so they spread over cores); only the ONNX Runtime call
is batched, by one :class:`~visor.serve.batcher.MicroBatcher` per model.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np

from visor.errors import ConfigError, ModelNotFound, VisorError
from visor.serve.batcher import DeadlineExceeded, MicroBatcher, Overloaded, calibrate_batch_size
from visor.serve.settings import ServeSettings
from visor.types import Classifications, Detections


class ModelsLoading(VisorError):
    """The models are still loading (HTTP 503); ``/readyz`` says when they are ready."""

    http_status = 503
    code = "loading"
    retry_after = 2


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    role: str
    name: str
    task: str
    version: str
    sha256: str
    num_classes: int
    max_batch: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _model_info(role: str, model: Any, max_batch: int) -> ModelInfo:
    card = model.card
    sha = card.weights.sha256 or ""
    return ModelInfo(role=role, name=card.name, task=card.task, version=sha[:12] or "unversioned", sha256=sha,
                     num_classes=card.num_classes, max_batch=max_batch)


class Admission:
    """Counts images admitted for one model, from before decoding until answered.

    Refusing at the door (:class:`Overloaded`, 503) once ``capacity`` images are in flight keeps
    latency bounded under overload: without it, images would pile up waiting to be decoded and
    time out (504) instead of being told to come back.
    """

    def __init__(self, name: str, capacity: int, retry_after: int = 1) -> None:
        self.name = name
        self.capacity = int(capacity)
        self.retry_after = retry_after
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.check()
            self.count += 1

    def check(self) -> None:
        """Refuse at once when full (before the request body is even parsed)."""
        if self.count >= self.capacity:
            raise Overloaded(f"model {self.name!r} is at capacity ({self.capacity} images in flight); "
                             f"retry after {self.retry_after} s", self.retry_after)

    def leave(self) -> None:
        with self._lock:
            self.count -= 1


class ModelManager:
    """Loads the configured models and runs batched inference on them.

    ``on_batch(model_name, size, seconds)`` is called after every batch (for metrics).
    """

    def __init__(self, settings: ServeSettings, *,
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        self.settings = settings
        self.on_batch = on_batch
        self.classifier: Any = None
        self.detector: Any = None
        self._annotator: Any = None
        self._batchers: dict[str, MicroBatcher] = {}
        self.max_batch: dict[str, int] = {}
        self.batch_rates: dict[str, dict[int, float]] = {}
        # images decoding, queued or running per model: the queue plus the batch being run
        capacity = settings.queue_size + settings.max_batch
        self.admission = {role: Admission(role, capacity, settings.retry_after_s) for role in ("classifier",
                                                                                               "detector")}
        self.drift: Any = None  # a visor.monitor.DriftWindow with --drift-profile
        self._drift_runner: Any = None
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    @property
    def load_error(self) -> BaseException | None:
        return self._load_error

    def load(self) -> None:
        """Load the configured models (blocking) and start their batchers; then ``ready``."""
        import visor
        from visor.annotate import Annotator

        s = self.settings
        try:
            with self._lock:
                # no busy-waiting ORT threads: HTTP and decoding share the cores
                self.classifier = visor.load(s.classifier, limits=s.limits, threads=s.threads, spin=False)
                if s.detector:
                    self.detector = visor.load(s.detector, limits=s.limits, threads=s.threads, spin=False)
                self._annotator = Annotator(classifier=self.classifier, detector=self.detector, limits=s.limits)
                for feature in ("faces", "text", "moderation"):
                    if feature in s.preload:
                        self._annotator._model(feature)
                if s.drift_profile:
                    self._load_drift()
                self.max_batch["classifier"] = self._calibrate(self.classifier)
                self._batchers["classifier"] = self._batcher(self.classifier.name, self._classify_batch,
                                                             self.max_batch["classifier"])
                if self.detector is not None:
                    self.max_batch["detector"] = self._calibrate(self.detector)
                    self._batchers["detector"] = self._batcher(self.detector.name, self._detect_batch,
                                                               self.max_batch["detector"])
        except BaseException as e:
            self._load_error = e
            raise
        self._ready.set()

    def _load_drift(self) -> None:
        """The drift window, and the classifier graph that also gives embeddings (same logits)."""
        from visor.monitor import DriftProfile, DriftWindow
        from visor.monitor.collect import FeatureRunner, model_sha256

        s = self.settings
        profile = DriftProfile.load(s.drift_profile)
        if tuple(profile.labels) != tuple(self.classifier.labels):
            raise ConfigError(f"drift profile {s.drift_profile} is for model {profile.model}, whose labels differ "
                              f"from {self.classifier.name}'s")
        sha = model_sha256(self.classifier)
        if profile.model_sha256 and sha and sha != profile.model_sha256:
            raise ConfigError(f"drift profile {s.drift_profile} was built with other weights than "
                              f"{self.classifier.name}'s ({profile.model_sha256[:12]} vs {sha[:12]})")
        self._drift_runner = FeatureRunner(self.classifier, threads=s.threads, spin=False)
        self.drift = DriftWindow(profile, s.drift_window)

    def drift_report(self) -> Any:
        """The drift window against the profile (None without a profile or before any prediction)."""
        return None if self.drift is None else self.drift.report()

    def _calibrate(self, model: Any) -> int:
        """``settings.max_batch``, or with ``batch_calibration`` the fastest batch size up to it."""
        s = self.settings
        if not s.batch_calibration or s.max_batch == 1:
            return s.max_batch
        if getattr(model, "max_batch", None):  # a fixed-batch import: no choice to make
            return min(s.max_batch, int(model.max_batch))
        h, w = model.card.preprocess.input_size
        sample = np.zeros((s.max_batch, 3, h, w), np.float32)
        chosen, rates = calibrate_batch_size(lambda n: model.session.run(sample[:n]), s.max_batch)
        self.batch_rates[model.card.name] = rates
        logging.getLogger("visor.serve").info(
            "%s: images/s by batch size %s; micro-batches of up to %d", model.card.name,
            {n: round(r, 1) for n, r in rates.items()}, chosen)
        return chosen

    def _batcher(self, name: str, fn: Callable[[Sequence[Any]], Sequence[Any]], max_batch: int) -> MicroBatcher:
        s = self.settings
        hook = None if self.on_batch is None else (lambda size, secs: self.on_batch(name, size, secs))
        return MicroBatcher(fn, name=name, max_batch=max_batch, max_wait_ms=s.max_wait_ms,
                            queue_size=s.queue_size, retry_after=s.retry_after_s, on_batch=hook).start()

    def stop(self, *, drain: bool = True) -> None:
        """Finish (or fail) queued work and stop the batchers."""
        for b in self._batchers.values():
            b.stop(drain=drain)

    def queue_depths(self) -> dict[str, int]:
        return {b.name: b.depth for b in self._batchers.values()}

    def models(self) -> list[ModelInfo]:
        out = []
        if self.classifier is not None:
            out.append(_model_info("classifier", self.classifier, self.max_batch.get("classifier", 0)))
        if self.detector is not None:
            out.append(_model_info("detector", self.detector, self.max_batch.get("detector", 0)))
        return out

    def _require_ready(self) -> None:
        if not self.ready:
            if self._load_error is not None:
                raise ModelsLoading(f"the models failed to load: {self._load_error}")
            raise ModelsLoading("the models are still loading; see /readyz")

    # ------------------------------------------------------------------ batch functions (worker thread)

    def _classify_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        from visor.models.classifier import softmax

        batch = np.concatenate(items)
        if self._drift_runner is not None:
            probs, embeddings, stats = self._drift_runner.run(batch)
            self.drift.add(probs, embeddings, stats)
            return list(probs)
        logits = self.classifier.logits(batch)
        return list(softmax(logits, self.classifier.card.temperature))

    def _detect_batch(self, items: Sequence[np.ndarray]) -> list[np.ndarray]:
        out = self.detector.infer(np.concatenate(items))
        return [out[i : i + 1] for i in range(len(items))]

    # ------------------------------------------------------------------ per image (request threads)

    def prepare_classify(self, data: bytes) -> np.ndarray:
        """Decode and preprocess one image for the classifier batcher (typed errors for bad input)."""
        self._require_ready()
        clf = self.classifier
        return clf.preprocess([clf.decode(data)])

    def submit_classify(self, prepared: np.ndarray, deadline: float) -> Future:
        return self._batchers["classifier"].submit(prepared, deadline)

    def finish_classify(self, probabilities: np.ndarray, top_k: int) -> Classifications:
        clf = self.classifier
        return Classifications.from_probabilities(probabilities, clf.labels, top_k, clf.name)

    def _require_detector(self) -> Any:
        self._require_ready()
        if self.detector is None:
            raise ModelNotFound("this service has no object detector: start it with --detector MODEL")
        return self.detector

    def prepare_detect(self, data: bytes) -> tuple[np.ndarray, Any]:
        det = self._require_detector()
        batch, geometry = det.preprocess([det.decode(data)])
        return batch, geometry[0]

    def submit_detect(self, prepared: np.ndarray, deadline: float) -> Future:
        self._require_detector()
        return self._batchers["detector"].submit(prepared, deadline)

    def finish_detect(self, output: np.ndarray, geometry: Any, *, conf: float, iou: float,
                      max_det: int = 300) -> Detections:
        return self.detector.postprocess(output, [geometry], conf=conf, iou=iou, max_det=max_det)[0]

    # ------------------------------------------------------------------ annotate

    def annotate(self, data: bytes, features: Sequence[str], *, top_k: int = 5,
                 crop_aspect_ratios: Sequence[float] | None = None, deadline: float | None = None
                 ) -> dict[str, Any]:
        """``visor.annotate`` on the loaded models.

        No lock around the whole document: the faces, text and moderation models each take
        their own lock for one image (bounded by the annotator's pixel budgets), the other
        features run concurrently. A feature not started by ``deadline`` (monotonic) raises
        :class:`DeadlineExceeded` (504) for the image.
        """
        self._require_ready()
        options: dict[str, Any] = {"top_k": int(top_k)}
        if crop_aspect_ratios:
            options["crop_aspect_ratios"] = tuple(float(r) for r in crop_aspect_ratios)

        def check(feature: str) -> None:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(f"the request's deadline passed before feature {feature!r} started")

        return dataclasses.replace(self._annotator, **options).annotate(data, features, check=check)

    @property
    def face_analyzer(self) -> Any:
        self._require_ready()
        return self._annotator._model("faces")

    @property
    def annotate_lock(self) -> threading.Lock:
        """The lock face analysis runs under (annotate's faces feature and the face collections share dlib)."""
        self._require_ready()
        return self._annotator.feature_lock("faces")


def monotonic_deadline(deadline_ms: float) -> float:
    return time.monotonic() + deadline_ms / 1000.0
