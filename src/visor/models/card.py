"""Model cards: everything about a set of weights in one place.

A card is written as ``card.json`` next to the weights. Preprocessing is built
from the card's :class:`Preprocess`, never from constants elsewhere in the code.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from visor.config import from_mapping, parse_json, suggest
from visor.errors import ConfigError, ModelNotFound
from visor.io.files import atomic_write

Task = str
"""A card's task: an identifier naming an entry of the task registry (:mod:`visor.models.tasks`), such as
``"classification"``, ``"detection"`` or ``"face_detection"``. Cards accept any identifier; :func:`visor.load`
refuses a task the registry does not know."""
Interpolation = Literal["nearest", "bilinear", "bicubic", "lanczos", "box", "hamming"]
ResizePolicy = Literal["center_crop", "squash", "letterbox"]
LetterboxAlign = Literal["center", "top_left"]
ChannelOrder = Literal["rgb", "bgr"]
OutputFormat = str
"""Layout of a model's output (``"logits"``, ``"yolov8"``, ``"yolox"``, ``"yunet"``...): an identifier; each task
lists the formats its predictor reads (``TaskSpec.output_formats``), checked by :func:`visor.load`."""
Layout = Literal["nchw", "nhwc"]
WeightsKind = Literal["package", "path", "url"]
WeightsFormat = Literal["torch", "safetensors", "onnx"]

CARD_FILENAME = "card.json"
MAX_CARD_BYTES = 16 << 20
"""Largest card.json read (16 MiB: a card with 100,000 labels is about 3 MB)."""


def _identifier(value: object, name: str) -> None:
    if not isinstance(value, str) or not value.isidentifier():
        raise ConfigError(f"{name} must be a non-empty identifier (letters, digits, _), got {value!r}")


def _choice(value: str, options: tuple[str, ...], name: str) -> None:
    if value not in options:
        raise ConfigError(f"{name} must be one of {list(options)}, got {value!r}.{suggest(str(value), options)}")


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes a model input.

    ``center_crop``: take the centred box of ``crop_pct`` of the largest region with
    the input's aspect ratio, and resize it to ``input_size`` (TF/timm evaluation).
    ``squash``: resize the whole image to ``input_size``, ignoring aspect ratio.
    ``letterbox``: scale the whole image to fit ``input_size`` keeping its aspect ratio, and pad
    the rest with ``pad_value`` (centred, or at the bottom/right with ``letterbox_align="top_left"``).
    ``mean`` and ``std`` are per RGB channel on the 0..1 scale.
    """

    input_size: tuple[int, int] = (224, 224)
    """(height, width) of the model input."""
    resize: ResizePolicy = "center_crop"
    crop_pct: float = 0.875
    interpolation: Interpolation = "bicubic"
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    letterbox_align: LetterboxAlign = "center"
    pad_value: int = 114
    channel_order: ChannelOrder = "rgb"
    """Channel order the model expects (some exports, such as YOLOX and nudenet, take BGR)."""
    layout: Layout = "nchw"
    """Tensor layout of the model input (TensorFlow exports such as DeepLab take NHWC)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_size", tuple(int(v) for v in self.input_size))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ConfigError(f"input_size must be (height, width) > 0, got {self.input_size}")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError("mean and std need 3 values each, std > 0")
        if not 0 < self.crop_pct <= 1:
            raise ConfigError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        _choice(self.resize, ResizePolicy.__args__, "resize")
        _choice(self.interpolation, Interpolation.__args__, "interpolation")
        _choice(self.letterbox_align, LetterboxAlign.__args__, "letterbox_align")
        _choice(self.channel_order, ChannelOrder.__args__, "channel_order")
        _choice(self.layout, Layout.__args__, "layout")


@dataclass(frozen=True)
class WeightsSource:
    """Where the weights live, and the sha256 they must have.

    ``kind="package"``: ``location`` is ``"dist_package:relative/path"`` inside an installed
    package (found without importing it); ``kind="path"``: a local path (a card read from a folder
    must name a file inside that folder); ``kind="url"``: an ``https://`` URL, downloaded once into
    the cache (``VISOR_CACHE``, default ``~/.cache/visor``).
    """

    kind: WeightsKind
    location: str
    sha256: str | None = None
    format: WeightsFormat = "torch"

    def __post_init__(self) -> None:
        _choice(self.kind, WeightsKind.__args__, "weights.kind")
        _choice(self.format, WeightsFormat.__args__, "weights.format")
        if not isinstance(self.location, str) or not self.location:
            raise ConfigError(f"weights.location must be a non-empty string, got {self.location!r}")
        if self.sha256 is not None:
            sha = self.sha256.lower()
            if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
                raise ConfigError(f"weights.sha256 must be 64 hex digits, got {self.sha256!r}")
            object.__setattr__(self, "sha256", sha)
        if self.kind == "url":
            if not self.sha256:
                raise ConfigError("weights from a URL need a sha256")
            parts = urllib.parse.urlsplit(self.location)
            if parts.scheme.lower() != "https" or not parts.hostname:
                raise ConfigError(f"weights URLs must be https://host/..., got {self.location!r}")


@dataclass(frozen=True)
class ModelCard:
    """A model's identity, weights, preprocessing, labels, licence and reference metrics."""

    name: str
    task: Task
    architecture: str
    weights: WeightsSource
    labels: tuple[str, ...]
    preprocess: Preprocess = field(default_factory=Preprocess)
    license: str = "unknown"
    description: str = ""
    source: str = ""
    """Where the weights came from (paper, repository, package), for people."""
    metrics: dict[str, Any] = field(default_factory=dict)
    """Reference metrics, e.g. ``{"imagenet_top1": 75.1}``, with the dataset in the key; exports
    add their parity checks under ``"export"``."""
    temperature: float = 1.0
    """Softmax temperature fitted on validation data (``logits / temperature``); 1 = uncalibrated."""
    output_format: OutputFormat = "logits"
    """Layout of the ONNX output: class ``logits`` (classifiers), or a detector layout:
    ``yolov8`` ``[B, 4+nc, N]`` (cx, cy, w, h, class scores), ``yolov5`` ``[B, N, 5+nc]``
    (cx, cy, w, h, objectness, class scores) or ``yolox`` ``[B, N, 5+nc]``; ``yunet`` (faces),
    ``segmentation_logits``... Each task accepts its own (``visor.models.tasks``)."""

    def __post_init__(self) -> None:
        if not self.name or not isinstance(self.name, str):
            raise ConfigError("a model card needs a name")
        _identifier(self.task, "task")
        object.__setattr__(self, "labels", tuple(str(x) for x in self.labels))
        if not self.labels:
            raise ConfigError("a model card needs its labels")
        _identifier(self.output_format, "output_format")
        if not float(self.temperature) > 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")
        object.__setattr__(self, "temperature", float(self.temperature))
        if isinstance(self.weights, dict):
            object.__setattr__(self, "weights", from_mapping(WeightsSource, self.weights, "weights"))
        if isinstance(self.preprocess, dict):
            object.__setattr__(
                self, "preprocess", from_mapping(Preprocess, self.preprocess, "preprocess")
            )

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def replace(self, **changes: Any) -> ModelCard:
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ JSON

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["labels"] = list(self.labels)
        d["preprocess"]["input_size"] = list(self.preprocess.input_size)
        d["preprocess"]["mean"] = list(self.preprocess.mean)
        d["preprocess"]["std"] = list(self.preprocess.std)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        return from_mapping(cls, data, "model card")

    def save(self, path: str | Path) -> Path:
        """Write the card as JSON. A folder gets ``card.json`` inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        atomic_write(path, json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> ModelCard:
        path = Path(path)
        if path.is_dir():
            path = path / CARD_FILENAME
        try:
            if not path.is_file():  # a FIFO or device named card.json would block or never end
                raise FileNotFoundError
            with open(path, "rb") as f:
                raw = f.read(MAX_CARD_BYTES + 1)
        except FileNotFoundError:
            raise ModelNotFound(f"no model card at {path}") from None
        except OSError as e:
            raise ConfigError(f"cannot read model card {path}: {e.strerror or e}") from None
        if len(raw) > MAX_CARD_BYTES:
            raise ConfigError(f"model card {path} is larger than {MAX_CARD_BYTES} bytes")
        return cls.from_dict(parse_json(raw, f"model card {path}"))
