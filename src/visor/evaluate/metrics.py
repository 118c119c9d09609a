"""Classification metrics: confusion matrix, per-class precision/recall/F1, top-k accuracy,
and a :class:`ClassificationReport` that gathers them with calibration figures."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from visor.errors import InvalidInput
from visor.evaluate.calibration import check_labels, check_probabilities, expected_calibration_error

TOP_K = 5
_PROB_FLOOR = 1e-12  # NLL clips the true-class probability here so a hard 0 gives a large finite loss


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(num_classes, num_classes)`` int64 counts, rows the true class, columns the predicted one."""
    if int(num_classes) != num_classes or int(num_classes) < 1:
        raise InvalidInput(f"num_classes must be a positive integer, got {num_classes}")
    c = int(num_classes)
    t = check_labels(y_true, None, c)
    p = check_labels(y_pred, len(t), c, "y_pred")
    return np.bincount(t * c + p, minlength=c * c).reshape(c, c).astype(np.int64)


@dataclass(frozen=True)
class ClassMetrics:
    """One class's precision, recall, F1 and support (number of true samples)."""

    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "recall": self.recall, "f1": self.f1, "support": self.support}


@dataclass(frozen=True)
class ClassificationReport:
    """Metrics of a classifier over a labelled set.

    ``accuracy`` is top-1; ``top5_accuracy`` is top-``min(5, C)`` (1.0 when there are
    fewer than 5 classes). Precision of a class never predicted is 0 (sklearn's
    ``zero_division=0``), as is recall of a class with no samples. The macro averages are
    the unweighted means over the classes with support > 0 only, so classes absent from
    the evaluation set do not drag them down. ``ece`` (with ``ece_bins`` bins) and ``nll``
    describe the probabilities given.
    """

    labels: tuple[str, ...]
    num_samples: int
    accuracy: float
    top5_accuracy: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    per_class: dict[str, ClassMetrics]
    confusion: np.ndarray
    ece: float
    nll: float
    ece_bins: int = 15

    @property
    def top_k(self) -> int:
        """The k of ``top5_accuracy``: ``min(5, number of classes)``."""
        return min(TOP_K, len(self.labels))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: plain floats, ints, lists and dicts."""
        return {
            "labels": list(self.labels),
            "num_samples": self.num_samples,
            "accuracy": self.accuracy,
            "top5_accuracy": self.top5_accuracy,
            "top_k": self.top_k,
            "macro_precision": self.macro_precision,
            "macro_recall": self.macro_recall,
            "macro_f1": self.macro_f1,
            "per_class": {name: m.to_dict() for name, m in self.per_class.items()},
            "confusion": np.asarray(self.confusion).tolist(),
            "ece": self.ece,
            "ece_bins": self.ece_bins,
            "nll": self.nll,
        }

    def format_table(self) -> str:
        """Summary lines, then a per-class precision/recall/F1/support table of the classes that
        have samples or were predicted (the rest are counted in a last line)."""
        lines = [
            f"samples: {self.num_samples}   classes: {len(self.labels)}",
            f"accuracy: {self.accuracy:.4f}   top-{self.top_k} accuracy: {self.top5_accuracy:.4f}",
            f"macro precision: {self.macro_precision:.4f}   macro recall: {self.macro_recall:.4f}   "
            f"macro f1: {self.macro_f1:.4f}",
            f"ECE ({self.ece_bins} bins): {self.ece:.4f}   NLL: {self.nll:.4f}",
            "",
        ]
        predicted = np.asarray(self.confusion).sum(axis=0)
        shown = [i for i, name in enumerate(self.labels) if self.per_class[name].support > 0 or predicted[i] > 0]
        width = max([len("class"), *(len(str(self.labels[i])) for i in shown)])
        lines.append(f"{'class':<{width}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>9}")
        lines.append("-" * (width + 2 + 4 * 11 - 2))
        for i in shown:
            name = self.labels[i]
            m = self.per_class[name]
            lines.append(f"{name:<{width}}  {m.precision:>9.4f}  {m.recall:>9.4f}  {m.f1:>9.4f}  {m.support:>9d}")
        if len(shown) < len(self.labels):
            lines.append(f"({len(self.labels) - len(shown)} classes with no samples and no predictions not shown)")
        return "\n".join(lines)


def top_k_accuracy(y_true: np.ndarray, probs: np.ndarray, k: int) -> float:
    """Fraction of samples whose true class is among the ``k`` highest scores.

    Ties are broken by class id (lower first), as in ``argmax`` and
    :meth:`visor.types.Classifications.from_probabilities`, so ``k=1`` equals the accuracy.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    true_score = p[np.arange(len(y)), y][:, None]
    ids = np.arange(p.shape[1])[None, :]
    rank = (p > true_score).sum(axis=1) + ((p == true_score) & (ids < y[:, None])).sum(axis=1)
    return float(np.mean(rank < k))


def classification_report(
    y_true: np.ndarray, probs: np.ndarray, labels: Sequence[str], n_bins: int = 15
) -> ClassificationReport:
    """Evaluate ``(N, C)`` probabilities against ``(N,)`` true class ids.

    Predictions are the arg-max class (lowest id on ties). ``labels`` names the C classes
    and must be unique. Bad shapes or values raise :class:`~visor.errors.InvalidInput`.
    """
    names = tuple(str(s) for s in labels)
    p_arr = np.asarray(probs)
    if p_arr.ndim != 2:
        raise InvalidInput(f"probs must be a 2-D (samples, classes) array, got shape {p_arr.shape}")
    if p_arr.shape[1] != len(names):
        raise InvalidInput(f"probs has {p_arr.shape[1]} class columns but {len(names)} labels were given")
    if len(set(names)) != len(names):
        dup = next(s for s in names if names.count(s) > 1)
        raise InvalidInput(f"labels must be unique, {dup!r} appears more than once")
    p, y = check_probabilities(p_arr, y_true)
    if len(p) == 0:
        raise InvalidInput("classification_report needs at least one sample")

    c = len(names)
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, c)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = np.divide(tp, predicted, out=np.zeros(c), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(c), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(c), where=denom > 0)
    present = support > 0

    true_prob = np.maximum(p[np.arange(len(y)), y], _PROB_FLOOR)
    return ClassificationReport(
        labels=names,
        num_samples=len(y),
        accuracy=float(np.mean(pred == y)),
        top5_accuracy=top_k_accuracy(y, p, min(TOP_K, c)),
        macro_precision=float(precision[present].mean()),
        macro_recall=float(recall[present].mean()),
        macro_f1=float(f1[present].mean()),
        per_class={
            names[i]: ClassMetrics(float(precision[i]), float(recall[i]), float(f1[i]), int(support[i]))
            for i in range(c)
        },
        confusion=cm,
        ece=expected_calibration_error(p, y, n_bins),
        nll=float(-np.mean(np.log(true_prob))),
        ece_bins=int(n_bins),
    )
