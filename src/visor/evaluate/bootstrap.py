"""Confidence intervals for classification metrics: Wilson score intervals for proportions,
a percentile bootstrap, vectorised over resamples, for the rest.

Proportions of images (accuracy, top-k accuracy, a class's recall) get the Wilson score
interval, chosen over the percentile bootstrap, which collapses to ``[1, 1]`` when every
image is right (12 of 12 says nothing of the error rate beyond those 12), and over
Clopper-Pearson, which is valid but conservative (wider than needed on average): Wilson's
coverage is close to the nominal level for every n and never degenerate at 0% or 100%
(12 of 12 at 95%: [0.7575, 1.0]). Macro-F1, ECE and AP50 are not proportions and keep the
bootstrap.

A percentile bootstrap: draw ``resamples`` index sets of the same size with replacement
from a seeded generator, compute the metric on each, and take the ``(1 - level) / 2`` and
``(1 + level) / 2`` quantiles. The metrics are computed exactly as
:func:`visor.evaluate.metrics.classification_report` and
:func:`visor.evaluate.calibration.expected_calibration_error` do (macro averages over the
classes present in the resample), so the point estimate always lies on the same scale.

The same seed gives the same intervals on every run; each named group gets its own
generator derived from ``(seed, name)``, so adding a group never changes another's interval.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from visor.errors import ConfigError, InvalidInput

#: Metrics :class:`ClassificationOutcomes` gives intervals of.
CLASSIFICATION_METRICS: tuple[str, ...] = ("accuracy", "macro_f1", "top5_accuracy", "ece")
#: Those that are proportions of images: their intervals are Wilson score intervals.
PROPORTIONS: tuple[str, ...] = ("accuracy", "top5_accuracy")
#: How each interval is computed, as reported (per-class recall: Wilson; per-class F1: bootstrap).
INTERVAL_METHODS: dict[str, str] = {name: "wilson" if name in PROPORTIONS else "percentile bootstrap"
                                    for name in CLASSIFICATION_METRICS}
#: Sets (or groups) with fewer images than this are too small to judge; reports say so.
SMALL_SAMPLE = 30


def wilson_interval(successes: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval (no continuity correction) of ``successes`` out of ``n`` at ``level``.

    Matches ``scipy.stats.binomtest(successes, n).proportion_ci(level, method="wilson")``.
    """
    k, n = int(successes), int(n)
    if n < 1 or not 0 <= k <= n:
        raise InvalidInput(f"need 0 <= successes <= n and n >= 1, got {k} of {n}")
    if not 0 < float(level) < 1:
        raise InvalidInput(f"level must be in (0, 1), got {level}")
    z = NormalDist().inv_cdf((1 + float(level)) / 2)
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (0.0 if k == 0 else max(0.0, centre - half)), (1.0 if k == n else min(1.0, centre + half))
_MAX_CELLS = 4_000_000  # resample-index cells per chunk (bounded memory for big sets)


@dataclass(frozen=True)
class BootstrapConfig:
    """How intervals are drawn: ``resamples`` draws, two-sided ``level``, generator ``seed``."""

    resamples: int = 1000
    level: float = 0.95
    seed: int = 0

    def __post_init__(self) -> None:
        if int(self.resamples) < 10:
            raise ConfigError(f"resamples must be at least 10, got {self.resamples}")
        if not 0.5 <= float(self.level) < 1.0:
            raise ConfigError(f"level must be in [0.5, 1), got {self.level}")

    def rng(self, *names: str) -> np.random.Generator:
        """A generator seeded by ``seed`` and the names (stable across runs and processes)."""
        return np.random.default_rng([int(self.seed) & 0xFFFFFFFF, *(zlib.crc32(n.encode()) for n in names)])

    def to_dict(self) -> dict[str, float | int]:
        return {"level": self.level, "resamples": self.resamples, "seed": self.seed}


