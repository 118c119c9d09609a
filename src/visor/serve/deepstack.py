"""The DeepStack API (``/v1/vision/...``) on visor's models: what Frigate, Home Assistant, Double Take,
Blue Iris, Agent DVR and Node-RED call.

Requests are multipart forms (file field ``image``; ``/face/register`` takes every file field whose name
starts with ``image``, as deepstack-sdk sends them; ``/face/match`` takes ``image1`` and ``image2``), with
the API key in the form field ``api_key`` (visor's ``Authorization: Bearer`` / ``X-API-Key`` headers work
too), checked against visor's hashed keys. ``visor serve --no-keys`` stays loopback-only as for every route.

Answers are DeepStack's: ``{"success": true, ..., "duration": 0}`` (DeepStack never set it); errors
``{"success": false, "error": "...", "duration": 0}`` with the status DeepStack's clients check:
400 a missing or undecodable image (also a format visor does not read, visor's 415 elsewhere) or a bad
option, 401 a missing or wrong key, 404 an unknown custom model or a route without its model, 413 a body
over the cap, 503 while the models load, when full, or for a ``--custom`` model that does not load, 504
past the deadline. Never a 500 for a request's content.

Routes:

- ``POST /v1/vision/detection`` (``min_confidence``, default 0.4): the service's detector (``--detector``,
  default ``yolox_nano``, COCO names) through the same micro-batched pipeline as ``/v1/detect``
  (:meth:`ModelManager.predict`: admission, decoder threads, micro-batcher); unlike ``/v1/detect`` it does
  not feed the review queue or the prediction log. ``predictions: [{label, confidence, x_min, y_min,
  x_max, y_max}]``, best first, the box in whole pixels of the original image (DeepStack answered integers).
- ``POST /v1/vision/custom/{model}``: a model given with ``visor serve --custom NAME=PATH`` (a run folder,
  a ``card.json`` or an ``.onnx``; anything :func:`visor.load` reads), loaded at the first request of it.
  A detector answers as ``/detection``; a classifier as DeepStack's custom classification did
  (``{"success": true, "label", "confidence", "predictions": [{"label", "confidence"}]}``, the top labels
  with at least ``min_confidence``, best first).
- ``POST /v1/vision/face`` (and ``/face/``, DeepStack's own path): faces with boxes (``predictions:
  [{confidence, x_min, ...}]``); ``min_confidence`` filters on the face detector's score (default: none
  beyond visor's face detector's own threshold).
- ``POST /v1/vision/face/register`` (``userid``, one or more image files under any field names, each
  showing one face; a userid registered before gains the new photos, where DeepStack replaced them),
  ``/face/recognize`` (``min_confidence``, default :data:`DEFAULT_FACE_CONFIDENCE`; below it a face is
  ``"unknown"``), ``/face/list`` (``faces: [userid]``), ``/face/delete`` (``userid``), ``/face/match``
  (``similarity`` of the largest face in each of two image files, e.g. ``image1`` and ``image2``).

  All on ONE visor face collection per server, :data:`COLLECTION` (``"deepstack"``) in the service's faces
  database (``--faces-db``), so registrations survive restarts and show in ``/v1/collections`` and the web
  UI. Face confidence is ``1 - distance / 1.2`` of dlib's euclidean embedding distance, clipped to [0, 1]:
  0.5 is dlib's operating point (distance 0.6); deepstack-python's default 0.45 accepts up to 0.66.

- ``POST /v1/vision/scene``: DeepStack ran a Places365 scene model, which visor does not have. visor answers
  with its honest best label instead: the top ImageNet-1k label of the service's classifier
  (``{"success": true, "label": "...", "confidence": ...}``), not a scene category. Clients get DeepStack's
  shape; what the label means differs, and the docs must say so.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from visor.errors import InvalidInput, ModelNotFound, VisorError
from visor.serve.auth import key_from_request
from visor.serve.inputs import MAX_NUMBER_CHARS
from visor.serve.manager import ModelUnavailable, monotonic_deadline

#: The face collection the DeepStack face routes use (one per server, in its faces database).
COLLECTION = "deepstack"
#: Where the DeepStack routes live; errors under it answer in DeepStack's shape.
PREFIX = "/v1/vision"
#: DeepStack's default ``min_confidence`` of object detection.
DEFAULT_DETECTION_CONFIDENCE = 0.4
#: The default ``min_confidence`` of face recognition: dlib's operating point (distance 0.6).
DEFAULT_FACE_CONFIDENCE = 0.5
#: Face distance -> confidence: ``1 - distance / DISTANCE_SCALE`` (clipped to [0, 1]).
DISTANCE_SCALE = 1.2
UNKNOWN = "unknown"
MAX_FIELDS = 64


_ERROR = {"application/json": {"schema": {"type": "object", "required": ["success", "error"], "properties": {
    "success": {"type": "boolean", "enum": [False]}, "error": {"type": "string"}}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "DeepStack's answer: {\"success\": true, ...}"},
    400: {"description": "no image, an undecodable one, or a bad option", "content": _ERROR},
    401: {"description": "a missing or wrong api_key", "content": _ERROR},
    404: {"description": "an unknown custom model, or no model for the route", "content": _ERROR},
}
_CONFIDENCE = {"min_confidence": {"type": "number", "minimum": 0, "maximum": 1}}
_USERID = {"userid": {"type": "string", "minLength": 1, "maxLength": 255}}


def form_body(files: tuple[str, ...], fields: dict[str, Any], path: str = "") -> dict[str, Any]:
    """The OpenAPI request body of a DeepStack route: a multipart form with ``files`` and text ``fields``
    (and the ``{model}`` path parameter where ``path`` has it)."""
    props = {name: {"type": "string", "format": "binary"} for name in files}
    props.update({"api_key": {"type": "string", "description": "an API key from `visor keys create`"}, **fields})
    out: dict[str, Any] = {"requestBody": {"required": bool(files), "content": {"multipart/form-data": {"schema": {
        "type": "object", "required": list(files), "properties": props}}}}}
    if "{model}" in path:
        out["parameters"] = [{"name": "model", "in": "path", "required": True, "description": "the --custom name",
                              "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"}}]
    return out


class BadImage(InvalidInput):
    """No image in the request, or one that does not decode (HTTP 400)."""


def is_deepstack_path(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def error_body(message: str) -> dict[str, Any]:
    return {"success": False, "error": message, "duration": 0}


def error_json(e: VisorError) -> JSONResponse:
    """A typed error in DeepStack's shape, with visor's status (and ``Retry-After`` where it has one); an
    image in a format visor does not read (visor's 415) is DeepStack's 400, "Invalid image" to its clients."""
    headers = {"Retry-After": str(int(e.retry_after))} if getattr(e, "retry_after", None) else None
    status = 400 if e.http_status == 415 else e.http_status
    return JSONResponse(error_body(str(e)), status, headers)


def face_confidence(distance: float) -> float:
    """dlib's euclidean embedding distance as a DeepStack confidence in [0, 1] (1: identical)."""
    if not math.isfinite(distance):
        return 0.0
    return float(min(1.0, max(0.0, 1.0 - distance / DISTANCE_SCALE)))


def _confidence_option(fields: dict[str, str], name: str, default: float) -> float:
    raw = fields.get(name)
    if raw is None or not str(raw).strip():
        return default
    value = math.nan
    if len(raw) <= MAX_NUMBER_CHARS:
        with contextlib.suppress(ValueError):
            value = float(raw)
    if not 0.0 <= value <= 1.0:  # NaN fails too
        raise InvalidInput(f"{name} must be a number between 0 and 1, got {raw[:40]!r}")
    return value


def _box(xyxy: Any) -> dict[str, int]:
    x0, y0, x1, y1 = (max(0, round(float(v))) for v in xyxy)
    return {"x_min": x0, "y_min": y0, "x_max": x1, "y_max": y1}


def detections_json(result: Any, min_confidence: float = 0.0) -> list[dict[str, Any]]:
    """A :class:`~visor.types.Detections` as DeepStack's predictions (label, confidence, integer box), best
    first: Frigate stops reading at the first prediction under its 0.4 floor."""
    names = result.data.get("class_name")
    out = []
    for i in np.argsort(-np.asarray(result.confidence, np.float64), kind="stable"):
        conf = float(result.confidence[i])
        if conf < min_confidence:
            continue
        label = str(names[i]) if names is not None else str(int(result.class_id[i]))
        out.append({"label": label, "confidence": round(conf, 6), **_box(result.xyxy[i])})
    return out


class Form:
    """A parsed DeepStack request: its text fields and its image files (name, bytes), in order."""

    def __init__(self, fields: dict[str, str], files: list[tuple[str, bytes]]) -> None:
        self.fields = fields
        self.files = files

    def image(self, name: str = "image") -> bytes:
        for field, data in self.files:
            if field == name:
                if not data:
                    raise BadImage(f"the file field {name!r} is empty")
                return data
        raise BadImage(f"no image: send the picture in the multipart file field {name!r}")

    def images(self) -> list[bytes]:
        """Every file of the form, whatever its field's name (DeepStack read them all: deepstack-sdk names
        them ``image<uuid>``)."""
        found = [data for _field, data in self.files]
        if not found:
            raise BadImage("no image: send the pictures as multipart files (e.g. field 'image')")
        if any(not d for d in found):
            raise BadImage("an image file is empty")
        return found


async def read_form(request: Request, max_files: int) -> Form:
    """The multipart (or url-encoded) form of a DeepStack request; 400 for anything else."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        if ctype == "" and not await request.body():
            return Form({}, [])
        raise InvalidInput(f"unsupported content type {ctype!r}: DeepStack requests are multipart/form-data "
                           "(file field 'image', form field 'api_key')")
    try:
        form = await request.form(max_files=max_files, max_fields=MAX_FIELDS)
    except (HTTPException, MultiPartException) as e:  # a malformed form: the client's fault
        raise InvalidInput(f"the form could not be read: {getattr(e, 'detail', None) or e}") from None
    fields: dict[str, str] = {}
    files: list[tuple[str, bytes]] = []
    try:
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                files.append((key, await value.read()))
            else:
                fields[key] = value
    finally:
        await form.close()
    return Form(fields, files)


class CustomModels:
    """The ``--custom NAME=PATH`` models, each loaded by :func:`visor.load` at its first request."""

    def __init__(self, paths: dict[str, str], settings: Any) -> None:
        self.paths = dict(paths)
        self.settings = settings
        self._loaded: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> Any:
        if name not in self.paths:
            known = ", ".join(sorted(self.paths)) or "none (start visor serve with --custom NAME=PATH)"
            raise ModelNotFound(f"no custom model {name!r}; this server has: {known}")
        with self._lock:
            if name not in self._loaded:
                from visor.models import load

                s = self.settings
                try:
                    self._loaded[name] = load(self.paths[name], limits=s.limits, threads=s.threads, spin=False)
                except VisorError as e:  # the server's configuration, not the request: 503 with the reason
                    raise ModelUnavailable(f"custom model {name!r} ({self.paths[name]}) could not be loaded: "
                                           f"{e}; fix --custom and restart the service") from None
            return self._loaded[name]


def register(app: FastAPI, service: Any) -> None:
    """Add the DeepStack routes to ``app`` (``service``: the app's :class:`VisorService`)."""
    settings = service.settings
    manager = service.manager
    customs = CustomModels(dict(getattr(settings, "custom", None) or {}), settings)
    max_files = settings.max_images + 1

    def route(path: str, handler: Callable[..., Any], summary: str, fields: dict[str, Any] | None = None,
              files: tuple[str, ...] = ("image",)) -> None:
        async def endpoint(request: Request) -> JSONResponse:
            try:
                form = await read_form(request, max_files)
                key = form.fields.get("api_key") or key_from_request(request.headers, request.query_params)
                await service.authenticate(key or None)
                body = await handler(request, form, monotonic_deadline(settings.deadline_ms))
            except VisorError as e:
                return error_json(e)
            return JSONResponse({"success": True, **body, "duration": 0})

        endpoint.__name__ = "deepstack_" + path.replace("/", "_").replace("{", "").replace("}", "").strip("_") + (
            "_slash" if path.endswith("/") else "")
        app.add_api_route(PREFIX + path, endpoint, methods=["POST"], tags=["deepstack"], summary=summary,
                          description=summary + " (DeepStack API: multipart form, file field 'image', form field "
                          "'api_key'; see visor.serve.deepstack).", openapi_extra=form_body(files, fields or {}, path),
                          responses=RESPONSES)

    # ------------------------------------------------------------------ objects

    async def detection(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        conf = _confidence_option(form.fields, "min_confidence", DEFAULT_DETECTION_CONFIDENCE)
        manager.check_admission("detection")
        data = form.image()
        result = await manager.predict("detection", data, deadline, conf=conf)
        return {"predictions": detections_json(result, conf)}

    async def custom(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        name = request.path_params["model"]
        model = await run_in_threadpool(customs.get, name)
        task = model.card.task
        default = DEFAULT_DETECTION_CONFIDENCE if task == "detection" else 0.0
        conf = _confidence_option(form.fields, "min_confidence", default)
        data = form.image()
        if task == "detection":
            result = await run_in_threadpool(lambda: model.predict(data, conf=conf))
            return {"predictions": detections_json(result, conf)}
        if task == "classification":
            result = await run_in_threadpool(lambda: model.predict(data, top_k=min(5, len(model.labels))))
            preds = [{"label": str(lab), "confidence": round(float(c), 6)}
                     for lab, c in zip(result.label, result.confidence, strict=True) if float(c) >= conf]
            top = preds[0] if preds else {"label": UNKNOWN, "confidence": 0.0}
            return {**top, "predictions": preds}
        raise ModelNotFound(f"custom model {name!r} is a {task} model; DeepStack's custom route serves "
                            "detectors and classifiers")

    async def scene(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        data = form.image()
        result = await manager.predict("classification", data, deadline, top_k=1)
        top = result.top or (UNKNOWN, 0.0)
        return {"label": top[0], "confidence": round(float(top[1]), 6)}

    # ------------------------------------------------------------------ faces

    def store() -> Any:
        faces = service.faces()
        if COLLECTION not in faces.list_collections():
            from visor.faces.collections import CollectionExists

            with contextlib.suppress(CollectionExists):  # another request created it meanwhile
                faces.create_collection(COLLECTION)
        return faces

    async def face_call(fn: Callable[[Any], Any], deadline: float) -> Any:
        faces = await run_in_threadpool(store)

        def call() -> Any:
            with manager.annotate_lock:  # dlib runs one call at a time (shared with annotate's faces)
                if time.monotonic() >= deadline:
                    from visor.serve.batcher import DeadlineExceeded

                    raise DeadlineExceeded("the request's deadline passed while waiting for the face model")
                return fn(faces)

        return await run_in_threadpool(call)

    async def face_detect(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        conf = _confidence_option(form.fields, "min_confidence", 0.0)
        data = form.image()
        faces = await face_call(lambda s: s.analyzer.detect(data, **s.detect_kwargs), deadline)
        preds = []
        for i in range(len(faces)):
            c = float(faces.confidence[i])
            c = 1.0 if not math.isfinite(c) else c
            if c >= conf:
                preds.append({"confidence": round(c, 6), **_box(faces.xyxy[i])})
        return {"predictions": preds}

    async def face_register(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        userid = (form.fields.get("userid") or "").strip()
        if not userid:
            raise InvalidInput("userid is required: the name to register the face under")
        if userid.lower() == UNKNOWN:
            raise InvalidInput(f"userid {userid!r} is reserved for faces that match nobody")
        images = form.images()
        names = [f"{userid}-{i}" for i in range(len(images))]
        await face_call(lambda s: s.enroll(COLLECTION, userid, images, create=True, names=names), deadline)
        return {"message": "face added"}

    async def face_recognize(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        conf = _confidence_option(form.fields, "min_confidence", DEFAULT_FACE_CONFIDENCE)
        data = form.image()
        # every face with its nearest person, at any distance; the confidence threshold decides below
        faces = await face_call(lambda s: s.identify(COLLECTION, data, threshold=math.inf, top_k=1), deadline)
        preds = []
        for i in range(len(faces)):
            c = face_confidence(float(faces.data["distance"][i]))
            name = str(faces.data["name"][i])
            known = c >= conf and name != UNKNOWN
            preds.append({"userid": name if known else UNKNOWN, "confidence": round(c if known else 0.0, 6),
                          **_box(faces.xyxy[i])})
        return {"predictions": preds}

    async def face_list(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        faces = await run_in_threadpool(store)
        return {"faces": await run_in_threadpool(faces.list_people, COLLECTION)}

    async def face_delete(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        from visor.faces.collections import PersonNotFound

        userid = (form.fields.get("userid") or "").strip()
        if not userid:
            raise InvalidInput("userid is required: the name to delete")
        faces = await run_in_threadpool(store)
        with contextlib.suppress(PersonNotFound):  # as DeepStack: deleting someone not registered is no error
            await run_in_threadpool(faces.remove_person, COLLECTION, userid)
        return {}

    async def face_match(request: Request, form: Form, deadline: float) -> dict[str, Any]:
        images = form.images()  # two files, any field names (DeepStack's demo sends image1 and image2)
        if len(images) != 2:
            raise BadImage(f"expected two image files, got {len(images)}")
        first, second = images

        def similarity(s: Any) -> float:
            a = s.analyzer.embed_largest(first, **s.detect_kwargs)
            b = s.analyzer.embed_largest(second, **s.detect_kwargs)
            return face_confidence(float(np.linalg.norm(np.asarray(a) - np.asarray(b))))

        return {"similarity": round(await face_call(similarity, deadline), 6)}

    route("/detection", detection, "Objects in the image (COCO names)", _CONFIDENCE)
    route("/custom/{model}", custom, "A --custom model's detections or labels", _CONFIDENCE)
    route("/scene", scene, "The classifier's top ImageNet label (not a Places365 scene)")
    route("/face", face_detect, "Faces with boxes", _CONFIDENCE)
    route("/face/", face_detect, "Faces with boxes (DeepStack's own path)", _CONFIDENCE)
    route("/face/register", face_register, "Register photos of one person (userid)", _USERID)
    route("/face/recognize", face_recognize, "Who is in the image", _CONFIDENCE)
    route("/face/list", face_list, "The registered userids", files=())
    route("/face/delete", face_delete, "Forget a userid", _USERID, files=())
    route("/face/match", face_match, "The similarity of the faces in image1 and image2", files=("image1", "image2"))


__all__ = ["COLLECTION", "DEFAULT_FACE_CONFIDENCE", "PREFIX", "CustomModels", "detections_json", "error_body",
           "face_confidence", "is_deepstack_path", "register"]
