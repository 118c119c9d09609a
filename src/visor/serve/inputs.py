"""Reading images and options out of a request: multipart uploads or base64 JSON."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from visor.errors import InvalidInput, VisorError

#: Magic numbers of the formats visor decodes, for the media type of stored review images.
_SIGNATURES = ((b"\xff\xd8\xff", "image/jpeg"), (b"\x89PNG\r\n\x1a\n", "image/png"), (b"GIF8", "image/gif"),
               (b"BM", "image/bmp"), (b"II*\x00", "image/tiff"), (b"MM\x00*", "image/tiff"))


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


def decode_base64(text: Any, name: str) -> bytes:
    if not isinstance(text, str) or not text:
        raise InvalidInput(f"{name}: 'content' must be a non-empty base64 string")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        try:
            return base64.urlsafe_b64decode(text)
        except (binascii.Error, ValueError):
            raise InvalidInput(f"{name}: 'content' is not valid base64") from None


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
        images = [ImageInput(f.filename or f"image-{i}", await f.read()) for i, f in enumerate(files)]
        await form.close()
        options.update(fields)
        return images, options
    if ctype in ("application/json", "") or ctype.endswith("+json"):
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise InvalidInput(f"the body is not valid JSON: {e}") from None
        images, extra = images_from_json(body, max_images)
        options.update(extra)
        return images, options
    raise UnsupportedMediaType(f"unsupported content type {ctype!r}: send multipart/form-data (field 'images') "
                               "or application/json ({\"images\": [{\"content\": base64}]})")


def _number_option(options: dict[str, Any], name: str, default: Any, lo: Any, hi: Any, kind: type,
                   what: str) -> Any:
    value = options.get(name, default)
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise InvalidInput(f"{name} must be {what}, got {value!r}") from None
    if not lo <= out <= hi:
        raise InvalidInput(f"{name} must be between {lo} and {hi}, got {out}")
    return out


def int_option(options: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    return _number_option(options, name, default, lo, hi, int, "a whole number")


def float_option(options: dict[str, Any], name: str, default: float, lo: float, hi: float) -> float:
    return _number_option(options, name, default, lo, hi, float, "a number")


def list_option(options: dict[str, Any], name: str) -> list[str] | None:
    value = options.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise InvalidInput(f"{name} must be a list of names or a comma-separated string, got {value!r}")
