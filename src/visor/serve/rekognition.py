"""The Amazon Rekognition API (AWS JSON 1.1) on visor's models: ``boto3.client("rekognition", endpoint_url=...)``
works unchanged against ``visor serve``.

Protocol: ``POST /`` with ``X-Amz-Target: RekognitionService.<Operation>`` and a JSON body
(``Content-Type: application/x-amz-json-1.1``), as botocore sends it. Requests are signed with AWS Signature
Version 4 by keys from ``visor keys create --aws`` and verified by :func:`visor.serve.awsauth.verify_sigv4`
(signature, date within 5 minutes, region ``visor serve --aws-region`` and service ``rekognition``), then
counted by the service's per-key rate limiter. ``visor serve --no-keys`` (loopback only) skips the check.

Every answer carries ``x-amzn-RequestId``. Errors are AWS's: ``{"__type": CODE, "message": ...}`` with header
``x-amzn-ErrorType``, status 400 for the modelled exceptions (botocore raises ``client.exceptions.<CODE>``),
403 for the signature errors, never a 5xx for a request's content:

==========================================  ==============================================================
visor                                        Rekognition
==========================================  ==============================================================
body not JSON, not an object                 ``SerializationException``
unknown or missing ``X-Amz-Target``          ``UnknownOperationException``
params against the operation's input shape   ``InvalidParameterException`` (botocore's validator report,
                                             plus the model's max / pattern / enum constraints)
``Image.S3Object``                           ``InvalidS3ObjectException`` (visor never fetches from S3)
``Image.Bytes`` over 5,242,880 bytes         ``ImageTooLargeException`` (also a body over the server's cap)
undecodable / unsupported image              ``InvalidImageFormatException``
missing collection / FaceId                  ``ResourceNotFoundException``
existing collection                          ``ResourceAlreadyExistsException``
no face where one is needed                  ``InvalidParameterException`` "There are no faces in the image.
                                             Should be at least 1."
rate limit (429), deadline (504), models     ``ThrottlingException``
loading (503)
queue full (visor's 503 ``overloaded``)      ``ProvisionedThroughputExceededException``
a model whose weights are missing            ``ServiceUnavailableException`` (503: the server's setup)
==========================================  ==============================================================

The operations and how visor answers each: :mod:`visor.serve.rekognition_translate`.

Model versions are strings naming visor's models (``FaceModelVersion`` :data:`visor.faces.indexed.FACE_MODEL_VERSION`).
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import Request

from visor.errors import VisorError
from visor.serve.rekognition_translate import (
    ACCOUNT_ID,
    DEFAULT_LABEL_CONFIDENCE,
    DEFAULT_MODERATION_CONFIDENCE,
    MODERATION_TAXONOMY,
    bounding_box,
    collection_arn,
    compared_face,
    detect_labels,
    epoch,
    face_detail,
    face_json,
    label_parents,
    landmarks,
    moderation_labels,
    percent,
    pose,
    text_detections,
)

#: The ``X-Amz-Target`` prefix of Rekognition's operations.
TARGET_PREFIX = "RekognitionService."
#: Where the API lives: errors there answer in AWS's shape.
PATH = "/"
JSON_TYPE = "application/x-amz-json-1.1"
#: Rekognition's limit on ``Image.Bytes`` (decoded).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_FACES = 80
NO_FACE = "There are no faces in the image. Should be at least 1."
NO_S3 = "visor does not fetch from S3: send the image itself in Image.Bytes"
#: The operations visor answers.
OPERATIONS: tuple[str, ...] = (
    "DetectLabels", "DetectFaces", "CompareFaces", "CreateCollection", "ListCollections", "DescribeCollection",
    "DeleteCollection", "IndexFaces", "ListFaces", "SearchFaces", "SearchFacesByImage", "DeleteFaces", "DetectText",
    "DetectModerationLabels",
)
# visor error codes -> (Rekognition error, status)
_BY_CODE: dict[str, tuple[str, int]] = {
    "corrupt_image": ("InvalidImageFormatException", 400),
    "unsupported_format": ("InvalidImageFormatException", 400),
    "image_too_large": ("ImageTooLargeException", 400),
    "payload_too_large": ("ImageTooLargeException", 400),
    "collection_not_found": ("ResourceNotFoundException", 400),
    "face_not_found": ("ResourceNotFoundException", 400),
    "collection_exists": ("ResourceAlreadyExistsException", 400),
    "invalid_pagination_token": ("InvalidPaginationTokenException", 400),
    "rate_limited": ("ThrottlingException", 400),
    "deadline_exceeded": ("ThrottlingException", 400),
    "loading": ("ThrottlingException", 400),
    "shutting_down": ("ThrottlingException", 400),
    "overloaded": ("ProvisionedThroughputExceededException", 400),
    "model_unavailable": ("ServiceUnavailableException", 503),
    "weights_not_cached": ("ServiceUnavailableException", 503),
    "unauthorized": ("UnrecognizedClientException", 403),
}


class RekognitionError(VisorError):
    """An error answered in Rekognition's shape: ``aws_type`` is the ``__type`` botocore maps to its
    modelled exception (HTTP 400 unless given)."""

    http_status = 400
    code = "rekognition"

    def __init__(self, aws_type: str, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.aws_type = aws_type
        self.http_status = int(http_status)


def invalid(message: str) -> RekognitionError:
    return RekognitionError("InvalidParameterException", message)


def aws_error(e: BaseException) -> tuple[str, str, int]:
    """``(__type, message, HTTP status)`` of an error as Rekognition answers it."""
    message = str(e)
    aws_type = getattr(e, "aws_type", None)
    if isinstance(aws_type, str) and aws_type:
        return aws_type, message, int(getattr(e, "http_status", 400))
    code = str(getattr(e, "code", ""))
    if code in _BY_CODE:
        aws_type, status = _BY_CODE[code]
        return aws_type, message, status
    status = int(getattr(e, "http_status", 500))
    if status in (429, 503, 504):
        return "ThrottlingException", message, 400
    if 400 <= status < 500:
        return "InvalidParameterException", message, 400
    return "InternalServerError", message or "internal error", 500


def _headers(request_id: str) -> dict[str, str]:
    return {"x-amzn-RequestId": request_id}


def error_response(e: BaseException, request_id: str | None = None) -> Any:
    """A JSONResponse in AWS's error shape (``__type``, ``message``; ``x-amzn-ErrorType``)."""
    from fastapi.responses import Response

    aws_type, message, status = aws_error(e)
    headers = {**_headers(request_id or str(uuid.uuid4())), "x-amzn-ErrorType": f"{aws_type}:"}
    body = json.dumps({"__type": aws_type, "message": message}, ensure_ascii=False)
    return Response(body, status, headers, media_type=JSON_TYPE)


