"""One call for everything ``visor evaluate`` does: metrics with intervals, subgroups,
robustness to corruptions, the HTML report, the model card and the drift profile."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from visor.errors import ConfigError
from visor.evaluate.bootstrap import BootstrapConfig
from visor.evaluate.classifier import ClassifierEvaluation, evaluate_classifier
from visor.evaluate.detector import DetectorEvaluation
from visor.evaluate.segmenter import SegmenterEvaluation
from visor.evaluate.subgroups import MIN_GROUP_SIZE
from visor.models import load
from visor.models.classifier import Classifier


@dataclass(frozen=True)
class EvaluationOptions:
    """What to measure and write besides the headline metrics (``visor evaluate`` flags)."""

    split: str | None = None
    by: tuple[str, ...] = ()
    subgroup_metric: str = "accuracy"
    min_group_size: int = MIN_GROUP_SIZE
    metadata: str | None = None
    """A CSV/JSONL side file of per-image metadata columns (``path`` or ``file_name`` + columns), for
    data without its own (class folders, detection sets)."""
    resamples: int | None = None
    """Bootstrap resamples; None: 1,000 for a classifier or a segmenter, 200 for a detector (each a COCO
    evaluation)."""
    level: float = 0.95
    seed: int = 0
    corruptions: tuple[str, ...] = ()
    """Corruption names to measure (empty: none); see :data:`visor.evaluate.corruptions.CORRUPTIONS`."""
    report: str | None = None
    """Path of the self-contained HTML report."""
    model_card: str | None = None
    """Path of the Markdown model card (default: ``model_card.md`` beside the report)."""
    profile: str | None = None
    """Path of the drift profile to write (for ``visor monitor`` and ``visor serve --drift-profile``)."""
    out: str | None = None
    """Folder for report.json, confusion.png and reliability.png."""
    batch_size: int = 32
    classes: tuple[str, ...] | str | None = None
    """Mask folders: the class names in id order, or a classes.txt / classes.json file (default: the folder's own
    classes file, else found from the masks)."""
    ignore_index: int | None = None
    """Mask folders: the mask value of ignored pixels (default 255)."""

    def __post_init__(self) -> None:
        if int(self.min_group_size) < 1:
            raise ConfigError(f"min_group_size must be at least 1, got {self.min_group_size}")
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {self.batch_size}")
        BootstrapConfig(self.resamples or 1000, self.level, self.seed)

    @property
    def card_path(self) -> str | None:
        if self.model_card:
            return self.model_card
        return str(Path(self.report).with_name("model_card.md")) if self.report else None


@dataclass(frozen=True)
class EvaluationRun:
    result: ClassifierEvaluation | DetectorEvaluation | SegmenterEvaluation
    written: dict[str, Path] = field(default_factory=dict)
    """What was written: ``report``, ``model_card``, ``profile``, ``out``."""


def training_summary(model: Any, model_ref: str) -> dict[str, Any] | None:
    """What is known about a model's training data: a run folder's config and metrics, else
    the card's source and description."""
    run = Path(model_ref)
    if run.is_dir() and (run / "metrics.json").is_file():
        metrics = json.loads((run / "metrics.json").read_text())
        config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
        val = metrics.get("val", {})
        return {
            "data": config.get("data"),
            "classes": len(val.get("labels", [])) or len(model.labels),
            "val_images": val.get("num_samples"),
            "class_support_val": {k: v.get("support") for k, v in val.get("per_class", {}).items()},
            "epochs_run": metrics.get("epochs_run"),
            "best_epoch": metrics.get("best_epoch"),
            "imbalance_ratio": metrics.get("imbalance_ratio"),
            "balanced": metrics.get("balanced"),
            "augment": config.get("config", {}).get("augment"),
        }
    card = model.card
    if card.source or card.description:
        return {"data": card.description or card.source, "weights source": card.source,
                "classes": len(card.labels), "note": "not trained by visor: see the weights' publisher for the data"}
    return None


