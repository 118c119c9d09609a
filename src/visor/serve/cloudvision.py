"""Google Cloud Vision v1 compatibility: ``POST /v1/images:annotate`` JSON in, JSON out.

A pure translation layer: :func:`annotate_images` reads a ``BatchAnnotateImagesRequest`` body,
calls ``run(image_bytes, visor_features, options)`` (supplied by the server; it returns visor's
native annotate document, see ``docs/annotate.schema.json``) once per image, and writes a
``BatchAnnotateImagesResponse``. Nothing here imports ``google.cloud``: the enum tables are
constants, checked against the installed ``google-cloud-vision`` by the tests.

Supported feature types and how they map onto visor:

* ``LABEL_DETECTION`` -> ``labels`` (and ``objects`` when the server has a detector): the generic
  labels of :func:`visor.features.labels.generic_labels` ("Bus", "Motor vehicle", "Vehicle", "Person";
  ImageNet classes rolled up WordNet, the detector's classes, each label's score the max of the summed
  ImageNet probabilities and the best detection, labels under 0.5 dropped) merged with the classifier's
  own class names, capitalised as Cloud Vision writes descriptions ("School bus"). A description that
  comes from both keeps the higher score. ``score`` = ``topicality``; best first, ``maxResults`` of
  them (default 10). ``mid`` is ``/wordnet/<wnid>``, the label's WordNet 3.0 synset (a stable id: the
  ImageNet class's own for its names, the generic label's for generic ones), or empty for the classes of
  a non-ImageNet classifier. The document's ``generic_labels`` (``{"labels": [{"name", "score"}]}``) is
  used when annotate provides it; otherwise they are computed here from the document's ``labels``
  (``run`` is asked for all classes, ``top_k`` :data:`LABELS_TOP_K`, so the ImageNet sums are exact)
  and ``objects``;
* ``FACE_DETECTION`` -> ``faces``: ``boundingPoly`` and ``fdBoundingPoly`` are both the detector's box;
  landmarks become the Cloud Vision landmark types they clearly correspond to: YuNet's 5 points
  (:data:`YUNET_LANDMARKS`: eye centres, nose tip, mouth corners) when the faces come from a
  face-detection model (``model`` "yunet"), dlib's 5 or 68 points otherwise (:data:`LANDMARK_POINTS`;
  ``model`` "hog", "cnn" or none, and the 68 points dlib adds to YuNet's boxes); ``rollAngle`` is the slope of the eye
  line in degrees (positive when the face is turned clockwise on screen), ``panAngle`` comes from
  where the nose tip sits between the jaw ends (dlib's 68 points only; positive when the nose is
  towards the image's right), ``tiltAngle`` is 0; ``detectionConfidence`` is YuNet's score, or the
  logistic of dlib's detector score (0.5 at the detector's threshold), and ``landmarkingConfidence``
  the same (neither model scores its landmarks); every emotion and attribute likelihood is ``UNKNOWN``;
* ``TEXT_DETECTION`` / ``DOCUMENT_TEXT_DETECTION`` -> ``text``: ``textAnnotations`` is the full
  text (``locale`` "", a box around everything) then one entry per text line in reading order;
  ``DOCUMENT_TEXT_DETECTION`` adds ``fullTextAnnotation`` with one page, one block (and one
  paragraph) per line, words split on spaces and symbols per character, their boxes dividing
  the line's quadrilateral in proportion to character counts;
* ``SAFE_SEARCH_DETECTION`` -> ``moderation`` (open_nsfw, plus nudenet's parts when installed; see
  :mod:`visor.features.moderation`): ``adult`` and ``racy``; ``spoof``, ``medical`` and ``violence``
  are ``UNKNOWN``;
* ``IMAGE_PROPERTIES`` -> ``properties``: the dominant colours, ``score`` = ``pixelFraction``;
* ``CROP_HINTS`` -> ``crop_hints``, honouring ``imageContext.cropHintsParams.aspectRatios``
  (visor's default ratios otherwise); ``confidence`` is 1 (visor does not score crops) and
  ``importanceFraction`` the crop's share of the image area;
* ``OBJECT_LOCALIZATION`` -> ``objects``, only when the server has a detector: ``localizedObjectAnnotations``,
  best first, ``maxResults`` of them, ``name`` as Cloud Vision writes it ("Person", "Car", "Mobile phone":
  :func:`visor.features.labels.display_name`), ``mid`` the class's WordNet id as for labels (COCO classes),
  ``boundingPoly.normalizedVertices`` the box divided by the image size, clipped to 0..1.

Errors: a body that is not a Cloud Vision request raises :class:`CloudVisionRequestError`
(answer it with HTTP 400 and :func:`error_body`). Problems with one image (undecodable bytes,
``image.source`` URLs, which visor never fetches, unknown or unsupported feature types) become
that image's ``error`` (a ``google.rpc.Status``: ``{"code", "message"}``) in its slot, as Cloud
Vision does; annotations that did succeed stay filled in beside it. Errors from ``run`` whose
``http_status`` is 429 or 5xx (queue full, deadline, server faults) are not per-image: they
propagate so the route can answer the whole request with that status.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from visor.errors import ConfigError, VisorError
from visor.serve.inputs import load_json, strict_b64decode

__all__ = [
    "BLOCK_TYPES",
    "BREAK_TYPES",
    "FEATURE_TYPES",
    "LANDMARK_TYPES",
    "LIKELIHOODS",
    "MAX_IMAGES",
    "RPC_CODES",
    "SUPPORTED_FEATURES",
    "YUNET_LANDMARKS",
    "CloudVisionRequestError",
    "annotate_images",
    "error_body",
    "int_enums_requested",
    "label_annotations",
    "line_reading_order",
    "load_body",
    "sub_quad",
]

#: ``top_k`` asked of ``run`` for LABEL_DETECTION: all of ImageNet-1k's classes, so that the generic labels'
#: sums are exact (the classifier's names returned are still the best ``maxResults``).
LABELS_TOP_K = 1000
#: Cloud Vision's limit of images per ``images:annotate`` request.
MAX_IMAGES = 16
#: ``maxResults`` when a feature does not give one (as Cloud Vision).
DEFAULT_MAX_RESULTS = 10
MAX_ASPECT_RATIOS = 16
#: How Google's error message for a body that is not JSON starts.
INVALID_JSON = "Invalid JSON payload received."
#: protobuf ``int32``, the type of ``maxResults`` and of enum numbers.
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_INT_TEXT = re.compile(r"-?\d{1,12}")

# --------------------------------------------------------------------------- enum tables
# The numbers of google.cloud.vision_v1 (checked by tests/serve/test_cloudvision.py).

#: ``Feature.Type``
FEATURE_TYPES: dict[str, int] = {
    "TYPE_UNSPECIFIED": 0, "FACE_DETECTION": 1, "LANDMARK_DETECTION": 2, "LOGO_DETECTION": 3,
    "LABEL_DETECTION": 4, "TEXT_DETECTION": 5, "DOCUMENT_TEXT_DETECTION": 11, "SAFE_SEARCH_DETECTION": 6,
    "IMAGE_PROPERTIES": 7, "CROP_HINTS": 9, "WEB_DETECTION": 10, "PRODUCT_SEARCH": 12, "OBJECT_LOCALIZATION": 19,
}
#: ``Likelihood``
LIKELIHOODS: dict[str, int] = {
    "UNKNOWN": 0, "VERY_UNLIKELY": 1, "UNLIKELY": 2, "POSSIBLE": 3, "LIKELY": 4, "VERY_LIKELY": 5,
}
#: ``FaceAnnotation.Landmark.Type``
LANDMARK_TYPES: dict[str, int] = {
    "UNKNOWN_LANDMARK": 0, "LEFT_EYE": 1, "RIGHT_EYE": 2, "LEFT_OF_LEFT_EYEBROW": 3, "RIGHT_OF_LEFT_EYEBROW": 4,
    "LEFT_OF_RIGHT_EYEBROW": 5, "RIGHT_OF_RIGHT_EYEBROW": 6, "MIDPOINT_BETWEEN_EYES": 7, "NOSE_TIP": 8,
    "UPPER_LIP": 9, "LOWER_LIP": 10, "MOUTH_LEFT": 11, "MOUTH_RIGHT": 12, "MOUTH_CENTER": 13,
    "NOSE_BOTTOM_RIGHT": 14, "NOSE_BOTTOM_LEFT": 15, "NOSE_BOTTOM_CENTER": 16, "LEFT_EYE_TOP_BOUNDARY": 17,
    "LEFT_EYE_RIGHT_CORNER": 18, "LEFT_EYE_BOTTOM_BOUNDARY": 19, "LEFT_EYE_LEFT_CORNER": 20,
    "RIGHT_EYE_TOP_BOUNDARY": 21, "RIGHT_EYE_RIGHT_CORNER": 22, "RIGHT_EYE_BOTTOM_BOUNDARY": 23,
    "RIGHT_EYE_LEFT_CORNER": 24, "LEFT_EYEBROW_UPPER_MIDPOINT": 25, "RIGHT_EYEBROW_UPPER_MIDPOINT": 26,
    "LEFT_EAR_TRAGION": 27, "RIGHT_EAR_TRAGION": 28, "LEFT_EYE_PUPIL": 29, "RIGHT_EYE_PUPIL": 30,
    "FOREHEAD_GLABELLA": 31, "CHIN_GNATHION": 32, "CHIN_LEFT_GONION": 33, "CHIN_RIGHT_GONION": 34,
    "LEFT_CHEEK_CENTER": 35, "RIGHT_CHEEK_CENTER": 36,
}
#: ``Block.BlockType``
BLOCK_TYPES: dict[str, int] = {"UNKNOWN": 0, "TEXT": 1, "TABLE": 2, "PICTURE": 3, "RULER": 4, "BARCODE": 5}
#: ``TextAnnotation.DetectedBreak.BreakType``
BREAK_TYPES: dict[str, int] = {
    "UNKNOWN": 0, "SPACE": 1, "SURE_SPACE": 2, "EOL_SURE_SPACE": 3, "HYPHEN": 4, "LINE_BREAK": 5,
}
#: ``google.rpc.Code``
RPC_CODES: dict[str, int] = {
    "OK": 0, "CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4, "NOT_FOUND": 5,
    "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8, "FAILED_PRECONDITION": 9,
    "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12, "INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15,
    "UNAUTHENTICATED": 16,
}
#: The ``status`` of a top-level error body per HTTP status (Google's mapping).
HTTP_STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ALREADY_EXISTS", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT", 422: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}

#: Cloud Vision feature type -> visor feature.
SUPPORTED_FEATURES: dict[str, str] = {
    "LABEL_DETECTION": "labels", "FACE_DETECTION": "faces", "TEXT_DETECTION": "text",
    "DOCUMENT_TEXT_DETECTION": "text", "SAFE_SEARCH_DETECTION": "moderation", "IMAGE_PROPERTIES": "properties",
    "CROP_HINTS": "crop_hints", "OBJECT_LOCALIZATION": "objects",
}
#: The Cloud Vision response field each feature fills (for error messages and ordering).
_VISOR_ORDER = ("labels", "objects", "faces", "text", "moderation", "properties", "crop_hints")

#: Cloud Vision landmark -> the dlib 68-point indices whose mean it is. "Left" and "right" are the
#: viewer's (as in Cloud Vision: LEFT_EYE is usually the person's right eye), which is also how
#: dlib numbers its points. Eye centres are the midpoints of the eye corners, so they exist with
#: the 5-point model too.
LANDMARK_POINTS: dict[str, tuple[int, ...]] = {
    "LEFT_EYE": (36, 39), "RIGHT_EYE": (42, 45),
    "LEFT_OF_LEFT_EYEBROW": (17,), "RIGHT_OF_LEFT_EYEBROW": (21,),
    "LEFT_OF_RIGHT_EYEBROW": (22,), "RIGHT_OF_RIGHT_EYEBROW": (26,),
    "MIDPOINT_BETWEEN_EYES": (39, 42), "NOSE_TIP": (30,),
    "UPPER_LIP": (51, 62), "LOWER_LIP": (57, 66), "MOUTH_LEFT": (48,), "MOUTH_RIGHT": (54,), "MOUTH_CENTER": (62, 66),
    "NOSE_BOTTOM_RIGHT": (35,), "NOSE_BOTTOM_LEFT": (31,), "NOSE_BOTTOM_CENTER": (33,),
    "LEFT_EYE_TOP_BOUNDARY": (37, 38), "LEFT_EYE_RIGHT_CORNER": (39,), "LEFT_EYE_BOTTOM_BOUNDARY": (40, 41),
    "LEFT_EYE_LEFT_CORNER": (36,),
    "RIGHT_EYE_TOP_BOUNDARY": (43, 44), "RIGHT_EYE_RIGHT_CORNER": (45,), "RIGHT_EYE_BOTTOM_BOUNDARY": (46, 47),
    "RIGHT_EYE_LEFT_CORNER": (42,),
    "LEFT_EYEBROW_UPPER_MIDPOINT": (19,), "RIGHT_EYEBROW_UPPER_MIDPOINT": (24,),
    "CHIN_GNATHION": (8,),
}
#: Cloud Vision landmark -> the indices of YuNet's 5 points (right eye, left eye, nose tip, right and left mouth
#: corner: the person's) whose mean it is; the person's right eye is on the viewer's left (LEFT_EYE), as above.
YUNET_LANDMARKS: dict[str, tuple[int, ...]] = {
    "LEFT_EYE": (0,), "RIGHT_EYE": (1,), "MIDPOINT_BETWEEN_EYES": (0, 1), "NOSE_TIP": (2,),
    "MOUTH_LEFT": (3,), "MOUTH_RIGHT": (4,),
}
#: dlib's 5-point model as 68-point indices: outer and inner corner of the viewer's right eye,
#: outer and inner corner of the viewer's left eye, bottom of the nose.
FIVE_POINT_INDICES: tuple[int, ...] = (45, 42, 36, 39, 33)

_INPUT_CODES = frozenset({"invalid_input", "image_not_found", "corrupt_image", "image_too_large",
                          "unsupported_format", "no_face", "multiple_faces"})

Run = Callable[[bytes, tuple[str, ...], dict], dict]


class CloudVisionRequestError(VisorError):
    """The request body as a whole is not a valid ``images:annotate`` request (HTTP 400)."""

    http_status = 400
    code = "invalid_request"


# --------------------------------------------------------------------------- small helpers


def int_enums_requested(alt: str | None) -> bool:
    """Whether the ``$alt`` query value asks for enums as numbers (``json;enum-encoding=int``)."""
    if not alt:
        return False
    parts = [p.strip().lower().replace(" ", "") for p in alt.split(";")]
    return "enum-encoding=int" in parts[1:] or parts[0] == "enum-encoding=int"


def error_body(http_status: int, message: str) -> dict[str, Any]:
    """Google's top-level error JSON: ``{"error": {"code": http_status, "message", "status"}}``."""
    status = HTTP_STATUS_NAMES.get(int(http_status))
    if status is None:
        status = "INTERNAL" if http_status >= 500 else "FAILED_PRECONDITION"
    return {"error": {"code": int(http_status), "message": str(message), "status": status}}