def ok_response(body: Mapping[str, Any], request_id: str) -> Any:
    from fastapi.responses import Response

    return Response(json.dumps(body, ensure_ascii=False, allow_nan=False), 200, _headers(request_id),
                    media_type=JSON_TYPE)


# --------------------------------------------------------------------------- the service model


@functools.cache
def service_model() -> Any:
    """botocore's Rekognition service model (read once)."""
    import botocore.session

    return botocore.session.get_session().get_service_model("rekognition")


def operation_from(target: str | None) -> str:
    """The operation named by ``X-Amz-Target``; :class:`RekognitionError` (400) otherwise."""
    if not target:
        raise RekognitionError("UnknownOperationException", "no X-Amz-Target header: send "
                               "'X-Amz-Target: RekognitionService.<Operation>' (as the AWS SDKs do)")
    name = target[len(TARGET_PREFIX):] if target.startswith(TARGET_PREFIX) else ""
    if name not in OPERATIONS:
        shown = target if len(target) <= 80 else target[:77] + "..."
        raise RekognitionError("UnknownOperationException", f"visor does not answer {shown!r}; it answers "
                               + ", ".join(TARGET_PREFIX + op for op in OPERATIONS))
    return name


def parse_body(raw: bytes) -> dict[str, Any]:
    from visor.serve.inputs import load_json

    class _Bad(RekognitionError):
        def __init__(self, message: str) -> None:
            super().__init__("SerializationException", message)

    body = load_json(raw or b"{}", error=_Bad, prefix="The request body is not valid JSON.")
    if not isinstance(body, dict):
        raise RekognitionError("SerializationException", "the request body must be a JSON object")
    return body


