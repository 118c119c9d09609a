"""The FastAPI app: thin routes over :class:`~visor.serve.service.VisorService`.

``create_app(settings)`` builds a fresh app (no module-level app object, no import-time
side effects). ``create_app_from_env()`` is the factory uvicorn's worker processes call
(``visor serve --workers N``), reading the settings from ``VISOR_SERVE_SETTINGS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.security import APIKeyHeader, APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from visor.errors import InvalidInput, VisorError
from visor.serve import openapi_docs as docs
from visor.serve.auth import bearer_matches, key_from_request, redact_access_log
from visor.serve.deepstack import error_body as deepstack_error
from visor.serve.deepstack import is_deepstack_path
from visor.serve.deepstack import register as deepstack_routes
from visor.serve.events import EventNotFound
from visor.serve.inputs import (
    ClassifyOptions,
    DetectOptions,
    NotAcceptable,
    PayloadTooLarge,
    SegmentOptions,
    int_option,
    list_option,
    read_images,
    read_json,
    read_model,
    task_options,
)
from visor.serve.manager import monotonic_deadline
from visor.serve.metrics import CONTENT_TYPE
from visor.serve.rekognition import PATH as REKOGNITION_PATH
from visor.serve.rekognition import error_response as rekognition_error
from visor.serve.rekognition import register as rekognition_routes
from visor.serve.service import BatchAnswer, VisorService
from visor.serve.settings import ServeSettings
from visor.version import __version__

log = logging.getLogger("visor.serve")
SETTINGS_ENV = "VISOR_SERVE_SETTINGS"
CLOUD_VISION_PATH = "/v1/images:annotate"
PUBLIC_PATHS = ("/livez", "/readyz")
PURGE_EVERY_S = 3600.0
DOCS_ASSETS = "/docs-assets"  # swagger-ui and redoc, vendored in static/docs/
#: Tasks with a route of their own below (documented options); any other served task with a route in the
#: task registry gets a generic one (:func:`_task_route`).
BUILTIN_ROUTES = ("classification", "detection", "segmentation")
EVENTS_LIST = {200: {"description": "the events, newest first"},
               400: {"description": "bad limit", "content": {"application/json": {"schema": docs.ERROR_SCHEMA}}},
               **docs.AUTH_ERRORS}
EVENT_SNAPSHOT = {200: {"description": "the JPEG bytes", "content": {"image/jpeg": {}}}, **docs.NOT_FOUND}

_bearer = HTTPBearer(auto_error=False, description="An API key from `visor keys create`")
_x_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="An API key from `visor keys create`")
_goog_key = APIKeyHeader(name="x-goog-api-key", auto_error=False, description="Cloud Vision clients' API key header")
_query_key = APIKeyQuery(name="key", auto_error=False, description="Cloud Vision clients' API key parameter")


# --------------------------------------------------------------------------- middleware


class BodyLimit:
    """Refuses bodies over ``max_bytes`` with 413, by Content-Length or while streaming."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = PayloadTooLarge(f"the request body is over the {self.max_bytes} byte limit")
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await error_response(too_large, scope["path"])(scope, receive, send)
            return
        seen = 0

        async def limited() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_large
            return message

        await self.app(scope, limited, send)