def run_evaluation(model_ref: str, data: str | os.PathLike, options: EvaluationOptions | None = None, *,
                   model: Any = None, threads: int | None = None, progress: bool = False) -> EvaluationRun:
    """Evaluate ``model_ref`` (a registry name, run folder or ONNX file) on labelled ``data``
    and write what ``options`` asks for. Files are written only after every measurement
    succeeded, each atomically."""
    options = options or EvaluationOptions()
    if options.corruptions:
        from visor.evaluate.corruptions import check_corruptions

        check_corruptions(options.corruptions)  # before any inference
    model = model if model is not None else load(model_ref, threads=threads)
    if getattr(getattr(model, "card", None), "task", None) == "segmentation":
        return _run_segmentation(model, model_ref, data, options, progress)
    given = [flag for flag, value in [("--classes", options.classes), ("--ignore-index", options.ignore_index)]
             if value is not None]
    if given:
        raise ConfigError(f"{', '.join(given)}: for segmentation models on mask data only ({model.card.name} is a "
                          f"{model.card.task} model)")
    if not isinstance(model, Classifier):
        return _run_detection(model, model_ref, data, options, progress)
    config = BootstrapConfig(options.resamples or 1000, options.level, options.seed)
    result = evaluate_classifier(model, data, split=options.split, batch_size=options.batch_size, progress=progress,
                                 by=options.by, subgroup_metric=options.subgroup_metric,
                                 min_group_size=options.min_group_size, bootstrap=config,
                                 profile=options.profile is not None, model_ref=model_ref,
                                 metadata=options.metadata)
    if options.corruptions:
        from visor.evaluate.corruptions import evaluate_corruptions

        robustness = evaluate_corruptions(model, data, split=options.split, corruptions=options.corruptions,
                                          seed=options.seed, batch_size=options.batch_size, progress=progress)
        result = dataclasses.replace(result, corruptions=robustness)
    written: dict[str, Path] = {}
    if options.out:
        written["out"] = result.save(options.out)
    if options.profile:
        written["profile"] = result.profile.save(options.profile)
    if options.report or options.model_card:
        written |= _write_documents(result.to_dict(), model, model_ref, options)
    return EvaluationRun(result, written)


def _run_detection(model: Any, model_ref: str, data: str | os.PathLike, options: EvaluationOptions,
                   progress: bool) -> EvaluationRun:
    """The detector branch: COCO metrics, an AP50 interval and AP50 per group; the report and card."""
    from visor.evaluate.detector import DETECTION_RESAMPLES, evaluate_detector

    refused = [flag for flag, given in [("--corruptions", options.corruptions), ("--profile", options.profile),
                                        ("--out", options.out)] if given]
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not available for detectors yet ({model.card.name} is a "
                          f"{model.card.task} model); drop {'them' if len(refused) > 1 else 'it'}")
    if options.subgroup_metric != "accuracy":
        raise ConfigError("detector subgroups are compared on AP50; --subgroup-metric applies to classifiers")
    config = BootstrapConfig(options.resamples or DETECTION_RESAMPLES, options.level, options.seed)
    result = evaluate_detector(model, data, split=options.split, by=options.by, metadata=options.metadata,
                               min_group_size=options.min_group_size, bootstrap_config=config,
                               batch_size=options.batch_size, progress=progress)
    return EvaluationRun(result, _write_documents(result.to_dict(), model, model_ref, options))


