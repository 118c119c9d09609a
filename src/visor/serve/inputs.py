"""Reading images and options out of a request: multipart uploads or base64 JSON."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from visor.config import MAX_JSON_DEPTH
from visor.errors import InvalidInput, VisorError

#: Magic numbers of the formats visor decodes, for the media type of stored review images.
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))

#: Bounds on a JSON request body: nesting of arrays and objects (visor's one bound on user JSON,
#: :data:`visor.config.MAX_JSON_DEPTH`), and the characters of one number.
MAX_INT_DIGITS = 20  # 2**64 has 20 digits; JSON numbers past that are never a valid option
MAX_NUMBER_CHARS = 64
#: Bodies at least this big are parsed off the event loop (:func:`read_json`).
OFF_LOOP_BYTES = 1 << 20
#: A JSON string in the body (strings cannot hold brackets that count towards the depth).
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
#: A \uD800-\uDFFF escape: the only way a surrogate gets into a string parsed from UTF-8.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_DIGITS = re.compile(rf"[+-]?\d{{1,{MAX_INT_DIGITS}}}")


class PayloadTooLarge(VisorError):
    """The request body is over the service's size cap (HTTP 413)."""

    http_status = 413
    code = "payload_too_large"


class UnsupportedMediaType(VisorError):
    """The request body is neither multipart/form-data nor JSON (HTTP 415)."""

    http_status = 415
    code = "unsupported_media_type"


@dataclass(frozen=True)
class ImageInput:
    name: str
    data: bytes

    @property
    def media_type(self) -> str:
        return sniff_media_type(self.data)


def sniff_media_type(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for magic, media in _SIGNATURES:
        if data.startswith(magic):
            return media
    return "application/octet-stream"


class _JSONError(ValueError):
    """Why a body is refused by :func:`load_json` (turned into the caller's error type)."""


def _check_depth(raw: bytes, max_depth: int) -> None:
    """Refuse arrays and objects nested deeper than ``max_depth`` before parsing (the parser recurses).
    Brackets inside strings don't count."""
    if raw.count(b"[") + raw.count(b"{") <= max_depth:
        return
    import numpy as np

    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)

    codes = np.frombuffer(brackets, dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int32)
    if int(np.cumsum(steps).max()) > max_depth:
        raise _JSONError(f"arrays and objects nest more than {max_depth} deep")


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _JSONError(f"the number {text[:20]}... has {digits} digits; at most {MAX_INT_DIGITS} are allowed")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text) if len(text) <= MAX_NUMBER_CHARS else math.inf
    if not math.isfinite(value):
        raise _JSONError(f"the number {text[:20]}{'...' if len(text) > 20 else ''} is too long or out of range")
    return value


def _parse_constant(text: str) -> float:
    raise _JSONError(f"{text} is not a JSON value")


def _check_strings(text: str, value: Any) -> None:
    """Refuse strings (values and keys) holding lone UTF-16 surrogates (``"\\ud800"``): not text."""
    if not _SURROGATE_ESCAPE.search(text):
        return
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _JSONError("a string holds a lone surrogate escape (such as \\ud800), which is not "
                         "valid Unicode") from None