class MetricsMiddleware:
    """Counts every response by route template and status, with its latency."""

    def __init__(self, app: Any, service: VisorService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/ui" if scope["path"].startswith("/ui") else "unmatched")
            self.service.metrics.observe_request(path, scope.get("method", ""), status, time.perf_counter() - start)


# --------------------------------------------------------------------------- errors


def error_response(e: VisorError, path: str) -> JSONResponse:
    headers = {}
    if getattr(e, "retry_after", None):
        headers["Retry-After"] = str(int(e.retry_after))
    if e.http_status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if path == CLOUD_VISION_PATH:
        from visor.serve.cloudvision import error_body

        return JSONResponse(error_body(e.http_status, str(e)), e.http_status, headers)
    if is_deepstack_path(path):  # {"success": false, "error": ...}, as DeepStack's clients read it
        return JSONResponse(deepstack_error(str(e)), e.http_status, headers)
    if path == REKOGNITION_PATH:  # POST / is the Rekognition API: AWS's {"__type", "message"}
        return rekognition_error(e)
    return JSONResponse({"error": e.to_dict()}, e.http_status, headers)


def answer_response(answer: BatchAnswer) -> JSONResponse:
    headers = {"Retry-After": str(answer.retry_after)} if answer.retry_after else None
    return JSONResponse(answer.to_dict(), answer.status, headers)


def accepts_png(accept: str) -> bool:
    """Whether an ``Accept`` header names ``image/png`` (a wildcard does not count: JSON stays the default)."""
    return any(part.split(";")[0].strip().lower() == "image/png" for part in accept.split(","))


def png_response(answer: BatchAnswer) -> Response:
    """A one-image ``/v1/segment`` answer (format png) as the PNG itself; the rest of the answer in headers:
    ``X-Visor-Model``, ``X-Visor-Areas`` and ``X-Visor-Class-Names`` (JSON, ASCII)."""
    import base64

    result = answer.results[0]
    doc = result["segmentation"]
    model = str(doc.get("model") or "")
    headers = {"X-Visor-Model": model if model.isascii() and model.isprintable() else json.dumps(model),
               "X-Visor-Areas": json.dumps(result["areas"]),
               "X-Visor-Class-Names": json.dumps(doc["class_names"]),
               "Content-Disposition": f"inline; filename={json.dumps(_png_name(result.get('image')))}"}
    return Response(base64.b64decode(doc["png"]), 200, headers, media_type="image/png")


def _png_name(name: str | None) -> str:
    stem = os.path.splitext(os.path.basename(name or ""))[0]
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in stem)
    return f"{safe or 'mask'}.png"


# --------------------------------------------------------------------------- app


