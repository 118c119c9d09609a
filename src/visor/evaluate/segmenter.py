"""Evaluate a segmenter on a mask dataset: pixel metrics over the whole set (mIoU, per-class IoU,
pixel accuracy, mean Dice), bootstrap intervals over images, mIoU per subgroup, and the images
the model does worst on, with overlays of prediction against ground truth.

Classes are matched by name: every dataset class must be one of the model's labels; pixels the
model gives to a label the dataset does not have count as the dataset's ``background`` class
(a VOC model on a person-only set: a predicted dog is "not a person"), and without a background
class such a model is refused before any inference. Items that cannot be used (unreadable image,
missing mask, mask of another size or with values outside the classes, a prediction of another
size than the mask) are reported one by one with their reason and left out; the rest is measured.
"""

from __future__ import annotations

import base64
import heapq
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError, VisorError
from visor.evaluate.bootstrap import SMALL_SAMPLE, BootstrapConfig
from visor.evaluate.segmentation import (
    IGNORE_INDEX,
    SEGMENTATION_METRICS,
    SegmentationOutcomes,
    SegmentationReport,
    confusion_matrix,
)
from visor.evaluate.subgroups import MIN_GROUP_SIZE, SubgroupReport, group_column, segmentation_subgroups

#: Worst images kept for the report by default.
WORST_IMAGES = 8
#: Images read and predicted at a time.
CHUNK = 32
#: Longest side of each overlay panel, in pixels.
OVERLAY_SIDE = 200
#: Wrong pixels in the error map: magenta, a colour the VOC palette never gives a class.
ERROR_COLOUR = (255.0, 0.0, 255.0)
#: Names taken as the background class (model labels outside the dataset count as it).
BACKGROUND_NAMES = ("background", "_background_", "bg", "__background__")
INTERVAL_METHOD = ("percentile bootstrap over images: images resampled with replacement, their pixel confusion "
                   "matrices summed, every metric recomputed")


@dataclass(frozen=True)
class WorstImage:
    """One of the images the model does worst on (lowest mIoU over the classes in its own ground truth
    or prediction)."""

    path: str
    miou: float
    pixel_accuracy: float
    classes: tuple[str, ...]
    """Classes in the image's ground truth."""
    predicted: tuple[str, ...]
    """Classes in the prediction."""
    overlay: str | None = field(default=None, repr=False)
    """``data:image/jpeg;base64,...``: the image, ground truth and prediction overlays and the error map side by
    side."""

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "miou": self.miou, "pixel_accuracy": self.pixel_accuracy,
                "classes": list(self.classes), "predicted": list(self.predicted)}


