"""PNG plots of a :class:`~visor.evaluate.detection.DetectionReport`: precision-recall curves
and the detection confusion matrix.

Same conventions as :mod:`visor.evaluate.plots`: matplotlib's object API (no pyplot),
imported only when a plot is drawn, PNGs written atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from visor.errors import InvalidInput
from visor.evaluate.detection import BACKGROUND, DetectionReport
from visor.evaluate.plots import _new_figure, _save, plot_confusion_matrix

_MAX_LEGEND_CLASSES = 12  # name each class in the legend up to this many curves


def plot_pr_curves(
    report: DetectionReport, path: str | os.PathLike, *, classes: Sequence[str] | None = None, title: str = ""
) -> Path:
    """Precision against recall at IoU 0.5 (COCO's 101-point interpolated curves), one line per
    class with ground truth, and their mean in bold (its area is the AP50).

    ``classes`` limits the per-class lines to those names (the mean still covers every class).
    Up to 12 classes are named in the legend with their AP50; more are drawn as thin grey lines.
    """
    if not isinstance(report, DetectionReport):
        raise InvalidInput(f"report must be a DetectionReport, got {type(report).__name__}")
    curves = report.pr_curves
    if classes is not None:
        unknown = [name for name in classes if name not in report.labels]
        if unknown:
            raise InvalidInput(f"unknown classes {unknown}; labels are {list(report.labels)}")
    shown = [name for name in (classes if classes is not None else report.labels) if name in curves]

    fig = _new_figure(7.0, 6.0)
    ax = fig.add_subplot()
    named = len(shown) <= _MAX_LEGEND_CLASSES
    for name in shown:
        recall, precision = curves[name]
        if named:
            ap50 = report.per_class_ap50.get(name, float(np.mean(precision)))
            ax.plot(recall, precision, linewidth=1.2, label=f"{name} ({ap50:.3f})")
        else:
            ax.plot(recall, precision, linewidth=0.6, color="tab:grey", alpha=0.5)
    if curves:
        recall = next(iter(curves.values()))[0]
        mean = np.mean([p for _, p in curves.values()], axis=0)
        ax.plot(recall, mean, linewidth=2.5, color="black", label=f"all classes (AP50 {float(np.mean(mean)):.3f})")
    else:
        ax.text(0.5, 0.5, "no ground truth boxes", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    heading = f"precision-recall @ IoU 0.50   AP {report.ap:.3f}   AP50 {report.ap50:.3f}"
    ax.set_title(f"{title}\n{heading}" if title else heading, fontsize=10)
    ax.grid(True, alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


def plot_detection_confusion(report: DetectionReport, path: str | os.PathLike, *, normalize: bool = True) -> Path:
    """Heat map of the report's ``(C+1, C+1)`` confusion matrix, the last row and column named
    ``background`` (false positives, missed boxes); ``normalize`` divides each row by its total."""
    if not isinstance(report, DetectionReport):
        raise InvalidInput(f"report must be a DetectionReport, got {type(report).__name__}")
    return plot_confusion_matrix(report.confusion, [*report.labels, BACKGROUND], path, normalize=normalize)