def load_body(raw: bytes | str) -> Any:
    """The parsed JSON body; :class:`CloudVisionRequestError` when it is not JSON (or is JSON that no
    route accepts: nested over 64 deep, huge or non-finite numbers, lone surrogates; see
    :func:`visor.serve.inputs.load_json`)."""
    return load_json(raw, error=CloudVisionRequestError, prefix=INVALID_JSON)


def _status(code: str, message: str) -> dict[str, Any]:
    return {"code": RPC_CODES[code], "message": message}


class _ImageError(Exception):
    """A problem with one image request: becomes the ``error`` in its response slot."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.status = _status(code, message)


def _enum_name(value: Any, table: Mapping[str, int], what: str) -> str:
    """An enum given as its name or its number (JSON allows both) -> its name."""
    if isinstance(value, str) and value in table:
        return value
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        number = int(value)
    if number is not None:
        for name, n in table.items():
            if n == number:
                return name
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    raise _ImageError("INVALID_ARGUMENT", f"invalid {what}: {shown}")


def _decode_base64(content: str) -> bytes:
    """Standard or URL-safe base64, padding optional (as protobuf's JSON parser accepts)."""
    try:
        return strict_b64decode(content)
    except (binascii.Error, ValueError):
        raise _ImageError("INVALID_ARGUMENT", "image.content is not valid base64") from None


def _int_field(value: Any, what: str) -> int:
    """A protobuf ``int32`` as JSON gives it: a number with no fraction or a string of digits."""
    number: int | None = None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (isinstance(value, str)
                                                               and _INT_TEXT.fullmatch(value.strip())):
        number = int(value)
    shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:37]}..."
    if number is None:
        raise CloudVisionRequestError(f"{what} must be an integer, got {shown}")
    if not INT32_MIN <= number <= INT32_MAX:
        raise CloudVisionRequestError(f"{what} is out of range for an int32: {shown}")
    return number