def create_app(settings: ServeSettings | None = None, *, service: VisorService | None = None) -> FastAPI:
    """A new app; models load in the background after start-up (``/readyz`` tells when)."""
    settings = settings or ServeSettings()
    service = service or VisorService(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        redact_access_log()  # uvicorn has configured its loggers by now
        loading = asyncio.create_task(asyncio.to_thread(service.start))
        purging = asyncio.create_task(_purge_loop(service))
        try:
            yield
        finally:
            purging.cancel()
            with contextlib.suppress(BaseException):
                await loading
            # uvicorn has finished the requests in flight by now; drain the queues and close the DB
            await asyncio.to_thread(service.stop)

    app = FastAPI(title="visor", version=__version__, lifespan=lifespan, description=docs.DESCRIPTION,
                  openapi_tags=docs.TAGS, docs_url=None, redoc_url=None)  # /docs, /redoc below: no CDN
    app.state.service = service
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(MetricsMiddleware, service=service)

    @app.exception_handler(VisorError)
    async def _visor_error(request: Request, e: VisorError) -> JSONResponse:
        return error_response(e, request.url.path)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, e: RequestValidationError) -> JSONResponse:
        parts = ["; ".join(f"{'.'.join(str(x) for x in err['loc'])}: {err['msg']}" for err in e.errors())]
        return error_response(InvalidInput(parts[0] or "invalid request"), request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException) -> JSONResponse:
        if is_deepstack_path(request.url.path):
            return JSONResponse(deepstack_error(str(e.detail)), e.status_code, getattr(e, "headers", None))
        if request.url.path == REKOGNITION_PATH and request.method != "GET":  # GET / is the UI's redirect
            from visor.serve.rekognition import RekognitionError

            aws_type = "UnknownOperationException" if e.status_code in (404, 405) else "InvalidParameterException"
            return rekognition_error(RekognitionError(aws_type, str(e.detail), 400))
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code, "http_error")
        body = {"error": {"type": "HTTPException", "code": code, "message": str(e.detail)}}
        return JSONResponse(body, e.status_code, getattr(e, "headers", None))

    async def auth(request: Request, _b: HTTPAuthorizationCredentials | None = Depends(_bearer),
                   _k: str | None = Depends(_x_api_key)) -> str | None:
        return await service.authenticate(key_from_request(request.headers, request.query_params))

    async def google_auth(request: Request, _b: HTTPAuthorizationCredentials | None = Depends(_bearer),
                          _k: str | None = Depends(_x_api_key), _g: str | None = Depends(_goog_key),
                          _q: str | None = Depends(_query_key)) -> str | None:
        return await service.authenticate(key_from_request(request.headers, request.query_params, google=True))

    async def deadline(request: Request) -> float:
        ms = settings.deadline_ms
        asked = request.headers.get("x-visor-deadline-ms")
        if asked:
            try:
                ms = min(ms, max(0.0, float(asked)))
            except ValueError:
                raise InvalidInput(f"X-Visor-Deadline-Ms must be a number of milliseconds, got {asked!r}") from None
        return monotonic_deadline(ms)

    # ------------------------------------------------------------------ health, metrics, models

    @app.get("/livez", tags=["health"], responses=docs.LIVEZ)
    async def livez() -> dict[str, str]:
        """The process is up (no key needed)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["health"], responses=docs.READYZ)
    async def readyz() -> JSONResponse:
        """Ready once the models are loaded (503 until then; no key needed). A model other than the classifier
        whose weights are not on this machine is listed under ``unavailable`` (its task answers 503)."""
        m = service.manager
        if m.ready:
            body: dict[str, Any] = {"status": "ready", "models": [x.name for x in m.models()]}
            if m.unavailable():  # configured, weights missing: their routes answer 503 with the fix
                body["unavailable"] = m.unavailable()
            return JSONResponse(body)
        if m.load_error is not None:
            return JSONResponse({"status": "failed", "error": str(m.load_error)}, 503)
        return JSONResponse({"status": "loading"}, 503, {"Retry-After": "2"})

    metrics_token = settings.metrics_token()

    async def metrics_auth(request: Request, _b: HTTPAuthorizationCredentials | None = Depends(_bearer),
                           _k: str | None = Depends(_x_api_key)) -> str | None:
        if settings.metrics_public:  # only allowed on loopback (ServeSettings checks)
            return None
        if metrics_token is not None and bearer_matches(request.headers, metrics_token):
            return None
        return await service.authenticate(key_from_request(request.headers, request.query_params))

    @app.get("/metrics", tags=["health"], response_class=Response, responses=docs.METRICS)
    async def metrics(_: str | None = Depends(metrics_auth)) -> Response:
        """Prometheus metrics: requests, latency, queue depth, batch sizes, loaded models; drift against the
        profile given with --drift-profile (visor_drift_*). Needs an API key, or the bearer token of
        --metrics-token-file (Prometheus: ``authorization: {credentials_file: ...}``); none with
        --metrics-public (loopback only)."""
        # off the event loop: the drift comparison behind the gauges takes ~0.15 s for a full window
        return Response(await run_in_threadpool(service.metrics.render), media_type=CONTENT_TYPE)

    @app.get("/v1/models", tags=["models"], responses=docs.MODELS)
    async def models(_: str | None = Depends(auth)) -> dict[str, Any]:
        """The models this service runs, with their weights' sha256."""
        return {"models": [m.to_dict() for m in service.manager.models()]}

    @app.get("/v1/drift", tags=["models"], responses=docs.DRIFT)
    async def drift(_: str | None = Depends(auth)) -> dict[str, Any]:
        """The last classify predictions compared with the drift profile (404 without --drift-profile;
        ``report`` is null before the first prediction). The same numbers as the visor_drift_* metrics."""
        return await run_in_threadpool(service.drift)

    # ------------------------------------------------------------------ recognition

    @app.post("/v1/classify", tags=["recognition"], openapi_extra=docs.images_body(docs.CLASSIFY_OPTIONS),
              responses=docs.CLASSIFY)
    async def classify(request: Request, key: str | None = Depends(auth), until: float = Depends(deadline),
                       top_k: int = Query(5, ge=1, le=1000, description="labels per image")) -> JSONResponse:
        """Image labels (ImageNet-1k by default), micro-batched with concurrent requests."""
        service.manager.check_admission("classification")  # shed load before parsing the body
        images, opts = await read_images(request, max_images=settings.max_images)
        options = ClassifyOptions.from_request(opts, top_k=top_k)
        return answer_response(await service.predict_route("classification", images, options, deadline=until,
                                                           key_name=key))

    @app.post("/v1/detect", tags=["recognition"], openapi_extra=docs.images_body(docs.DETECT_OPTIONS),
              responses=docs.DETECT)
    async def detect(request: Request, key: str | None = Depends(auth), until: float = Depends(deadline),
                     conf: float = Query(0.25, ge=0, le=1, description="minimum box score"),
                     iou: float = Query(0.45, ge=0, le=1, description="NMS IoU threshold")) -> JSONResponse:
        """Object detection with the service's detector (yolox_nano, COCO's 80 classes, unless --detector names
        another; 404 with --detector none)."""
        service.manager.check_admission("detection")
        images, opts = await read_images(request, max_images=settings.max_images)
        options = DetectOptions.from_request(opts, conf=conf, iou=iou)
        return answer_response(await service.predict_route("detection", images, options, deadline=until,
                                                           key_name=key))

    @app.post("/v1/segment", tags=["recognition"], openapi_extra=docs.images_body(docs.SEGMENT_OPTIONS),
              responses=docs.SEGMENT)
    async def segment(request: Request, key: str | None = Depends(auth), until: float = Depends(deadline),
                      format: str = Query("rle", description="rle: one COCO RLE per class in the JSON; png: the "  # noqa: A002
                                          "index mask as a base64 PNG (or the PNG itself with Accept: image/png)"),
                      ) -> Response:
        """Semantic segmentation with the service's segmenter (deeplabv3_voc, Pascal VOC's 21 classes, unless
        --segmenter names another; 404 with --segmenter none): a class per pixel at the image's size, with the
        pixel count of each class present. ``Accept: image/png`` with one image answers the index PNG itself
        (palette: Pascal VOC's), its class areas in the ``X-Visor-Areas`` header."""
        service.manager.check_admission("segmentation")
        raw = accepts_png(request.headers.get("accept", ""))
        images, opts = await read_images(request, max_images=settings.max_images)
        options = SegmentOptions.from_request(opts, format="png" if raw else format)
        if raw and (len(images) != 1 or options.format != "png"):
            raise NotAcceptable("Accept: image/png answers one image with its PNG mask: send one image (without "
                                "format=rle), or accept application/json")
        answer = await service.segment(images, options, deadline=until, key_name=key)
        if not raw or answer.status != 200:
            return answer_response(answer)
        return png_response(answer)

    # any other task the manager serves (a custom task registry's): the same pipeline, at the task's route
    for task in service.manager.served_tasks():
        spec = service.manager.tasks.get(task)
        if spec.route and task not in BUILTIN_ROUTES:
            _task_route(app, service, spec, auth, deadline)

    @app.post("/v1/annotate", tags=["recognition"], openapi_extra=docs.images_body(docs.ANNOTATE_OPTIONS),
              responses=docs.ANNOTATE)
    async def annotate(request: Request, key: str | None = Depends(auth), until: float = Depends(deadline),
                       features: str | None = Query(None, description="comma-separated: labels, objects, faces, "
                                                    "text, moderation, properties, crop_hints (the default), "
                                                    "segmentation"),
                       top_k: int = Query(5, ge=1, le=1000)) -> JSONResponse:
        """Every recognition feature in one document per image (the schema of ``visor annotate``)."""
        images, opts = await read_images(request, max_images=settings.max_images)
        wanted = list_option(opts, "features") or service.default_features()
        answer = await service.annotate(images, features=wanted, top_k=int_option(opts, "top_k", top_k, 1, 1000),
                                        deadline=until, key_name=key)
        return answer_response(answer)

    @app.post("/v1/search", tags=["search"], openapi_extra=docs.images_body(docs.SEARCH_OPTIONS),
              responses=docs.SEARCH)
    async def search(request: Request, _: str | None = Depends(auth), until: float = Depends(deadline),
                     k: int = Query(10, ge=1, le=1000, description="results per query image")) -> JSONResponse:
        """The indexed images most similar to each query image (needs `visor serve --index INDEX`)."""
        images, opts = await read_images(request, max_images=settings.max_images)
        return answer_response(await service.search(images, k=int_option(opts, "k", k, 1, 1000), deadline=until))

    @app.post(CLOUD_VISION_PATH, tags=["cloud vision"], responses=docs.CLOUD_VISION,
              openapi_extra=docs.CLOUD_VISION_BODY)
    async def images_annotate(request: Request, _: str | None = Depends(google_auth),
                              until: float = Depends(deadline),
                              alt: str | None = Query(None, alias="$alt",
                                                      description="`json;enum-encoding=int` for numeric enums"),
                              ) -> JSONResponse:
        """Google Cloud Vision v1 ``images:annotate``: the official clients work unchanged."""
        from visor.serve.cloudvision import INVALID_JSON, CloudVisionRequestError, int_enums_requested

        body = await read_json(request, error=CloudVisionRequestError, prefix=INVALID_JSON)
        return JSONResponse(await service.cloud_vision(body, int_enums=int_enums_requested(alt), deadline=until))

    # the DeepStack API (/v1/vision/...): Frigate, Home Assistant, Double Take... (visor.serve.deepstack)
    deepstack_routes(app, service)
    # the Amazon Rekognition API (POST /, X-Amz-Target; boto3 unchanged): visor.serve.rekognition
    rekognition_routes(app, service)

    # ------------------------------------------------------------------ face collections

    collection_name = Path(..., pattern=r"^[A-Za-z0-9_.\-]{1,255}$", description="collection name")
    person_name = Path(..., min_length=1, max_length=255, description="person name")

    @app.get("/v1/collections", tags=["faces"], responses=docs.COLLECTIONS)
    async def list_collections(_: str | None = Depends(auth)) -> dict[str, Any]:
        """Face collections with their number of people and faces."""
        return {"collections": await service.collections()}

    @app.post("/v1/collections", tags=["faces"], status_code=201, responses=docs.COLLECTION_CREATED,
              openapi_extra=docs.model_body(docs.NewCollection))
    async def create_collection(request: Request, _: str | None = Depends(auth)) -> dict[str, Any]:
        """Create an empty face collection (409 when it exists)."""
        body = await read_model(request, docs.NewCollection)  # in here, so the key is checked first
        await service.faces_call("create_collection", body.name)
        return {"name": body.name, "people": []}

    @app.get("/v1/collections/{name}", tags=["faces"], responses=docs.COLLECTION)
    async def get_collection(name: str = collection_name, _: str | None = Depends(auth)) -> dict[str, Any]:
        """The people enrolled in a collection."""
        return await service.collection(name)

    @app.delete("/v1/collections/{name}", tags=["faces"], status_code=204, response_class=Response,
                responses=docs.NOT_FOUND)
    async def delete_collection(name: str = collection_name, _: str | None = Depends(auth)) -> Response:
        """Delete a collection and everyone in it."""
        await service.faces_call("delete_collection", name)
        return Response(status_code=204)

    @app.post("/v1/collections/{name}/people/{person}", tags=["faces"], openapi_extra=docs.images_body({}),
              responses=docs.ENROLLED)
    async def enroll(request: Request, name: str = collection_name, person: str = person_name,
                     _: str | None = Depends(auth), until: float = Depends(deadline)) -> dict[str, Any]:
        """Enroll a person from photos that each show exactly one face."""
        images, _opts = await read_images(request, max_images=settings.max_images)
        added = await service.faces_call("enroll", name, person, [img.data for img in images],
                                         names=[img.name for img in images], deadline=until)
        return {"collection": name, "person": person, "faces_added": added}

    @app.delete("/v1/collections/{name}/people/{person}", tags=["faces"], status_code=204,
                response_class=Response, responses=docs.NOT_FOUND)
    async def remove_person(name: str = collection_name, person: str = person_name,
                            _: str | None = Depends(auth)) -> Response:
        """Remove a person and their stored faces."""
        await service.faces_call("remove_person", name, person)
        return Response(status_code=204)

    @app.post("/v1/collections/{name}/identify", tags=["faces"], openapi_extra=docs.images_body({}),
              responses=docs.IDENTIFY)
    async def identify(request: Request, name: str = collection_name, _: str | None = Depends(auth),
                       until: float = Depends(deadline),
                       threshold: float = Query(0.6, gt=0, le=2, description="largest match distance")
                       ) -> JSONResponse:
        """Who is in the image: each face with the nearest enrolled person, or "unknown"."""
        images, _opts = await read_images(request, max_images=settings.max_images)
        return answer_response(await service.identify(name, images, threshold=threshold, deadline=until))

    # ------------------------------------------------------------------ review queue

    @app.get("/v1/review/items", tags=["review"], responses=docs.REVIEW_LIST)
    async def review_items(status: str = Query("pending", description="pending, accepted, corrected, rejected, "
                                                "reviewed or all"),
                           limit: int = Query(50, ge=1, le=1000), offset: int = Query(0, ge=0, le=10**9),
                           _: str | None = Depends(auth)) -> dict[str, Any]:
        """Predictions waiting for (or given) a human decision, oldest first, with the queue's counts."""
        items = await run_in_threadpool(service.review.list, status, limit, offset)
        counts = await run_in_threadpool(service.review.counts)
        return {"items": [i.to_dict() for i in items], "counts": counts}

    @app.get("/v1/review/items/{item_id}", tags=["review"], responses=docs.REVIEW_ITEM)
    async def review_item(item_id: int = Path(..., ge=1, le=2**62), _: str | None = Depends(auth)
                          ) -> dict[str, Any]:
        """One review item."""
        return (await run_in_threadpool(service.review.get, item_id)).to_dict()

    @app.get("/v1/review/items/{item_id}/image", tags=["review"], response_class=Response,
             responses=docs.REVIEW_IMAGE)
    async def review_image(item_id: int = Path(..., ge=1, le=2**62), _: str | None = Depends(auth)) -> Response:
        """The stored image of a review item."""
        data, media_type = await run_in_threadpool(service.review.image, item_id)
        return Response(data, media_type=media_type)

    @app.post("/v1/review/items/{item_id}", tags=["review"], responses=docs.REVIEW_ITEM,
              openapi_extra=docs.model_body(docs.Decision, docs.DECISION_EXAMPLES))
    async def decide(request: Request, item_id: int = Path(..., ge=1, le=2**62), key: str | None = Depends(auth)
                     ) -> dict[str, Any]:
        """Accept the prediction, correct its label, or reject the item."""
        body = await read_model(request, docs.Decision)  # in here, so the key is checked first
        item = await run_in_threadpool(service.review.decide, item_id, body.action, body.label, key)
        return item.to_dict()

    # ------------------------------------------------------------------ watch events

    @app.get("/v1/events", tags=["events"], responses=EVENTS_LIST)
    async def events(limit: int = Query(100, ge=1, le=1000), rule: str | None = Query(None, max_length=255),
                     _: str | None = Depends(auth)) -> list[dict[str, Any]]:
        """The events `visor watch` stored, newest first (of one rule with `rule`)."""
        return await run_in_threadpool(service.events.list, limit, rule)

    @app.get("/v1/events/{event_id}/snapshot", tags=["events"], response_class=Response,
             responses=EVENT_SNAPSHOT)
    async def event_snapshot(event_id: str = Path(..., max_length=64), _: str | None = Depends(auth)) -> Response:
        """The annotated frame stored with an event (JPEG)."""
        data = await run_in_threadpool(service.events.snapshot, event_id)
        if data is None:
            raise EventNotFound(f"no snapshot for event {event_id!r}")
        return Response(data, media_type="image/jpeg")

    # ------------------------------------------------------------------ web UI

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    static = resources.files("visor.serve") / "static"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        # the assets come from the package: the docs work on a server without internet access
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="visor API", swagger_js_url=DOCS_ASSETS
                                   + "/swagger-ui-bundle.js", swagger_css_url=DOCS_ASSETS + "/swagger-ui.css",
                                   swagger_favicon_url="/ui/favicon.svg",
                                   swagger_ui_parameters={"validatorUrl": None})  # no validator.swagger.io badge

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title="visor API", redoc_js_url=DOCS_ASSETS
                              + "/redoc.standalone.js", redoc_favicon_url="/ui/favicon.svg", with_google_fonts=False)

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(static / "docs")), name="docs-assets")
    app.mount("/ui", StaticFiles(directory=str(static), html=True), name="ui")
    return app