@dataclass(frozen=True)
class SegmenterEvaluation:
    model: str
    split: str | None
    report: SegmentationReport
    outcomes: SegmentationOutcomes = field(repr=False)
    """Per-image confusion matrices, in the order of ``paths``."""
    skipped: list[tuple[str, str]] = field(default_factory=list)
    """Items left out: (path, reason)."""
    problems: list[tuple[str, str]] = field(default_factory=list)
    """Other problems the dataset found while listing (a mask without an image, an annotation with a box only):
    (item, reason); the items left out are in ``skipped`` only."""
    paths: tuple[str, ...] = field(default=(), repr=False)
    bootstrap: BootstrapConfig | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Bootstrap intervals over images of ``miou``, ``pixel_accuracy`` and ``mean_dice``."""
    class_intervals: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    """Per class with an IoU: ``{"iou": (lo, hi)}``."""
    subgroups: tuple[SubgroupReport, ...] = ()
    worst: tuple[WorstImage, ...] = ()
    as_background: tuple[str, ...] = ()
    """Model labels outside the dataset's classes, whose pixels counted as background."""
    ignore_index: int | None = None
    """The dataset's ignore index on disk (pixels never counted)."""

    @property
    def too_small(self) -> bool:
        return len(self.outcomes) < SMALL_SAMPLE

    @property
    def overlays(self) -> dict[str, str]:
        """Overlay data URIs of the worst images, by path (for the HTML report)."""
        return {w.path: w.overlay for w in self.worst if w.overlay}

    def to_dict(self) -> dict[str, Any]:
        r = self.report.to_dict()
        d: dict[str, Any] = {"task": "segmentation", "model": self.model, "split": self.split, **r,
                             "labels": list(self.report.class_names), "ignore_index": self.ignore_index,
                             "model_labels_as_background": list(self.as_background),
                             "skipped_files": [list(s) for s in self.skipped],
                             "data_problems": [list(p) for p in self.problems]}
        for name, ci in self.class_intervals.items():
            d["per_class"][name].update({f"{k}_ci": list(v) for k, v in ci.items()})
        if self.bootstrap is not None:
            d["confidence_intervals"] = {**self.bootstrap.to_dict(),
                                         **{k: list(v) for k, v in self.intervals.items()},
                                         "method": INTERVAL_METHOD, "too_small": self.too_small}
        d["subgroups"] = [g.to_dict() for g in self.subgroups]
        d["worst_images"] = [w.to_dict() for w in self.worst]
        d["corruptions"] = None
        d["mistakes"] = []
        return d

    def format_table(self) -> str:
        r = self.report
        head = (f"model {self.model}, split {self.split or 'all'}: {r.num_images} images"
                f"{f', {len(self.skipped)} left out (see below)' if self.skipped else ''}")
        if self.as_background:
            head += (f"\nmodel labels not in the data, counted as background: {', '.join(self.as_background[:12])}"
                     + (" ..." if len(self.as_background) > 12 else ""))
        if self.bootstrap is not None and self.intervals:
            pct = round(self.bootstrap.level * 100)
            head += (f"\n{pct}% bootstrap CIs over images ({self.bootstrap.resamples} resamples, seed "
                     f"{self.bootstrap.seed}): " + ", ".join(f"{k} {getattr(r, k):.4f} [{lo:.4f}, {hi:.4f}]"
                                                             for k, (lo, hi) in self.intervals.items()))
            if self.too_small:
                head += (f"\ntoo small to judge: {r.num_images} images (fewer than {SMALL_SAMPLE}); the intervals "
                         "show how little they say")
        parts = [head, r.format_table(self.class_intervals if self.bootstrap is not None else None)]
        if self.worst:
            width = max(len(Path(w.path).name) for w in self.worst)
            parts.append("worst images (lowest per-image mIoU)\n" + "\n".join(
                f"{Path(w.path).name:<{width}}  mIoU {w.miou:.4f}  pixel accuracy {w.pixel_accuracy:.4f}"
                for w in self.worst))
        parts += [g.format_table() for g in self.subgroups]
        return "\n\n".join(parts)


# --------------------------------------------------------------------------- class matching


def class_mapping(model_labels: Sequence[str], classes: Sequence[str], model_name: str = "the model"
                  ) -> tuple[np.ndarray, tuple[str, ...]]:
    """``(lookup, as_background)``: ``lookup[model id]`` is the dataset class id of each model label;
    model labels outside the dataset map to its background class (named in ``as_background``).

    Raises ConfigError when a dataset class is not a model label, or when the model has labels the
    dataset lacks and the dataset has no background class to count them as.
    """
    index = {str(c): i for i, c in enumerate(classes)}
    labels = [str(s) for s in model_labels]
    unknown = [c for c in index if c not in set(labels)]
    if unknown:
        raise ConfigError(f"dataset classes not known to model {model_name}: {', '.join(unknown[:10])}."
                          f"{suggest(unknown[0], labels)} Model labels: {', '.join(labels[:30])}"
                          f"{' ...' if len(labels) > 30 else ''}")
    extra = tuple(s for s in labels if s not in index)
    background = next((i for c, i in index.items() if c.lower() in BACKGROUND_NAMES), None)
    if extra and background is None:
        raise ConfigError(f"model {model_name} predicts labels the dataset does not have ({', '.join(extra[:10])}) "
                          f"and the dataset has no background class to count them as; give the dataset all of the "
                          f"model's classes, or a 'background' class")
    lookup = np.array([index.get(s, background if background is not None else 0) for s in labels], np.int64)
    return lookup, extra