def _obj(value: Any, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise CloudVisionRequestError(f"{what} must be a JSON object, got {type(value).__name__}")
    return value


# --------------------------------------------------------------------------- request parsing


@dataclass
class _Plan:
    """What one ``AnnotateImageRequest`` asks for."""

    data: bytes = b""
    types: list[str] = field(default_factory=list)  # supported Cloud Vision feature types, request order
    max_results: dict[str, int] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)  # unsupported features
    extra: set[str] = field(default_factory=set)  # visor features that only feed another one

    @property
    def visor_features(self) -> tuple[str, ...]:
        wanted = {SUPPORTED_FEATURES[t] for t in self.types} | self.extra
        return tuple(f for f in _VISOR_ORDER if f in wanted)


def _check_structure(index: int, request: Any) -> None:
    """Raise :class:`CloudVisionRequestError` for JSON that no Cloud Vision parser would accept."""
    where = f"requests[{index}]"
    if not isinstance(request, dict):
        raise CloudVisionRequestError(f"{where} must be a JSON object")
    image = _obj(request.get("image"), f"{where}.image")
    if "content" in image and not isinstance(image["content"], (str, type(None))):
        raise CloudVisionRequestError(f"{where}.image.content must be a base64 string")
    _obj(image.get("source"), f"{where}.image.source")
    features = request.get("features")
    if features is not None and not isinstance(features, list):
        raise CloudVisionRequestError(f"{where}.features must be a list")
    for j, feature in enumerate(features or []):
        feature = _obj(feature, f"{where}.features[{j}]")
        if feature.get("maxResults") is not None:
            _int_field(feature["maxResults"], f"{where}.features[{j}].maxResults")
    context = _obj(request.get("imageContext"), f"{where}.imageContext")
    crop = _obj(context.get("cropHintsParams"), f"{where}.imageContext.cropHintsParams")
    ratios = crop.get("aspectRatios")
    if ratios is not None and (not isinstance(ratios, list)
                               or not all(isinstance(r, (int, float)) and not isinstance(r, bool) for r in ratios)):
        raise CloudVisionRequestError(f"{where}.imageContext.cropHintsParams.aspectRatios must be a list of numbers")


