"""Semantic segmentation metrics: a pixel confusion matrix, IoU, Dice and pixel accuracy, and
bootstrap intervals over images.

Definitions (all over the pixels of the whole set, never averaged per image):

* the confusion matrix counts pixels, rows the true class, columns the predicted one; pixels
  whose ground truth is the ignore index (255 by default) are left out entirely;
* ``IoU_c = TP / (TP + FP + FN)`` and ``Dice_c = 2 TP / (2 TP + FP + FN)``;
* a class absent from both the ground truth and the prediction has no IoU or Dice (``nan``;
  ``null`` in JSON) and is left out of ``miou`` and ``mean_dice``, which are unweighted means
  over the other classes; a class only predicted (never true) scores 0 and counts;
* ``pixel_accuracy`` is the share of non-ignored pixels predicted right (trace / total);
* ``mean_accuracy`` is the mean over classes present in the ground truth of ``TP / (TP + FN)``.

Intervals: images are the independent units, so they are resampled with replacement and the
per-image confusion matrices of each resample summed, then every metric recomputed exactly as
above (a cluster bootstrap; pixels of one image are not independent, so no per-pixel Wilson
interval is honest). The resampling is one matrix product per chunk of resamples: ``(B, N)``
draw counts times ``(N, C*C)`` per-image confusions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError, InvalidInput
from visor.evaluate.bootstrap import SMALL_SAMPLE, BootstrapConfig, bootstrap, percentile_interval

#: The ignore index of masks as visor loads them (``SegmentationDataset.load``).
IGNORE_INDEX = 255
#: Metrics with bootstrap intervals over images.
SEGMENTATION_METRICS: tuple[str, ...] = ("miou", "pixel_accuracy", "mean_dice")
#: What ``to_dict`` says about classes without IoU.
ABSENT_NOTE = ("IoU and Dice are computed over all pixels of the set; a class absent from both the ground truth and "
               "the prediction has iou/dice null and is left out of miou and mean_dice; pixels whose ground truth is "
               "the ignore index are excluded from every metric")


def _check_range(values: np.ndarray, c: int, what: str) -> None:
    if values.size == 0:
        return
    lo, hi = values.min(), values.max()
    if lo >= 0 and hi < c:
        return
    bad = np.unique(values[(values < 0) | (values >= c)])
    shown = ", ".join(str(int(v)) for v in bad[:10]) + (", ..." if len(bad) > 10 else "")
    raise InvalidInput(f"{what} holds values outside the {c} classes [0, {c - 1}]: {shown}")


def confusion_matrix(gt: np.ndarray, pred: np.ndarray, num_classes: int,
                     ignore_index: int | None = IGNORE_INDEX) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 pixel counts, rows the true class, columns the predicted one.

    ``gt`` and ``pred`` are integer arrays of one shape (a mask, or a stack of masks). Pixels
    whose ``gt`` is ``ignore_index`` are not counted (``None``: every pixel counts). Any other
    value outside ``[0, num_classes)``, in either array, raises :class:`~visor.errors.InvalidInput`
    naming the values.
    """
    if int(num_classes) != num_classes or int(num_classes) < 1:
        raise InvalidInput(f"num_classes must be a positive integer, got {num_classes}")
    c = int(num_classes)
    if ignore_index is not None and 0 <= int(ignore_index) < c:
        raise InvalidInput(f"ignore_index {ignore_index} is one of the {c} class ids; give a value outside [0, {c})")
    g, p = np.asarray(gt), np.asarray(pred)
    if g.shape != p.shape:
        raise InvalidInput(f"ground truth and prediction differ in shape: {g.shape} and {p.shape}")
    for arr, what in ((g, "ground truth"), (p, "prediction")):
        if arr.dtype != bool and not np.issubdtype(arr.dtype, np.integer):
            raise InvalidInput(f"{what} must hold integer class ids, got dtype {arr.dtype}")
    g, p = g.ravel(), p.ravel()
    if ignore_index is not None:
        keep = g != ignore_index
        if not keep.all():
            g, p = g[keep], p[keep]
    _check_range(g, c, "ground truth")
    _check_range(p, c, "prediction")
    index = g.astype(np.intp) * c + p.astype(np.intp)
    return np.bincount(index, minlength=c * c).reshape(c, c).astype(np.int64)


