"""A Markdown model card (Mitchell et al., 2019, "Model Cards for Model Reporting") written
from an evaluation report.

The card gathers the model's identity (from its :class:`~visor.models.card.ModelCard`),
its intended use, what is known about its training data, the evaluation data, metrics with
95% confidence intervals, subgroup results, robustness to corruptions and calibration, and
a list of limitations generated from those findings. What is not known is said plainly
("not recorded") or marked :data:`FILL_IN` for a person to complete.

Classifier, detector and segmenter reports (``report["task"]``) each get their own evaluation
data, metrics and limitations; a segmenter's card shows mIoU, mean Dice and pixel accuracy with
their bootstrap intervals over images, IoU per class (classes absent from both the ground truth
and the prediction left out and named), mIoU per subgroup and the worst images.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from visor.errors import InvalidInput
from visor.evaluate.bootstrap import SMALL_SAMPLE
from visor.evaluate.report_html import (
    as_float,
    as_int,
    as_interval,
    as_list,
    as_mapping,
    detection_metric_rows,
    format_decimal,
    format_decimal_ci,
    format_percent,
    format_percent_ci,
    format_points,
    present_classes,
    write_text_atomic,
)
from visor.evaluate.segmentation import SEGMENTATION_METRICS
from visor.models.card import ModelCard

#: Marks what a person has to write in.
FILL_IN = "[FILL IN]"
#: A class whose recall is below this is listed as a limitation.
LOW_RECALL = 0.5
#: A segmentation class whose IoU is below this is listed as a limitation.
LOW_IOU = 0.5
#: An ECE above this is listed as a limitation.
HIGH_ECE = 0.05
#: An evaluation set with fewer images than this is listed as a limitation.
SMALL_EVALUATION = 100
#: Classes named in a list before it is cut short.
MAX_NAMED = 20
#: Rows of the per-class and class-count tables.
MAX_TABLE_ROWS = 40
#: Worst corruptions named in the limitations.
WORST_CORRUPTIONS = 3
#: How segmentation metrics are named in the card.
SEGMENTATION_NAMES = {"miou": "mIoU", "mean_dice": "mean Dice", "pixel_accuracy": "pixel accuracy"}

MEASURED_ONLY = ("All the figures above were measured on the evaluation data described in this card only; they may "
                 "not hold for images from other sources, cameras, places, populations or conditions, and should be "
                 "checked on data from the intended deployment before the model is relied on.")

_MD_SPECIAL = set("\\`*_[]<>|&#")


def md(text: object) -> str:
    """``text`` safe to put in Markdown prose or a table cell: Markdown and HTML punctuation
    is backslash-escaped and line breaks become spaces."""
    s = " ".join(str(text).split("\n"))
    return "".join("\\" + ch if ch in _MD_SPECIAL else ch for ch in s)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _names(names: Sequence[str], limit: int = MAX_NAMED) -> str:
    shown = ", ".join(md(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], align: str = "") -> list[str]:
    """A Markdown table; cells must be escaped already. ``align`` has one of ``l``/``r`` per column."""
    marks = [":--" if a == "l" else "--:" for a in (align or "l" + "r" * (len(headers) - 1))]
    return ["| " + " | ".join(headers) + " |", "| " + " | ".join(marks) + " |",
            *("| " + " | ".join(row) + " |" for row in rows)]


# --------------------------------------------------------------------------- sections


def _details(report: Mapping[str, Any], card: ModelCard | None) -> list[str]:
    name = card.name if card is not None else report.get("model") or "unknown"
    out = ["## Model details", "", f"- **Name:** {md(name)}"]
    if card is None:
        out += [f"- **Architecture:** not recorded {FILL_IN}", f"- **Licence:** not recorded {FILL_IN}",
                "- **Weights:** not recorded"]
        labels = as_list(report.get("labels"))
        if labels:
            out.append(f"- **Labels:** {len(labels)} classes")
        return [*out, ""]
    w = card.weights
    p = card.preprocess
    out += [
        f"- **Task:** {md(card.task)}",
        f"- **Architecture:** {md(card.architecture)}",
        f"- **Licence:** {md(card.license)}",
        f"- **Weights:** {md(w.kind)} `{w.location.replace('`', '')}` ({md(w.format)})",
        f"- **Weights sha256:** `{w.sha256}`" if w.sha256 else "- **Weights sha256:** not recorded",
    ]
    if card.source:
        out.append(f"- **Source:** {md(card.source)}")
    segmentation = card.task == "segmentation"
    out += [
        f"- **Labels:** {card.num_classes} classes",
        f"- **Preprocessing:** {p.input_size[0]}×{p.input_size[1]} input, {md(p.resize)}"
        + (f" (crop {p.crop_pct:g})" if p.resize == "center_crop" else "")
        + f", {md(p.interpolation)} interpolation, {p.channel_order.upper()}, "
        f"mean {list(p.mean)}, std {list(p.std)}" + (f", {md(p.layout.upper())}" if segmentation else ""),
    ]
    if segmentation:
        out.append("- **Output:** a class per pixel (the arg-max of the logits, resized to the image)")
    else:
        fit = card.metrics.get("temperature_fit")
        out.append(f"- **Softmax temperature:** {card.temperature:.3f}"
                   + (f" ({md(fit)})" if isinstance(fit, str)
                      else " (uncalibrated)" if card.temperature == 1.0 else " (fitted on validation data)"))
    if card.metrics:
        ref = [f"{md(k)} {md(v)}" for k, v in card.metrics.items() if _is_scalar(v) and k != "temperature_fit"]
        if ref:
            out.append(f"- **Reference metrics (from the card):** {', '.join(ref)}")
    return [*out, ""]


def _intended_use(report: Mapping[str, Any], card: ModelCard | None) -> list[str]:
    n = card.num_classes if card is not None else len(as_list(report.get("labels")))
    task = card.task if card is not None else str(report.get("task") or "classification")
    description = card.description.strip() if card is not None else ""
    out = ["## Intended use", ""]
    if description:
        out += [md(description), ""]
    else:
        out += [f"**{FILL_IN}** Describe what this model is for, who will use it and in which setting "
                "(the model card gives no description).", ""]
    unknown = "the model always answers with one of its labels, so an unknown object gets a wrong one"
    if task == "detection":
        what = f"finds objects of its {n} classes in an image and draws a box around each"
    elif task == "segmentation":
        what = (f"assigns one of its {n} classes to every pixel of an image (semantic segmentation: one class map, "
                "objects of one class are not told apart)")
        unknown = ("every pixel gets one of its labels, so an unknown object is painted as background or as a wrong "
                   "class")
    else:
        what = f"assigns one of its {n} labels to a whole image (single-label classification)"
    out += [
        f"- **Primary use:** the model {what}. It is meant for images like the evaluation data below; "
        "measure it on data from the intended use before relying on it.",
        "- **Out-of-scope uses:** images unlike the evaluation data (other domains, cameras, places or "
        f"conditions); objects outside its labels ({unknown}); decisions about people, or any decision with serious "
        "consequences, without review by a person; uses the licence does not allow.",
        "",
    ]
    return out


_TRAINING_KEYS = {
    "data": "Data", "dataset": "Data", "data_ref": "Data", "num_samples": "Images", "num_images": "Images",
    "imbalance_ratio": "Class imbalance (largest / smallest class)", "balanced": "Balanced sampling",
    "epochs_run": "Epochs run", "best_epoch": "Best epoch", "stopped_early": "Stopped early",
    "monitor": "Monitored metric", "temperature": "Fitted temperature",
}


def _scalar(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return md(value)


def _training(training: Mapping[str, Any] | None) -> list[str]:
    out = ["## Training data", ""]
    if not training:
        return [*out, "Not recorded: no training information was given to this card.", ""]
    flat: dict[str, Any] = {}
    for key, value in training.items():
        if key in ("data", "dataset") and isinstance(value, Mapping):
            flat.update(value)
        else:
            flat[str(key)] = value
    bullets, tables = [], []
    for key, value in flat.items():
        if key in ("class_counts", "classes") and isinstance(value, Mapping) and value:
            counts = {str(k): as_int(v) for k, v in value.items()}
            order = sorted(counts, key=lambda k: (-counts[k], k))
            total = sum(counts.values())
            smallest = min(counts.values())
            ratio = f"{max(counts.values()) / smallest:.1f}" if smallest else "n/a (a class has no images)"
            bullets.append(f"- **Classes:** {len(counts)}, {total} images, {smallest} to {max(counts.values())} "
                           f"per class (largest / smallest: {ratio})")
            rows = [(md(k), str(counts[k])) for k in order[:MAX_TABLE_ROWS]]
            note = (f"The {MAX_TABLE_ROWS} largest of {len(counts)} classes." if len(order) > MAX_TABLE_ROWS
                    else "")
            tables += ["", "Images per class in the training data:", "", *_table(["class", "images"], rows)]
            if note:
                tables.append(f"\n{note}")
        elif key in ("val", "test") and isinstance(value, Mapping):
            bullets.append(f"- **{key} split during training:** accuracy {format_percent(value.get('accuracy'))}, "
                           f"macro F1 {format_percent(value.get('macro_f1'))} on {as_int(value.get('num_samples'))} "
                           "images")
        elif key == "history" and isinstance(value, Sequence) and not isinstance(value, str):
            bullets.append(f"- **Training history:** {len(value)} epochs recorded")
        elif key == "skipped_files" and isinstance(value, Sequence) and not isinstance(value, str):
            bullets.append(f"- **Unreadable files skipped in training:** {len(value)}")
        elif key == "splits" and isinstance(value, Mapping):
            bullets.append("- **Splits:** " + ", ".join(f"{md(k)} {_scalar(v)}" for k, v in value.items()
                                                         if _is_scalar(v)))
        elif _is_scalar(value):
            bullets.append(f"- **{md(_TRAINING_KEYS.get(key, key))}:** {_scalar(value)}")
        elif isinstance(value, Mapping):
            items = [f"{md(k)} {_scalar(v)}" for k, v in value.items() if _is_scalar(v)]
            if items:
                more = f" (and {len(items) - MAX_NAMED} more)" if len(items) > MAX_NAMED else ""
                bullets.append(f"- **{md(key)}:** {', '.join(items[:MAX_NAMED])}{more}")
        elif isinstance(value, Sequence):
            bullets.append(f"- **{md(key)}:** {len(value)} entries")
    if not bullets and not tables:
        bullets.append("Not recorded: the training information given holds nothing to show.")
    return [*out, *bullets, *tables, ""]


def _evaluation_data(report: Mapping[str, Any]) -> list[str]:
    skipped = as_list(report.get("skipped_files"))
    present = present_classes(report)
    labels = as_list(report.get("labels"))
    per_class = as_mapping(report.get("per_class"))
    supports = [as_int(as_mapping(per_class.get(n)).get("support")) for n in present]
    supports = [s for s in supports if s > 0]
    out = [
        "## Evaluation data", "",
        f"- **Split:** {md(report.get('split') or 'all')}",
        f"- **Images evaluated:** {as_int(report.get('num_samples'))}",
        f"- **Classes with images:** {len(supports)} of {len(labels) or len(per_class)} labels"
        + (f", {min(supports)} to {max(supports)} images each" if supports else "")
        + (f"; {len(present) - len(supports)} more labels were predicted without being in the data"
           if len(present) > len(supports) else ""),
        f"- **Unreadable files (skipped, not counted):** {len(skipped)}",
    ]
    for entry in skipped[:10]:
        e = as_list(entry)
        out.append(f"  - `{str(e[0] if e else entry).replace('`', '')}`" + (f": {md(e[1])}" if len(e) > 1 else ""))
    if len(skipped) > 10:
        out.append(f"  - … and {len(skipped) - 10} more")
    return [*out, ""]


def _metrics(report: Mapping[str, Any]) -> list[str]:
    cis = as_mapping(report.get("confidence_intervals"))
    k = as_int(report.get("top_k")) or 5
    bins = as_int(report.get("ece_bins")) or 15
    rows = [
        ("Accuracy (top-1)", format_percent(report.get("accuracy")), format_percent_ci(cis.get("accuracy"))),
        (f"Top-{k} accuracy", format_percent(report.get("top5_accuracy")),
         format_percent_ci(cis.get("top5_accuracy"))),
        ("Macro precision", format_percent(report.get("macro_precision")), "—"),
        ("Macro recall", format_percent(report.get("macro_recall")), "—"),
        ("Macro F1", format_percent(report.get("macro_f1")), format_percent_ci(cis.get("macro_f1"))),
        (f"ECE ({bins} bins)", format_decimal(report.get("ece_after_scaling", report.get("ece"))),
         format_decimal_ci(cis.get("ece"))),
        ("Negative log-likelihood", format_decimal(report.get("nll")), "—"),
    ]
    level = as_float(cis.get("level"))
    head = f"{format_percent(level, 0)} CI" if level is not None else "95% CI"
    out = ["## Metrics", "", *_table(["Metric", "Value", head], rows, "lrr"), ""]
    if cis and as_mapping(cis.get("methods")):
        out += ["Confidence intervals: Wilson score intervals for proportions (accuracy, top-k accuracy, per-class "
                "recall), which stay honest at 0% and 100%; percentile bootstrap over images for macro-F1, "
                f"per-class F1 and ECE, {as_int(cis.get('resamples'))} resamples, seed {md(cis.get('seed', 'n/a'))}.",
                ""]
    elif cis:
        out += [f"Confidence intervals: percentile bootstrap over images, {as_int(cis.get('resamples'))} resamples, "
                f"seed {md(cis.get('seed', 'n/a'))}.", ""]
    else:
        out += ["No confidence intervals were recorded.", ""]
    per_class = as_mapping(report.get("per_class"))
    present = present_classes(report)
    with_images = [n for n in present if as_int(as_mapping(per_class[n]).get("support")) > 0]
    if with_images:
        present = with_images  # labels only predicted are summed up in the "Evaluation data" section

    if present:
        def order(name: str) -> tuple[bool, float, str]:
            m = as_mapping(per_class[name])
            return as_int(m.get("support")) == 0, as_float(m.get("recall")) or 0.0, name

        shown = sorted(present[:MAX_TABLE_ROWS], key=order)
        rows = []
        for n in shown:
            m = as_mapping(per_class[n])
            support = as_int(m.get("support"))
            recall, recall_ci = ((format_percent(m.get("recall")), format_percent_ci(m.get("recall_ci")))
                                 if support else ("—", "—"))
            rows.append((md(n), format_percent(m.get("precision")), recall, recall_ci, format_percent(m.get("f1")),
                         str(support)))
        what = (f"the {len(shown)} classes with the most images, of {len(present)}"
                if len(present) > len(shown) else f"all {len(present)} classes with images")
        out += [f"Per class ({what}; lowest recall first):", "",
                *_table(["Class", "Precision", "Recall", "Recall 95% CI", "F1", "Support"], rows), ""]
    return out


def _detection_metrics(report: Mapping[str, Any]) -> list[str]:
    cis = as_mapping(report.get("confidence_intervals"))
    skipped = as_list(report.get("skipped_files"))
    support = as_mapping(report.get("support"))
    rows = detection_metric_rows(report)
    per_class = [(md(n), str(as_int(k)), format_decimal(as_mapping(report.get("per_class_ap50")).get(n), 3))
                 for n, k in support.items() if as_int(k) > 0]
    out = ["## Evaluation data", "",
           f"- **Split:** {md(report.get('split') or 'all')}",
           f"- **Images evaluated:** {as_int(report.get('num_images'))}, "
           f"{sum(as_int(k) for k in support.values())} ground-truth boxes in {len(per_class)} classes",
           f"- **Unreadable files (skipped, not counted):** {len(skipped)}", "",
           "## Metrics", "", *_table(["Metric", "Value", "95% CI"], rows, "lrr"), ""]
    if cis:
        out += [f"COCO evaluation. AP50 interval: percentile bootstrap over images, {as_int(cis.get('resamples'))} "
                f"resamples, seed {md(cis.get('seed', 'n/a'))}.", ""]
    if per_class:
        out += ["Per class:", "", *_table(["Class", "Boxes", "AP50"], per_class, "lrr"), ""]
    return out


class _Scores:
    """How a subgroup metric is written: proportions as percentages (gaps in points), segmentation scores
    (mIoU, mean Dice, pixel accuracy) with 4 decimals (gaps signed, in the metric's own units)."""

    def __init__(self, metric: str) -> None:
        self.decimal = metric in SEGMENTATION_METRICS
        self.name = md(SEGMENTATION_NAMES.get(metric, metric))

    def value(self, x: Any) -> str:
        return format_decimal(x) if self.decimal else format_percent(x)

    def ci(self, x: Any) -> str:
        return format_decimal_ci(x) if self.decimal else format_percent_ci(x)

    def gap(self, x: Any) -> str:
        if not self.decimal:
            return format_points(x)
        f = as_float(x)
        return "—" if f is None else f"{f:+.4f}"


def _listed(entries: Sequence[Any], limit: int = 10) -> list[str]:
    """``(item, reason)`` pairs as indented bullets, the first ``limit`` of them."""
    out = []
    for entry in entries[:limit]:
        e = as_list(entry)
        item = str(e[0] if e else entry)
        out.append(f"  - `{Path(item).name.replace('`', '')}`" + (f": {md(e[1])}" if len(e) > 1 else ""))
    if len(entries) > limit:
        out.append(f"  - … and {len(entries) - limit} more")
    return out


def _segmentation_classes(report: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(classes with an IoU, classes absent from both ground truth and prediction), in the report's order."""
    per_class = as_mapping(report.get("per_class"))
    scored = [str(n) for n, m in per_class.items() if as_float(as_mapping(m).get("iou")) is not None]
    absent = [str(n) for n in per_class if str(n) not in set(scored)]
    return scored, absent


def _segmentation_evaluation_data(report: Mapping[str, Any]) -> list[str]:
    per_class = as_mapping(report.get("per_class"))
    labels = [str(x) for x in as_list(report.get("labels"))] or [str(n) for n in per_class]
    in_truth = [n for n in labels if as_int(as_mapping(per_class.get(n)).get("support")) > 0]
    skipped = as_list(report.get("skipped_files"))
    problems = as_list(report.get("data_problems"))
    background = [str(x) for x in as_list(report.get("model_labels_as_background"))]
    ignore = report.get("ignore_index")
    out = ["## Evaluation data", "",
           f"- **Split:** {md(report.get('split') or 'all')}",
           f"- **Images evaluated:** {as_int(report.get('num_images'))}, {as_int(report.get('num_pixels')):,} "
           "pixels counted"
           + (f" (pixels whose ground truth is the ignore index {as_int(ignore)} are not counted)"
              if as_float(ignore) is not None else ""),
           f"- **Classes:** {len(labels)} in the data, {len(in_truth)} of them in the ground truth"]
    if background:
        out.append(f"- **Model labels the data does not have, counted as background:** {len(background)} "
                   f"({_names(background)})")
    out.append(f"- **Items left out (not counted):** {len(skipped)}")
    out += _listed(skipped)
    if problems:
        out.append(f"- **Other problems found in the data:** {len(problems)}")
        out += _listed(problems)
    return [*out, ""]


def _segmentation_metrics(report: Mapping[str, Any]) -> list[str]:
    cis = as_mapping(report.get("confidence_intervals"))
    rows = [("mIoU", format_decimal(report.get("miou")), format_decimal_ci(cis.get("miou"))),
            ("Mean Dice", format_decimal(report.get("mean_dice")), format_decimal_ci(cis.get("mean_dice"))),
            ("Pixel accuracy", format_decimal(report.get("pixel_accuracy")),
             format_decimal_ci(cis.get("pixel_accuracy"))),
            ("Mean class accuracy", format_decimal(report.get("mean_accuracy")), "—")]
    level = as_float(cis.get("level"))
    head = f"{format_percent(level, 0)} CI" if level is not None else "95% CI"
    out = ["## Metrics", "", *_table(["Metric", "Value", head], rows, "lrr"), "",
           "IoU and Dice are computed over all pixels of the set, not averaged per image; mIoU and mean Dice are "
           "unweighted means over the classes in the ground truth or the prediction (a class only predicted scores "
           "0 and counts); pixel accuracy is the share of counted pixels predicted right.", ""]
    if cis:
        out += [f"Confidence intervals: percentile bootstrap over images (each resample's per-image pixel confusion "
                f"matrices summed and every metric recomputed), {as_int(cis.get('resamples'))} resamples, seed "
                f"{md(cis.get('seed', 'n/a'))}."
                + (f" Only {as_int(report.get('num_images'))} images: too few to judge; the intervals show how "
                   "little they say." if cis.get("too_small") else ""), ""]
    else:
        out += ["No confidence intervals were recorded.", ""]
    per_class = as_mapping(report.get("per_class"))
    scored, absent = _segmentation_classes(report)
    shown = sorted(scored, key=lambda n: (as_float(as_mapping(per_class[n]).get("iou")) or 0.0, n))[:MAX_TABLE_ROWS]
    if shown:
        rows = []
        for n in shown:
            m = as_mapping(per_class[n])
            rows.append((md(n), format_decimal(m.get("iou")), format_decimal_ci(m.get("iou_ci")),
                         format_decimal(m.get("dice")), f"{as_int(m.get('support')):,}",
                         f"{as_int(m.get('predicted')):,}"))
        what = (f"the {len(shown)} lowest of {len(scored)} classes in the ground truth or the prediction"
                if len(scored) > len(shown) else f"all {len(shown)} classes in the ground truth or the prediction")
        out += [f"IoU per class ({what}; lowest IoU first):", "",
                *_table(["Class", "IoU", "IoU 95% CI", "Dice", "Ground-truth pixels", "Predicted pixels"], rows), ""]
    else:
        out += ["No class is in the ground truth or the prediction.", ""]
    if absent:
        out += [f"Absent from both the ground truth and the prediction (no IoU, left out of the means, not in the "
                f"table): {_names(absent)}.", ""]
    worst = [as_mapping(w) for w in as_list(report.get("worst_images"))]
    if worst:
        rows = [(f"`{Path(str(w.get('path', ''))).name.replace('`', '')}`", format_decimal(w.get("miou")),
                 format_decimal(w.get("pixel_accuracy"))) for w in worst]
        out += ["Images with the lowest mIoU (each over the classes in its own ground truth or prediction):", "",
                *_table(["Image", "mIoU", "Pixel accuracy"], rows), ""]
    return out


def _segmentation_limitations(report: Mapping[str, Any]) -> list[str]:
    """Low IoU classes, classes not measured, a small set and items left out (after the subgroup findings)."""
    out = []
    per_class = as_mapping(report.get("per_class"))
    scored, absent = _segmentation_classes(report)

    def iou(n: str) -> float:
        return as_float(as_mapping(per_class[n]).get("iou")) or 0.0

    low = sorted((n for n in scored if iou(n) < LOW_IOU), key=lambda n: (iou(n), n))
    if low:
        def named(n: str) -> str:
            only = as_int(as_mapping(per_class[n]).get("support")) == 0
            return f"{md(n)} ({iou(n):.4f}{', only predicted, never in the ground truth' if only else ''})"

        out.append(f"IoU is below {LOW_IOU} for {len(low)} class{'es' if len(low) > 1 else ''}: "
                   + ", ".join(named(n) for n in low[:MAX_NAMED])
                   + (f" and {len(low) - MAX_NAMED} more" if len(low) > MAX_NAMED else "") + ".")
    if absent:
        out.append(f"{len(absent)} class{'es' if len(absent) > 1 else ''} of the data "
                   f"{'are' if len(absent) > 1 else 'is'} absent from both the ground truth and the prediction "
                   f"({_names(absent)}): these images say nothing about how the model does on "
                   f"{'them' if len(absent) > 1 else 'it'}.")
    background = [str(x) for x in as_list(report.get("model_labels_as_background"))]
    if background:
        out.append(f"Only the data's classes were measured: the model's {len(background)} other label"
                   f"{'s were' if len(background) > 1 else ' was'} counted as background ({_names(background)}), "
                   "so how well it finds those is unknown.")
    n = as_int(report.get("num_images"))
    if n < SMALL_SAMPLE:
        out.append(f"The evaluation set is too small to judge ({n} images, fewer than {SMALL_SAMPLE}): the "
                   "confidence intervals are wide, and a few images say little about other scenes.")
    elif n < SMALL_EVALUATION:
        out.append(f"The evaluation set is small ({n} images, fewer than {SMALL_EVALUATION}): the confidence "
                   "intervals are wide and rare scenes may not show up at all.")
    skipped = len(as_list(report.get("skipped_files")))
    if skipped:
        out.append(f"{skipped} item{'s were' if skipped > 1 else ' was'} left out and not evaluated (the reasons are "
                   "under Evaluation data).")
    return out


def _subgroups(report: Mapping[str, Any]) -> list[str]:
    out = ["## Subgroup results", ""]
    reports = [as_mapping(s) for s in as_list(report.get("subgroups"))]
    if not reports:
        if report.get("task") == "segmentation":
            return [*out, "No subgroup analysis was run: no --by column was given (mask data takes its columns from "
                          "a --metadata file).", ""]
        return [*out, "No subgroup analysis was run: the evaluation data had no metadata columns to group by.", ""]
    for s in reports:
        column, metric = str(s.get("column", "?")), str(s.get("metric", "accuracy"))
        scores = _Scores(metric)
        groups = [as_mapping(g) for g in as_list(s.get("groups"))]
        best = s.get("best")
        pooled = (" (the pixels of each group's images summed, as for the whole set)"
                  if metric in SEGMENTATION_METRICS else "")
        out += [f"### By {md(column)}", "",
                f"Scores are {scores.name} per group{pooled}; groups with fewer than {as_int(s.get('min_size'))} "
                "images are too small to judge. A group is worse when its whole 95% confidence interval lies below "
                "the best group's.", ""]
        rows = [(md(g.get("group", "")), str(as_int(g.get("n"))), scores.value(g.get("score")),
                 scores.ci(g.get("ci")), scores.gap(g.get("gap")),
                 "too small to judge" if g.get("status") == "too_small" else md(g.get("status", "")))
                for g in groups]
        out += [*_table(["Group", "n", scores.name, "95% CI", "Gap to best", "Status"], rows, "lrrrrl"), ""]
        best_g = next((g for g in groups if g.get("group") == best), None)
        worse = [g for g in groups if g.get("status") == "worse"]
        for g in worse:
            out.append(f"- **Flagged:** {_worse_sentence(column, metric, g, best_g)}")
        if not worse:
            out.append(f"- No group is measurably worse than the best group"
                       f"{f' ({md(best)})' if best is not None else ''}.")
        small = [g for g in groups if g.get("status") == "too_small"]
        if small:
            out.append("- Too small to judge: " + ", ".join(f"{md(g.get('group'))} (n={as_int(g.get('n'))})"
                                                            for g in small) + ".")
        out.append("")
    return out


def _worse_sentence(column: str, metric: str, g: Mapping[str, Any], best: Mapping[str, Any] | None) -> str:
    scores = _Scores(metric)
    s = (f"{md(column)} = **{md(g.get('group'))}** has {scores.name} {scores.value(g.get('score'))} "
         f"(95% CI {scores.ci(g.get('ci'))}, n={as_int(g.get('n'))})")
    if best:
        s += (f", against {scores.value(best.get('score'))} (95% CI {scores.ci(best.get('ci'))}) for "
              f"the best group **{md(best.get('group'))}**")
    return s + f": a gap of {scores.gap(g.get('gap'))}, with the intervals apart."


def _corruption_rows(c: Mapping[str, Any]) -> list[tuple[str, list[float | None], float | None]]:
    rows = []
    for name, values in as_mapping(c.get("accuracy")).items():
        vals = [as_float(v) for v in as_list(values)]
        finite = [v for v in vals if v is not None]
        rows.append((str(name), vals, sum(finite) / len(finite) if finite else None))
    return rows


def _robustness(report: Mapping[str, Any]) -> list[str]:
    out = ["## Robustness", ""]
    c = as_mapping(report.get("corruptions"))
    rows = _corruption_rows(c)
    if not rows:
        return [*out, "Not measured: no corruption benchmark was run.", ""]
    severities = [str(s) for s in as_list(c.get("severities"))] or [str(i + 1) for i in range(5)]
    clean = c.get("clean_accuracy")
    table = [(md(name), format_percent(clean), *(format_percent(v) for v in vals[: len(severities)]),
              format_percent(mean)) for name, vals, mean in rows]
    worst = as_mapping(c.get("worst"))
    out += [f"Accuracy on {as_int(c.get('num_samples'))} evaluation images with synthetic corruptions at severities "
            f"1 (mild) to 5 (strong), seed {md(c.get('seed', 'n/a'))}:", "",
            *_table(["Corruption", "Clean", *(f"Severity {s}" for s in severities), "Mean"], table), "",
            f"- **Clean accuracy:** {format_percent(clean)}",
            f"- **Mean accuracy under corruption:** {format_percent(c.get('mean_accuracy'))}",
            f"- **Relative accuracy (mean / clean):** {format_percent(c.get('relative_accuracy'))}"]
    if worst:
        out.append(f"- **Worst case:** {md(worst.get('corruption'))} at severity {md(worst.get('severity'))}: "
                   f"{format_percent(worst.get('accuracy'))}")
    return [*out, ""]


def _calibration(report: Mapping[str, Any]) -> list[str]:
    cis = as_mapping(report.get("confidence_intervals"))
    t = as_float(report.get("temperature"))
    after = report.get("ece_after_scaling", report.get("ece"))
    bins = as_int(report.get("ece_bins")) or 15
    ci = as_interval(cis.get("ece"))
    return [
        "## Calibration", "",
        f"- **Expected calibration error ({bins} bins), before temperature scaling:** "
        f"{format_decimal(report.get('ece_before_scaling'))}",
        f"- **After temperature scaling:** {format_decimal(after)}"
        + (f" (95% CI {format_decimal_ci(ci)})" if ci else ""),
        f"- **Temperature T:** {'n/a' if t is None else f'{t:.3f}'} (probabilities are softmax(logits / T))",
        f"- **Negative log-likelihood:** {format_decimal(report.get('nll'))}",
        "",
        "ECE is the average gap between the confidence the model gives and how often it is right; 0 means the "
        "confidence can be read as a probability of being right.",
        "",
    ]


def limitations(report: Mapping[str, Any]) -> list[str]:
    """The limitations the report's findings show, one sentence each (Markdown), ending with
    the fixed reminder that everything was measured on the evaluation data only."""
    out = []
    for s in (as_mapping(s) for s in as_list(report.get("subgroups"))):
        column, metric = str(s.get("column", "?")), str(s.get("metric", "accuracy"))
        groups = [as_mapping(g) for g in as_list(s.get("groups"))]
        best_g = next((g for g in groups if g.get("group") == s.get("best")), None)
        for g in groups:
            if g.get("status") == "worse":
                out.append("The model does measurably worse on one subgroup: "
                           + _worse_sentence(column, metric, g, best_g))
        small = [g for g in groups if g.get("status") == "too_small"]
        if small:
            names = ", ".join(f"{md(g.get('group'))} (n={as_int(g.get('n'))})" for g in small)
            out.append(f"Some {md(column)} groups are too small to judge (fewer than {as_int(s.get('min_size'))} "
                       f"images): {names}; how the model does on them is unknown.")
    if report.get("task") == "segmentation":
        return [*out, *_segmentation_limitations(report), MEASURED_ONLY]
    c = as_mapping(report.get("corruptions"))
    rows = [r for r in _corruption_rows(c) if r[2] is not None]
    if rows:
        rows.sort(key=lambda r: (r[2], r[0]))
        named = "; ".join(f"{md(name)} (mean {format_percent(mean)} over severities)"
                          for name, _, mean in rows[:WORST_CORRUPTIONS])
        worst = as_mapping(c.get("worst"))
        tail = (f"; the worst case is {md(worst.get('corruption'))} at severity {md(worst.get('severity'))} with "
                f"{format_percent(worst.get('accuracy'))}" if worst else "")
        out.append(f"Accuracy drops most under {named}, against {format_percent(c.get('clean_accuracy'))} on clean "
                   f"images{tail}.")
    per_class = as_mapping(report.get("per_class"))
    low = [n for n in present_classes(report)
           if as_int(as_mapping(per_class[n]).get("support")) > 0
           and (r := as_float(as_mapping(per_class[n]).get("recall"))) is not None and r < LOW_RECALL]
    low.sort(key=lambda n: (as_float(as_mapping(per_class[n]).get("recall")) or 0.0, n))
    if low:
        out.append(f"Recall is below {LOW_RECALL:.0%} for {len(low)} "
                   f"class{'es' if len(low) > 1 else ''}: " + ", ".join(
                       f"{md(n)} ({format_percent(as_mapping(per_class[n]).get('recall'))})" for n in low[:MAX_NAMED])
                   + (f" and {len(low) - MAX_NAMED} more" if len(low) > MAX_NAMED else "") + ".")
    ece = as_float(report.get("ece_after_scaling", report.get("ece")))
    if ece is not None and ece > HIGH_ECE:
        out.append(f"Confidence scores are not well calibrated (ECE {ece:.4f} > {HIGH_ECE}): do not read them as "
                   "probabilities of being right.")
    n = as_int(report.get("num_samples", report.get("num_images")))
    if n < SMALL_SAMPLE:
        out.append(f"The evaluation set is too small to judge ({n} images, fewer than {SMALL_SAMPLE}): the "
                   "confidence intervals are wide, and an all-correct result says little about the error rate "
                   "beyond these images.")
    elif n < SMALL_EVALUATION:
        out.append(f"The evaluation set is small ({n} images, fewer than {SMALL_EVALUATION}): the confidence "
                   "intervals are wide and rare failure modes may not show up at all.")
    skipped = len(as_list(report.get("skipped_files")))
    if skipped:
        out.append(f"{skipped} unreadable file{'s were' if skipped > 1 else ' was'} skipped and not evaluated.")
    out.append(MEASURED_ONLY)
    return out


def render_model_card(report: Mapping[str, Any], card: ModelCard | None = None, *,
                      training: Mapping[str, Any] | None = None) -> str:
    """A Markdown model card for the model ``report`` (the dict of ``visor evaluate --json``)
    evaluates. ``card`` adds the model's identity and description; ``training`` is any mapping
    describing the training data or run (e.g. a run folder's ``metrics.json``, or a summary
    with ``class_counts``) and is rendered as far as it goes.

    Raises :class:`~visor.errors.InvalidInput` when ``report`` or ``training`` is not a mapping.
    """
    if not isinstance(report, Mapping):
        raise InvalidInput(f"report must be a mapping (the evaluation report dict), got {type(report).__name__}")
    if training is not None and not isinstance(training, Mapping):
        raise InvalidInput(f"training must be a mapping, got {type(training).__name__}")
    if card is not None and not isinstance(card, ModelCard):
        raise InvalidInput(f"card must be a ModelCard, got {type(card).__name__}")
    name = card.name if card is not None else report.get("model") or "unknown model"
    task = report.get("task")
    n_images = as_int(report.get("num_images" if task in ("detection", "segmentation") else "num_samples"))
    if task == "detection":
        measured = [*_detection_metrics(report), *_subgroups(report),
                    "## Robustness and calibration", "", "Not measured for detectors by this version of visor.", ""]
    elif task == "segmentation":
        measured = [*_segmentation_evaluation_data(report), *_segmentation_metrics(report), *_subgroups(report),
                    "## Robustness and calibration", "",
                    "Not measured for segmentation models by this version of visor.", ""]
    else:
        measured = [*_evaluation_data(report), *_metrics(report), *_subgroups(report), *_robustness(report),
                    *_calibration(report)]
    lines = [
        f"# Model card: {md(name)}", "",
        f"Evaluated on split {md(report.get('split') or 'all')} ({n_images} images). "
        "Sections follow Mitchell et al. (2019), *Model Cards for Model Reporting*; generated by visor from the "
        "evaluation report.", "",
        *_details(report, card),
        *_intended_use(report, card),
        *_training(training),
        *measured,
        "## Limitations", "",
        *(f"- {item}" for item in limitations(report)),
    ]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(report: Mapping[str, Any], path: str | os.PathLike, card: ModelCard | None = None, *,
                     training: Mapping[str, Any] | None = None) -> Path:
    """Render the model card and write it to ``path`` atomically (a temporary file in the same
    folder, then ``os.replace``); parent folders are created. Returns the path."""
    return write_text_atomic(Path(path), render_model_card(report, card, training=training))


__all__ = ["FILL_IN", "HIGH_ECE", "LOW_IOU", "LOW_RECALL", "SMALL_EVALUATION", "limitations", "md", "render_model_card",
           "write_model_card"]