def _plan(request: dict[str, Any], has_detector: bool) -> _Plan:
    """Read one (structurally valid) request; per-image problems raise :class:`_ImageError`."""
    plan = _Plan()
    features = request.get("features") or []
    if not features:
        raise _ImageError("INVALID_ARGUMENT", "no features requested: give features[].type")
    for feature in features:
        name = _enum_name(feature.get("type", 0), FEATURE_TYPES, "feature type")
        if name == "TYPE_UNSPECIFIED":
            raise _ImageError("INVALID_ARGUMENT", "feature type is unspecified")
        if name not in SUPPORTED_FEATURES:
            plan.errors.append(_status("UNIMPLEMENTED", f"{name} is not supported by visor; supported: "
                                       + ", ".join(SUPPORTED_FEATURES)))
            continue
        if name == "OBJECT_LOCALIZATION" and not has_detector:
            plan.errors.append(_status("UNIMPLEMENTED", "OBJECT_LOCALIZATION needs an object detector, and this "
                                                        "server has none configured"))
            continue
        if name not in plan.types:
            plan.types.append(name)
        raw = feature.get("maxResults")
        n = _int_field(raw, "maxResults") if raw is not None else 0
        plan.max_results[name] = n if n > 0 else DEFAULT_MAX_RESULTS

    ratios = ((request.get("imageContext") or {}).get("cropHintsParams") or {}).get("aspectRatios")
    if ratios and "CROP_HINTS" in plan.types:
        if len(ratios) > MAX_ASPECT_RATIOS:
            raise _ImageError("INVALID_ARGUMENT", f"at most {MAX_ASPECT_RATIOS} crop hint aspect ratios, "
                                                  f"got {len(ratios)}")
        if not all(math.isfinite(r) and r > 0 for r in ratios):
            raise _ImageError("INVALID_ARGUMENT", f"crop hint aspect ratios must be positive, got {ratios}")
        plan.options["crop_aspect_ratios"] = tuple(float(r) for r in ratios)
    hints = (request.get("imageContext") or {}).get("languageHints")
    if hints and {"TEXT_DETECTION", "DOCUMENT_TEXT_DETECTION"} & set(plan.types):
        from visor.features.text_filter import scripts_for

        if not isinstance(hints, list) or not all(isinstance(h, str) for h in hints):
            raise _ImageError("INVALID_ARGUMENT", "imageContext.languageHints must be a list of language codes")
        try:
            scripts_for(hints)
        except ConfigError as e:
            raise _ImageError("INVALID_ARGUMENT", f"imageContext.languageHints: {e}") from None
        plan.options["language_hints"] = tuple(hints)
    if "LABEL_DETECTION" in plan.types:
        plan.options["top_k"] = max(plan.max_results["LABEL_DETECTION"], LABELS_TOP_K)
        if has_detector:  # the detector's classes are labels too
            plan.extra.add("objects")
    else:
        plan.options["top_k"] = DEFAULT_MAX_RESULTS

    image = request.get("image") or {}
    content = image.get("content")
    if content:
        plan.data = _decode_base64(content)
    elif any((image.get("source") or {}).get(k) for k in ("imageUri", "gcsImageUri")):
        raise _ImageError("INVALID_ARGUMENT", "visor never fetches image URLs (image.source): send the image "
                                              "bytes base64-encoded in image.content")
    else:
        raise _ImageError("INVALID_ARGUMENT", "no image: send the image bytes base64-encoded in image.content")
    if not plan.data:
        raise _ImageError("INVALID_ARGUMENT", "image.content is empty")
    return plan