def _constraint_errors(value: Any, shape: Any, where: str, out: list[str]) -> None:
    """What botocore's validator leaves out: max lengths and values, float ranges, patterns and enums."""
    meta = shape.metadata
    kind = shape.type_name
    if kind == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value and value[name] is not None:
                _constraint_errors(value[name], member, f"{where}.{name}", out)
    elif kind == "list" and isinstance(value, list):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{where}: at most {meta['max']} items, got {len(value)}")
        for i, item in enumerate(value[:10_000]):
            _constraint_errors(item, shape.member, f"{where}[{i}]", out)
    elif kind == "string" and isinstance(value, str):
        if "max" in meta and len(value) > meta["max"]:
            out.append(f"{where}: at most {meta['max']} characters, got {len(value)}")
        enum = getattr(shape, "enum", None) or []
        if enum and value not in enum:
            out.append(f"{where}: {value[:40]!r} is not one of {', '.join(enum)}")
        pattern = meta.get("pattern")
        if pattern and not enum and not _fullmatch(pattern, value):
            out.append(f"{where}: {value[:40]!r} does not match {pattern}")
    elif kind in ("integer", "long", "float", "double") and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        if not math.isfinite(float(value)):
            out.append(f"{where}: must be a finite number")
        elif "max" in meta and value > meta["max"]:
            out.append(f"{where}: at most {meta['max']}, got {value}")
        elif "min" in meta and value < meta["min"]:
            out.append(f"{where}: at least {meta['min']}, got {value}")


@functools.lru_cache(maxsize=64)
def _pattern(pattern: str) -> re.Pattern[str] | None:
    try:
        return re.compile(pattern)
    except re.error:
        return None


def _fullmatch(pattern: str, value: str) -> bool:
    compiled = _pattern(pattern)
    return compiled is None or compiled.fullmatch(value) is not None


def validate(params: Mapping[str, Any], shape: Any, *, output: bool = False) -> str:
    """botocore's validator report for ``params`` against ``shape`` plus the model's constraints it does
    not check ("" when valid). ``output``: an answer's raw JSON (images are not base64 there)."""
    from botocore.validate import ParamValidator

    report = ParamValidator().validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    extra: list[str] = []
    checked = dict(params)
    if not output:  # Image.Bytes is base64 in the JSON: its size is checked decoded (ImageTooLargeException)
        for key in ("Image", "SourceImage", "TargetImage"):
            if isinstance(checked.get(key), dict):
                checked[key] = {k: v for k, v in checked[key].items() if k != "Bytes"}
    _constraint_errors(checked, shape, "params" if not output else "output", extra)
    return "\n".join(problems + extra)


def validate_input(operation: str, params: Mapping[str, Any]) -> None:
    report = validate(params, service_model().operation_model(operation).input_shape)
    if report:
        raise invalid(report)


def validate_output(operation: str, body: Mapping[str, Any]) -> str:
    """The problems of an answer's raw JSON against the operation's output shape ("" when none)."""
    return validate(body, service_model().operation_model(operation).output_shape, output=True)


