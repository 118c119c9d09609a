"""The service's behaviour, independent of HTTP: what each route does, as async methods.

:class:`VisorService` ties the :class:`~visor.serve.manager.ModelManager` (inference), the
database (keys, review queue, prediction log, watch events), the rate limiter and the metrics together.
Routes in :mod:`visor.serve.app` only parse the request, call one method and encode the answer.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool

from visor.errors import InvalidInput, VisorError
from visor.serve.auth import RateLimiter, Unauthorized
from visor.serve.batcher import DeadlineExceeded
from visor.serve.inputs import ImageInput
from visor.serve.manager import ModelManager, check_deadline
from visor.serve.metrics import ServiceMetrics
from visor.serve.review import review_reason, reviewable
from visor.serve.settings import ServeSettings

log = logging.getLogger("visor.serve")


@dataclass
class BatchAnswer:
    """Per-image results in order, and the HTTP status for the whole request.

    The status is 200 when at least one image succeeded, else the first error's status.
    """

    results: list[dict[str, Any]]
    errors: list[VisorError | None]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> int:
        if any(e is None for e in self.errors) or not self.errors:
            return 200
        return next(e for e in self.errors if e is not None).http_status

    @property
    def retry_after(self) -> int | None:
        if self.status in (429, 503):
            return max((getattr(e, "retry_after", 1) for e in self.errors if e is not None), default=1)
        return None

    def to_dict(self) -> dict[str, Any]:
        return {**self.extra, "results": self.results}


def _top_class(result: Any) -> tuple[str | None, float | None]:
    top = result.top
    return (None, None) if top is None else top


def _weakest_box(result: Any) -> tuple[str | None, float | None]:
    if not len(result):
        return None, 0.0  # nothing found at all: as unsure as it gets
    i = int(result.confidence.argmin())
    return str(result.data["class_name"][i]), float(result.confidence[i])


#: What a result is reviewed on, by task: (label, confidence) of the top class, or of the least confident
#: kept box (an image without any box counts as confidence 0). A task not here is queued by sampling only.
REVIEW_SIGNALS: dict[str, Callable[[Any], tuple[str | None, float | None]]] = {
    "classification": _top_class,
    "detection": _weakest_box,
}


def segmentation_fields(mask: Any, fmt: str = "rle") -> dict[str, Any]:
    """The fields of one image's ``/v1/segment`` answer: ``areas`` (pixels per present class, by name) and
    ``segmentation``: ``mask.to_dict()`` (``fmt="rle"``), or (``fmt="png"``) ``{"type", "model", "width",
    "height", "class_names", "ignore_index", "format": "png", "png": base64 of mask.to_png_bytes()}``."""
    if fmt == "rle":
        return {"areas": mask.areas, "segmentation": mask.to_dict()}
    if fmt != "png":
        raise InvalidInput(f"format must be rle or png, got {fmt!r}")
    import base64

    doc = {"type": mask.TYPE, "model": mask.model, "width": mask.width, "height": mask.height,
           "class_names": list(mask.class_names), "ignore_index": mask.ignore_index, "format": "png",
           "png": base64.b64encode(mask.to_png_bytes()).decode("ascii")}
    return {"areas": mask.areas, "segmentation": doc}


def _as_json(result: Any) -> Any:
    """A result's JSON form: ``to_dict()`` of visor's result types, arrays as lists, the rest as it is."""
    if hasattr(result, "to_dict"):
        return result.to_dict()
    if hasattr(result, "tolist"):
        return result.tolist()
    return result


class VisorService:
    def __init__(self, settings: ServeSettings, *, manager: ModelManager | None = None, db: Any = None,
                 metrics: ServiceMetrics | None = None, rng: random.Random | None = None) -> None:
        from visor.serve.db import ServiceDB
        from visor.serve.events import EventStore
        from visor.serve.keys import KeyStore
        from visor.serve.predictions import PredictionLog
        from visor.serve.review import ReviewPolicy, ReviewQueue

        self.settings = settings
        self.metrics = metrics or ServiceMetrics()
        self.manager = manager or ModelManager(settings)
        if self.manager.on_batch is None:  # an injected manager's batches are counted too
            self.manager.on_batch = self.metrics.observe_batch
        self.metrics.watch_queues(self.manager.queue_depths)
        self.metrics.watch_drift(self.manager.drift_report)
        self.db = db if db is not None else ServiceDB(settings.db)
        self.keys = KeyStore(self.db)
        self.review = ReviewQueue(self.db)
        self.predictions = PredictionLog(self.db)
        self.events = EventStore(self.db)  # what `visor watch` stored
        self.policy = ReviewPolicy(threshold=settings.review_threshold if settings.review_threshold is not None
                                   else 0.0, thresholds=dict(settings.review_thresholds),
                                   labels=tuple(settings.review_labels), sample_rate=settings.review_sample_rate)
        self.rng = rng or random.Random()  # noqa: S311 - review sampling, not security
        self.limiter = RateLimiter(settings.rate_limit, settings.rate_burst) if settings.rate_limit else None
        self._faces: Any = None
        self._face_index: Any = None
        self._aws_keys: Any = None
        self._index: Any = None
        self._key_cache: dict[str, tuple[str, float]] = {}  # sha256 -> (key name, valid until)
        self._lazy_lock = threading.Lock()  # face_index() and aws_keys() open once

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Load the models (blocking; run it off the event loop) and record them in the metrics."""
        s = self.settings
        if not s.require_keys and not s.loopback:
            log.warning("API KEYS ARE OFF and the service listens on %s: anyone who can reach it can use it", s.host)
        elif s.require_keys and self.keys.count_active() == 0:
            log.warning("no API keys exist yet: every request will get 401; create one with `visor keys create "
                        "--name NAME`")
        try:
            self.manager.load()
        except Exception:
            log.exception("loading the models failed")
            return
        for m in self.manager.models():
            self.metrics.model_info.labels(m.role, m.name, m.version, m.sha256).set(1)
        self.metrics.ready.set(1)
        log.info("models ready: %s", ", ".join(m.name for m in self.manager.models()))

    def stop(self) -> None:
        self.manager.stop(drain=True)
        if self._faces is not None:
            self._faces.close()
        if self._face_index is not None:
            self._face_index.close()
        if self._index is not None:
            self._index[0].close()
        self.db.close()

    def purge_predictions(self) -> int:
        return self.predictions.purge(timedelta(days=self.settings.retention_days))

    # ------------------------------------------------------------------ auth

    async def authenticate(self, key: str | None) -> str | None:
        """The key's name (``None`` when keys are off); 401 / 429 otherwise.

        Verified keys are remembered for ``settings.key_cache_s`` seconds, so a revocation
        takes effect within that time and most requests skip the database.
        """
        if not self.settings.require_keys:
            return None
        if not key:
            raise Unauthorized("an API key is required: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'")
        digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        cached = self._key_cache.get(digest)
        if cached is not None and cached[1] > time.monotonic():
            name = cached[0]
        else:
            found = await run_in_threadpool(self.keys.verify, key)
            if found is None:
                self._key_cache.pop(digest, None)
                raise Unauthorized("the API key is not valid (unknown or revoked)")
            name = found.name
            if self.settings.key_cache_s > 0:
                if len(self._key_cache) > 10_000:
                    self._key_cache.clear()
                self._key_cache[digest] = (name, time.monotonic() + self.settings.key_cache_s)
        if self.limiter is not None:
            self.limiter.take(name)
        return name

    # ------------------------------------------------------------------ shared per-image steps

    async def _after(self, route: str, img: ImageInput, task: str, model: str, prediction: dict[str, Any],
                     label: str | None, confidence: float | None, labels: Sequence[str], key_name: str | None,
                     started: float) -> int | None:
        """Prediction logging and review queueing for one successful image; returns the review id."""
        review_id = None
        if self.settings.review_enabled and reviewable(task):
            reason = self._review_reason(model, confidence, label)
            if reason is not None:
                review_id = await run_in_threadpool(
                    self.review.add, image=img.data, filename=img.name, media_type=img.media_type, model=model,
                    task=task, prediction=prediction, labels=list(labels), reason=reason)
                self.metrics.review_queued.labels(model).inc()
        if self.settings.log_predictions:
            await run_in_threadpool(
                self.predictions.log, route=route, model=model, image_sha256=hashlib.sha256(img.data).hexdigest(),
                result=prediction, latency_ms=(time.perf_counter() - started) * 1000, key_name=key_name)
        return review_id

    def _review_reason(self, model: str, confidence: float | None, label: str | None) -> str | None:
        return review_reason(self.policy, model, confidence, label, self.rng)

    async def _each(self, route: str, images: Sequence[ImageInput], one) -> BatchAnswer:
        outs = await asyncio.gather(*(self._guard(route, img, one) for img in images))
        return BatchAnswer([o[0] for o in outs], [o[1] for o in outs])

    async def _guard(self, route: str, img: ImageInput, one) -> tuple[dict[str, Any], VisorError | None]:
        try:
            result = await one(img)
        except VisorError as e:
            self.metrics.images.labels(route, e.code).inc()
            return {"image": img.name, "error": e.to_dict()}, e
        self.metrics.images.labels(route, "ok").inc()
        return {"image": img.name, **result}, None

    # ------------------------------------------------------------------ routes' work

    async def predict_route(self, task: str, images: Sequence[ImageInput], options: Any = None, *,
                            deadline: float, key_name: str | None = None,
                            encode: Callable[[Any], dict[str, Any]] | None = None) -> BatchAnswer:
        """A task's route (``/v1/classify``, ``/v1/detect``, any task of the registry the manager serves):
        each image through :meth:`ModelManager.predict`, then review queueing and the prediction log.

        ``options``: the route's typed options (``ClassifyOptions``, ``DetectOptions``: anything with
        ``as_kwargs()``) or a mapping, checked once by the task's predictor. 404 for the whole request when
        the service runs no model for ``task``; while the models load each image answers 503.
        ``encode(result)``: the fields of an image's answer (run in a decoder thread; default
        ``{result.TYPE: result.to_dict()}``); the prediction log and the review queue keep ``to_dict()``.
        """
        m = self.manager
        spec = m.require_task(task)
        kwargs = options.as_kwargs() if hasattr(options, "as_kwargs") else dict(options or {})
        kwargs = m.check_options(task, kwargs)
        verb = spec.verb or spec.name  # the metrics' and the prediction log's route name
        review_task = spec.batch_task or verb
        signal = REVIEW_SIGNALS.get(task)

        async def one(img: ImageInput) -> dict[str, Any]:
            started = time.perf_counter()
            result = await m.predict(task, img.data, deadline, **kwargs)
            model = m.model_for(task)
            if encode is None:
                doc = _as_json(result)
                fields = {getattr(result, "TYPE", "") or spec.name: doc}
            else:  # the JSON form only where it is kept (the log, the review queue): a mask's RLE costs
                keep = self.settings.log_predictions or self.settings.review_enabled
                doc, fields = await anyio.to_thread.run_sync(
                    lambda: (_as_json(result) if keep else None, encode(result)), limiter=m.decoders)
            label, confidence = signal(result) if signal is not None else (None, None)
            review_id = await self._after(verb, img, review_task, model.name, doc, label, confidence, model.labels,
                                          key_name, started)
            return {**fields, "review_id": review_id}

        answer = await self._each(verb, images, one)
        answer.extra["model"] = m.model_name(task)
        return answer

    async def segment(self, images: Sequence[ImageInput], options: Any = None, *, deadline: float,
                      key_name: str | None = None) -> BatchAnswer:
        """``POST /v1/segment``: :meth:`predict_route` for the segmentation task, each image answered as
        ``{"areas": {class name: pixels}, "segmentation": ...}``: the ``SegmentationMask`` JSON (one COCO RLE
        per present class) with ``format="rle"``, or with ``format="png"`` the mask as an index PNG
        (base64; palette: Pascal VOC's) beside the size and class names (:func:`segmentation_fields`)."""
        fmt = getattr(options, "format", None) or "rle"
        return await self.predict_route("segmentation", images, options, deadline=deadline, key_name=key_name,
                                        encode=functools.partial(segmentation_fields, fmt=fmt))

    async def annotate(self, images: Sequence[ImageInput], *, features: Sequence[str], top_k: int, deadline: float,
                       key_name: str | None = None) -> BatchAnswer:
        from visor.annotator import check_features

        wanted = check_features(features)

        async def one(img: ImageInput) -> dict[str, Any]:
            check_deadline(deadline)
            # the deadline is checked again before each feature, and the answer (504) does not wait for
            # the feature running when it passes: that one finishes in the background, bounded by its
            # pixel budget, and the next one does not start
            work = asyncio.get_running_loop().run_in_executor(
                None, functools.partial(self.manager.annotate, img.data, wanted, top_k=top_k, deadline=deadline))
            work.add_done_callback(lambda f: f.cancelled() or f.exception())  # retrieved, also when abandoned
            try:
                doc = await asyncio.wait_for(asyncio.shield(work), timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                raise DeadlineExceeded("the request's deadline passed while its image was being annotated") from None
            doc.pop("image", None)
            return doc

        return await self._each("annotate", images, one)

    def default_features(self) -> list[str]:
        from visor.annotator import FEATURES

        return [f for f in FEATURES if f != "objects" or self.manager.serves("detection")]

    def drift(self) -> dict[str, Any]:
        """The drift window against the profile (404 when the service has no --drift-profile)."""
        from visor.errors import ModelNotFound

        if self.settings.drift_profile is None:
            raise ModelNotFound("this service has no drift profile: start it with --drift-profile PROFILE "
                                "(visor evaluate --profile)")
        self.manager.require_ready()
        report = self.manager.drift_report()
        return {"profile": self.settings.drift_profile, "window": self.settings.drift_window,
                "report": None if report is None else report.to_dict()}

    def _search_index(self) -> Any:
        """The configured index and its embedder, opened on first use (404 when none is configured)."""
        from visor.errors import ModelNotFound

        if self.settings.index is None:
            raise ModelNotFound("this service has no search index: start it with --index INDEX (visor index build)")
        if self._index is None:
            from visor.retrieval import Embedder, VectorIndex

            classifier = self.manager.model_for("classification").predictor
            index = VectorIndex.open(self.settings.index)
            model = classifier if classifier.name == index.info.model else index.info.model
            # the index guards its own SQLite connection and faiss index with one lock, so searches
            # embed their queries concurrently
            self._index = (index, Embedder(model, limits=self.settings.limits))
        return self._index

    async def search(self, images: Sequence[ImageInput], *, k: int, deadline: float) -> BatchAnswer:
        index, embedder = await run_in_threadpool(self._search_index)

        def run(data: bytes) -> list[dict[str, Any]]:
            check_deadline(deadline)  # not after waiting past it for a decoder
            return [h.to_dict() for h in index.search(data, k, embedder=embedder)]

        async def one(img: ImageInput) -> dict[str, Any]:
            check_deadline(deadline)
            return {"hits": await anyio.to_thread.run_sync(run, img.data, limiter=self.manager.decoders)}

        answer = await self._each("search", images, one)
        answer.extra["index"] = {"model": index.info.model, "count": index.info.count, "exact": index.exact}
        return answer

    async def cloud_vision(self, body: Any, *, int_enums: bool, deadline: float | None = None) -> dict[str, Any]:
        from visor.serve import cloudvision

        def run(data: bytes, features: tuple[str, ...], options: dict[str, Any]) -> dict[str, Any]:
            if deadline is not None:
                check_deadline(deadline)
            return self.manager.annotate(data, features, top_k=int(options.get("top_k", 10)),
                                         crop_aspect_ratios=options.get("crop_aspect_ratios"), deadline=deadline,
                                         text_languages=options.get("language_hints"))

        self.manager.require_ready()
        return await run_in_threadpool(cloudvision.annotate_images, body, run, int_enums=int_enums,
                                       has_detector=self.manager.serves("detection"),
                                       max_images=self.settings.max_images)

    # ------------------------------------------------------------------ face collections

    def faces(self) -> Any:
        if self._faces is None:
            from visor.faces import FaceStore

            self._faces = FaceStore(self.settings.faces_db, analyzer=self.manager.face_analyzer)
        return self._faces

    def face_index(self) -> Any:
        """The Rekognition-style face collections (:class:`visor.faces.indexed.FaceIndex`) in the faces database,
        opened on first use (after the models load: it shares the face analyzer)."""
        if self._face_index is None:
            analyzer = self.manager.face_analyzer
            with self._lazy_lock:
                if self._face_index is None:
                    from visor.faces.indexed import FaceIndex

                    self._face_index = FaceIndex(self.settings.faces_db, analyzer=analyzer)
        return self._face_index

    def aws_keys(self) -> Any:
        """The AWS keys (:class:`visor.serve.awsauth.AwsKeyStore`) of the service database, for SigV4."""
        if self._aws_keys is None:
            with self._lazy_lock:
                if self._aws_keys is None:
                    from visor.serve.awsauth import AwsKeyStore

                    self._aws_keys = AwsKeyStore(self.db)
        return self._aws_keys

    async def faces_call(self, method: str, *args: Any, deadline: float | None = None, **kwargs: Any) -> Any:
        """Run a :class:`FaceStore` method off the event loop (dlib calls one at a time); 504 when
        ``deadline`` (monotonic) passes before it starts (e.g. while waiting for dlib)."""
        store = await run_in_threadpool(self.faces)

        def call() -> Any:
            with self.manager.annotate_lock:
                if deadline is not None:
                    check_deadline(deadline)
                return getattr(store, method)(*args, **kwargs)

        return await run_in_threadpool(call)

    async def collections(self) -> list[dict[str, Any]]:
        store = await run_in_threadpool(self.faces)

        def summary() -> list[dict[str, Any]]:
            out = []
            for name in store.list_collections():
                faces = store.face_counts(name)
                out.append({"name": name, "people": len(faces), "faces": sum(faces.values())})
            return out

        return await run_in_threadpool(summary)

    async def collection(self, name: str) -> dict[str, Any]:
        store = await run_in_threadpool(self.faces)
        counts = await run_in_threadpool(store.face_counts, name)
        return {"name": name, "people": [{"name": p, "faces": n} for p, n in counts.items()]}

    async def identify(self, collection: str, images: Sequence[ImageInput], *, threshold: float,
                       deadline: float | None = None) -> BatchAnswer:
        async def one(img: ImageInput) -> dict[str, Any]:
            faces = await self.faces_call("identify", collection, img.data, threshold=threshold, deadline=deadline)
            return faces.to_dict(embeddings=False)

        return await self._each("identify", images, one)