# --------------------------------------------------------------------------- geometry


def _vertex(x: float, y: float) -> dict[str, int]:
    return {"x": round(float(x)), "y": round(float(y))}


def _poly_xyxy(box: Sequence[float]) -> dict[str, Any]:
    x1, y1, x2, y2 = box
    return {"vertices": [_vertex(x1, y1), _vertex(x2, y1), _vertex(x2, y2), _vertex(x1, y2)]}


def _poly_points(points: Sequence[Sequence[float]]) -> dict[str, Any]:
    return {"vertices": [_vertex(x, y) for x, y in points]}


def _lerp(a: Sequence[float], b: Sequence[float], t: float) -> tuple[float, float]:
    return a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t


def sub_quad(quad: Sequence[Sequence[float]], t0: float, t1: float) -> list[tuple[float, float]]:
    """The part of a quadrilateral (TL, TR, BR, BL) between fractions ``t0`` and ``t1`` of its width."""
    tl, tr, br, bl = quad
    return [_lerp(tl, tr, t0), _lerp(tl, tr, t1), _lerp(bl, br, t1), _lerp(bl, br, t0)]


# --------------------------------------------------------------------------- features


class _Encoder:
    def __init__(self, int_enums: bool) -> None:
        self.int_enums = int_enums

    def __call__(self, table: Mapping[str, int], name: str) -> str | int:
        return table[name] if self.int_enums else name


def _mid(wnid: str) -> str:
    return f"/wordnet/{wnid}" if wnid else ""


def _description(label: str) -> str:
    """Cloud Vision's descriptions start with a capital ("School bus")."""
    return label[:1].upper() + label[1:]


def label_annotations(result: dict[str, Any], doc: dict[str, Any], max_results: int) -> list[dict[str, Any]]:
    """Generic labels and the classifier's class names, merged by description (higher score kept), best first."""
    from visor.features.labels import generic_labels, imagenet_wnid, label_wnid

    given = doc.get("generic_labels")
    if isinstance(given, dict) and isinstance(given.get("labels"), list):
        generic = [(str(g["name"]), float(g["score"])) for g in given["labels"]]
    else:
        objects = doc.get("objects")
        usable = isinstance(objects, dict) and "error" not in objects and "detections" in objects
        generic = [(g.name, g.score) for g in generic_labels(result, objects if usable else None)]
    found: dict[str, tuple[float, str, str]] = {}  # lower-cased description -> (score, description, mid)

    def add(description: str, score: float, mid: str) -> None:
        key = description.lower()
        old = found.get(key)
        if old is None:
            found[key] = (score, description, mid)
        else:
            best = (score, description) if score > old[0] else (old[0], old[1])
            found[key] = (*best, old[2] or mid)

    for name, score in generic:
        add(name, score, _mid(label_wnid(name)))
    for p in result["predictions"]:
        add(_description(str(p["label"])), float(p["confidence"]), _mid(imagenet_wnid(p["class_id"], p["label"])))
    ranked = sorted(found.values(), key=lambda x: -x[0])[:max_results]  # stable: generic labels first on ties
    return [{"mid": mid, "description": description, "score": score, "topicality": score}
            for score, description, mid in ranked]


