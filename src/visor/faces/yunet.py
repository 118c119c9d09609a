"""YuNet face detection in ONNX Runtime: boxes, scores and 5 landmarks, the same as OpenCV's ``cv2.FaceDetectorYN``.

YuNet-n (libfacedetection.train, Apache-2.0; WIDER Face val easy/medium/hard AP 0.892/0.883/0.811)
is an anchor-free detector over three levels (strides 8, 16, 32). The ONNX graph takes any input
size that is a multiple of 32 and gives, per level and grid cell (rows then columns):

* ``cls_<s>`` ``[B, N, 1]`` and ``obj_<s>`` ``[B, N, 1]``: the score is ``sqrt(clip(cls) * clip(obj))``;
* ``bbox_<s>`` ``[B, N, 4]``: ``cx = (col + dx) * s``, ``cy = (row + dy) * s``, ``w = exp(dw) * s``,
  ``h = exp(dh) * s`` in input pixels;
* ``kps_<s>`` ``[B, N, 10]``: five points, ``x = (kx + col) * s``, ``y = (ky + row) * s``, in YuNet's
  order: right eye, left eye, nose tip, right mouth corner, left mouth corner (the person's right and
  left: the right eye is the one on the viewer's left).

Boxes scoring at least ``conf`` go through NMS (IoU ``iou``). This decoding is OpenCV's
(``modules/objdetect/src/face_detect.cpp``) and gives the same boxes, scores and landmarks as
``cv2.FaceDetectorYN`` on the same pixels (within 1e-3 px; ``tests/faces/test_yunet.py``).

The input is the image as BGR 0-255 floats, NCHW, padded with zeros at the right and bottom to a
multiple of 32 (OpenCV's padding). Why ONNX Runtime rather than ``cv2.FaceDetectorYN``: the same
runtime, thread settings and session options as every other visor model, the graph's outputs read by
name, and no OpenCV DNN model loader; both give the same faces (see ``benchmarks/faces_yunet.py``
for the speed of each).

Images are analysed at most :data:`DEFAULT_MAX_SIDE` px on the long side (a box-downscaled copy,
:func:`visor.io.bounded_copy`); results are in the original image's pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from PIL import Image

from visor.errors import ConfigError
from visor.io import DEFAULT_LIMITS, ImageLimits, bounded_copy
from visor.models.card import ModelCard
from visor.models.predictor import Predictor
from visor.models.preprocess import Geometry, normalize
from visor.models.runtime import OnnxSession
from visor.ops import nms
from visor.types.faces import Faces

STRIDES = (8, 16, 32)
DIVISOR = 32
OUTPUT_NAMES = tuple(f"{kind}_{s}" for kind in ("cls", "obj", "bbox", "kps") for s in STRIDES)
LANDMARKS = ("right_eye", "left_eye", "nose_tip", "right_mouth_corner", "left_mouth_corner")
"""YuNet's five points, in order (the person's right and left)."""

DEFAULT_MAX_SIDE = 960
"""Long side of the copy YuNet analyses. YuNet-n was trained on 640 px crops: at 960 px the 21 faces of
``faces/`` score 0.91-0.96 and nothing else above 0.53; at the full 2000 px of ``obama_and_biden.jpg``
a pair of fingers scores 0.73, and a face 440 px wide (``biden2.jpg`` at 1200 px) drops to 0.90 with
two stray boxes beside it. 960 is also a multiple of 32, so a landscape photo needs no padding."""
DEFAULT_CONF = 0.7
"""Score threshold. On coco128 most detections from 0.7 up are real faces (turned, small, blurred), while
below 0.7 food, clocks and hands appear; on ``faces/`` every face scores 0.88 or more. OpenCV's default,
0.9, drops turned faces (on coco128 it keeps 28 of the 155 boxes at 0.7 or more)."""
DEFAULT_IOU = 0.3
"""NMS IoU threshold (OpenCV's default)."""
DEFAULT_MAX_DET = 5000
"""Most faces kept per image (OpenCV's ``top_k``)."""


def padded_size(width: int, height: int, divisor: int = DIVISOR) -> tuple[int, int]:
    """``(width, height)`` rounded up to multiples of ``divisor`` (OpenCV's ``padW``, ``padH``)."""
    return -(-int(width) // divisor) * divisor, -(-int(height) // divisor) * divisor


def decode_outputs(
    outputs: dict[str, np.ndarray],
    index: int,
    input_size: tuple[int, int],
    *,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    max_det: int = DEFAULT_MAX_DET,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``(xyxy (N, 4), score (N,), landmarks (N, 5, 2))`` in input pixels, best first.

    ``outputs`` maps the graph's output names (:data:`OUTPUT_NAMES`) to arrays; ``index`` picks the
    image in the batch; ``input_size`` is the ``(height, width)`` of the padded input.
    """
    height, width = input_size
    boxes, scores, points = [], [], []
    for s in STRIDES:
        rows, cols = height // s, width // s
        cls = np.clip(outputs[f"cls_{s}"][index].reshape(-1), 0, 1)
        obj = np.clip(outputs[f"obj_{s}"][index].reshape(-1), 0, 1)
        if len(cls) != rows * cols:
            raise ConfigError(f"YuNet output cls_{s} has {len(cls)} cells; a {width}x{height} input has "
                              f"{rows * cols} at stride {s}")
        score = np.sqrt(cls * obj)
        keep = np.flatnonzero(score >= conf)
        if not len(keep):
            continue
        r, c = np.divmod(keep, cols)
        cell = np.stack([c, r], axis=1).astype(np.float32)
        bbox = outputs[f"bbox_{s}"][index].reshape(-1, 4)[keep].astype(np.float32)
        centre = (cell + bbox[:, :2]) * s
        with np.errstate(over="ignore"):
            size = np.exp(bbox[:, 2:]) * s
        boxes.append(np.concatenate([centre - size / 2, centre + size / 2], axis=1))
        points.append((outputs[f"kps_{s}"][index].reshape(-1, 5, 2)[keep] + cell[:, None, :]) * s)
        scores.append(score[keep])
    if not boxes:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros((0, 5, 2), np.float32)
    xyxy, score, marks = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    finite = np.isfinite(xyxy).all(1) & np.isfinite(marks).all((1, 2))
    xyxy, score, marks = xyxy[finite], score[finite], marks[finite]
    keep = nms(xyxy, score, iou)[: int(max_det)]
    return xyxy[keep].astype(np.float32), score[keep].astype(np.float32), marks[keep].astype(np.float32)


@dataclass(frozen=True)
class Frame:
    """Where one image went: its :class:`Geometry` (original pixels -> analysed copy) and the padded
    input's ``(height, width)`` (the batch's, shared by its images)."""

    geometry: Geometry
    input_size: tuple[int, int]


class YuNetDetector(Predictor[Faces]):
    """A YuNet face detector: a ``face_detection`` card with ``output_format="yunet"`` and an ONNX Runtime session.

    Build one with :func:`visor.load` (``visor.load("yunet")``) or :meth:`from_card` and reuse it.
    :meth:`predict` gives a :class:`~visor.types.Faces` per image: boxes, scores (``confidence``)
    and YuNet's 5 landmarks (:data:`LANDMARKS`) in the original image's pixels, no embeddings
    (:class:`visor.faces.FaceAnalyzer` adds dlib's). ``max_side`` bounds the long side of the copy
    analysed (:data:`DEFAULT_MAX_SIDE`; None: the image as it is).
    """

    task: ClassVar[str] = "face_detection"
    default_batch_size: ClassVar[int] = 1
    """Images differ in size: a batch is padded to its largest image, so one image per run by default."""

    def __init__(self, card: ModelCard, session: OnnxSession, *, limits: ImageLimits = DEFAULT_LIMITS,
                 max_side: int | None = DEFAULT_MAX_SIDE, max_batch: int | None = None) -> None:
        super().__init__(card, session, limits=limits, max_batch=max_batch)
        if max_side is not None and int(max_side) < DIVISOR:
            raise ConfigError(f"max_side must be at least {DIVISOR}, got {max_side}")
        self.max_side = None if max_side is None else int(max_side)
        missing = [n for n in OUTPUT_NAMES if n not in session.output_names]
        if missing:
            raise ConfigError(f"{card.name}: a YuNet graph has the outputs {list(OUTPUT_NAMES)}; missing {missing}")

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        super().check_card(card)
        if card.output_format != "yunet":
            raise ConfigError(f"{card.name}: YuNetDetector reads output_format 'yunet', got {card.output_format!r}")

    # ------------------------------------------------------------------ steps

    def analysis_image(self, image: Image.Image | np.ndarray) -> Image.Image:
        """The copy YuNet sees: ``image`` itself when its long side fits ``max_side``, else a box-downscaled copy."""
        pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8))
        return bounded_copy(pil.convert("RGB"), max_side=self.max_side)

    def prepare(self, images: Sequence[Image.Image | np.ndarray]) -> tuple[np.ndarray, list[Frame]]:
        """RGB images to the model input (BGR 0-255 per the card, NCHW, zero-padded at the right and
        bottom to multiples of 32; a batch to its largest image) and each image's :class:`Frame`."""
        if not images:
            return np.zeros((0, 3, DIVISOR, DIVISOR), np.float32), []
        seen = [self.analysis_image(im) for im in images]
        width, height = (max(p) for p in zip(*(padded_size(*im.size) for im in seen), strict=True))
        pixels = np.zeros((len(seen), height, width, 3), np.uint8)
        metas = []
        for i, (orig, im) in enumerate(zip(images, seen, strict=True)):
            ow, oh = orig.size if isinstance(orig, Image.Image) else (orig.shape[1], orig.shape[0])
            pixels[i, : im.height, : im.width] = np.asarray(im)
            metas.append(Frame(Geometry(int(ow), int(oh), im.width / ow, 0.0, 0.0, im.height / oh), (height, width)))
        return normalize(pixels, self.preprocess_config), metas

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The twelve outputs by name for a prepared batch."""
        return dict(zip(OUTPUT_NAMES, self.session.run_outputs(OUTPUT_NAMES, batch), strict=True))

    def postprocess(self, outputs: dict[str, np.ndarray], metas: Sequence[Frame], *, conf: float = DEFAULT_CONF,
                    iou: float = DEFAULT_IOU, max_det: int = DEFAULT_MAX_DET) -> list[Faces]:
        """One :class:`Faces` per image (best first): boxes clipped to the image, landmarks as found."""
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise ConfigError(f"conf and iou must be between 0 and 1, got conf={conf}, iou={iou}")
        if int(max_det) < 1:
            raise ConfigError(f"max_det must be at least 1, got {max_det}")
        out = []
        for i, frame in enumerate(metas):
            geo = frame.geometry
            xyxy, score, marks = decode_outputs(outputs, i, frame.input_size, conf=conf, iou=iou, max_det=max_det)
            sx, sy = geo.scales
            centre = (xyxy[:, :2] + xyxy[:, 2:]) / 2
            inside = (centre[:, 0] < geo.width * sx) & (centre[:, 1] < geo.height * sy)  # none centred in the padding
            xyxy, score, marks = xyxy[inside], score[inside], marks[inside]
            out.append(Faces(geo.to_original(xyxy), score, marks / np.array([sx, sy], np.float32),
                             np.zeros((len(xyxy), 0), np.float32), model=self.name))
        return out


__all__ = ["DEFAULT_CONF", "DEFAULT_IOU", "DEFAULT_MAX_SIDE", "LANDMARKS", "OUTPUT_NAMES", "Frame", "YuNetDetector",
           "decode_outputs", "padded_size"]
