"""Semantic segmentation: a class per pixel, at the original image's size.

:class:`Segmenter` runs any card of task ``"segmentation"`` with ``output_format="segmentation_logits"``:
the pretrained ``deeplabv3_voc`` (DeepLabV3 + MobileNetV2, Pascal VOC's 21 classes, 257x257 NHWC, fixed
batch 1) and visor-trained run folders (``visor train segment``: NCHW, any batch). The steps:

``prepare``
    the card's preprocessing (:func:`visor.models.preprocess.prepare_batch`): the whole image squashed to
    ``input_size`` (aspect ratio not kept), normalised with the card's mean/std, laid out as
    ``card.preprocess.layout`` says;
``infer``
    logits ``[B, H', W', C]`` (``nhwc``) or ``[B, C, H', W']`` (``nchw``), the output laid out like the
    input (``H' x W'`` need not be the input size: the whole output covers the whole image);
``postprocess``
    per image, the class logits resized bilinearly to the original image (half-pixel centres, as OpenCV's
    ``INTER_LINEAR`` and ``torch.nn.functional.interpolate(..., align_corners=False)``), then the argmax over
    classes (the first class wins a tie, as ``numpy.argmax``), and with ``with_confidence=True`` the top
    class's softmax probability per pixel (:func:`logits_to_mask`).

The full-size logits are made only for the confidence: the mask alone interpolates just the pixels near a
class boundary (see :func:`logits_to_mask`), so memory stays ``O(H x W)`` whatever the class count and the
postprocessing costs a fraction of the inference. :meth:`Segmenter.predict_iter` runs three stages at once:
decoding and preparing the next batch (a background thread), inference of this one (the calling thread), and
postprocessing the previous one (a second thread).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

import numpy as np

from visor.errors import ConfigError, VisorError, WeightsError
from visor.io import DEFAULT_LIMITS, ImageLimits, ImageSource
from visor.models.batching import (
    Outcome,
    check_batch_size,
    prepared_batches,  # decode + prepare ahead, in a thread
)
from visor.models.card import ModelCard
from visor.models.predictor import Predictor
from visor.models.preprocess import Geometry
from visor.models.runtime import OnnxSession
from visor.types.segmentation import SegmentationMask

OUTPUT_FORMATS = ("segmentation_logits",)
"""Card output formats a :class:`Segmenter` reads."""


_CHUNK = 1 << 16
"""Boundary pixels interpolated per step (bounds the temporary arrays on large images)."""


def _axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear sampling along one axis, as OpenCV's ``INTER_LINEAR`` (half-pixel centres, edges clamped):
    per output index the two source indices and the second one's weight."""
    s = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(s).astype(np.intp), n_in - 1)
    weight = (s - i0).astype(np.float32)
    weight[i0 == n_in - 1] = 0.0
    return i0, np.minimum(i0 + 1, n_in - 1), weight


def _class_planes(logits: np.ndarray, layout: str) -> list[np.ndarray]:
    return [logits[..., c] for c in range(logits.shape[-1])] if layout == "nhwc" else list(logits)


def _argmax(logits: np.ndarray, layout: str, dtype: type) -> np.ndarray:
    """The class index per pixel of ``(h, w, C)`` / ``(C, h, w)`` logits, the first class winning a tie."""
    if layout == "nhwc":
        return logits.argmax(-1).astype(dtype)
    best = np.array(logits[0], np.float32)
    index = np.zeros(best.shape, dtype)
    for c in range(1, logits.shape[0]):
        better = logits[c] > best
        np.copyto(best, logits[c], where=better)
        index[better] = c
    return index


def _resized_planes(logits: np.ndarray, layout: str, width: int, height: int) -> Iterator[np.ndarray]:
    """Each class's logit plane resized bilinearly to ``height x width`` (float32), one at a time."""
    import cv2

    for plane in _class_planes(logits, layout):
        plane = np.ascontiguousarray(plane, np.float32)
        yield plane if plane.shape == (height, width) else cv2.resize(plane, (width, height),
                                                                        interpolation=cv2.INTER_LINEAR)