def confusion_metrics(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """Every metric of one or many confusion matrices ``(..., C, C)``, vectorised over the leading axes.

    Returns ``iou``, ``dice``, ``accuracy`` (per class recall), each ``(..., C)`` with ``nan`` where
    undefined, and ``miou``, ``mean_dice``, ``mean_accuracy``, ``pixel_accuracy``, each ``(...)``
    (``nan`` when no pixel counts).
    """
    cm = np.asarray(confusion, np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    truth, predicted = cm.sum(axis=-1), cm.sum(axis=-2)
    union = truth + predicted - tp
    seen = union > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(seen, tp / np.where(seen, union, 1.0), np.nan)
        dice = np.where(seen, 2 * tp / np.where(seen, truth + predicted, 1.0), np.nan)
        accuracy = np.where(truth > 0, tp / np.where(truth > 0, truth, 1.0), np.nan)
        n_seen, n_true = seen.sum(axis=-1), (truth > 0).sum(axis=-1)
        total = truth.sum(axis=-1)
        return {
            "iou": iou, "dice": dice, "accuracy": accuracy,
            "miou": np.where(n_seen > 0, np.where(seen, iou, 0.0).sum(axis=-1) / np.maximum(n_seen, 1), np.nan),
            "mean_dice": np.where(n_seen > 0, np.where(seen, dice, 0.0).sum(axis=-1) / np.maximum(n_seen, 1), np.nan),
            "mean_accuracy": np.where(n_true > 0, np.where(truth > 0, accuracy, 0.0).sum(axis=-1)
                                      / np.maximum(n_true, 1), np.nan),
            "pixel_accuracy": np.where(total > 0, tp.sum(axis=-1) / np.maximum(total, 1), np.nan),
        }


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


@dataclass(frozen=True)
class SegmentationReport:
    """Metrics of a segmenter over a labelled set (see the module docstring for the definitions).

    ``iou`` and ``dice`` map every class name to its score (``nan`` for a class absent from both
    ground truth and prediction); ``present`` names the classes the means are over.
    """

    class_names: tuple[str, ...]
    confusion: np.ndarray
    iou: dict[str, float]
    dice: dict[str, float]
    accuracy: dict[str, float]
    miou: float
    mean_dice: float
    mean_accuracy: float
    pixel_accuracy: float
    num_pixels: int
    num_images: int | None = None

    @property
    def support(self) -> dict[str, int]:
        """Ground-truth pixels per class."""
        return dict(zip(self.class_names, (int(v) for v in np.asarray(self.confusion).sum(axis=1)), strict=True))

    @property
    def predicted(self) -> dict[str, int]:
        """Predicted pixels per class (over non-ignored pixels)."""
        return dict(zip(self.class_names, (int(v) for v in np.asarray(self.confusion).sum(axis=0)), strict=True))

    @property
    def present(self) -> tuple[str, ...]:
        """Classes in the ground truth or the prediction: those ``miou`` and ``mean_dice`` average."""
        return tuple(name for name in self.class_names if not np.isnan(self.iou[name]))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``nan`` written as ``null``)."""
        support, predicted = self.support, self.predicted
        return {
            "num_images": self.num_images,
            "num_pixels": self.num_pixels,
            "class_names": list(self.class_names),
            "miou": _num(self.miou),
            "mean_dice": _num(self.mean_dice),
            "mean_accuracy": _num(self.mean_accuracy),
            "pixel_accuracy": _num(self.pixel_accuracy),
            "classes_in_mean": list(self.present),
            "note": ABSENT_NOTE,
            "per_class": {name: {"iou": _num(self.iou[name]), "dice": _num(self.dice[name]),
                                 "accuracy": _num(self.accuracy[name]), "support": support[name],
                                 "predicted": predicted[name]} for name in self.class_names},
            "confusion": np.asarray(self.confusion).tolist(),
        }

    def format_table(self, intervals: dict[str, dict[str, tuple[float, float]]] | None = None) -> str:
        """Headline lines, then the per-class IoU / Dice / accuracy / pixel table (``intervals``:
        optional per-class IoU intervals, ``{name: {"iou": (lo, hi)}}``)."""
        lines = [f"pixels: {self.num_pixels}   classes: {len(self.class_names)} "
                 f"({len(self.present)} in ground truth or prediction)",
                 f"mIoU: {self.miou:.4f}   mean Dice: {self.mean_dice:.4f}   pixel accuracy: "
                 f"{self.pixel_accuracy:.4f}   mean class accuracy: {self.mean_accuracy:.4f}", ""]
        width = max(len("class"), *(len(n) for n in self.class_names))
        ci = intervals is not None
        lines.append(f"{'class':<{width}}  {'IoU':>7}  {'IoU CI':>17}  {'Dice':>7}  {'acc':>7}  {'pixels':>11}"
                     if ci else f"{'class':<{width}}  {'IoU':>7}  {'Dice':>7}  {'acc':>7}  {'pixels':>11}")
        lines.append("-" * (width + (60 if ci else 41)))
        support = self.support

        def f(x: float) -> str:
            return "-" if np.isnan(x) else f"{x:.4f}"

        for name in self.class_names:
            row = f"{name:<{width}}  {f(self.iou[name]):>7}  "
            if ci:
                lo_hi = (intervals or {}).get(name, {}).get("iou")
                row += f"{f'[{lo_hi[0]:.4f}, {lo_hi[1]:.4f}]' if lo_hi else '-':>17}  "
            lines.append(row + f"{f(self.dice[name]):>7}  {f(self.accuracy[name]):>7}  {support[name]:>11d}")
        absent = len(self.class_names) - len(self.present)
        if absent:
            lines.append(f"('-': {absent} classes absent from ground truth and prediction, left out of the means)")
        return "\n".join(lines)


def segmentation_report(confusion: np.ndarray, class_names: Sequence[str], *,
                        num_images: int | None = None) -> SegmentationReport:
    """The report of a ``(C, C)`` pixel confusion matrix (from :func:`confusion_matrix`, summed over images)."""
    names = tuple(str(s) for s in class_names)
    cm = np.asarray(confusion)
    if cm.ndim != 2 or cm.shape != (len(names), len(names)):
        raise InvalidInput(f"confusion must be ({len(names)}, {len(names)}) for {len(names)} class names, "
                           f"got shape {cm.shape}")
    if len(set(names)) != len(names):
        dup = next(s for s in names if names.count(s) > 1)
        raise InvalidInput(f"class names must be unique, {dup!r} appears more than once")
    if (cm < 0).any():
        raise InvalidInput("confusion counts must not be negative")
    cm = cm.astype(np.int64)
    m = confusion_metrics(cm)
    return SegmentationReport(
        class_names=names, confusion=cm,
        iou={n: float(v) for n, v in zip(names, m["iou"], strict=True)},
        dice={n: float(v) for n, v in zip(names, m["dice"], strict=True)},
        accuracy={n: float(v) for n, v in zip(names, m["accuracy"], strict=True)},
        miou=float(m["miou"]), mean_dice=float(m["mean_dice"]), mean_accuracy=float(m["mean_accuracy"]),
        pixel_accuracy=float(m["pixel_accuracy"]), num_pixels=int(cm.sum()), num_images=num_images)


@dataclass(frozen=True)
class SegmentationOutcomes:
    """Per-image pixel confusion matrices ``(N, C, C)``: enough to recompute every metric on a
    resample of images."""

    confusions: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        c = len(self.class_names)
        if np.ndim(self.confusions) != 3 or np.shape(self.confusions)[1:] != (c, c):
            raise InvalidInput(f"confusions must be (N, {c}, {c}), got {np.shape(self.confusions)}")

    @classmethod
    def from_masks(cls, pairs: Sequence[tuple[np.ndarray, np.ndarray]], class_names: Sequence[str],
                   ignore_index: int | None = IGNORE_INDEX) -> SegmentationOutcomes:
        """Outcomes of (ground truth, prediction) mask pairs, one per image."""
        names = tuple(class_names)
        c = len(names)
        stack = [confusion_matrix(g, p, c, ignore_index) for g, p in pairs]
        return cls(np.stack(stack) if stack else np.zeros((0, c, c), np.int64), names)

    def __len__(self) -> int:
        return len(self.confusions)

    @property
    def too_small(self) -> bool:
        """Fewer than :data:`~visor.evaluate.bootstrap.SMALL_SAMPLE` images: intervals are rough."""
        return len(self) < SMALL_SAMPLE

    def subset(self, index: np.ndarray) -> SegmentationOutcomes:
        return SegmentationOutcomes(self.confusions[np.asarray(index, np.intp)], self.class_names)

    def report(self) -> SegmentationReport:
        return segmentation_report(self.confusions.sum(axis=0), self.class_names, num_images=len(self))

    def per_image(self) -> dict[str, np.ndarray]:
        """Each image's own metrics (``(N,)`` ``miou`` etc. over the classes in that image's ground
        truth or prediction; ``(N, C)`` ``iou``)."""
        return confusion_metrics(self.confusions)

    def resampled(self, idx: np.ndarray) -> np.ndarray:
        """Summed confusions ``(B, C, C)`` of each row of a ``(B, n)`` index array."""
        b = idx.shape[0]
        draws = np.bincount((np.arange(b)[:, None] * len(self) + idx).ravel(), minlength=b * len(self))
        flat = self.confusions.reshape(len(self), -1).astype(np.float64)
        c = len(self.class_names)
        return (draws.reshape(b, len(self)).astype(np.float64) @ flat).reshape(b, c, c)

    def metric(self, name: str, idx: np.ndarray) -> np.ndarray:
        """One of :data:`SEGMENTATION_METRICS` for each row of ``idx``: ``(B,)``."""
        if name not in SEGMENTATION_METRICS:
            raise ConfigError(f"unknown metric {name!r}.{suggest(name, SEGMENTATION_METRICS)} "
                              f"Known: {', '.join(SEGMENTATION_METRICS)}")
        return confusion_metrics(self.resampled(idx))[name]

    def point(self, name: str) -> float:
        return float(self.metric(name, np.arange(len(self))[None, :])[0])

    def interval(self, name: str, config: BootstrapConfig, *names: str) -> tuple[float, float]:
        """Percentile bootstrap interval over images of one metric (resamples in which it is
        undefined, every pixel ignored, are left out)."""
        values = bootstrap(lambda idx: self.metric(name, idx), len(self), config, "segmentation", name, *names)
        values = values[~np.isnan(values)]
        if not len(values):
            return float("nan"), float("nan")
        return percentile_interval(values, config.level)

    def intervals(self, config: BootstrapConfig, *names: str) -> dict[str, tuple[float, float]]:
        """Intervals of every metric in :data:`SEGMENTATION_METRICS`, from one set of resamples."""
        values = bootstrap(lambda idx: np.stack([confusion_metrics(self.resampled(idx))[m]
                                                 for m in SEGMENTATION_METRICS], axis=-1),
                           len(self), config, "segmentation", *names)
        out = {}
        for j, m in enumerate(SEGMENTATION_METRICS):
            v = values[:, j][~np.isnan(values[:, j])]
            out[m] = percentile_interval(v, config.level) if len(v) else (float("nan"), float("nan"))
        return out

    def class_intervals(self, config: BootstrapConfig) -> dict[str, dict[str, tuple[float, float]]]:
        """IoU interval of each class with an IoU on the whole set; resamples in which the class
        is absent from ground truth and prediction are left out of its distribution."""
        values = bootstrap(lambda idx: confusion_metrics(self.resampled(idx))["iou"], len(self), config,
                           "segmentation", "per_class_iou")
        full = confusion_metrics(self.confusions.sum(axis=0))["iou"]
        out: dict[str, dict[str, tuple[float, float]]] = {}
        for j, name in enumerate(self.class_names):
            v = values[:, j][~np.isnan(values[:, j])]
            if not np.isnan(full[j]) and len(v):
                out[name] = {"iou": percentile_interval(v, config.level)}
        return out


__all__ = ["ABSENT_NOTE", "IGNORE_INDEX", "SEGMENTATION_METRICS", "SegmentationOutcomes", "SegmentationReport",
           "confusion_matrix", "confusion_metrics", "segmentation_report"]