def load_json(raw: bytes | str, *, error: type[VisorError] = InvalidInput, max_depth: int = MAX_JSON_DEPTH,
              prefix: str = "the body is not valid JSON:") -> Any:
    """A request body parsed as JSON, or ``error`` (a 4xx :class:`VisorError`: ``prefix`` and why) if not.

    Stricter than :func:`json.loads` so that no body can crash a route: arrays and objects nest at
    most ``max_depth`` deep, integers have at most :data:`MAX_INT_DIGITS` digits, other numbers
    must be finite (``1e999``, ``NaN`` and ``Infinity`` are refused), strings must be valid
    Unicode (no lone surrogates) and the bytes UTF-8 (UTF-16/32 with a BOM too, as JSON allows).
    An empty body is ``None``.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    if not raw or raw.isspace():
        return None
    try:
        encoding = json.detect_encoding(raw)
        text = raw.decode(encoding)
        _check_depth(raw if encoding.startswith("utf-8") else text.encode("utf-8"), max_depth)
        body = json.loads(text, parse_int=_parse_int, parse_float=_parse_float, parse_constant=_parse_constant)
        _check_strings(text, body)
    except _JSONError as e:
        raise error(f"{prefix} {e}") from None
    except (UnicodeDecodeError, ValueError) as e:  # JSONDecodeError is a ValueError
        raise error(f"{prefix} {e}") from None
    except RecursionError:  # belt and braces: _too_deep already bounds the depth
        raise error(f"{prefix} nested too deeply") from None
    return body


async def read_json(request: Any, *, error: type[VisorError] = InvalidInput,
                    prefix: str = "the body is not valid JSON:") -> Any:
    """The request's body through :func:`load_json`; bodies over :data:`OFF_LOOP_BYTES` are parsed in a
    worker thread so that a big body does not stall the event loop."""
    raw = await request.body()
    if len(raw) < OFF_LOOP_BYTES:
        return load_json(raw, error=error, prefix=prefix)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(load_json, raw, error=error, prefix=prefix)


async def read_model(request: Any, model: Any) -> Any:
    """The JSON body (see :func:`read_json`) validated as the pydantic ``model``: the routes that take a
    small JSON document read it this way, inside the route, so the API key is checked first."""
    from pydantic import ValidationError

    body = await read_json(request)
    if not isinstance(body, dict):
        raise InvalidInput(f"the body must be a JSON object, got {type(body).__name__ if body is not None else 'none'}")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        problems = ("; ".join(".".join(("body", *(str(x) for x in err["loc"]))) + f": {err['msg']}"
                              for err in e.errors()))
        raise InvalidInput(problems or "invalid body") from None


def strict_b64decode(text: str) -> bytes:
    """Base64 in the standard or URL-safe alphabet, padding optional, whitespace ignored.

    Any other character is an error (:class:`binascii.Error`); nothing is silently dropped.
    """
    text = re.sub(r"\s+", "", text).replace("-", "+").replace("_", "/")
    if len(text) % 4 == 1:
        raise binascii.Error("the base64 text has an impossible length")
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def decode_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"{name}: 'content' must be a non-empty base64 string")
    try:
        return strict_b64decode(text)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{name}: 'content' is not valid base64 (standard or URL-safe alphabet; any other "
                           "character is refused)") from None


def images_from_json(body: Any, max_images: int) -> tuple[list[ImageInput], dict[str, Any]]:
    """``{"images": [{"content": b64, "name": ...}], <options>}`` -> images and options."""
    if not isinstance(body, dict):
        raise InvalidInput("the JSON body must be an object with an 'images' list")
    items = body.get("images")
    if not isinstance(items, list) or not items:
        raise InvalidInput("the JSON body needs 'images': a non-empty list of {\"content\": base64, \"name\": ...}")
    check_count(len(items), max_images)
    images = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidInput(f"images[{i}] must be an object with 'content' (base64)")
        name = item.get("name") if isinstance(item.get("name"), str) else f"image-{i}"
        images.append(ImageInput(name, decode_base64(item.get("content"), name)))
    return images, {k: v for k, v in body.items() if k != "images"}


def _text(name: str | None) -> str | None:
    """A name as valid Unicode (lone surrogates become U+FFFD), so it can be stored and encoded."""
    return name.encode("utf-8", "surrogatepass").decode("utf-8", "replace") if name else name


def check_count(n: int, max_images: int) -> None:
    if n > max_images:
        raise InvalidInput(f"{n} images in one request; at most {max_images} are allowed")


async def read_images(request: Any, *, max_images: int) -> tuple[list[ImageInput], dict[str, Any]]:
    """The images of a multipart (field ``images``) or JSON request, and its options.

    Options come from the query string, then non-file form fields or JSON keys (later wins).
    """
    options: dict[str, Any] = dict(request.query_params)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "multipart/form-data":
        form = await request.form(max_files=max_images + 1, max_fields=64)
        files, fields = [], {}
        for key, value in form.multi_items():
            if hasattr(value, "read"):
                if key == "images":
                    files.append(value)
            else:
                fields[key] = value
        if not files:
            raise InvalidInput("no images: send the files in the multipart field 'images'")
        check_count(len(files), max_images)
        images = [ImageInput(_text(f.filename) or f"image-{i}", await f.read()) for i, f in enumerate(files)]
        await form.close()
        options.update(fields)
        return images, options
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        images, extra = images_from_json(await read_json(request), max_images)
        options.update(extra)
        return images, options
    raise UnsupportedMediaType(f"unsupported content type {ctype!r}: send multipart/form-data (field 'images') "
                               "or application/json ({\"images\": [{\"content\": base64}]})")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."


def int_option(options: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number option: a JSON integer (not ``true``, not ``2.9`` or ``2.0``) or, from the
    query string or a form field, decimal digits; between ``lo`` and ``hi``."""
    value = options.get(name, default)
    if isinstance(value, int) and not isinstance(value, bool):
        out = value
    elif isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        out = int(value)
    else:
        raise InvalidInput(f"{name} must be a whole number, got {_shown(value)}")
    if not lo <= out <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}, got {_shown(out)}")
    return out


def float_option(options: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    """A number option (a JSON number, not ``true``; or a decimal string) between ``lo`` and ``hi``."""
    value = options.get(name, default)
    out = math.nan
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        out = float(value) if not isinstance(value, int) or abs(value) < 2**63 else math.inf
    elif isinstance(value, str) and len(value) <= MAX_NUMBER_CHARS:
        with contextlib.suppress(ValueError):
            out = float(value)
    if math.isnan(out):
        raise InvalidInput(f"{name} must be a number, got {_shown(value)}")
    if not lo <= out <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}, got {_shown(value)}")
    return out


