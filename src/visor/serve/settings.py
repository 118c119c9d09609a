"""Service configuration: one validated, frozen dataclass (``visor serve`` flags map onto it)."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import asdict, dataclass, field
from typing import Any

from visor.config import from_mapping
from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits
from visor.models.registry import DEFAULT_CLASSIFIER, DEFAULT_DETECTOR, DEFAULT_SEGMENTER

MB = 1024 * 1024
#: A DeepStack custom model's name (the {model} of POST /v1/vision/custom/{model}).
CUSTOM_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
#: An AWS region name (``visor serve --aws-region``): what SigV4 credential scopes must name.
AWS_REGION = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
#: The model name that switches a role off (``visor serve --detector none``).
NO_MODEL = "none"
#: The settings naming a model that ``none`` switches off.
OPTIONAL_ROLES = ("detector", "segmenter")


@dataclass(frozen=True)
class ServeSettings:
    """Everything the service needs; defaults suit one machine on loopback.

    Batching: concurrent requests for one model are gathered into batches of at most
    ``max_batch`` images, waiting at most ``max_wait_ms`` for a batch to fill. With
    ``batch_calibration`` the model is timed at start-up at batch sizes up to ``max_batch`` and
    the limit becomes the fastest size (on a few CPU cores that is often 1). At most
    ``queue_size`` images wait per model; beyond that requests get 503 with ``Retry-After``.
    A request not answered within ``deadline_ms`` gets 504.

    Models: ``classifier`` serves the classification task (``/v1/classify``, annotate's labels),
    ``detector`` the detection task (``/v1/detect``, annotate's objects, Cloud Vision's
    OBJECT_LOCALIZATION), ``segmenter`` the segmentation task (``/v1/segment``, annotate's
    segmentation); the detector defaults to the zoo's COCO detector and the segmenter to the zoo's
    Pascal VOC DeepLabV3, and ``None`` (or ``"none"``, as ``visor serve --detector none`` gives it)
    switches that task off.
    """

    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    classifier: str = DEFAULT_CLASSIFIER
    detector: str | None = DEFAULT_DETECTOR
    segmenter: str | None = DEFAULT_SEGMENTER
    index: str | None = None  # a `visor index build` folder: enables POST /v1/search
    # DeepStack's custom models: name -> a run folder, card.json or .onnx (POST /v1/vision/custom/{name})
    custom: dict[str, str] = field(default_factory=dict)
    threads: int | None = None
    # micro-batching and load shedding
    max_batch: int = 16
    batch_calibration: bool = True  # time the model at start-up; batch only up to the fastest size
    max_wait_ms: float = 5.0
    queue_size: int = 64
    deadline_ms: float = 30_000.0
    retry_after_s: int = 1
    # request limits
    max_body_bytes: int = 32 * MB
    max_images: int = 16
    max_image_bytes: int = DEFAULT_LIMITS.max_bytes
    max_image_pixels: int = DEFAULT_LIMITS.max_pixels
    # auth
    require_keys: bool = True
    key_cache_s: float = 5.0  # remember verified keys this long (a revocation applies within it)
    rate_limit: float | None = None  # requests per second per key (None: unlimited)
    rate_burst: int = 20
    # the Rekognition API (POST /): the region AWS Signature Version 4 requests must be scoped to
    aws_region: str = "us-east-1"
    # /metrics: an API key, or the bearer token in this file (Prometheus' credentials_file), or
    # nothing with metrics_public (allowed only when the service listens on loopback)
    metrics_token_file: str | None = None
    metrics_public: bool = False
    # storage
    db: str | None = None  # SQLAlchemy URL; None: SQLite in $VISOR_HOME
    faces_db: str | None = None  # face collections file; None: visor.faces default
    log_predictions: bool = False
    retention_days: float = 30.0
    # review queue: None switches it off
    review_threshold: float | None = None
    review_thresholds: dict[str, float] = field(default_factory=dict)
    review_labels: tuple[str, ...] = ()
    review_sample_rate: float = 0.0
    preload: tuple[str, ...] = ("classifier",)
    # drift monitoring: a `visor evaluate --profile` file; /metrics compares the last
    # drift_window classify predictions with it
    drift_profile: str | None = None
    drift_window: int = 500

    def __post_init__(self) -> None:
        positive = ("port", "workers", "max_batch", "queue_size", "max_body_bytes", "max_images",
                    "max_image_bytes", "max_image_pixels", "rate_burst", "retry_after_s", "drift_window")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("max_wait_ms", "deadline_ms", "retention_days", "key_cache_s"):
            if float(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if self.rate_limit is not None and self.rate_limit <= 0:
            raise ConfigError(f"rate_limit must be positive, got {self.rate_limit}")
        for name, value in [("review_threshold", self.review_threshold), ("review_sample_rate",
                                                                          self.review_sample_rate),
                            *self.review_thresholds.items()]:
            if value is not None and not 0.0 <= float(value) <= 1.0:
                raise ConfigError(f"{name} must be between 0 and 1, got {value}")
        unknown = set(self.preload) - {"classifier", "detector", "segmenter", "faces", "text", "moderation"}
        if unknown:
            raise ConfigError(f"unknown preload entries {sorted(unknown)}: use classifier, detector, segmenter, "
                              "faces, text, moderation")
        if self.metrics_public and not self.loopback:
            raise ConfigError(f"--metrics-public needs a loopback address (the service listens on {self.host}); "
                              "give Prometheus a bearer token with --metrics-token-file instead")
        if not isinstance(self.aws_region, str) or not AWS_REGION.fullmatch(self.aws_region):
            raise ConfigError(f"aws_region must be an AWS region name such as us-east-1, got {self.aws_region!r}")
        if not isinstance(self.classifier, str) or not self.classifier.strip():
            raise ConfigError(f"classifier must name a model, got {self.classifier!r}")
        for role in OPTIONAL_ROLES:
            value = getattr(self, role)
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise ConfigError(f"{role} must name a model, or be 'none' for no {role}, got {value!r}")
            if isinstance(value, str) and value.strip().lower() == NO_MODEL:
                object.__setattr__(self, role, None)
        for name, path in dict(self.custom).items():
            if not isinstance(name, str) or not CUSTOM_NAME.fullmatch(name):
                raise ConfigError(f"custom model name {name!r}: use letters, digits, '_', '-' or '.' (at most 64)")
            if not isinstance(path, str) or not path.strip():
                raise ConfigError(f"custom model {name!r} needs a path (run folder, card.json or .onnx)")
        object.__setattr__(self, "custom", dict(self.custom))
        object.__setattr__(self, "review_labels", tuple(self.review_labels))
        object.__setattr__(self, "preload", tuple(self.preload))

    @property
    def limits(self) -> ImageLimits:
        return ImageLimits(max_bytes=self.max_image_bytes, max_pixels=self.max_image_pixels)

    @property
    def review_enabled(self) -> bool:
        return self.review_threshold is not None or bool(self.review_labels) or self.review_sample_rate > 0

    @property
    def loopback(self) -> bool:
        return is_loopback(self.host)

    def metrics_token(self) -> str | None:
        """The /metrics bearer token read from ``metrics_token_file`` (None without one)."""
        if self.metrics_token_file is None:
            return None
        try:
            with open(self.metrics_token_file, encoding="utf-8") as f:
                token = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read the metrics token file {self.metrics_token_file}: {e}") from None
        if len(token) < 16 or any(c.isspace() for c in token):
            raise ConfigError(f"the metrics token file {self.metrics_token_file} must hold one token of at least "
                              "16 characters without spaces (e.g. openssl rand -hex 32)")
        return token

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ServeSettings:
        return from_mapping(cls, d)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