def image_bytes(params: Mapping[str, Any], field: str = "Image") -> bytes:
    """The decoded ``Image.Bytes`` of a request (``field``: ``Image``, ``SourceImage``, ``TargetImage``)."""
    from visor.serve.inputs import strict_b64decode

    image = params.get(field) or {}
    if image.get("S3Object") is not None:
        raise RekognitionError("InvalidS3ObjectException", NO_S3)
    content = image.get("Bytes")
    if not content:
        raise invalid(f"{field}.Bytes is required: the image's bytes, base64-encoded in the JSON")
    if len(content) > (MAX_IMAGE_BYTES * 4) // 3 + 8:
        raise RekognitionError("ImageTooLargeException", f"{field}.Bytes is over Rekognition's limit of "
                               f"{MAX_IMAGE_BYTES} bytes")
    try:
        data = strict_b64decode(content)
    except (binascii.Error, ValueError):
        raise invalid(f"{field}.Bytes is not valid base64") from None
    if len(data) > MAX_IMAGE_BYTES:
        raise RekognitionError("ImageTooLargeException", f"{field}.Bytes is {len(data)} bytes, over Rekognition's "
                               f"limit of {MAX_IMAGE_BYTES}")
    if not data:
        raise invalid(f"{field}.Bytes is empty")
    return data


def page_token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode()).decode().rstrip("=")


def read_page_token(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, ValueError):
        raise RekognitionError("InvalidPaginationTokenException", "NextToken is not one visor gave") from None


def _feature(doc: Mapping[str, Any], feature: str) -> dict[str, Any]:
    """One feature's result of an annotate document, or its error raised in Rekognition's terms."""
    result = doc.get(feature)
    if not isinstance(result, dict):
        raise RekognitionError("InternalServerError", f"no {feature} result", 500)
    if "error" in result:
        error = result["error"] if isinstance(result["error"], dict) else {"message": str(result["error"])}
        e = VisorError(str(error.get("message", "failed")))
        e.code = str(error.get("code", ""))
        aws_type, message, status = aws_error(e)
        if aws_type == "InternalServerError":
            aws_type, status = "ServiceUnavailableException", 503
        raise RekognitionError(aws_type, message, status)
    return result


# --------------------------------------------------------------------------- routes


def _float(params: Mapping[str, Any], name: str, default: float) -> float:
    value = params.get(name)
    return default if value is None else float(value)