def _landmarks(points: Sequence[Sequence[float]]) -> dict[int, tuple[float, float]]:
    """dlib's points as ``{68-point index: (x, y)}`` (5-point models give a subset)."""
    if len(points) == 68:
        return {i: (float(x), float(y)) for i, (x, y) in enumerate(points)}
    if len(points) == 5:
        return {i: (float(x), float(y)) for i, (x, y) in zip(FIVE_POINT_INDICES, points, strict=True)}
    return {}


def _mean(marks: Mapping[int, tuple[float, float]], idx: Sequence[int]) -> tuple[float, float]:
    return (sum(marks[i][0] for i in idx) / len(idx), sum(marks[i][1] for i in idx) / len(idx))


def face_angles(marks: Mapping[int, tuple[float, float]]) -> tuple[float, float, float]:
    """(roll, pan, tilt) in degrees from dlib landmarks (``{68-point index: (x, y)}``).

    Roll is the slope of the line from the viewer's left eye to the right eye (positive when
    the face is turned clockwise on screen). Pan needs the jaw (68 points): where the nose tip
    sits between the jaw ends, in the eye-aligned frame, as the sine of the yaw (positive when
    the nose is towards the viewer's right). Tilt is not estimated (0).
    """
    if not all(i in marks for i in (36, 39, 42, 45)):
        return 0.0, 0.0, 0.0
    (lx, ly), (rx, ry) = _mean(marks, (36, 39)), _mean(marks, (42, 45))
    roll_rad = math.atan2(ry - ly, rx - lx)
    pan = 0.0
    if all(i in marks for i in (0, 16, 30)):
        cos, sin = math.cos(roll_rad), math.sin(roll_rad)

        def along(i: int) -> float:  # position along the eye line
            return cos * marks[i][0] + sin * marks[i][1]

        width = along(16) - along(0)
        if width > 1e-6:
            r = (along(30) - along(0)) / width
            pan = math.degrees(math.asin(max(-1.0, min(1.0, 2 * r - 1))))
    return round(math.degrees(roll_rad), 3), round(pan, 3), 0.0


def _confidence(score: float | None, yunet: bool = False) -> float:
    """YuNet's score as it is (a probability); dlib's detector score (an SVM margin, 0 at its threshold)
    squashed onto 0..1 by the logistic."""
    if score is None or (isinstance(score, float) and math.isnan(score)):
        return 0.0
    if yunet:
        return round(min(1.0, max(0.0, float(score))), 6)
    return round(1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, float(score))))), 6)


#: The ``model`` of faces found by dlib's detectors ("" for documents that name no model): their 5 points are
#: dlib's (eye corners, bottom of the nose). Any other face model is a face-detection card (YuNet's layout).
DLIB_FACE_MODELS = frozenset({"hog", "cnn", ""})


def _is_yunet(model: str) -> bool:
    """Whether faces come from a YuNet face-detection card (5 points: eyes, nose tip, mouth corners)."""
    return str(model) not in DLIB_FACE_MODELS


def _named_landmarks(points: Sequence[Sequence[float]], yunet: bool) -> dict[str, tuple[float, float]]:
    """Cloud Vision landmark type -> position, from YuNet's 5 points (``yunet``) or dlib's 5 or 68."""
    if yunet:
        marks = {i: (float(x), float(y)) for i, (x, y) in enumerate(points)}
        table: Mapping[str, tuple[int, ...]] = YUNET_LANDMARKS
    else:
        marks = _landmarks(points)
        table = LANDMARK_POINTS
    return {name: _mean(marks, idx) for name, idx in table.items() if all(i in marks for i in idx)}


_FACE_LIKELIHOODS = ("joyLikelihood", "sorrowLikelihood", "angerLikelihood", "surpriseLikelihood",
                     "underExposedLikelihood", "blurredLikelihood", "headwearLikelihood")


def _faces(doc: dict[str, Any], max_results: int, enc: _Encoder) -> list[dict[str, Any]]:
    out = []
    yunet = _is_yunet(doc.get("model", ""))
    for face in doc["faces"][:max_results]:
        poly = _poly_xyxy(face["xyxy"])
        points = face.get("landmarks") or []
        five = yunet and len(points) == 5  # YuNet's own points (dlib's 68 may come with YuNet's boxes)
        named = _named_landmarks(points, five)
        landmarks = [{"type": enc(LANDMARK_TYPES, name), "position": {"x": x, "y": y, "z": 0.0}}
                     for name, (x, y) in named.items()]
        if five:  # no jaw: roll from the eye centres only
            roll = 0.0
            if "LEFT_EYE" in named and "RIGHT_EYE" in named:
                (lx, ly), (rx, ry) = named["LEFT_EYE"], named["RIGHT_EYE"]
                roll = round(math.degrees(math.atan2(ry - ly, rx - lx)), 3)
            pan = tilt = 0.0
        else:
            roll, pan, tilt = face_angles(_landmarks(points))
        confidence = _confidence(face.get("confidence"), yunet)
        annotation: dict[str, Any] = {
            "boundingPoly": poly, "fdBoundingPoly": {"vertices": [dict(v) for v in poly["vertices"]]},
            "landmarks": landmarks, "rollAngle": roll, "panAngle": pan, "tiltAngle": tilt,
            "detectionConfidence": confidence, "landmarkingConfidence": confidence if landmarks else 0.0,
        }
        annotation.update({key: enc(LIKELIHOODS, "UNKNOWN") for key in _FACE_LIKELIHOODS})
        out.append(annotation)
    return out


