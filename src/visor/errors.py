"""Typed errors. Everything visor raises on purpose derives from :class:`VisorError`.

Each error carries the HTTP status a service should answer with and a short
``code`` for JSON output, so the CLI and the REST layer map errors the same way.
"""

from __future__ import annotations


class VisorError(Exception):
    """Base class of every error visor raises on purpose."""

    http_status: int = 500
    code: str = "visor_error"

    def to_dict(self) -> dict[str, str]:
        return {"type": type(self).__name__, "code": self.code, "message": str(self)}


# --------------------------------------------------------------------------- input


class InvalidInput(VisorError, ValueError):
    """The input could not be used (HTTP 400)."""

    http_status = 400
    code = "invalid_input"


class ImageNotFound(InvalidInput, FileNotFoundError):
    """A path given as an image does not exist or is not a file."""

    code = "image_not_found"


class CorruptImage(InvalidInput):
    """The image is truncated or otherwise cannot be decoded (HTTP 400)."""

    code = "corrupt_image"


class CorruptVideo(CorruptImage):
    """A video that is empty, truncated or cannot be decoded (HTTP 400). A :class:`CorruptImage`, so that
    handlers of damaged input catch it too."""

    code = "corrupt_video"


class StreamUnavailable(InvalidInput):
    """A live source (RTSP, HTTP MJPEG, webcam) that cannot be reached or stays down after every reconnect
    attempt (HTTP 400; the CLI exits 1)."""

    code = "stream_unavailable"


class ImageTooLarge(InvalidInput):
    """The image exceeds the configured byte size or pixel count (HTTP 413)."""

    http_status = 413
    code = "image_too_large"


class UnsupportedFormat(InvalidInput):
    """The data is not an image in an allowed format (HTTP 415)."""

    http_status = 415
    code = "unsupported_format"


class OutputConflict(InvalidInput):
    """An output would overwrite or delete an input, the service's data, or an existing file (HTTP 400)."""

    code = "output_conflict"


# --------------------------------------------------------------------------- models


class ModelNotFound(VisorError, LookupError):
    """No registered model or model card at that name or path (HTTP 404)."""

    http_status = 404
    code = "model_not_found"


class WeightsError(VisorError):
    """Weights could not be obtained."""

    code = "weights_error"


class WeightsNotCached(WeightsError):
    """URL weights are not in the cache and could not be downloaded (offline, or the download failed).

    503: the service is fine, the model is not there yet (``visor models pull`` / ``import`` brings it)."""

    http_status = 503
    code = "weights_not_cached"


class WeightsIntegrityError(WeightsError):
    """Downloaded or local weights do not match the sha256 in their model card."""

    code = "weights_integrity"


class ConfigError(VisorError, ValueError):
    """A configuration or model card is invalid (unknown key, wrong type, bad value)."""

    http_status = 400
    code = "invalid_config"
