"""PNG plots for evaluation: confusion matrix, training curves, reliability diagram.

Built with matplotlib's object API (``Figure`` + ``FigureCanvasAgg``), never pyplot, so
there is no global figure state and nothing needs a display. matplotlib is imported only
when a plot is drawn. Each function writes its PNG atomically (a temporary file in the
same folder, then ``os.replace``) and returns the path.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visor.errors import InvalidInput
from visor.evaluate.calibration import check_probabilities, expected_calibration_error, reliability_bins

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_DPI = 100
_MAX_ANNOTATED_CLASSES = 30  # write the value in each cell up to this many classes
_MAX_TICK_LABELS = 60  # name the classes on the axes up to this many
_METRIC_MARKERS = ("acc", "f1", "precision", "recall", "top", "map", "iou", "dice")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically (parent folders are created)."""
    from visor.io.files import atomic_open

    with atomic_open(path) as fh:
        fig.savefig(fh, format="png", dpi=_DPI)
    return Path(path)


# --------------------------------------------------------------------------- confusion matrix


def plot_confusion_matrix(
    confusion: np.ndarray, labels: Sequence[str], path: str | os.PathLike, *, normalize: bool = True
) -> Path:
    """Draw a ``(C, C)`` confusion matrix (rows true, columns predicted) as a heat map.

    ``normalize`` divides each row by its total (rows with no samples stay 0), so a cell is
    the fraction of that true class predicted as the column's class.
    """
    cm = np.asarray(confusion)
    names = [str(s) for s in labels]
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise InvalidInput(f"confusion must be a square 2-D array, got shape {cm.shape}")
    if cm.shape[0] != len(names):
        raise InvalidInput(f"confusion is {cm.shape[0]}x{cm.shape[1]} but {len(names)} labels were given")
    if cm.dtype.kind not in "iuf" or not np.isfinite(cm).all() or (cm.size and cm.min() < 0):
        raise InvalidInput("confusion must hold finite, non-negative counts")
    values = cm.astype(np.float64)
    if normalize:
        totals = values.sum(axis=1, keepdims=True)
        values = np.divide(values, totals, out=np.zeros_like(values), where=totals > 0)

    c = len(names)
    side = float(np.clip(2.5 + 0.45 * c, 5.0, 20.0))
    fig = _new_figure(side + 1.5, side)
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(values.max(initial=0.0)), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix" + (" (row-normalised)" if normalize else ""))
    if c <= _MAX_TICK_LABELS:
        ax.set_xticks(range(c), names, rotation=90 if c > 8 else 45, ha="right" if c <= 8 else "center")
        ax.set_yticks(range(c), names)
    if c <= _MAX_ANNOTATED_CLASSES:
        for i in range(c):
            for j in range(c):
                v = values[i, j]
                text = f"{v:.2f}" if normalize else f"{v:g}"
                colour = "white" if v > vmax / 2 else "black"
                ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- training curves


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for i, row in enumerate(history):
        value = row.get(key)
        if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and math.isfinite(value):
            epoch = row.get("epoch", i + 1)
            xs.append(float(epoch) if isinstance(epoch, (int, float, np.number)) else float(i + 1))
            ys.append(float(value))
    return xs, ys


def plot_training_curves(history: Sequence[Mapping[str, float]], path: str | os.PathLike) -> Path:
    """Plot one dict per epoch: keys containing ``loss`` on one axis, accuracy/F1-like keys
    (``acc``, ``f1``, ``precision``, ``recall``, ``top``...) on another.

    The x axis is each row's ``epoch`` (its 1-based position when missing). Keys missing
    from some rows, or non-numeric values, are skipped; other keys (``lr``...) are ignored.
    """
    if isinstance(history, Mapping) or not all(isinstance(row, Mapping) for row in history):
        raise InvalidInput("history must be a sequence of dicts, one per epoch")
    keys = list(dict.fromkeys(k for row in history for k in row if k != "epoch"))
    loss_keys = [k for k in keys if "loss" in k.lower()]
    metric_keys = [k for k in keys if k not in loss_keys and any(m in k.lower() for m in _METRIC_MARKERS)]
    groups = [(title, ks) for title, ks in (("loss", loss_keys), ("metric", metric_keys)) if ks]

    fig = _new_figure(6.0 * max(len(groups), 1), 4.5)
    if not groups:
        ax = fig.add_subplot()
        ax.text(0.5, 0.5, "no loss or metric values", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
    for n, (title, ks) in enumerate(groups, start=1):
        ax = fig.add_subplot(1, len(groups), n)
        for k in ks:
            xs, ys = _series(history, k)
            if xs:
                ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=k)
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return _save(fig, path)


# --------------------------------------------------------------------------- reliability diagram


def plot_reliability_diagram(
    probs: np.ndarray, y_true: np.ndarray, path: str | os.PathLike, *, n_bins: int = 15, title: str = ""
) -> Path:
    """Reliability diagram of the top-1 confidence: per-bin accuracy against the diagonal
    (perfect calibration), the gap shaded, and a histogram of the confidences below.
    The title carries the ECE."""
    p, y = check_probabilities(probs, y_true)
    bins = reliability_bins(p, y, n_bins)
    ece = expected_calibration_error(p, y, n_bins)

    fig = _new_figure(5.5, 6.5)
    grid = fig.add_gridspec(2, 1, height_ratios=(3, 1), hspace=0.08, left=0.14, right=0.96, top=0.93, bottom=0.09)
    ax = fig.add_subplot(grid[0])
    hist = fig.add_subplot(grid[1], sharex=ax)

    lo = np.array([b["lo"] for b in bins])
    width = np.array([b["hi"] - b["lo"] for b in bins])
    count = np.array([b["count"] for b in bins])
    acc = np.array([b["accuracy"] for b in bins])
    conf = np.array([b["confidence"] for b in bins])
    full = count > 0

    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfect calibration")
    ax.bar(
        lo[full],
        acc[full],
        width=width[full],
        align="edge",
        color="tab:blue",
        edgecolor="black",
        linewidth=0.5,
        label="accuracy",
    )
    ax.bar(
        lo[full],
        conf[full] - acc[full],
        bottom=acc[full],
        width=width[full],
        align="edge",
        color="tab:red",
        alpha=0.3,
        edgecolor="tab:red",
        linewidth=0.5,
        label="gap to confidence",
    )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{title + '  ' if title else ''}ECE = {ece:.4f}  (n = {len(y)}, {n_bins} bins)")
    ax.legend(loc="upper left", fontsize=8)
    ax.tick_params(labelbottom=False)
    ax.grid(True, alpha=0.3)

    hist.bar(lo, count, width=width, align="edge", color="tab:grey", edgecolor="black", linewidth=0.5)
    hist.set_xlabel("confidence (top-1)")
    hist.set_ylabel("samples")
    hist.grid(True, alpha=0.3)
    return _save(fig, path)