def percentile_interval(values: np.ndarray, level: float) -> tuple[float, float]:
    """The central ``level`` interval of the bootstrap distribution ``values``."""
    v = np.asarray(values, np.float64)
    lo, hi = np.quantile(v, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap(statistic: Callable[[np.ndarray], np.ndarray], n: int, config: BootstrapConfig,
              *names: str) -> np.ndarray:
    """``statistic`` on ``config.resamples`` resamples of ``range(n)``: ``(resamples, ...)``.

    ``statistic`` takes a ``(B, n)`` index array and returns one value (or row) per resample;
    it is called on chunks of resamples so memory stays bounded.
    """
    if n < 1:
        raise InvalidInput("bootstrap needs at least one sample")
    rng = config.rng(*names)
    chunk = max(1, _MAX_CELLS // n)
    out = []
    for start in range(0, config.resamples, chunk):
        b = min(chunk, config.resamples - start)
        out.append(np.asarray(statistic(rng.integers(0, n, size=(b, n)))))
    return np.concatenate(out)


@dataclass(frozen=True)
class ClassificationOutcomes:
    """Per-sample outcomes of a classifier: true class, predicted class, top-1 confidence and
    whether the true class is in the top k; enough to recompute every metric on a resample."""

    y_true: np.ndarray
    y_pred: np.ndarray
    confidence: np.ndarray
    top_k_hit: np.ndarray
    num_classes: int
    ece_bins: int = 15

    @classmethod
    def from_probabilities(cls, y_true: np.ndarray, probs: np.ndarray, *, k: int = 5,
                           ece_bins: int = 15) -> ClassificationOutcomes:
        """Outcomes of ``(N, C)`` probabilities (arg-max prediction, lowest id on ties)."""
        p = np.asarray(probs, np.float64)
        y = np.asarray(y_true, np.int64)
        if p.ndim != 2 or len(p) != len(y):
            raise InvalidInput(f"probs must be (N, C) with N = len(y_true); got {p.shape} and {len(y)}")
        true_score = p[np.arange(len(y)), y][:, None]
        ids = np.arange(p.shape[1])[None, :]
        rank = (p > true_score).sum(axis=1) + ((p == true_score) & (ids < y[:, None])).sum(axis=1)
        return cls(y, p.argmax(axis=1), p.max(axis=1), rank < min(k, p.shape[1]), p.shape[1], ece_bins)

    def __len__(self) -> int:
        return len(self.y_true)

    def subset(self, index: np.ndarray) -> ClassificationOutcomes:
        return ClassificationOutcomes(self.y_true[index], self.y_pred[index], self.confidence[index],
                                      self.top_k_hit[index], self.num_classes, self.ece_bins)

    # -------------------------------------------------------------- metrics on (B, n) index sets
    def _compact(self) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
        """Class ids renumbered over the classes that occur (as truth or prediction)."""
        present = np.union1d(self.y_true, self.y_pred)
        return (np.searchsorted(present, self.y_true), np.searchsorted(present, self.y_pred), len(present),
                present)

    def per_class(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        """``(B, K)`` support, precision, recall and F1 per resample over the classes present
        (``classes``: their ids), as :func:`classification_report` computes them."""
        yt, yp, k, present = self._compact()
        b = idx.shape[0]
        rows = np.repeat(np.arange(b), idx.shape[1]) * k
        t, p = yt[idx].ravel(), yp[idx].ravel()
        support = np.bincount(rows + t, minlength=b * k).reshape(b, k).astype(np.float64)
        predicted = np.bincount(rows + p, minlength=b * k).reshape(b, k).astype(np.float64)
        tp = np.bincount(rows + t, weights=(t == p), minlength=b * k).reshape(b, k)
        precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
        recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
        denom = precision + recall
        f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
        return {"classes": present, "support": support, "precision": precision, "recall": recall, "f1": f1}

    def metric(self, name: str, idx: np.ndarray) -> np.ndarray:
        """One metric (see :data:`CLASSIFICATION_METRICS`) for each row of ``idx``: ``(B,)``."""
        if name == "accuracy":
            return (self.y_true == self.y_pred)[idx].mean(axis=1)
        if name == "top5_accuracy":
            return self.top_k_hit[idx].mean(axis=1)
        if name == "macro_f1":
            pc = self.per_class(idx)
            present = pc["support"] > 0
            return (pc["f1"] * present).sum(axis=1) / present.sum(axis=1)
        if name == "ece":
            edges = np.linspace(0.0, 1.0, self.ece_bins + 1)
            bins = np.clip(np.searchsorted(edges, self.confidence, side="left") - 1, 0, self.ece_bins - 1)
            b = idx.shape[0]
            rows = np.repeat(np.arange(b), idx.shape[1]) * self.ece_bins + bins[idx].ravel()
            correct = (self.y_true == self.y_pred)[idx].ravel().astype(np.float64)
            hits = np.bincount(rows, weights=correct, minlength=b * self.ece_bins).reshape(b, -1)
            conf = np.bincount(rows, weights=self.confidence[idx].ravel(), minlength=b * self.ece_bins).reshape(b, -1)
            return np.abs(hits - conf).sum(axis=1) / idx.shape[1]
        from visor.config import suggest

        raise ConfigError(f"unknown metric {name!r}.{suggest(name, CLASSIFICATION_METRICS)} "
                          f"Known: {', '.join(CLASSIFICATION_METRICS)}")

    def point(self, name: str) -> float:
        """The metric on all samples (the identity resample)."""
        return float(self.metric(name, np.arange(len(self))[None, :])[0])

    def interval(self, name: str, config: BootstrapConfig, *names: str) -> tuple[float, float]:
        """Interval of one metric at ``config.level``: Wilson for a proportion (see :data:`PROPORTIONS`),
        else a bootstrap whose draw ``names`` seed (e.g. a column and group)."""
        if name in PROPORTIONS:
            hits = self.y_true == self.y_pred if name == "accuracy" else self.top_k_hit
            return wilson_interval(int(np.count_nonzero(hits)), len(self), config.level)
        values = bootstrap(lambda idx: self.metric(name, idx), len(self), config, name, *names)
        return percentile_interval(values, config.level)

    def class_intervals(self, config: BootstrapConfig) -> dict[int, dict[str, tuple[float, float]]]:
        """Intervals of recall (Wilson: a proportion of the class's images) and F1 (bootstrap) for
        each class with support: ``{class id: {...}}``.

        A resample that happens to hold no sample of a class is left out of that class's F1
        distribution, as in the stratified view of a class.
        """
        def stat(idx: np.ndarray) -> np.ndarray:
            pc = self.per_class(idx)
            return np.stack([pc["support"], pc["recall"], pc["f1"]], axis=-1)  # (B, K, 3)

        values = bootstrap(stat, len(self), config, "per_class")
        present = self._compact()[3]
        out: dict[int, dict[str, tuple[float, float]]] = {}
        for j, cls in enumerate(present):
            has = values[:, j, 0] > 0
            if not has.any() or not (self.y_true == cls).any():
                continue
            truth = self.y_true == cls
            out[int(cls)] = {"recall": wilson_interval(int(np.count_nonzero(truth & (self.y_pred == cls))),
                                                       int(np.count_nonzero(truth)), config.level),
                             "f1": percentile_interval(values[has, j, 2], config.level)}
        return out


__all__ = ["CLASSIFICATION_METRICS", "INTERVAL_METHODS", "PROPORTIONS", "SMALL_SAMPLE", "BootstrapConfig",
           "ClassificationOutcomes", "bootstrap", "percentile_interval", "wilson_interval"]