def _run_segmentation(model: Any, model_ref: str, data: str | os.PathLike, options: EvaluationOptions,
                      progress: bool) -> EvaluationRun:
    """The segmenter branch: pixel metrics with intervals over images, mIoU per group, the worst images;
    the HTML report (with their overlays), the model card (beside the report unless ``model_card`` says where)
    and, with ``out``, report.json and confusion.png."""
    from visor.evaluate.segmenter import evaluate_segmenter

    refused = [flag for flag, given in [("--corruptions", options.corruptions), ("--profile", options.profile)]
               if given]
    if refused:
        raise ConfigError(f"{', '.join(refused)}: not available for segmentation yet ({model.card.name} is a "
                          f"segmentation model); drop {'them' if len(refused) > 1 else 'it'}")
    if options.subgroup_metric != "accuracy":
        raise ConfigError("segmentation subgroups are compared on mIoU; --subgroup-metric applies to classifiers")
    config = BootstrapConfig(options.resamples or 1000, options.level, options.seed)
    result = evaluate_segmenter(model, data, split=options.split, classes=options.classes,
                                ignore_index=options.ignore_index, by=options.by, metadata=options.metadata,
                                min_group_size=options.min_group_size, bootstrap_config=config,
                                batch_size=options.batch_size, progress=progress)
    written: dict[str, Path] = {}
    if options.out:
        written["out"] = save_segmentation(result, options.out)
    if options.report or options.model_card:
        written |= _write_documents(result.to_dict(), model, model_ref, options, overlays=result.overlays,
                                    training=segmentation_training_summary(model, model_ref))
    return EvaluationRun(result, written)


def segmentation_training_summary(model: Any, model_ref: str) -> dict[str, Any] | None:
    """What is known about a segmenter's training: a ``visor train segment`` run folder's config and metrics
    (validation mIoU over its images), else the card's source and description."""
    run = Path(model_ref)
    if not (run.is_dir() and (run / "metrics.json").is_file()):
        return training_summary(model, model_ref)
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text()) if (run / "config.json").is_file() else {}
    val = metrics.get("val") if isinstance(metrics.get("val"), dict) else {}
    settings = config.get("config") if isinstance(config.get("config"), dict) else {}
    summary = {
        "data": config.get("data"),
        "classes": len(model.labels),
        "input size": "x".join(str(v) for v in config.get("input_size") or []) or None,
        "validation images": val.get("num_images"),
        "validation mIoU": val.get("miou"),
        "validation pixel accuracy": val.get("pixel_accuracy"),
        "epochs_run": metrics.get("epochs_run"),
        "best_epoch": metrics.get("best_epoch"),
        "stopped_early": metrics.get("stopped_early"),
        "loss": settings.get("loss"),
        "augment": settings.get("augment"),
        "skipped_files": metrics.get("skipped_files"),
    }
    return {k: v for k, v in summary.items() if v is not None}


def save_segmentation(result: SegmenterEvaluation, out: str | os.PathLike) -> Path:
    """``report.json`` (the metrics document) and ``confusion.png`` (row-normalised pixel confusion) in ``out``."""
    from visor.evaluate.plots import plot_confusion_matrix
    from visor.io.files import atomic_write

    folder = Path(out)
    atomic_write(folder / "report.json", json.dumps(result.to_dict(), indent=2) + "\n")
    plot_confusion_matrix(result.report.confusion, result.report.class_names, folder / "confusion.png")
    return folder


def _write_documents(report: dict[str, Any], model: Any, model_ref: str, options: EvaluationOptions, *,
                     overlays: dict[str, str] | None = None, training: dict[str, Any] | None = None
                     ) -> dict[str, Path]:
    """The HTML report (``overlays``: images by path, for a segmenter's worst images) and the model card
    (``training``: the training summary, default :func:`training_summary`)."""
    written: dict[str, Path] = {}
    if options.report:
        from visor.evaluate.report_html import write_report_html

        written["report"] = write_report_html(report, options.report, overlays=overlays)
    if options.report or options.model_card:
        from visor.evaluate.model_card import write_model_card

        written["model_card"] = write_model_card(
            report, options.card_path, card=model.card,
            training=training if training is not None else training_summary(model, model_ref))
    return written


def parse_names(text: str | None, known: Sequence[str]) -> tuple[str, ...]:
    """``"all"`` or a comma-separated list of names (checked later) into a tuple."""
    if text is None:
        return ()
    if text.strip().lower() == "all":
        return tuple(known)
    return tuple(n.strip() for n in text.split(",") if n.strip())


__all__ = ["EvaluationOptions", "EvaluationRun", "parse_names", "run_evaluation", "save_segmentation",
           "segmentation_training_summary", "training_summary"]