# --------------------------------------------------------------------------- overlays


def _panels(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, side: int) -> tuple[np.ndarray, ...]:
    """Small copies: image (bilinear) and masks (nearest), longest side ``side``."""
    from PIL import Image

    h, w = gt.shape
    scale = min(1.0, side / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    img = np.asarray(Image.fromarray(np.ascontiguousarray(image, np.uint8)).resize(size, Image.BILINEAR))
    g = np.asarray(Image.fromarray(np.ascontiguousarray(gt)).resize(size, Image.NEAREST))
    p = np.asarray(Image.fromarray(np.ascontiguousarray(pred)).resize(size, Image.NEAREST))
    return img, g, p


def overlay_strip(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, *, alpha: float = 0.5,
                  gap: int = 4) -> np.ndarray:
    """``(h, 4w + 3 gap, 3)`` uint8: the image, ground truth and prediction in the VOC palette over
    it (class 0 untinted, ignored pixels hatched grey), and the error map (wrong pixels magenta, ignored
    pixels grey, right pixels the dimmed image). Inputs of one size; masks in dataset class ids."""
    from visor.types.segmentation import palette

    colours = np.asarray(palette(256), np.float32).reshape(256, 3)
    base = np.asarray(image, np.float32)

    def tint(mask: np.ndarray) -> np.ndarray:
        out = base.copy()
        m = np.asarray(mask)
        coloured = (m > 0) & (m != IGNORE_INDEX)
        out[coloured] = (1 - alpha) * base[coloured] + alpha * colours[m[coloured].astype(np.intp) % 256]
        ignored = m == IGNORE_INDEX
        hatch = ((np.add.outer(np.arange(m.shape[0]), np.arange(m.shape[1])) // 3) % 2 == 0) & ignored
        out[hatch] = 0.4 * base[hatch] + 0.6 * 160.0
        return out

    grey = base.mean(axis=-1, keepdims=True) * 0.55 + 40
    errors = np.repeat(grey, 3, axis=-1)
    ignored = gt == IGNORE_INDEX
    wrong = (gt != pred) & ~ignored
    errors[wrong] = ERROR_COLOUR
    errors[ignored] = 150.0
    h = base.shape[0]
    spacer = np.full((h, gap, 3), 255.0, np.float32)
    strip = np.concatenate([base, spacer, tint(gt), spacer, tint(pred), spacer, errors], axis=1)
    return np.clip(strip + 0.5, 0, 255).astype(np.uint8)


def _jpeg_uri(pixels: np.ndarray, quality: int = 85) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# --------------------------------------------------------------------------- evaluation


def _load_dataset(data: Any, classes: Sequence[str] | str | os.PathLike | None, ignore_index: int | None) -> Any:
    from visor.data.segmentation import SegmentationDataset

    if isinstance(data, SegmentationDataset):
        if classes is not None or ignore_index is not None:
            raise ConfigError("classes and ignore_index apply to data given as a path; the dataset has its own")
        return data
    path = Path(os.fspath(data))
    if path.suffix.lower() == ".json" and path.is_file():
        if classes is not None or ignore_index is not None:
            raise ConfigError("a COCO file names its own classes (background + its categories) and ignores crowd "
                              "regions; classes and ignore_index apply to mask folders")
        return SegmentationDataset.from_coco(path)
    return SegmentationDataset.from_folder(path, classes=classes, ignore_index=ignore_index)


def _select(ds: Any, split: str | None) -> Any:
    if split is None:
        return ds
    if split not in ds.splits:
        raise ConfigError(f"the data has no split {split!r}.{suggest(split, ds.splits)} "
                          f"Splits: {', '.join(ds.splits) or 'none'}")
    return ds.subset(split)


def _reason(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"


def evaluate_segmenter(
    model: Any,
    data: str | os.PathLike | Any,
    *,
    split: str | None = None,
    classes: Sequence[str] | str | os.PathLike | None = None,
    ignore_index: int | None = None,
    by: Sequence[str] = (),
    metadata: str | os.PathLike | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    bootstrap_config: BootstrapConfig | None = None,
    worst: int = WORST_IMAGES,
    overlay_side: int = OVERLAY_SIDE,
    batch_size: int | None = None,
    progress: bool = False,
) -> SegmenterEvaluation:
    """Run ``model`` (a :class:`~visor.models.segmenter.Segmenter`, or anything with ``labels``, ``name``
    and ``predict_iter`` giving outcomes of masks) over ``data`` (a path or a
    :class:`~visor.data.segmentation.SegmentationDataset`) and measure it. For a mask folder, ``classes`` (names
    in id order, or a classes.txt / classes.json file) and ``ignore_index`` (the mask value of ignored pixels) are
    as for :meth:`~visor.data.segmentation.SegmentationDataset.from_folder` (CamVid: ``CAMVID_CLASSES`` and 11).

    ``by`` columns come from ``metadata`` (a CSV/JSONL side file, see :mod:`visor.evaluate.metadata`);
    each group gets its mIoU with a bootstrap interval within the group. ``worst`` images with the lowest
    per-image mIoU are kept with overlays ``overlay_side`` pixels high or wide. Intervals use
    ``bootstrap_config`` (default 1,000 resamples, 95%, seed 0).
    """
    from tqdm import tqdm

    ds = _select(_load_dataset(data, classes, ignore_index), split)
    if not ds.samples:
        raise ConfigError("the data has no images to evaluate")
    if by and metadata is None:
        raise ConfigError("--by needs per-image metadata for mask data: give a CSV/JSONL file with a path or "
                          "file_name column (--metadata)")
    if int(worst) < 0:
        raise ConfigError(f"worst must be 0 or more, got {worst}")
    meta: list[dict[str, str]] = [{} for _ in ds.samples]
    if metadata is not None:
        from visor.evaluate.metadata import attach_metadata

        root = Path(ds.root) if ds.root is not None else None

        def name(p: Path) -> str | None:
            try:
                return p.relative_to(root).as_posix() if root is not None else None
            except ValueError:
                return None

        meta = attach_metadata([(s.image, name(Path(s.image))) for s in ds.samples], metadata)
        for column in by:
            group_column(meta, column)  # fail before inference
    classes = tuple(ds.classes)
    lookup, as_background = class_mapping(model.labels, classes, getattr(model, "name", "the model"))
    config = bootstrap_config or BootstrapConfig()
    c = len(classes)

    skipped: list[tuple[str, str]] = []
    confusions: list[np.ndarray] = []
    kept: list[int] = []
    heap: list[tuple[float, int, tuple]] = []

    def measure(i: int, image: np.ndarray, gt: np.ndarray, outcome: Any) -> None:
        path = str(ds.samples[i].image)
        if outcome.error is not None:
            skipped.append((path, _reason(outcome.error)))
            return
        pred_model = np.asarray(outcome.result.mask)
        if pred_model.shape != gt.shape:
            skipped.append((path, f"prediction is {pred_model.shape[1]}x{pred_model.shape[0]} but the mask is "
                                  f"{gt.shape[1]}x{gt.shape[0]} (width x height)"))
            return
        pred = lookup[pred_model].astype(np.uint8 if c <= 256 else np.uint16)
        try:
            cm = confusion_matrix(gt, pred, c, IGNORE_INDEX)
        except VisorError as e:
            skipped.append((path, _reason(e)))
            return
        confusions.append(cm)
        kept.append(i)
        scores = _image_scores(cm)
        if worst and not np.isnan(scores[0]):
            key = (-scores[0], -i)  # the heap's top is the best of the worst kept so far
            if len(heap) < worst or key > heap[0][:2]:
                item = (key[0], key[1], (scores, _panels(image, gt, pred, overlay_side)))
                (heapq.heappush if len(heap) < worst else heapq.heapreplace)(heap, item)

    # Images are read once (by the dataset, with their masks) and handed to the model in chunks, so memory
    # stays bounded by a chunk whatever the set's size.
    chunk = max(CHUNK, int(batch_size or 0))
    with tqdm(total=len(ds), unit="img", disable=not progress, desc="evaluating") as bar:
        for start in range(0, len(ds), chunk):
            loaded = []
            for i in range(start, min(start + chunk, len(ds))):
                try:
                    image, mask = ds.load(i)
                except (VisorError, OSError, ValueError) as e:
                    skipped.append((str(ds.samples[i].image), _reason(e)))
                    bar.update(1)
                    continue
                loaded.append((i, image, mask))
            results = model.predict_iter([image for _, image, _ in loaded], batch_size=batch_size)
            for (i, image, mask), outcome in zip(loaded, results, strict=True):
                measure(i, image, mask, outcome)
                bar.update(1)
    left_out = {path for path, _ in skipped}
    problems = [(str(p.item), str(p.reason)) for p in getattr(ds, "problems", ()) if str(p.item) not in left_out]
    if not kept:
        raise ConfigError(f"no usable images to evaluate ({len(skipped)} left out; first: "
                          f"{skipped[0][0]}: {skipped[0][1]})" if skipped else "no usable images to evaluate")
    outcomes = SegmentationOutcomes(np.stack(confusions), classes)
    report = outcomes.report()
    intervals = outcomes.intervals(config)
    class_intervals = outcomes.class_intervals(config)
    subgroups = tuple(segmentation_subgroups(outcomes, group_column([meta[i] for i in kept], column), column,
                                             config=config, min_size=min_group_size) for column in by)
    worst_images = []
    for neg_miou, neg_i, (scores, panels) in sorted(heap, key=lambda t: (-t[0], -t[1])):
        i = -neg_i
        cm = confusions[kept.index(i)]
        worst_images.append(WorstImage(
            path=str(ds.samples[i].image), miou=float(-neg_miou), pixel_accuracy=float(scores[1]),
            classes=tuple(classes[j] for j in np.flatnonzero(cm.sum(axis=1))),
            predicted=tuple(classes[j] for j in np.flatnonzero(cm.sum(axis=0))),
            overlay=None if panels is None else _jpeg_uri(overlay_strip(*panels))))
    return SegmenterEvaluation(
        model=getattr(model, "name", "model"), split=split, report=report, outcomes=outcomes, skipped=skipped,
        paths=tuple(str(ds.samples[i].image) for i in kept), bootstrap=config, intervals=intervals,
        class_intervals=class_intervals, subgroups=subgroups, worst=tuple(worst_images),
        as_background=as_background, ignore_index=getattr(ds, "ignore_index", IGNORE_INDEX), problems=problems)


def _image_scores(cm: np.ndarray) -> tuple[float, float]:
    """(mIoU over the classes in the image's ground truth or prediction, pixel accuracy) of one image."""
    from visor.evaluate.segmentation import confusion_metrics

    m = confusion_metrics(cm)
    return float(m["miou"]), float(m["pixel_accuracy"])


__all__ = ["BACKGROUND_NAMES", "OVERLAY_SIDE", "SEGMENTATION_METRICS", "WORST_IMAGES", "SegmenterEvaluation",
           "WorstImage", "class_mapping", "evaluate_segmenter", "overlay_strip"]
