"""Object detection with ONNX Runtime: decode, letterbox (from the card), infer, decode boxes, NMS.

The ONNX output layouts (``card.output_format``):

* ``yolov8`` ``[B, 4+nc, N]`` (or its transpose ``[B, N, 4+nc]``): cx, cy, w, h in input
  pixels, then per-class scores (already sigmoid). YOLOv8, YOLO11 and visor's own detectors.
* ``yolov5`` ``[B, N, 5+nc]``: cx, cy, w, h, objectness, class scores; score = obj * cls.
* ``yolox`` ``[B, N, 5+nc]``: as ``yolov5``, either decoded (pixels) or raw, as the official
  export leaves it (``decode_in_inference=False``): xy = (raw_xy + grid) * stride,
  wh = exp(raw_wh) * stride over the stride 8/16/32 grids. ``yolox_decode="auto"`` calls an
  output raw when no box centre lies beyond the stride-8 grid size (decoded centres reach the
  far edge of the input; raw offsets stay near 0..1).

Each box takes its best class; boxes scoring above ``conf`` go through NMS (class-aware, or
class-agnostic with ``agnostic=True``) in input pixels, then are mapped back through the
letterbox into the original image's pixels and clipped to it.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, ClassVar, Literal

import numpy as np
from PIL import Image

from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource
from visor.models import preprocess as pp
from visor.models.batching import Outcome
from visor.models.card import ModelCard
from visor.models.onnx_import import DETECTOR_FORMATS
from visor.models.predictor import Predictor
from visor.models.runtime import OnnxSession
from visor.ops import batched_nms, nms
from visor.types import Detections

YoloxDecode = Literal["auto", "raw", "decoded"]
ChannelOrder = Literal["rgb", "bgr"]
YOLOX_STRIDES = (8, 16, 32)
MAX_NMS = 30_000
"""At most this many candidates (the highest scoring) enter NMS, as in Ultralytics."""
_FLOAT32_ONE_BITS = 0x3F800000  # 1.0f: as unsigned integers, the bits of +0.0 .. 1.0 are 0 .. this


Letterbox = pp.Geometry
"""How one original image sits in the model input: input = original * scale + pad
(:class:`visor.models.preprocess.Geometry`)."""


# --------------------------------------------------------------------------- decoding (pure)


def yolox_grid(input_size: tuple[int, int], strides: Sequence[int] = YOLOX_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """``(grid (N, 2) of cell x, y, stride (N, 1))`` in YOLOX order: level by level, rows then columns."""
    h, w = input_size
    grids, stride_col = [], []
    for s in strides:
        gh, gw = math.ceil(h / s), math.ceil(w / s)
        ys, xs = np.meshgrid(np.arange(gh), np.arange(gw), indexing="ij")
        grids.append(np.stack([xs.ravel(), ys.ravel()], 1))
        stride_col.append(np.full((gh * gw, 1), s))
    return np.concatenate(grids).astype(np.float32), np.concatenate(stride_col).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _yolox_grid_cached(input_size: tuple[int, int], strides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`yolox_grid`, made once per input size and read-only (shared between calls and threads)."""
    grid, stride = yolox_grid(input_size, strides)
    grid.flags.writeable = False
    stride.flags.writeable = False
    return grid, stride


def yolox_is_raw(output: np.ndarray, input_size: tuple[int, int]) -> bool:
    """True when a ``[B, N, 5+nc]`` YOLOX output holds raw grid offsets rather than pixels."""
    if output.size == 0:
        return False
    limit = max(math.ceil(input_size[0] / YOLOX_STRIDES[0]), math.ceil(input_size[1] / YOLOX_STRIDES[0]))
    return float(np.abs(output[..., :2]).max()) <= limit


def check_yolox_rows(count: int, input_size: tuple[int, int]) -> None:
    """:class:`ConfigError` unless a raw YOLOX output of ``count`` rows fits the grids of ``input_size``."""
    expected = len(_yolox_grid_cached(tuple(input_size), YOLOX_STRIDES)[0])
    if count != expected:
        raise ConfigError(
            f"a raw YOLOX output for a {input_size[0]}x{input_size[1]} input has {expected} boxes "
            f"(strides {YOLOX_STRIDES}), this one {count}; check the card's input_size"
        )


def yolox_decode_raw(rows: np.ndarray, input_size: tuple[int, int], index: np.ndarray | None = None) -> np.ndarray:
    """Raw ``(N, 5+nc)`` YOLOX rows to rows with cx, cy, w, h in input pixels.

    ``index``: ``rows`` are only these rows of the image's output (positions in the full grid), in order.
    """
    grid, stride = _yolox_grid_cached(tuple(input_size), YOLOX_STRIDES)
    if index is None:
        check_yolox_rows(len(rows), input_size)
    else:
        grid, stride = grid[index], stride[index]
    out = rows.astype(np.float32, copy=True)
    out[:, :2] = (rows[:, :2] + grid) * stride
    with np.errstate(over="ignore"):
        out[:, 2:4] = np.exp(rows[:, 2:4]) * stride
    return out