def register(app: Any, service: Any) -> None:
    """Add ``POST /`` (the Rekognition operations, dispatched on ``X-Amz-Target``) to ``app``."""
    from starlette.concurrency import run_in_threadpool

    from visor.serve.manager import check_deadline, monotonic_deadline

    settings = service.settings
    manager = service.manager
    region = getattr(settings, "aws_region", "us-east-1")

    async def annotate(data: bytes, features: tuple[str, ...], deadline: float, top_k: int = 5) -> dict[str, Any]:
        def run() -> dict[str, Any]:
            check_deadline(deadline)
            return manager.annotate(data, features, top_k=top_k, deadline=deadline)

        return await run_in_threadpool(run)

    async def faces(fn: Callable[[Any], Any], deadline: float, *, dlib: bool = True) -> Any:
        index = await run_in_threadpool(service.face_index)

        def call() -> Any:
            if not dlib:
                return fn(index)
            with manager.annotate_lock:  # dlib runs one call at a time (shared with annotate's faces)
                check_deadline(deadline)
                return fn(index)

        return await run_in_threadpool(call)

    def quality(params: Mapping[str, Any], default: str) -> str:
        return str(params.get("QualityFilter") or default)

    # ------------------------------------------------------------------ images

    async def detect_labels_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        data = image_bytes(params)
        detector = manager.serves("detection")
        doc = await annotate(data, ("labels", "objects") if detector else ("labels",), deadline, top_k=1000)
        _feature(doc, "labels")
        if detector and "error" in (doc.get("objects") or {}):
            _feature(doc, "objects")
        max_labels = params.get("MaxLabels")
        labels = detect_labels(doc, max_labels=None if max_labels is None else int(max_labels),
                               min_confidence=_float(params, "MinConfidence", DEFAULT_LABEL_CONFIDENCE))
        models = [str(doc["labels"].get("model") or manager.model_name("classification") or "classifier")]
        if detector:
            models.append(str((doc.get("objects") or {}).get("model") or manager.model_name("detection")))
        return {"Labels": labels, "LabelModelVersion": "+".join(models)}

    async def detect_faces_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        data = image_bytes(params)
        found = await faces(lambda ix: ix.detect(data, quality_filter="NONE"), deadline)
        return {"FaceDetails": [face_detail(f) for f in found]}

    async def compare_faces_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        from visor.faces.indexed import DEFAULT_MATCH_THRESHOLD, similarity

        source, target = image_bytes(params, "SourceImage"), image_bytes(params, "TargetImage")
        threshold = _float(params, "SimilarityThreshold", DEFAULT_MATCH_THRESHOLD)
        qf = quality(params, "NONE")

        def run(ix: Any) -> tuple[Any, list[Any]]:
            src = ix.detect(source, quality_filter="NONE")
            if not src:
                raise invalid(NO_FACE)
            return src[0], [f for f in ix.detect(target, quality_filter=qf) if not f.quality_reasons]

        src, targets = await faces(run, deadline)
        import numpy as np

        matches, unmatched = [], []
        for face in targets:
            sim = similarity(float(np.linalg.norm(np.asarray(src.embedding) - np.asarray(face.embedding))))
            if sim >= threshold:
                matches.append({"Similarity": percent(sim), "Face": compared_face(face)})
            else:
                unmatched.append(compared_face(face))
        matches.sort(key=lambda m: -m["Similarity"])
        detail = face_detail(src)
        return {"SourceImageFace": {"BoundingBox": detail["BoundingBox"], "Confidence": detail["Confidence"]},
                "FaceMatches": matches, "UnmatchedFaces": unmatched}

    async def detect_text_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        data = image_bytes(params)
        doc = await annotate(data, ("text",), deadline)
        text = _feature(doc, "text")
        word_filter = (params.get("Filters") or {}).get("WordFilter")
        out: dict[str, Any] = {"TextDetections": text_detections(text, int(doc["width"]), int(doc["height"]),
                                                                  word_filter)}
        if text.get("model"):
            out["TextModelVersion"] = str(text["model"])
        return out

    async def detect_moderation_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        for unsupported in ("HumanLoopConfig", "ProjectVersion"):
            if params.get(unsupported) is not None:
                raise invalid(f"{unsupported} is not supported by visor (no human review loops, no custom "
                              "moderation adapters)")
        data = image_bytes(params)
        doc = await annotate(data, ("moderation",), deadline)
        result = _feature(doc, "moderation")
        labels = moderation_labels(result.get("scores") or {},
                                   _float(params, "MinConfidence", DEFAULT_MODERATION_CONFIDENCE))
        return {"ModerationLabels": labels, "ModerationModelVersion": str(result.get("model") or "open_nsfw")}

    # ------------------------------------------------------------------ collections

    async def create_collection_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        name = params["CollectionId"]
        info = await faces(lambda ix: ix.create_collection(name), deadline, dlib=False)
        return {"StatusCode": 200, "CollectionArn": collection_arn(region, name),
                "FaceModelVersion": info.face_model_version}

    async def list_collections_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        from visor.faces.indexed import FACE_MODEL_VERSION

        names = await faces(lambda ix: ix.list_collections(), deadline, dlib=False)
        token = params.get("NextToken")
        if token:
            after = read_page_token(token)
            names = [n for n in names if n > after]
        limit = int(params.get("MaxResults") or 1000) or 1000
        page = names[:limit]
        out: dict[str, Any] = {"CollectionIds": page, "FaceModelVersions": [FACE_MODEL_VERSION] * len(page)}
        if len(names) > limit:
            out["NextToken"] = page_token(page[-1])
        return out

    async def describe_collection_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        name = params["CollectionId"]
        info = await faces(lambda ix: ix.describe_collection(name), deadline, dlib=False)
        return {"FaceCount": int(info.face_count), "FaceModelVersion": info.face_model_version,
                "CollectionARN": collection_arn(region, name), "CreationTimestamp": epoch(info.created_at)}

    async def delete_collection_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        name = params["CollectionId"]
        await faces(lambda ix: ix.delete_collection(name), deadline, dlib=False)
        return {"StatusCode": 200}

    # ------------------------------------------------------------------ faces

    async def index_faces_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        from visor.faces.indexed import FACE_MODEL_VERSION

        name = params["CollectionId"]
        data = image_bytes(params)
        max_faces = params.get("MaxFaces")
        result = await faces(lambda ix: ix.index_faces(
            name, data, external_image_id=params.get("ExternalImageId"),
            max_faces=None if max_faces is None else int(max_faces), quality_filter=quality(params, "AUTO")),
            deadline)
        return {"FaceRecords": [{"Face": face_json(rec), "FaceDetail": face_detail(face)}
                                for rec, face in result.indexed],
                "FaceModelVersion": FACE_MODEL_VERSION,
                "UnindexedFaces": [{"Reasons": list(reasons), "FaceDetail": face_detail(face)}
                                   for face, reasons in result.unindexed]}

    async def list_faces_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        from visor.faces.indexed import FACE_MODEL_VERSION

        if params.get("UserId") is not None:
            raise invalid("UserId: visor has no users in face collections (list by FaceIds instead)")
        name = params["CollectionId"]
        limit = int(params.get("MaxResults") or 1000) or 1000
        records, token = await faces(lambda ix: ix.list_faces(name, max_results=limit, after=params.get("NextToken"),
                                                               face_ids=params.get("FaceIds")), deadline, dlib=False)
        out: dict[str, Any] = {"Faces": [face_json(r) for r in records], "FaceModelVersion": FACE_MODEL_VERSION}
        if token:
            out["NextToken"] = token
        return out

    def matches(found: Sequence[tuple[Any, float]], skip: str | None = None) -> list[dict[str, Any]]:
        return [{"Similarity": percent(sim), "Face": face_json(rec)} for rec, sim in found if rec.face_id != skip]

    async def search_faces_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        from visor.faces.indexed import DEFAULT_MATCH_THRESHOLD, FACE_MODEL_VERSION

        name, face_id = params["CollectionId"], params["FaceId"]
        found = await faces(lambda ix: ix.search_face(
            name, face_id, max_faces=int(params.get("MaxFaces") or DEFAULT_MAX_FACES),
            threshold=_float(params, "FaceMatchThreshold", DEFAULT_MATCH_THRESHOLD)), deadline, dlib=False)
        return {"SearchedFaceId": face_id, "FaceMatches": matches(found, face_id),
                "FaceModelVersion": FACE_MODEL_VERSION}

    async def search_faces_by_image_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        from visor.faces.indexed import DEFAULT_MATCH_THRESHOLD, FACE_MODEL_VERSION

        name = params["CollectionId"]
        data = image_bytes(params)
        qf = quality(params, "NONE")

        def run(ix: Any) -> tuple[Any, list[tuple[Any, float]]]:
            from visor.faces.detector import NoFaceFound

            try:
                return ix.search_image(name, data, quality_filter=qf,
                                       max_faces=int(params.get("MaxFaces") or DEFAULT_MAX_FACES),
                                       threshold=_float(params, "FaceMatchThreshold", DEFAULT_MATCH_THRESHOLD))
            except NoFaceFound:
                raise invalid(NO_FACE) from None

        face, found = await faces(run, deadline)
        detail = face_detail(face)
        return {"SearchedFaceBoundingBox": detail["BoundingBox"], "SearchedFaceConfidence": detail["Confidence"],
                "FaceMatches": matches(found), "FaceModelVersion": FACE_MODEL_VERSION}

    async def delete_faces_op(params: dict[str, Any], deadline: float) -> dict[str, Any]:
        name, ids = params["CollectionId"], list(params["FaceIds"])
        deleted, missing = await faces(lambda ix: ix.delete_faces(name, ids), deadline, dlib=False)
        return {"DeletedFaces": list(deleted),
                "UnsuccessfulFaceDeletions": [{"FaceId": f, "Reasons": ["FACE_NOT_FOUND"]} for f in missing]}

    handlers: dict[str, Callable[[dict[str, Any], float], Any]] = {
        "DetectLabels": detect_labels_op, "DetectFaces": detect_faces_op, "CompareFaces": compare_faces_op,
        "CreateCollection": create_collection_op, "ListCollections": list_collections_op,
        "DescribeCollection": describe_collection_op, "DeleteCollection": delete_collection_op,
        "IndexFaces": index_faces_op, "ListFaces": list_faces_op, "SearchFaces": search_faces_op,
        "SearchFacesByImage": search_faces_by_image_op, "DeleteFaces": delete_faces_op,
        "DetectText": detect_text_op, "DetectModerationLabels": detect_moderation_op,
    }
    assert set(handlers) == set(OPERATIONS)

    async def authenticate(request: Request, body: bytes) -> None:
        if not settings.require_keys:
            return
        from visor.serve.awsauth import verify_sigv4

        store = await run_in_threadpool(service.aws_keys)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        key = await run_in_threadpool(functools.partial(
            verify_sigv4, store, method=request.method, path=raw_path.decode("latin-1"),
            query=request.url.query, headers=request.headers, body=body, region=region))
        if service.limiter is not None:
            service.limiter.take(key.name)

    async def rekognition(request: Request) -> Any:
        request_id = str(uuid.uuid4())
        try:
            body = await request.body()
            await authenticate(request, body)
            operation = operation_from(request.headers.get("x-amz-target"))
            params = parse_body(body)
            validate_input(operation, params)
            deadline = monotonic_deadline(settings.deadline_ms)
            out = await handlers[operation](params, deadline)
        except VisorError as e:
            return error_response(e, request_id)
        return ok_response(out, request_id)

    app.add_api_route(PATH, rekognition, methods=["POST"], tags=["rekognition"], name="rekognition",
                      summary="Amazon Rekognition (AWS JSON 1.1, X-Amz-Target: RekognitionService.<Operation>)",
                      description="The Amazon Rekognition API for boto3 and the AWS SDKs (endpoint_url=this "
                      "server): requests signed with AWS Signature Version 4 by a key from `visor keys create "
                      "--aws`; see visor.serve.rekognition for the operations.",
                      openapi_extra=OPENAPI_EXTRA, responses=RESPONSES)