def logits_to_mask(
    logits: np.ndarray, width: int, height: int, *, layout: str = "nchw", with_confidence: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """One image's class logits to ``(mask (height, width), confidence or None)``.

    ``logits``: ``(C, h, w)`` (``layout="nchw"``) or ``(h, w, C)`` (``"nhwc"``). The mask is the argmax over
    classes of the logits resized bilinearly to ``width x height`` (half-pixel centres, edges clamped: OpenCV's
    ``INTER_LINEAR``), uint8 for up to 255 classes, else uint16; the confidence is the winning class's softmax
    probability there (float32).

    Without the confidence, the full-size logits are never made: where the four low-resolution pixels around
    an output pixel agree on the class, any bilinear mix of their logits has that class as its argmax too (each
    of the four prefers it, and a mix with non-negative weights keeps the preference), so only the pixels near
    a class boundary are interpolated, over all classes. The result equals the argmax of the resized logits
    (up to float rounding between classes whose logits agree to about 1e-7); it is several times faster and
    needs no ``H x W x C`` array (a gigabyte for 21 classes on a 12-megapixel photo).
    """
    logits = np.asarray(logits)
    if layout not in ("nchw", "nhwc"):
        raise ValueError(f"layout must be 'nchw' or 'nhwc', got {layout!r}")
    if logits.ndim != 3 or min(logits.shape) < 1:
        raise ValueError(f"logits must have 3 axes ({layout[1:]}), got shape {logits.shape}")
    if layout == "nhwc":
        h, w, num_classes = logits.shape
    else:
        num_classes, h, w = logits.shape
    if num_classes > 65535:
        raise ValueError(f"at most 65535 classes, got {num_classes}")
    dtype = np.uint8 if num_classes <= 255 else np.uint16
    width, height = int(width), int(height)
    if with_confidence:
        planes = _resized_planes(logits, layout, width, height)
        best = np.array(next(planes), np.float32)
        index = np.zeros(best.shape, dtype)
        for c, plane in enumerate(planes, start=1):
            better = plane > best
            np.copyto(best, plane, where=better)
            index[better] = c
        total = np.zeros(best.shape, np.float32)
        for plane in _resized_planes(logits, layout, width, height):
            total += np.exp(plane - best)  # each term <= 1, the winner's exactly 1: no overflow
        return index, np.reciprocal(total)

    low = _argmax(logits, layout, dtype)
    edge = np.pad(low, ((0, 1), (0, 1)), mode="edge")
    corner = edge[:-1, :-1]
    agree = (corner == edge[1:, :-1]) & (corner == edge[:-1, 1:]) & (corner == edge[1:, 1:])
    unsure = np.iinfo(dtype).max  # never a class id (at most 255 / 65535 classes)
    cells = np.where(agree, corner, dtype(unsure))
    y0, y1, wy = _axis(h, height)
    x0, x1, wx = _axis(w, width)
    mask = np.take(np.take(cells, y0, axis=0), x0, axis=1)
    ys, xs = np.nonzero(mask == unsure)

    def gather(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:  # (n, C)
        return logits[yy, xx] if layout == "nhwc" else logits[:, yy, xx].T

    for i in range(0, len(ys), _CHUNK):
        py, px = ys[i : i + _CHUNK], xs[i : i + _CHUNK]
        a, b = wy[py][:, None], wx[px][:, None]
        top = gather(y0[py], x0[px]) * (1 - b) + gather(y0[py], x1[px]) * b
        bottom = gather(y1[py], x0[px]) * (1 - b) + gather(y1[py], x1[px]) * b
        mask[py, px] = (top * (1 - a) + bottom * a).argmax(1)
    return mask, None


class Segmenter(Predictor[SegmentationMask]):
    """A semantic segmenter: a model card (``task="segmentation"``) plus an ONNX Runtime session.

    Build one with :func:`visor.load` (``visor.load("deeplabv3_voc")`` or a ``visor train segment`` run
    folder) and reuse it. :meth:`predict` gives a
    :class:`~visor.types.segmentation.SegmentationMask` per image at the image's own size;
    ``with_confidence=True`` adds the per-pixel probability of the chosen class.
    """

    task: ClassVar[str] = "segmentation"
    default_batch_size: ClassVar[int] = 8
    jpeg_draft: ClassVar[bool] = False  # masks are in the image's own pixels

    def __init__(self, card: ModelCard, session: OnnxSession, *, limits: ImageLimits = DEFAULT_LIMITS,
                 max_batch: int | None = None) -> None:
        super().__init__(card, session, limits=limits, max_batch=max_batch)
        self._check_session(session)

    @classmethod
    def check_card(cls, card: ModelCard) -> None:
        super().check_card(card)
        if card.output_format not in OUTPUT_FORMATS:
            raise ConfigError(f"{card.name}: a segmenter needs output_format in {list(OUTPUT_FORMATS)}, "
                              f"got {card.output_format!r}")
        if card.preprocess.resize != "squash":
            raise ConfigError(f"{card.name}: segmenters need preprocess.resize='squash' (the whole image is the "
                              f"model input, so the output maps back onto all of it), got "
                              f"{card.preprocess.resize!r}")

    def _check_session(self, session: OnnxSession) -> None:
        """The graph's declared input (size, channels) and output class count must match the card."""
        cfg = self.card.preprocess
        h, w = cfg.input_size
        want = (h, w, 3) if cfg.layout == "nhwc" else (3, h, w)
        got = session.input_shape[1:]
        if len(got) != 3 or any(isinstance(g, int) and g > 0 and g != x for g, x in zip(got, want, strict=True)):
            raise ConfigError(f"{self.name}: the ONNX input is {list(session.input_shape)}, but the card's "
                              f"preprocessing ({cfg.layout}, input_size {list(cfg.input_size)}) gives "
                              f"[B, {', '.join(map(str, want))}]")
        shape = _output_shape(session)
        if shape is not None and len(shape) == 4:
            classes = shape[3] if cfg.layout == "nhwc" else shape[1]
            if isinstance(classes, int) and classes > 0 and classes != self.card.num_classes:
                raise ConfigError(f"{self.name}: the ONNX output has {classes} classes ({list(shape)}, "
                                  f"{cfg.layout}) but the card has {self.card.num_classes} labels")

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.labels

    # ------------------------------------------------------------------ steps

    def check_logits(self, outputs: Any) -> np.ndarray:
        """The model output as an array ``[B, h, w, C]`` (``nhwc``) or ``[B, C, h, w]`` (``nchw``), checked."""
        out = np.asarray(outputs)
        if out.ndim != 4:
            raise WeightsError(f"{self.name}: a segmentation model must output [B, ...] logits with 4 axes, "
                               f"got shape {list(out.shape)}")
        classes = out.shape[3] if self.card.preprocess.layout == "nhwc" else out.shape[1]
        if classes != self.card.num_classes:
            raise WeightsError(f"{self.name}: the model output has {classes} classes ({list(out.shape)}, "
                               f"{self.card.preprocess.layout}) but the card has {self.card.num_classes} labels")
        return out

    def infer_parts(self, batch: np.ndarray) -> list[np.ndarray]:
        """The model output for a prepared batch as the runs gave it, one array per slice of ``max_batch``:
        :meth:`infer` without joining them (a copy of 5.5 MB per image for ``deeplabv3_voc``)."""
        step = self.max_batch or len(batch) or 1
        return [self.session.run(batch[i : i + step]) for i in range(0, len(batch), step)]

    def postprocess(self, outputs: Any, metas: Sequence[Geometry], *,
                    with_confidence: bool = False) -> list[SegmentationMask]:
        """Logits (what :meth:`infer` gives, or the list :meth:`infer_parts` gives) to one
        :class:`SegmentationMask` per image, at its original size."""
        parts = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        logits = [image for part in parts for image in self.check_logits(part)]
        layout = self.card.preprocess.layout
        results = []
        for image_logits, geo in zip(logits, metas, strict=True):
            mask, confidence = logits_to_mask(image_logits, geo.width, geo.height, layout=layout,
                                              with_confidence=bool(with_confidence))
            results.append(SegmentationMask(mask, self.labels, confidence=confidence, model=self.name))
        return results

    def check_options(self, **options: Any) -> dict[str, Any]:
        options = super().check_options(**options)
        if "with_confidence" in options and not isinstance(options["with_confidence"], (bool, np.bool_)):
            raise ConfigError(f"with_confidence must be true or false, got {options['with_confidence']!r}")
        return options

    def _outcomes(self, sources: Iterable[ImageSource], batch_size: int | None,
                  options: dict[str, Any]) -> Iterator[Outcome]:
        """As :meth:`Predictor._outcomes`, with each batch's postprocessing in a thread of its own while the next
        batch is inferred (the images are decoded and prepared ahead in another, as for every predictor)."""
        size = check_batch_size(self.default_batch_size if batch_size is None else batch_size)

        def finish(chunk: list[ImageSource], decoded: list[Any], future: Future | None) -> Iterator[Outcome]:
            results = iter(future.result()) if future is not None else iter(())
            for src, d in zip(chunk, decoded, strict=True):
                yield Outcome(src, error=d) if isinstance(d, VisorError) else Outcome(src, result=next(results))

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="visor-segment-post") as post:
            pending = None
            for chunk, decoded, prepared in prepared_batches(self.decode, self.prepare, sources, size):
                future = None
                if prepared is not None:
                    batch, metas = prepared
                    future = post.submit(self.postprocess, self.infer_parts(batch), metas, **options)
                if pending is not None:
                    yield from finish(*pending)
                pending = (chunk, decoded, future)
            if pending is not None:
                yield from finish(*pending)

    # ------------------------------------------------------------------ API (the names callers use)

    def segment(self, images: ImageSource | Iterable[ImageSource], *, with_confidence: bool = False,
                batch_size: int | None = None) -> SegmentationMask | list[SegmentationMask]:
        """Segment one image (a :class:`SegmentationMask`) or many (a list). The first bad image raises its
        typed error; use :meth:`segment_iter` to keep going past bad images."""
        return self.predict(images, with_confidence=with_confidence, batch_size=batch_size)

    def segment_iter(self, sources: Iterable[ImageSource], *, with_confidence: bool = False,
                     batch_size: int | None = None) -> Iterator[Outcome]:
        """An :class:`Outcome` per source, in order; the next batch is decoded and prepared in a thread."""
        return self.predict_iter(sources, with_confidence=with_confidence, batch_size=batch_size)

    def __repr__(self) -> str:
        return f"Segmenter({self.name!r}, {self.card.num_classes} classes, session={self.session.path!r})"


def _output_shape(session: OnnxSession) -> tuple[Any, ...] | None:
    try:
        return session.output_shape
    except Exception:  # noqa: BLE001 - a graph without a declared output shape
        return None


__all__ = ["OUTPUT_FORMATS", "Segmenter", "logits_to_mask"]