def objectness_candidates(rows: np.ndarray, conf: float) -> np.ndarray | None:
    """For ``5+nc`` rows (YOLOv5 / YOLOX): the rows whose objectness is above ``conf``, or None when
    every row must be kept.

    A box's score is objectness x class score; with class scores in [0, 1] (sigmoids) and ``conf >= 0``
    no other row can score above ``conf``, so only these need decoding. Class scores outside [0, 1]
    (or NaN) keep every row.
    """
    classes = rows[:, 5:]
    if conf < 0 or classes.size == 0:
        return None
    if classes.dtype == np.float32:  # one integer pass: the bits of +0.0..1.0 are 0..0x3F800000, all else above
        in_range = bool(classes.view(np.uint32).max() <= _FLOAT32_ONE_BITS)
    else:
        in_range = bool(classes.min() >= 0 and classes.max() <= 1)
    if not in_range:
        return None
    return np.flatnonzero(rows[:, 4] > conf)


def output_rows(output: np.ndarray, output_format: str, num_classes: int) -> np.ndarray:
    """A ``[B, ...]`` detector output as ``[B, N, channels]`` rows (``4+nc`` or ``5+nc`` channels)."""
    if output.ndim != 3:
        raise ConfigError(f"a {output_format} detector output must be 3-D, got shape {list(output.shape)}")
    if output_format == "yolov8":
        channels = 4 + num_classes
        if output.shape[1] == channels:
            return np.swapaxes(output, 1, 2)
    else:
        channels = 5 + num_classes
    if output.shape[2] != channels:
        raise ConfigError(
            f"output shape {list(output.shape)} does not fit the {output_format} layout with "
            f"{num_classes} classes ({channels} channels); check the card's labels and output_format"
        )
    return output


def box_scores(rows: np.ndarray, output_format: str) -> tuple[np.ndarray, np.ndarray]:
    """``(cxcywh (N, 4), class scores (N, nc))`` from one image's rows."""
    if output_format == "yolov8":
        return rows[:, :4], rows[:, 4:]
    return rows[:, :4], rows[:, 4:5] * rows[:, 5:]


def cxcywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float32).reshape(-1, 4)
    half = b[:, 2:] / 2
    return np.concatenate([b[:, :2] - half, b[:, :2] + half], 1)