_AWS_ERROR = {"application/json": {"schema": {"type": "object", "required": ["__type", "message"], "properties": {
    "__type": {"type": "string"}, "message": {"type": "string"}}}}}
RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "the operation's output (AWS JSON 1.1)"},
    400: {"description": "a modelled Rekognition exception (InvalidParameterException, "
                         "InvalidImageFormatException, ImageTooLargeException, ResourceNotFoundException, "
                         "ThrottlingException...)", "content": _AWS_ERROR},
    403: {"description": "a missing, wrong or expired AWS Signature Version 4", "content": _AWS_ERROR},
}
OPENAPI_EXTRA: dict[str, Any] = {
    "parameters": [{"name": "X-Amz-Target", "in": "header", "required": True,
                    "schema": {"type": "string", "enum": [TARGET_PREFIX + op for op in OPERATIONS]}},
                   {"name": "Authorization", "in": "header", "required": False,
                    "description": "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...",
                    "schema": {"type": "string"}}],
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "description": "the operation's input (application/x-amz-json-1.1 as the SDKs send it)",
        "properties": {"Image": {"type": "object", "properties": {"Bytes": {"type": "string",
                                                                            "format": "byte"}}},
                       "CollectionId": {"type": "string", "pattern": "^[a-zA-Z0-9_.\\-]{1,255}$"},
                       "MaxLabels": {"type": "integer", "minimum": 0},
                       "MinConfidence": {"type": "number", "minimum": 0, "maximum": 100}}}}}},
}


__all__ = ["ACCOUNT_ID", "MAX_IMAGE_BYTES", "MODERATION_TAXONOMY", "OPERATIONS", "PATH", "TARGET_PREFIX",
           "RekognitionError", "aws_error", "bounding_box", "collection_arn", "detect_labels", "error_response",
           "face_detail", "face_json", "image_bytes", "label_parents", "landmarks", "moderation_labels",
           "operation_from", "page_token", "pose", "read_page_token", "register", "service_model",
           "text_detections", "validate_input", "validate_output"]
