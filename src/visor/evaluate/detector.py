"""Evaluate a detector on a labelled detection dataset (COCO, YOLO or VOC): the COCO metrics,
a bootstrap interval of AP50 over images, and AP50 per subgroup of images."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError
from visor.evaluate.bootstrap import BootstrapConfig, bootstrap, percentile_interval
from visor.evaluate.detection import DetectionReport, ResampledAP50, evaluate_detections
from visor.evaluate.subgroups import MIN_GROUP_SIZE, SubgroupReport, detection_subgroups, group_column
from visor.models.batching import describe_error
from visor.types import Detections

#: Bootstrap resamples for detections (each pools the images' IoU-0.5 matches: ResampledAP50).
DETECTION_RESAMPLES = 200


@dataclass(frozen=True)
class DetectorEvaluation:
    model: str
    split: str | None
    report: DetectionReport
    skipped: list[tuple[str, str]] = field(default_factory=list)
    paths: tuple[str, ...] = field(default=(), repr=False)
    bootstrap: BootstrapConfig | None = None
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Bootstrap interval (over images) of AP50."""
    subgroups: tuple[SubgroupReport, ...] = ()
    conf: float = 0.001
    iou: float = 0.6

    def to_dict(self) -> dict[str, Any]:
        d = {"task": "detection", "model": self.model, "split": self.split, **self.report.to_dict(),
             "skipped_files": [list(s) for s in self.skipped], "conf": self.conf, "nms_iou": self.iou}
        if self.bootstrap is not None:
            d["confidence_intervals"] = {**self.bootstrap.to_dict(), **{k: list(v) for k, v in self.intervals.items()}}
        d["subgroups"] = [g.to_dict() for g in self.subgroups]
        d["corruptions"] = None
        d["mistakes"] = []
        return d

    def format_table(self) -> str:
        head = (f"model {self.model}, split {self.split or 'all'}: {self.report.num_images} images"
                f"{f', {len(self.skipped)} unreadable (skipped)' if self.skipped else ''}")
        if self.bootstrap is not None and "ap50" in self.intervals:
            lo, hi = self.intervals["ap50"]
            head += (f"\nAP50 {self.report.ap50:.4f}, {round(self.bootstrap.level * 100)}% bootstrap CI over images "
                     f"[{lo:.4f}, {hi:.4f}] ({self.bootstrap.resamples} resamples, seed {self.bootstrap.seed})")
        return "\n\n".join([head + "\n" + self.report.format_table(), *(g.format_table() for g in self.subgroups)])


def _label_map(model_labels: Sequence[str], classes: Sequence[str], model_name: str) -> np.ndarray:
    index = {label: i for i, label in enumerate(model_labels)}
    unknown = [c for c in classes if c not in index]
    if unknown:
        raise ConfigError(f"classes not known to model {model_name}: {', '.join(unknown[:10])}."
                          f"{suggest(unknown[0], index)}")
    return np.array([index[c] for c in classes], np.int64)


def _remap(gt: Detections, mapping: np.ndarray) -> Detections:
    return Detections(xyxy=gt.xyxy, confidence=gt.confidence, class_id=mapping[gt.class_id], data=dict(gt.data))


def evaluate_detector(
    model: Any,
    data: str | os.PathLike | Any,
    *,
    split: str | None = None,
    by: Sequence[str] = (),
    metadata: str | os.PathLike | None = None,
    min_group_size: int = MIN_GROUP_SIZE,
    bootstrap_config: BootstrapConfig | None = None,
    conf: float = 0.001,
    iou: float = 0.6,
    batch_size: int = 8,
    progress: bool = False,
) -> DetectorEvaluation:
    """Run ``model`` (a :class:`~visor.models.detector.Detector`) over ``data`` (a path or a
    :class:`~visor.data.detection.DetectionDataset`) and measure it.

    Dataset classes are matched to the model's labels by name. Predictions keep boxes above
    ``conf`` (low, as COCO evaluation expects). ``by`` columns come from ``metadata`` (see
    :mod:`visor.evaluate.metadata`). Intervals use ``bootstrap_config`` (default
    :data:`DETECTION_RESAMPLES` resamples, 95%, seed 0).
    """
    from tqdm import tqdm

    from visor.data import formats
    from visor.data.dataset import select_split
    from visor.data.detection import DetectionDataset

    ds = select_split(data if isinstance(data, DetectionDataset) else formats.load(data), split)
    if not ds.images:
        raise ConfigError("the data has no images to evaluate")
    if by and metadata is None:
        raise ConfigError("--by needs per-image metadata for detection data: give a CSV/JSONL file with a path or "
                          "file_name column (--metadata)")
    meta: list[dict[str, str]] = [{} for _ in ds.images]
    if metadata is not None:
        from visor.evaluate.metadata import attach_metadata

        meta = attach_metadata([(im.path, im.file_name) for im in ds.images], metadata)
        for column in by:
            group_column(meta, column)  # fail before inference
    mapping = _label_map(model.labels, ds.classes, model.name)
    config = bootstrap_config or BootstrapConfig(resamples=DETECTION_RESAMPLES)
    truth, preds, kept, skipped = [], [], [], []
    with tqdm(total=len(ds.images), unit="img", disable=not progress, desc="evaluating") as bar:
        outcomes = model.detect_iter([im.path for im in ds.images], conf=conf, iou=iou, max_det=100,
                                     batch_size=batch_size)
        for i, outcome in enumerate(outcomes):
            if outcome.error is not None:
                skipped.append((str(ds.images[i].path), describe_error(outcome.error)))
            else:
                truth.append(_remap(ds.detections(i), mapping))
                preds.append(outcome.result)
                kept.append(i)
            bar.update(1)
    if not kept:
        raise ConfigError("no readable images to evaluate")
    report = evaluate_detections(truth, preds, model.labels)

    # Each resample pools the images' matches again (seconds for a few hundred images): a bar of its own.
    scorer = ResampledAP50(truth, preds, model.labels)
    with tqdm(total=config.resamples, unit="resample", disable=not progress, desc="bootstrap AP50") as boot:
        def ap50(idx: np.ndarray) -> np.ndarray:
            out = scorer(idx)
            boot.update(len(idx))
            return out

        intervals = {"ap50": percentile_interval(bootstrap(ap50, len(kept), config, "ap50"), config.level)}
    kept_meta = [meta[i] for i in kept]
    subgroups = tuple(detection_subgroups(truth, preds, model.labels, group_column(kept_meta, column), column,
                                          config=config, min_size=min_group_size, progress=progress)
                      for column in by)
    return DetectorEvaluation(model=model.name, split=split, report=report, skipped=skipped,
                              paths=tuple(str(ds.images[i].path) for i in kept), bootstrap=config,
                              intervals=intervals, subgroups=subgroups, conf=conf, iou=iou)


__all__ = ["DETECTION_RESAMPLES", "DetectorEvaluation", "evaluate_detector"]