def select(
    cxcywh: np.ndarray,
    class_scores: np.ndarray,
    *,
    conf: float,
    iou: float,
    max_det: int,
    agnostic: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best class per box, ``score > conf``, NMS: ``(xyxy, score, class_id)`` in input pixels, best first."""
    if class_scores.shape[1] == 0 or len(class_scores) == 0:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    class_id = class_scores.argmax(1)
    score = class_scores[np.arange(len(class_scores)), class_id]
    idx = np.flatnonzero(score > conf)
    if len(idx) > MAX_NMS:
        idx = idx[np.argsort(-score[idx], kind="stable")[:MAX_NMS]]
    xyxy = cxcywh_to_xyxy(cxcywh[idx])
    score, class_id = score[idx].astype(np.float32), class_id[idx].astype(np.int64)
    finite = np.isfinite(xyxy).all(1) & np.isfinite(score)
    xyxy, score, class_id = xyxy[finite], score[finite], class_id[finite]
    keep = nms(xyxy, score, iou) if agnostic else batched_nms(xyxy, score, class_id, iou)
    keep = keep[:max_det]
    return xyxy[keep], score[keep], class_id[keep]


# --------------------------------------------------------------------------- outcomes


DetectionOutcome = Outcome
"""The outcome type of :meth:`Detector.detect_iter` (see :class:`visor.models.batching.Outcome`)."""


# --------------------------------------------------------------------------- detector


class Detector(Predictor[Detections]):
    """An object detector: a model card (``task="detection"``) plus an ONNX Runtime session.

    Build one with :func:`visor.load` and reuse it. Boxes come back in the original image's
    pixels. ``channel_order`` overrides the card's channel order (``"bgr"`` for models fed
    BGR, such as nudenet's); ``yolox_decode`` chooses how YOLOX outputs are read.
    """

    task: ClassVar[str] = "detection"
    default_batch_size: ClassVar[int] = 8
    jpeg_draft: ClassVar[bool] = False  # boxes map back to the image's own pixels

    def __init__(
        self,
        card: ModelCard,
        session: OnnxSession,
        *,
        limits: ImageLimits = DEFAULT_LIMITS,
        channel_order: ChannelOrder | None = None,
        yolox_decode: YoloxDecode = "auto",
        max_batch: int | None = None,
    ) -> None:
        self.check_card(card)
        order = channel_order or card.preprocess.channel_order
        if order not in ("rgb", "bgr"):
            raise ConfigError(f"channel_order must be 'rgb' or 'bgr', got {order!r}")
        if yolox_decode not in ("auto", "raw", "decoded"):
            raise ConfigError(f"yolox_decode must be 'auto', 'raw' or 'decoded', got {yolox_decode!r}")
        if order != card.preprocess.channel_order:  # the card says what the model is fed
            card = card.replace(preprocess=dataclasses.replace(card.preprocess, channel_order=order))
        super().__init__(card, session, limits=limits, max_batch=max_batch)
        self.yolox_decode: YoloxDecode = yolox_decode

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        super().check_card(card)
        if card.output_format not in DETECTOR_FORMATS:
            raise ConfigError(
                f"{card.name}: a detector needs output_format in {list(DETECTOR_FORMATS)}, got {card.output_format!r}"
            )
        if card.preprocess.resize != "letterbox":
            raise ConfigError(
                f"{card.name}: detectors need preprocess.resize='letterbox', got {card.preprocess.resize!r}"
            )

    @property
    def channel_order(self) -> ChannelOrder:
        return self.card.preprocess.channel_order

    # ------------------------------------------------------------------ steps

    def preprocess(self, images: Sequence[Image.Image | np.ndarray]) -> tuple[np.ndarray, list[Letterbox]]:
        """Letterbox and normalize RGB images per the card: ``(input batch, geometry per image)``
        (the same as :meth:`prepare`)."""
        return self.prepare(images)

    def postprocess(
        self,
        output: np.ndarray,
        geometry: Sequence[Letterbox],
        *,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        agnostic: bool = False,
    ) -> list[Detections]:
        """Raw outputs to :class:`Detections` in original pixels, with ``data["class_name"]``."""
        fmt = self.card.output_format
        rows = output_rows(np.asarray(output), fmt, self.card.num_classes)
        raw = fmt == "yolox" and (
            self.yolox_decode == "raw"
            or (self.yolox_decode == "auto" and yolox_is_raw(rows, self.card.preprocess.input_size))
        )
        size = tuple(self.card.preprocess.input_size)
        if raw:
            check_yolox_rows(rows.shape[1], size)
        labels = np.asarray(self.labels)
        out = []
        for r, geo in zip(rows, geometry, strict=True):
            index = objectness_candidates(r, conf) if fmt != "yolov8" else None
            if index is not None:
                r = r[index]  # the only rows that can score above conf: decode and score just these
            if raw:
                r = yolox_decode_raw(r, size, index)
            cxcywh, scores = box_scores(r, fmt)
            xyxy, score, cls = select(cxcywh, scores, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic)
            out.append(Detections(geo.to_original(xyxy), score, cls, {"class_name": labels[cls]}, model=self.name))
        return out

    def check_options(self, **options: Any) -> dict[str, Any]:
        options = super().check_options(**options)
        conf, iou, max_det = _check_options(options.get("conf", 0.25), options.get("iou", 0.45),
                                            options.get("max_det", 300))
        return {**options, "conf": conf, "iou": iou, "max_det": max_det}

    # ------------------------------------------------------------------ API (the names callers use)

    def detect(
        self,
        images: ImageSource | Iterable[ImageSource],
        *,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        agnostic: bool = False,
        batch_size: int = 8,
    ) -> Detections | list[Detections]:
        """Detect objects in one image (returns :class:`Detections`) or many (returns a list).

        ``conf``: keep boxes scoring above it; ``iou``: NMS overlap threshold; ``max_det``: most
        boxes per image; ``agnostic``: NMS across classes. The first bad image raises its typed
        error; use :meth:`detect_iter` to keep going past bad images.
        """
        return self.predict(images, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic, batch_size=batch_size)

    def detect_iter(
        self,
        sources: Iterable[ImageSource],
        *,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        agnostic: bool = False,
        batch_size: int = 8,
    ) -> Iterator[DetectionOutcome]:
        """Detect in many images, yielding a :class:`DetectionOutcome` per input, in order.

        A bad image yields its error and the rest go on. The next batch is decoded in a
        background thread while the current one is inferred.
        """
        return self.predict_iter(sources, conf=conf, iou=iou, max_det=max_det, agnostic=agnostic,
                                 batch_size=batch_size)

    def __repr__(self) -> str:
        return f"Detector({self.name!r}, {self.card.output_format}, session={self.session.path!r})"


def _check_options(conf: float, iou: float, max_det: int) -> tuple[float, float, int]:
    if not 0 <= float(conf) <= 1:
        raise ConfigError(f"conf must be in [0, 1], got {conf}")
    if not 0 <= float(iou) <= 1:
        raise ConfigError(f"iou must be in [0, 1], got {iou}")
    if int(max_det) < 1:
        raise ConfigError(f"max_det must be at least 1, got {max_det}")
    return float(conf), float(iou), int(max_det)