def list_option(options: dict[str, Any], name: str) -> list[str] | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        names = [v.strip() for v in value.split(",") if v.strip()]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        names = [v.strip() for v in value if v.strip()]
    else:
        raise InvalidInput(f"{name} must be a list of names or a comma-separated string, got {_shown(value)}")
    if not names:
        raise InvalidInput(f"{name} is empty: name at least one, or leave {name} out for the default")
    return names


# --------------------------------------------------------------------------- typed options of the routes


def _whole(value: Any, name: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidInput(f"{name} must be a whole number, got {_shown(value)}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}, got {_shown(value)}")
    return int(value)


def _number(value: Any, name: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise InvalidInput(f"{name} must be a number, got {_shown(value)}")
    if not lo <= value <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}, got {_shown(value)}")
    return float(value)


@dataclass(frozen=True)
class ClassifyOptions:
    """The options of ``POST /v1/classify``: ``top_k`` labels per image (1 to 1000)."""

    top_k: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "top_k", _whole(self.top_k, "top_k", 1, 1000))

    @classmethod
    def from_request(cls, options: dict[str, Any], *, top_k: int = 5) -> ClassifyOptions:
        """From the request's options (query string, form fields or JSON keys); keyword values are the defaults."""
        return cls(top_k=int_option(options, "top_k", top_k, 1, 1000))

    def as_kwargs(self) -> dict[str, Any]:
        """The keyword options of the task's ``postprocess``."""
        return {"top_k": self.top_k}


@dataclass(frozen=True)
class DetectOptions:
    """The options of ``POST /v1/detect``: the least box score ``conf``, the NMS overlap ``iou`` (both 0 to 1)
    and the most boxes per image ``max_det`` (1 to 10000)."""

    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300

    def __post_init__(self) -> None:
        object.__setattr__(self, "conf", _number(self.conf, "conf", 0, 1))
        object.__setattr__(self, "iou", _number(self.iou, "iou", 0, 1))
        object.__setattr__(self, "max_det", _whole(self.max_det, "max_det", 1, 10000))

    @classmethod
    def from_request(cls, options: dict[str, Any], *, conf: float = 0.25, iou: float = 0.45,
                     max_det: int = 300) -> DetectOptions:
        """From the request's options (query string, form fields or JSON keys); keyword values are the defaults."""
        return cls(conf=float_option(options, "conf", conf, 0, 1), iou=float_option(options, "iou", iou, 0, 1),
                   max_det=int_option(options, "max_det", max_det, 1, 10000))

    def as_kwargs(self) -> dict[str, Any]:
        return {"conf": self.conf, "iou": self.iou, "max_det": self.max_det}


#: How ``POST /v1/segment`` answers with a mask: COCO RLE per class in JSON, or an index PNG.
SEGMENT_FORMATS = ("rle", "png")


class NotAcceptable(VisorError):
    """The answer cannot be given in the media type the request's ``Accept`` asks for (HTTP 406)."""

    http_status = 406
    code = "not_acceptable"


@dataclass(frozen=True)
class SegmentOptions:
    """The options of ``POST /v1/segment``: the mask's ``format``, ``"rle"`` (``SegmentationMask`` JSON: one
    COCO RLE per present class) or ``"png"`` (an index PNG, base64 in the JSON answer). Nothing changes the
    prediction itself, so :meth:`as_kwargs` is empty."""

    format: str = "rle"

    def __post_init__(self) -> None:
        if not isinstance(self.format, str) or self.format.strip().lower() not in SEGMENT_FORMATS:
            raise InvalidInput(f"format must be one of {', '.join(SEGMENT_FORMATS)}, got {_shown(self.format)}")
        object.__setattr__(self, "format", self.format.strip().lower())

    @classmethod
    def from_request(cls, options: dict[str, Any], *, format: str = "rle") -> SegmentOptions:  # noqa: A002
        """From the request's options (query string, form fields or JSON keys); keyword values are the defaults."""
        return cls(format=options.get("format", format))

    def as_kwargs(self) -> dict[str, Any]:
        return {}


#: The typed options of each task's route, by task (a task not here takes its options as sent, checked by its
#: predictor's ``check_options``).
ROUTE_OPTIONS: dict[str, type] = {"classification": ClassifyOptions, "detection": DetectOptions,
                                  "segmentation": SegmentOptions}


def task_options(task: str, names: Sequence[str], options: dict[str, Any]) -> Any:
    """The options of a request for ``task``: its typed options (:data:`ROUTE_OPTIONS`), or else the options
    named in ``names`` (the task's ``TaskSpec.options``) as sent, decimal strings from a query or a form read
    as numbers."""
    typed = ROUTE_OPTIONS.get(task)
    if typed is not None:
        return typed.from_request(options)
    out: dict[str, Any] = {}
    for name in names:
        if name in options:
            value = options[name]
            if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
                value = int(value)
            elif isinstance(value, str) and len(value) <= MAX_NUMBER_CHARS:
                with contextlib.suppress(ValueError):
                    value = float(value) if math.isfinite(float(value)) else value
            out[name] = value
    return out