def _task_route(app: FastAPI, service: VisorService, spec: Any, auth: Any, deadline: Any) -> None:
    """``POST spec.route`` for a task of the registry that has no route of its own here: images and the
    task's options (``spec.options``) in, :meth:`VisorService.predict_route` out."""
    settings = service.settings

    async def route(request: Request, key: str | None = Depends(auth), until: float = Depends(deadline)
                    ) -> JSONResponse:
        service.manager.check_admission(spec.name)
        images, opts = await read_images(request, max_images=settings.max_images)
        options = task_options(spec.name, spec.options, opts)
        return answer_response(await service.predict_route(spec.name, images, options, deadline=until,
                                                           key_name=key))

    app.add_api_route(spec.route, route, methods=["POST"], tags=["recognition"], name=spec.name,
                      description=spec.description or f"the {spec.name} task",
                      openapi_extra=docs.images_body({name: {} for name in spec.options}),
                      responses={200: {"description": f"one {spec.name} result per image"}})


async def _purge_loop(service: VisorService) -> None:
    while True:
        if service.settings.log_predictions:
            try:
                removed = await asyncio.to_thread(service.purge_predictions)
                if removed:
                    log.info("removed %d logged predictions past the retention period", removed)
            except Exception:
                log.exception("purging old predictions failed")
        await asyncio.sleep(PURGE_EVERY_S)


def create_app_from_env() -> FastAPI:
    """The app factory for ``uvicorn --factory`` worker processes."""
    raw = os.environ.get(SETTINGS_ENV)
    return create_app(ServeSettings.from_dict(json.loads(raw)) if raw else ServeSettings())