def line_reading_order(lines: list[dict[str, Any]]) -> list[list[int]]:
    import numpy as np

    from visor.types.text import reading_order

    return reading_order(np.array([line["polygon"] for line in lines], dtype=np.float32).reshape(-1, 4, 2))


def _text_annotations(doc: dict[str, Any], order: list[list[int]]) -> list[dict[str, Any]]:
    lines = doc["lines"]
    if not lines:
        return []
    xs = [p[0] for line in lines for p in line["polygon"]]
    ys = [p[1] for line in lines for p in line["polygon"]]
    everything = _poly_xyxy((min(xs), min(ys), max(xs), max(ys)))
    return [{"locale": "", "description": doc["full_text"], "boundingPoly": everything}] + [
        {"description": lines[i]["text"], "boundingPoly": _poly_points(lines[i]["polygon"])}
        for row in order for i in row
    ]


def _full_text(doc: dict[str, Any], order: list[list[int]], width: int, height: int,
               enc: _Encoder) -> dict[str, Any]:
    """A ``TextAnnotation``: one page; one block and paragraph per line; words split on spaces.

    The detected breaks reproduce the text: SPACE between words and between lines on one
    reading line, LINE_BREAK at the end of each reading line.
    """
    lines = doc["lines"]
    blocks = []
    for row in order:
        for k, i in enumerate(row):
            line = lines[i]
            text, quad, conf = line["text"], line["polygon"], float(line["confidence"])
            n = max(len(text), 1)
            spans = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
            words = []
            for w, (start, end) in enumerate(spans):
                symbols = [{"boundingBox": _poly_points(sub_quad(quad, c / n, (c + 1) / n)), "text": text[c],
                            "confidence": conf} for c in range(start, end)]
                last_in_row = w == len(spans) - 1 and k == len(row) - 1
                brk = "LINE_BREAK" if last_in_row else "SPACE"
                symbols[-1]["property"] = {"detectedBreak": {"type": enc(BREAK_TYPES, brk)}}
                words.append({"boundingBox": _poly_points(sub_quad(quad, start / n, end / n)), "symbols": symbols,
                              "confidence": conf})
            box = _poly_points(quad)
            blocks.append({"boundingBox": box, "paragraphs": [{"boundingBox": box, "words": words,
                                                               "confidence": conf}],
                           "blockType": enc(BLOCK_TYPES, "TEXT"), "confidence": conf})
    confidence = sum(float(line["confidence"]) for line in lines) / len(lines)
    return {"pages": [{"width": width, "height": height, "blocks": blocks, "confidence": round(confidence, 6)}],
            "text": doc["full_text"]}


def _safe_search(doc: dict[str, Any], enc: _Encoder) -> dict[str, Any]:
    unknown = enc(LIKELIHOODS, "UNKNOWN")
    return {"adult": enc(LIKELIHOODS, doc["adult"]), "spoof": unknown, "medical": unknown, "violence": unknown,
            "racy": enc(LIKELIHOODS, doc["racy"])}


def _image_properties(doc: dict[str, Any]) -> dict[str, Any]:
    return {"dominantColors": {"colors": [
        {"color": {"red": c["rgb"][0], "green": c["rgb"][1], "blue": c["rgb"][2]}, "score": float(c["fraction"]),
         "pixelFraction": float(c["fraction"])} for c in doc["dominant_colors"]]}}


def _crop_hints(doc: dict[str, Any], width: int, height: int) -> dict[str, Any]:
    hints = []
    for hint in doc["hints"]:
        x1, y1, x2, y2 = hint["box"]
        hints.append({"boundingPoly": _poly_xyxy(hint["box"]), "confidence": 1.0,
                      "importanceFraction": round(max(0.0, (x2 - x1) * (y2 - y1)) / max(1, width * height), 6)})
    return {"cropHints": hints}


def _objects(doc: dict[str, Any], max_results: int, width: int, height: int) -> list[dict[str, Any]]:
    from visor.features.labels import display_name, label_wnid

    rows = sorted(doc["detections"], key=lambda d: -float(d["confidence"]))[:max_results]
    out = []
    for d in rows:
        x1, y1, x2, y2 = d["xyxy"]
        nx1, nx2 = (min(1.0, max(0.0, x / width)) for x in (x1, x2))
        ny1, ny2 = (min(1.0, max(0.0, y / height)) for y in (y1, y2))
        name = display_name(str(d.get("class_name", d["class_id"])))
        out.append({"mid": _mid(label_wnid(name)), "languageCode": "en", "name": name,
                    "score": float(d["confidence"]),
                    "boundingPoly": {"normalizedVertices": [{"x": nx1, "y": ny1}, {"x": nx2, "y": ny1},
                                                            {"x": nx2, "y": ny2}, {"x": nx1, "y": ny2}]}})
    return out


