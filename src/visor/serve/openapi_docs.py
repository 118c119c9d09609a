"""OpenAPI text for the service: request bodies, examples and documented error answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from visor.models.registry import DEFAULT_CLASSIFIER

DESCRIPTION = """Self-hosted image recognition.

Send images as `multipart/form-data` (one or more files in the field `images`) or as JSON
(`{"images": [{"content": "<base64>", "name": "a.jpg"}]}`). Every route except `/livez` and
`/readyz` needs an API key (`Authorization: Bearer KEY` or `X-API-Key: KEY`; create one with
`visor keys create --name NAME`). Results come back per image, in order; a bad image gets an
`error` object in its slot. The status is 200 when at least one image succeeded, otherwise the
first error's status (400 bad input, 413 too large, 415 unsupported format, 503 overloaded with
`Retry-After`, 504 deadline). `X-Visor-Deadline-Ms` lowers the request's deadline.
"""

TAGS = [
    {"name": "recognition", "description": "Labels, objects, segmentation masks and every feature in one document"},
    {"name": "cloud vision", "description": "Google Cloud Vision v1 compatible `images:annotate`"},
    {"name": "search", "description": "Visual search over an index built with `visor index build`"},
    {"name": "faces", "description": "Face collections: enroll people, identify faces"},
    {"name": "review", "description": "The human review queue that feeds corrected labels back into training"},
    {"name": "events", "description": "Events raised by `visor watch` rules, and their snapshots"},
    {"name": "models", "description": "The loaded models"},
    {"name": "health", "description": "Liveness, readiness and Prometheus metrics"},
]

_SAMPLE_B64 = "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDAAgGBgcGBQgHBwcJCQgKDBQNDAsLDBkSEw8UHRofHh0aHBwgJC4nICIsIxwcKDcpLDAxNDQ0Hyc5PTgyPC4zNDL/wAALCAABAAEBAREA/8QAFAABAAAAAAAAAAAAAAAAAAAACf/EABQQAQAAAAAAAAAAAAAAAAAAAAD/2gAIAQEAAD8AKp//2Q=="  # noqa: E501

ERROR_SCHEMA = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "type": {"type": "string"}, "code": {"type": "string"}, "message": {"type": "string"}}}},
}


def _error(code: str, message: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {
        "schema": ERROR_SCHEMA, "example": {"error": {"type": "VisorError", "code": code, "message": message}}}}}


AUTH_ERRORS = {401: _error("unauthorized", "an API key is required", "missing or invalid API key"),
               429: _error("rate_limited", "rate limit exceeded", "too many requests for this key")}
IMAGE_ERRORS = {
    400: _error("corrupt_image", "image.jpg: the image data is truncated", "bad input"),
    413: _error("image_too_large", "30000x30000 pixels is over the 40000000 pixel limit", "image or body too large"),
    415: _error("unsupported_format", "PPM images are not supported", "unsupported image format or body type"),
    503: _error("overloaded", "model is at capacity; retry after 1 s", "queue full (see Retry-After)"),
    504: _error("deadline_exceeded", "no answer within the deadline", "deadline passed"),
}
NOT_FOUND = {404: _error("not_found", "no collection 'staff'", "not found"), **AUTH_ERRORS}


def _ok(example: Any, description: str = "OK") -> dict[int, Any]:
    return {200: {"description": description, "content": {"application/json": {"example": example}}}}


def images_body(options: dict[str, Any]) -> dict[str, Any]:
    """The request body of an image route: multipart files or base64 JSON, plus options."""
    return {"requestBody": {"required": True, "content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["images"], "properties": {
            "images": {"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1},
            **options}}},
        "application/json": {"schema": {"type": "object", "required": ["images"], "properties": {
            "images": {"type": "array", "minItems": 1, "items": {"type": "object", "required": ["content"],
                                                                    "properties": {
                                                                        "content": {"type": "string",
                                                                                    "format": "byte"},
                                                                        "name": {"type": "string"}}}},
            **options}}, "example": {"images": [{"content": _SAMPLE_B64, "name": "pixel.jpg"}]}},
    }}}


CLASSIFY_OPTIONS = {"top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5}}
DETECT_OPTIONS = {"conf": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.25},
                  "iou": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.45},
                  "max_det": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 300}}
ANNOTATE_OPTIONS = {"features": {"type": "string", "example": "labels,faces,text",
                                 "description": "comma-separated; default: all but segmentation (opt-in)"},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 5}}

SEGMENT_OPTIONS = {"format": {"type": "string", "enum": ["rle", "png"], "default": "rle",
                              "description": "rle: one COCO RLE per present class; png: the index mask as a "
                                             "base64 PNG"}}
_SEGMENT_NAMES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
                  "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
                  "tvmonitor"]
_SEGMENT_RLE = {"image": "bus.jpg", "areas": {"background": 2, "bus": 4}, "review_id": None, "segmentation": {
    "type": "segmentation", "model": "deeplabv3_voc", "width": 3, "height": 2, "class_names": _SEGMENT_NAMES,
    "ignore_index": None, "segments": [
        {"class_id": 0, "label": "background", "area": 2, "rle": {"size": [2, 3], "counts": "024"}},
        {"class_id": 6, "label": "bus", "area": 4, "rle": {"size": [2, 3], "counts": "24"}}]}}
_SEGMENT_PNG = {"image": "bus.jpg", "areas": {"background": 2, "bus": 4}, "review_id": None, "segmentation": {
    "type": "segmentation", "model": "deeplabv3_voc", "width": 3, "height": 2, "class_names": _SEGMENT_NAMES,
    "ignore_index": None, "format": "png", "png": "iVBORw0KGgo..."}}
SEGMENT = {
    200: {"description": "per image: `areas` (pixels per class present, by name) and `segmentation`: with "
                         "format=rle the mask's JSON (one COCO RLE per class present, column-major as "
                         "pycocotools), with format=png the index PNG in base64 (pixel value = class id, Pascal "
                         "VOC palette). With `Accept: image/png` and one image: the PNG itself, the areas in "
                         "the `X-Visor-Areas` header (JSON), the class names in `X-Visor-Class-Names`.",
          "content": {"application/json": {"examples": {
              "rle": {"summary": "format=rle (default)", "value": {"model": "deeplabv3_voc",
                                                                   "results": [_SEGMENT_RLE]}},
              "png": {"summary": "format=png", "value": {"model": "deeplabv3_voc", "results": [_SEGMENT_PNG]}}}},
              "image/png": {"schema": {"type": "string", "format": "binary"}}}},
    **IMAGE_ERRORS,
    400: _error("invalid_input", "format must be one of rle, png, got 'jpg'", "bad input (an option, an image)"),
    404: _error("model_not_found", "this service has no segmenter (it was started with --segmenter none)",
                "segmentation switched off"),
    406: _error("not_acceptable", "Accept: image/png answers one image with its PNG mask",
                "Accept: image/png with several images (or format=rle)"),
    503: {"description": "the segmenter's weights are not on this machine, or the queue is full (see Retry-After)",
          "content": {"application/json": {"schema": ERROR_SCHEMA, "examples": {
              "model_unavailable": {"summary": "weights not cached", "value": {"error": {
                  "type": "ModelUnavailable", "code": "model_unavailable",
                  "message": "the segmenter deeplabv3_voc is not loaded: downloads are off (VISOR_OFFLINE is set): "
                             "unset it to pull deeplabv3_voc, or on a machine without internet `visor models "
                             "import deeplabv3_voc FILE`; then restart the service (or start it with --segmenter "
                             "none)"}}},
              "overloaded": {"summary": "queue full", "value": {"error": {
                  "type": "Overloaded", "code": "overloaded", "message": "model is at capacity; retry after 1 s"}}}}}}},
    **AUTH_ERRORS}

_CLASSIFICATIONS = {"type": "classifications", "model": DEFAULT_CLASSIFIER,
                    "predictions": [{"class_id": 779, "label": "school bus", "confidence": 0.93}]}
CLASSIFY = {**_ok({"model": DEFAULT_CLASSIFIER, "results": [
    {"image": "bus.jpg", "classifications": _CLASSIFICATIONS, "review_id": None}]}), **IMAGE_ERRORS, **AUTH_ERRORS}
DETECT = {**_ok({"model": "yolox_nano", "results": [{"image": "bus.jpg", "review_id": None, "detections": {
    "type": "detections", "model": "yolox_nano", "detections": [
        {"xyxy": [116.296, 113.606, 578.906, 318.626], "confidence": 0.962151, "class_id": 5,
         "class_name": "bus"}]}}]}),
          404: _error("model_not_found", "this service has no object detector (it was started with --detector none)",
                      "detection switched off"),
          **IMAGE_ERRORS, **AUTH_ERRORS}
ANNOTATE = {**_ok({"results": [{"image": "bus.jpg", "width": 810, "height": 1080, "labels": _CLASSIFICATIONS,
                                "text": {"type": "text", "full_text": "", "lines": []}}]}),
            **IMAGE_ERRORS, **AUTH_ERRORS}
SEARCH_OPTIONS = {"k": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 10}}
SEARCH = {**_ok({"index": {"model": DEFAULT_CLASSIFIER, "count": 450, "exact": True}, "results": [
    {"image": "query.jpg", "hits": [{"key": 17, "path": "/data/shop/bag-17.jpg", "label": "bag",
                                     "similarity": 0.93}]}]}),
          404: _error("model_not_found", "this service has no search index", "no index configured"),
          **IMAGE_ERRORS, **AUTH_ERRORS}
LIVEZ = _ok({"status": "ok"})
READYZ = {**_ok({"status": "ready", "models": [DEFAULT_CLASSIFIER]}),
          503: {"description": "models still loading (or failed)",
                "content": {"application/json": {"example": {"status": "loading"}}}}}
METRICS = {200: {"description": "Prometheus text format", "content": {"text/plain": {}}}, **AUTH_ERRORS}
MODELS = {**_ok({"models": [{"role": "classifier", "name": DEFAULT_CLASSIFIER, "task": "classification",
                             "version": "2f6ab2d1c3f4", "sha256": "2f6a...", "num_classes": 1000}]}),
          **AUTH_ERRORS}
DRIFT = {**_ok({"profile": "runs/mine/profile.safetensors", "window": 500, "report": {
    "n": 500, "n_reference": 1500, "psi_confidence": 0.04, "psi_class_mix": 0.03,
    "psi_inputs": {"brightness": 0.02, "contrast": 0.05, "sharpness": 0.03}, "embedding_shift": 0.0011,
    "embedding_p_value": 0.62, "alert": False, "reasons": [], "insufficient_data": False}}),
         404: _error("model_not_found", "this service has no drift profile", "no --drift-profile"), **AUTH_ERRORS}
COLLECTIONS = {**_ok({"collections": [{"name": "staff", "people": 2, "faces": 5}]}), **AUTH_ERRORS}
COLLECTION = {**_ok({"name": "staff", "people": [{"name": "ada", "faces": 3}]}), **NOT_FOUND}
COLLECTION_CREATED = {201: {"description": "created", "content": {"application/json": {
    "example": {"name": "staff", "people": []}}}},
    400: _error("invalid_input", "invalid collection name", "bad name"),
    409: _error("collection_exists", "collection 'staff' already exists", "exists"), **AUTH_ERRORS}
ENROLLED = {**_ok({"collection": "staff", "person": "ada", "faces_added": 2}),
            400: _error("no_face_found", "ada.jpg: no face found", "a photo without exactly one face"),
            **NOT_FOUND, 413: IMAGE_ERRORS[413], 415: IMAGE_ERRORS[415]}
IDENTIFY = {**_ok({"results": [{"image": "group.jpg", "type": "faces", "faces": [
    {"xyxy": [10, 10, 90, 90], "confidence": None, "landmarks": [], "name": "ada", "distance": 0.41}]}]}),
    **NOT_FOUND, 400: IMAGE_ERRORS[400], 413: IMAGE_ERRORS[413], 415: IMAGE_ERRORS[415]}
_ITEM = {"id": 1, "created_at": "2026-11-26T10:00:00+00:00", "model": DEFAULT_CLASSIFIER, "task": "classify",
         "image": "bus.jpg", "image_url": "/v1/review/items/1/image", "media_type": "image/jpeg",
         "reason": "low_confidence", "prediction": _CLASSIFICATIONS, "predicted_label": "school bus",
         "confidence": 0.41, "labels": ["tench", "goldfish"], "status": "pending", "label": None,
         "reviewer": None, "decided_at": None}
REVIEW_LIST = {**_ok({"items": [_ITEM], "counts": {"pending": 1, "accepted": 0, "corrected": 0, "rejected": 0}}),
               400: _error("invalid_input", "unknown status", "bad status"), **AUTH_ERRORS}
REVIEW_ITEM = {**_ok(_ITEM), 400: _error("invalid_input", "unknown action 'acept'. Did you mean 'accept'?",
                                         "bad decision"), **NOT_FOUND}
REVIEW_IMAGE = {200: {"description": "the image bytes", "content": {"image/jpeg": {}, "image/png": {}}},
                **NOT_FOUND}

CLOUD_VISION_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "required": ["requests"], "properties": {"requests": {"type": "array", "items": {
        "type": "object", "properties": {
            "image": {"type": "object", "properties": {"content": {"type": "string", "format": "byte"}}},
            "features": {"type": "array", "items": {"type": "object", "properties": {
                "type": {"type": "string", "enum": ["LABEL_DETECTION", "FACE_DETECTION", "TEXT_DETECTION",
                                                    "DOCUMENT_TEXT_DETECTION", "SAFE_SEARCH_DETECTION",
                                                    "IMAGE_PROPERTIES", "CROP_HINTS", "OBJECT_LOCALIZATION"]},
                "maxResults": {"type": "integer"}}}},
            "imageContext": {"type": "object"}}}}}},
    "example": {"requests": [{"image": {"content": _SAMPLE_B64},
                              "features": [{"type": "LABEL_DETECTION", "maxResults": 5}]}]}}}}}
CLOUD_VISION = {**_ok({"responses": [{"labelAnnotations": [
    {"mid": "", "description": "school bus", "score": 0.93, "topicality": 0.93}]}]}),
    400: {"description": "malformed request", "content": {"application/json": {"example": {
        "error": {"code": 400, "message": "'requests' is missing", "status": "INVALID_ARGUMENT"}}}}},
    401: {"description": "missing or invalid API key", "content": {"application/json": {"example": {
        "error": {"code": 401, "message": "an API key is required", "status": "UNAUTHENTICATED"}}}}}}


class NewCollection(BaseModel):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]{1,255}$", examples=["staff"])


class Decision(BaseModel):
    action: Literal["accept", "correct", "reject"]
    label: str | None = Field(None, min_length=1, max_length=255, description="the right label (for correct)")


def model_body(model: type[BaseModel], examples: dict[str, Any] | None = None) -> dict[str, Any]:
    """``openapi_extra`` documenting a JSON body that the route reads itself (after the API key is
    checked, see :func:`visor.serve.inputs.read_model`)."""
    content: dict[str, Any] = {"schema": model.model_json_schema()}
    if examples:
        content["examples"] = examples
    return {"requestBody": {"required": True, "content": {"application/json": content}}}


DECISION_EXAMPLES = {
    "accept": {"summary": "the prediction is right", "value": {"action": "accept"}},
    "correct": {"summary": "the right label is another", "value": {"action": "correct", "label": "golf ball"}},
    "reject": {"summary": "not usable for training", "value": {"action": "reject"}},
}
