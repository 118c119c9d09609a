"""The models behind the service: loading, readiness, and one micro-batched pipeline for every task.

Routes never touch models directly: they call a :class:`ModelManager`, which the app factory
receives (tests and embedders can inject their own). The manager holds one :class:`LoadedModel`
per model, keyed by the model's name: its predictor, its :class:`~visor.models.tasks.TaskSpec`,
its admission counter, micro-batcher and batch size. Which model serves which task comes from
the settings through the task registry (``classification`` -> ``settings.classifier``,
``detection`` -> ``settings.detector``, ``segmentation`` -> ``settings.segmenter``), plus any
``models={task: model}`` given.

Every task runs the same pipeline, built from the :class:`~visor.models.predictor.Predictor` base:

``prepare(data) -> (batch, meta)``
    ``predictor.prepare([predictor.decode(data)])`` in a small pool of decoder threads (so
    decoding spreads over cores; typed 400/413/415 errors for bad images);
batched ``predictor.infer``
    one :class:`~visor.serve.batcher.MicroBatcher` worker per model concatenates concurrent
    images and runs ONNX Runtime once (the classifier with ``--drift-profile`` runs the graph that
    also gives embeddings, and feeds the drift window);
``finish(output, meta, **options)``
    ``predictor.postprocess(output, [meta], **options)[0]`` (in a decoder thread for the tasks of
    :data:`THREADED_FINISH`, whose postprocessing works on every pixel of the image).

A model other than the classifier whose weights are not in the cache (:class:`WeightsNotCached`: an
offline machine that has not run ``visor models pull`` / ``import``) does not stop the service: its
task answers 503 (:class:`ModelUnavailable`, with the command that fixes it) and the others serve.

:meth:`ModelManager.predict` does all three for one image, with admission (503 when the model
is full) and the request's deadline (504).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import anyio
import numpy as np

from visor.errors import ConfigError, ModelNotFound, VisorError, WeightsNotCached
from visor.models.tasks import TaskRegistry, TaskSpec, builtin_tasks
from visor.serve.batcher import DeadlineExceeded, MicroBatcher, Overloaded, calibrate_batch_size
from visor.serve.settings import ServeSettings

log = logging.getLogger("visor.serve")

#: The tasks the settings name a model for: task -> the role (the ServeSettings field, the
#: ``role`` of /v1/models and of the ``visor_model_info`` metric).
ROLES: dict[str, str] = {"classification": "classifier", "detection": "detector", "segmentation": "segmenter"}
#: Tasks whose ``postprocess`` is heavy enough (per pixel of the original image) to run off the event loop.
THREADED_FINISH = frozenset({"segmentation"})
#: Tasks the service cannot run without: their models' load failures fail the whole service.
REQUIRED_TASKS = frozenset({"classification"})

#: Why a task has no model here (HTTP 404), by task; others get a generic message.
_NO_MODEL = {
    "classification": "this service has no classifier",
    "detection": "this service has no object detector (it was started with --detector none): start it with "
                 "--detector MODEL (default yolox_nano)",
    "segmentation": "this service has no segmenter (it was started with --segmenter none): start it with "
                    "--segmenter MODEL (default deeplabv3_voc)",
}


class ModelUnavailable(VisorError):
    """The task's model is configured but could not be loaded because its weights are not in this machine's
    cache (HTTP 503): the other tasks still serve; fetch the weights and restart the service."""

    http_status = 503
    code = "model_unavailable"
    retry_after = 60


#: annotate features served by the manager's own models, and their tasks.
ANNOTATE_ROLES = {"objects": "detection", "segmentation": "segmentation"}


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


def split_outputs(output: Any, sizes: Sequence[int]) -> list[Any]:
    """A batch's model output cut back into one piece per submitted item (``sizes`` rows each); an
    output of several arrays (a tuple or list) is cut array by array."""
    bounds = np.cumsum([0, *sizes])
    if isinstance(output, (tuple, list)):
        parts = [split_outputs(o, sizes) for o in output]
        return [type(output)(p[i] for p in parts) for i in range(len(sizes))]
    return [output[a:b] for a, b in itertools.pairwise(bounds)]


@dataclasses.dataclass
class LoadedModel:
    """One served model: its predictor and task, and the machinery that batches its images."""

    role: str
    spec: TaskSpec
    predictor: Any
    admission: Admission
    max_batch: int = 1
    batcher: MicroBatcher | None = None
    infer: Callable[[np.ndarray], Any] | None = None
    """What runs a concatenated batch (default ``predictor.infer``; the drift hook replaces it)."""

    @property
    def name(self) -> str:
        return self.predictor.name

    @property
    def task(self) -> str:
        return self.spec.name

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.predictor.labels)

    def prepare(self, data: bytes) -> tuple[np.ndarray, Any]:
        """Decode and build the model input of one image (a batch of one) and its geometry."""
        p = self.predictor
        batch, metas = p.prepare([p.decode(data)])
        return batch, metas[0]

    def run_batch(self, items: Sequence[np.ndarray]) -> list[Any]:
        """The batcher's function (worker thread): one inference for the gathered items."""
        output = (self.infer or self.predictor.infer)(np.concatenate(items))
        return split_outputs(output, [len(i) for i in items])

    def finish(self, output: Any, meta: Any, **options: Any) -> Any:
        """One image's model output to its result (``predictor.postprocess``)."""
        return self.predictor.postprocess(output, [meta], **options)[0]

    def info(self) -> ModelInfo:
        card = self.predictor.card
        sha = card.weights.sha256 or ""
        return ModelInfo(role=self.role, name=card.name, task=card.task, version=sha[:12] or "unversioned",
                         sha256=sha, num_classes=card.num_classes, max_batch=self.max_batch)