def _feature_error(cv_type: str, error: dict[str, Any]) -> dict[str, Any]:
    code = error.get("code", "")
    rpc = "INVALID_ARGUMENT" if code in _INPUT_CODES else "FAILED_PRECONDITION" if code == "invalid_config" \
        else "INTERNAL"
    return _status(rpc, f"{cv_type}: {error.get('message', 'failed')}")


def _merge(errors: list[dict[str, Any]]) -> dict[str, Any]:
    """One ``Status`` for several: the first one's code, all the messages."""
    if len(errors) == 1:
        return errors[0]
    return {"code": errors[0]["code"], "message": "; ".join(e["message"] for e in errors)}


def _response(plan: _Plan, doc: dict[str, Any], enc: _Encoder) -> dict[str, Any]:
    """The ``AnnotateImageResponse`` for one visor document."""
    out: dict[str, Any] = {}
    errors = list(plan.errors)
    width, height = int(doc["width"]), int(doc["height"])
    order: list[list[int]] | None = None
    for cv_type in plan.types:
        visor_feature = SUPPORTED_FEATURES[cv_type]
        result = doc.get(visor_feature)
        if not isinstance(result, dict) or "error" in result:
            error = result.get("error", {}) if isinstance(result, dict) else {"message": "no result"}
            errors.append(_feature_error(cv_type, error))
            continue
        limit = plan.max_results[cv_type]
        if cv_type == "LABEL_DETECTION":
            out["labelAnnotations"] = label_annotations(result, doc, limit)
        elif cv_type == "FACE_DETECTION":
            out["faceAnnotations"] = _faces(result, limit, enc)
        elif cv_type in ("TEXT_DETECTION", "DOCUMENT_TEXT_DETECTION"):
            if order is None:
                order = line_reading_order(result["lines"]) if result["lines"] else []
            out["textAnnotations"] = _text_annotations(result, order)
            if cv_type == "DOCUMENT_TEXT_DETECTION" and result["lines"]:
                out["fullTextAnnotation"] = _full_text(result, order, width, height, enc)
        elif cv_type == "SAFE_SEARCH_DETECTION":
            out["safeSearchAnnotation"] = _safe_search(result, enc)
        elif cv_type == "IMAGE_PROPERTIES":
            out["imagePropertiesAnnotation"] = _image_properties(result)
        elif cv_type == "CROP_HINTS":
            out["cropHintsAnnotation"] = _crop_hints(result, width, height)
        elif cv_type == "OBJECT_LOCALIZATION":
            out["localizedObjectAnnotations"] = _objects(result, limit, width, height)
    out = {k: v for k, v in out.items() if v not in ([], {})}
    if errors:
        out["error"] = _merge(errors)
    return out


# --------------------------------------------------------------------------- entry point


def annotate_images(body: Any, run: Run, *, int_enums: bool, has_detector: bool,
                    max_images: int = MAX_IMAGES) -> dict[str, Any]:
    """Answer one ``images:annotate`` request body (parsed JSON) with a ``BatchAnnotateImagesResponse``.

    ``run(image_bytes, visor_features, options)`` returns visor's annotate document for one
    image (``options``: ``top_k``, and ``crop_aspect_ratios`` when the request gives some) and
    raises a :class:`~visor.errors.VisorError` for a bad image. ``int_enums`` writes enums as
    numbers (see :func:`int_enums_requested`). Raises :class:`CloudVisionRequestError` for a
    malformed body; errors of ``run`` with a 429 or 5xx ``http_status`` propagate.
    """
    if not isinstance(body, dict):
        raise CloudVisionRequestError('the body must be a JSON object: {"requests": [...]}')
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        raise CloudVisionRequestError('no requests: the body must be {"requests": [{"image": ..., "features": ...}]}')
    if len(requests) > max_images:
        raise CloudVisionRequestError(f"too many images in one request: {len(requests)}, the limit is {max_images}")
    for i, request in enumerate(requests):
        _check_structure(i, request)

    plans: list[_Plan | dict[str, Any]] = []
    for request in requests:
        try:
            plans.append(_plan(request, has_detector))
        except _ImageError as e:
            plans.append({"error": e.status})

    enc = _Encoder(int_enums)
    responses = []
    for plan in plans:
        if not isinstance(plan, _Plan):
            responses.append(plan)
            continue
        if not plan.types:
            responses.append({"error": _merge(plan.errors)})
            continue
        try:
            doc = run(plan.data, plan.visor_features, dict(plan.options))
        except VisorError as e:
            status = int(getattr(e, "http_status", 500))
            if status == 429 or status >= 500:
                raise
            responses.append({"error": _status("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT", str(e))})
            continue
        responses.append(_response(plan, doc, enc))
    return {"responses": responses}