async def wait_for(fut: Future, deadline: float) -> Any:
    """The future's result, or :class:`DeadlineExceeded` once ``deadline`` (monotonic) passes."""
    left = deadline - time.monotonic()
    if left <= 0:
        fut.cancel()
        raise DeadlineExceeded("the request's deadline passed")
    try:
        return await asyncio.wait_for(asyncio.wrap_future(fut), timeout=left)
    except TimeoutError:
        fut.cancel()
        raise DeadlineExceeded(f"no answer within the deadline ({left * 1000:.0f} ms left when queued)") from None


def check_deadline(deadline: float) -> None:
    if time.monotonic() >= deadline:
        raise DeadlineExceeded("the request's deadline passed before its image was processed")


def monotonic_deadline(deadline_ms: float) -> float:
    return time.monotonic() + deadline_ms / 1000.0


class ModelManager:
    """Loads the configured models and runs batched inference on them, one pipeline for every task.

    ``tasks``: the task registry (default :func:`~visor.models.tasks.builtin_tasks`); ``models``:
    more ``{task: model}`` to serve, or ``{task: None}`` to switch one of the settings' off.
    ``on_batch(model_name, size, seconds)`` is called after every batch (for metrics).
    """

    def __init__(self, settings: ServeSettings, *, tasks: TaskRegistry | None = None,
                 models: Mapping[str, str | None] | None = None,
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        self.settings = settings
        self.tasks = tasks or builtin_tasks()
        self.on_batch = on_batch
        wanted: dict[str, str | None] = {task: getattr(settings, role) for task, role in ROLES.items()}
        wanted.update(models or {})
        self._configured = {task: ref for task, ref in wanted.items() if ref}
        for task in self._configured:
            spec = self.tasks.get(task)  # an unknown task: ConfigError now, not at the first request
            if spec.predictor is None:
                raise ConfigError(f"the {task} task has no predictor to serve")
        self._models: dict[str, LoadedModel] = {}  # by model name
        self._by_task: dict[str, LoadedModel] = {}
        self._unavailable: dict[str, str] = {}  # task -> why its model could not be loaded
        self.batch_rates: dict[str, dict[int, float]] = {}
        self.drift: Any = None  # a visor.monitor.DriftWindow with --drift-profile
        # decoding and preprocessing threads: a few per core, not anyio's 40, so that the event
        # loop still gets the GIL under overload and can answer 503 quickly
        self.decoders = anyio.CapacityLimiter(max(2, os.cpu_count() or 1))
        self._annotator: Any = None
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

    def require_ready(self) -> None:
        """:class:`ModelsLoading` (503) until the models are loaded (with the error when loading failed)."""
        if not self.ready:
            if self._load_error is not None:
                raise ModelsLoading(f"the models failed to load: {self._load_error}")
            raise ModelsLoading("the models are still loading; see /readyz")

    def load(self) -> None:
        """Load the configured models (blocking) and start their batchers; then ``ready``."""
        from visor.annotator import Annotator
        from visor.models import load

        s = self.settings
        try:
            with self._lock:
                for task, ref in self._configured.items():
                    spec = self.tasks.get(task)
                    try:
                        # no busy-waiting ORT threads: HTTP and decoding share the cores
                        predictor = load(ref, limits=s.limits, threads=s.threads, spin=False, tasks=self.tasks)
                    except WeightsNotCached as e:
                        if task in REQUIRED_TASKS:
                            raise
                        role = ROLES.get(task, task)
                        self._unavailable[task] = (f"the {role} {ref} is not loaded: {e}; then restart the "
                                                   f"service (or start it with --{role} none)")
                        log.warning("%s is off: %s", task, self._unavailable[task])
                        continue
                    if predictor.card.task not in spec.predictor_class().accepted_tasks():
                        raise ConfigError(f"{ref} is a {predictor.card.task} model; the {task} task needs a "
                                          f"{task} model")
                    if predictor.name in self._models:
                        raise ConfigError(f"model {predictor.name!r} is configured for two tasks "
                                          f"({self._models[predictor.name].task} and {task})")
                    # images decoding, queued or running per model: the queue plus the batch being run
                    door = Admission(predictor.name, s.queue_size + s.max_batch, s.retry_after_s)
                    slot = LoadedModel(ROLES.get(task, task), spec, predictor, door)
                    self._models[predictor.name] = self._by_task[task] = slot
                classifier, detector = self._by_task.get("classification"), self._by_task.get("detection")
                segmenter = self._by_task.get("segmentation")
                self._annotator = Annotator(classifier=classifier.predictor if classifier else s.classifier,
                                            detector=detector.predictor if detector else None,
                                            segmenter=segmenter.predictor if segmenter else None, limits=s.limits,
                                            tasks=self.tasks)
                for feature in ("faces", "text", "moderation"):
                    if feature in s.preload:
                        self._annotator.model(feature)
                if s.drift_profile:
                    if classifier is None:
                        raise ConfigError("a drift profile needs a classifier to compare")
                    self._load_drift(classifier)
                for slot in self._models.values():
                    slot.max_batch = self._calibrate(slot)
                    slot.batcher = self._batcher(slot)
        except BaseException as e:
            self._load_error = e
            raise
        self._ready.set()

    def _load_drift(self, slot: LoadedModel) -> None:
        """The drift window, and the classifier graph that also gives embeddings (same logits)."""
        from visor.models.classifier import softmax
        from visor.monitor import DriftProfile, DriftWindow
        from visor.monitor.collect import FeatureRunner, model_sha256

        s, clf = self.settings, slot.predictor
        profile = DriftProfile.load(s.drift_profile)
        if tuple(profile.labels) != tuple(clf.labels):
            raise ConfigError(f"drift profile {s.drift_profile} is for model {profile.model}, whose labels differ "
                              f"from {clf.name}'s")
        sha = model_sha256(clf)
        if profile.model_sha256 and sha and sha != profile.model_sha256:
            raise ConfigError(f"drift profile {s.drift_profile} was built with other weights than "
                              f"{clf.name}'s ({profile.model_sha256[:12]} vs {sha[:12]})")
        runner = FeatureRunner(clf, threads=s.threads, spin=False)
        window = self.drift = DriftWindow(profile, s.drift_window)

        def infer(batch: np.ndarray) -> np.ndarray:
            logits, embeddings, stats = runner.outputs(batch)
            window.add(softmax(logits, clf.card.temperature), embeddings, stats)
            return logits

        slot.infer = infer

    def drift_report(self) -> Any:
        """The drift window against the profile (None without a profile or before any prediction)."""
        return None if self.drift is None else self.drift.report()

    def _calibrate(self, slot: LoadedModel) -> int:
        """``settings.max_batch``, or with ``batch_calibration`` the fastest batch size up to it."""
        s, model = self.settings, slot.predictor
        if not s.batch_calibration or s.max_batch == 1:
            return s.max_batch
        if getattr(model, "max_batch", None):  # a fixed-batch import: no choice to make
            return min(s.max_batch, int(model.max_batch))
        h, w = model.preprocess_config.input_size
        one, _ = model.prepare([np.zeros((h, w, 3), np.uint8)])
        sample = np.repeat(one, s.max_batch, axis=0)
        chosen, rates = calibrate_batch_size(lambda n: model.infer(sample[:n]), s.max_batch)
        self.batch_rates[model.name] = rates
        log.info("%s: images/s by batch size %s; micro-batches of up to %d", model.name,
                 {n: round(r, 1) for n, r in rates.items()}, chosen)
        return chosen

    def _batcher(self, slot: LoadedModel) -> MicroBatcher:
        s, name = self.settings, slot.name
        hook = None if self.on_batch is None else (lambda size, secs: self.on_batch(name, size, secs))
        return MicroBatcher(slot.run_batch, name=name, max_batch=slot.max_batch, max_wait_ms=s.max_wait_ms,
                            queue_size=s.queue_size, retry_after=s.retry_after_s, on_batch=hook).start()

    def stop(self, *, drain: bool = True) -> None:
        """Finish (or fail) queued work and stop the batchers."""
        for slot in self._models.values():
            if slot.batcher is not None:
                slot.batcher.stop(drain=drain)

    # ------------------------------------------------------------------ what is served

    def serves(self, task: str) -> bool:
        """Whether a model is configured for ``task`` (known before the models load)."""
        return task in self._configured

    def served_tasks(self) -> list[str]:
        """The tasks a model is configured for, in the settings' order."""
        return list(self._configured)

    def require_task(self, task: str) -> TaskSpec:
        """The task's spec; :class:`ModelNotFound` (404) when no model is configured for it."""
        if task not in self._configured:
            raise ModelNotFound(_NO_MODEL.get(task, f"this service runs no {task} model"))
        return self.tasks.get(task)

    def unavailable(self) -> dict[str, str]:
        """Configured tasks whose model could not be loaded (weights not cached), with the reason."""
        return dict(self._unavailable)

    def model_for(self, task: str) -> LoadedModel:
        """The loaded model serving ``task``: 503 while loading or when its weights are missing
        (:class:`ModelUnavailable`), 404 when none is configured."""
        self.require_ready()
        self.require_task(task)
        if task in self._unavailable:
            raise ModelUnavailable(self._unavailable[task])
        return self._by_task[task]

    def model_name(self, task: str) -> str | None:
        """The name of the model serving ``task`` once loaded (None before, or when none is configured)."""
        slot = self._by_task.get(task) if self.ready else None
        return None if slot is None else slot.name

    def check_admission(self, task: str) -> None:
        """Refuse (503) when ``task``'s model is full, before the request body is parsed. Nothing to refuse
        before the models load or for a task without a model: the route answers those itself."""
        slot = self._by_task.get(task) if self.ready else None
        if slot is not None:
            slot.admission.check()

    def models(self) -> list[ModelInfo]:
        return [slot.info() for slot in self._models.values()] if self.ready else []

    def queue_depths(self) -> dict[str, int]:
        return {slot.name: slot.batcher.depth for slot in self._models.values() if slot.batcher is not None}

    # ------------------------------------------------------------------ the pipeline

    def check_options(self, task: str, options: Mapping[str, Any]) -> dict[str, Any]:
        """``options`` checked once by the task's predictor (unknown names: :class:`ConfigError`, 400);
        as given while the models load (each image then answers 503)."""
        if not self.ready:
            return dict(options)
        return self.model_for(task).predictor.check_options(**options)

    async def predict(self, task: str, data: bytes, deadline: float, **options: Any) -> Any:
        """One image's result for ``task``: admission (503 when full), decode and prepare in a decoder
        thread (typed 400/413/415), the model's micro-batch, ``finish`` with ``options``; 504 once
        ``deadline`` (monotonic) passes."""
        check_deadline(deadline)
        slot = self.model_for(task)
        slot.admission.enter()
        try:
            batch, meta = await anyio.to_thread.run_sync(slot.prepare, data, limiter=self.decoders)
            output = await wait_for(slot.batcher.submit(batch, deadline), deadline)
        finally:
            slot.admission.leave()
        if task in THREADED_FINISH:
            return await anyio.to_thread.run_sync(functools.partial(slot.finish, output, meta, **options),
                                                  limiter=self.decoders)
        return slot.finish(output, meta, **options)

    # ------------------------------------------------------------------ annotate

    def annotate(self, data: bytes, features: Sequence[str], *, top_k: int = 5,
                 crop_aspect_ratios: Sequence[float] | None = None, deadline: float | None = None,
                 text_languages: Sequence[str] | None = None) -> dict[str, Any]:
        """``visor.annotate`` on the loaded models.

        No lock around the whole document: the faces, text and moderation models each take
        their own lock for one image (bounded by the annotator's pixel budgets), the other
        features run concurrently. A feature not started by ``deadline`` (monotonic) raises
        :class:`DeadlineExceeded` (504) for the image. ``objects`` without a detector gives
        its 404 in its slot (the annotator is not left to load a default one), and so does
        ``segmentation`` without a segmenter; a model whose weights are missing gives its 503 there.
        """
        self.require_ready()
        options: dict[str, Any] = {"top_k": int(top_k)}
        if crop_aspect_ratios:
            options["crop_aspect_ratios"] = tuple(float(r) for r in crop_aspect_ratios)
        if text_languages:
            options["text_languages"] = tuple(str(code) for code in text_languages)

        def check(feature: str) -> None:
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceeded(f"the request's deadline passed before feature {feature!r} started")

        features = list(features)
        missing: dict[str, Any] = {}
        for feature, task in ANNOTATE_ROLES.items():  # never a default model loaded on a request
            if feature not in features:
                continue
            if not self.serves(task):
                error: VisorError | None = ModelNotFound(_NO_MODEL[task])
            else:
                error = ModelUnavailable(self._unavailable[task]) if task in self._unavailable else None
            if error is not None:
                features.remove(feature)
                missing[feature] = {"error": error.to_dict()}
        doc = dataclasses.replace(self._annotator, **options).annotate(data, features, check=check)
        doc.update(missing)
        return doc

    @property
    def face_analyzer(self) -> Any:
        self.require_ready()
        return self._annotator.model("faces")

    @property
    def annotate_lock(self) -> threading.Lock:
        """The lock face analysis runs under (annotate's faces feature and the face collections share dlib)."""
        self.require_ready()
        return self._annotator.feature_lock("faces")


__all__ = ["ROLES", "THREADED_FINISH", "Admission", "LoadedModel", "ModelInfo", "ModelManager", "ModelUnavailable",
           "ModelsLoading", "check_deadline", "monotonic_deadline", "split_outputs", "wait_for"]
