"""Calibration of classifier probabilities: expected calibration error, reliability bins,
negative log-likelihood and temperature scaling.

All functions are pure and work on numpy arrays:

- ``probs``: ``(N, C)`` probabilities, one row per sample;
- ``logits``: ``(N, C)`` raw scores, one row per sample;
- ``y_true``: ``(N,)`` integer class ids in ``[0, C)``.

Bad shapes or values raise :class:`~visor.errors.InvalidInput` (a ``ValueError``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from visor.errors import InvalidInput
from visor.models.classifier import softmax as _softmax

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0  # 0.618...
_GRID_POINTS = 25  # coarse grid over log T before golden-section refinement
_LOG_T_TOL = 1e-6  # golden-section stops when the log T bracket is this narrow


# --------------------------------------------------------------------------- validation


def check_labels(
    y_true: Any, num_samples: int | None = None, num_classes: int | None = None, name: str = "y_true"
) -> np.ndarray:
    """``y_true`` as a 1-D int64 array of class ids, checked against the sample and class counts
    (``name`` is used in error messages)."""
    arr = np.asarray(y_true)
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.ndim != 1:
        raise InvalidInput(f"{name} must be a 1-D array of class ids, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise InvalidInput(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if num_samples is not None and len(arr) != num_samples:
        raise InvalidInput(f"{name} has {len(arr)} entries but there are {num_samples} samples")
    if num_classes is not None and len(arr) and (arr.min() < 0 or arr.max() >= num_classes):
        bad = arr[(arr < 0) | (arr >= num_classes)][0]
        raise InvalidInput(f"{name} holds class id {bad}, outside [0, {num_classes})")
    return arr


def check_scores(scores: Any, name: str = "probs") -> np.ndarray:
    """A finite 2-D ``(N, C)`` float64 array with C >= 1."""
    arr = np.asarray(scores)
    if arr.ndim != 2:
        raise InvalidInput(f"{name} must be a 2-D (samples, classes) array, got shape {arr.shape}")
    if arr.shape[1] < 1:
        raise InvalidInput(f"{name} must have at least one class column, got shape {arr.shape}")
    if arr.dtype.kind not in "iuf":
        raise InvalidInput(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(arr).all():
        raise InvalidInput(f"{name} holds NaN or infinite values")
    return arr


def check_probabilities(probs: Any, y_true: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(probs, y_true)``: probabilities in [0, 1] whose rows sum to 1 (within 1e-3)."""
    p = check_scores(probs, "probs")
    y = check_labels(y_true, len(p), p.shape[1])
    if len(p):
        if p.min() < 0.0 or p.max() > 1.0 + 1e-6:
            raise InvalidInput("probs must lie in [0, 1]; pass softmax(logits), not logits")
        sums = p.sum(axis=1)
        worst = int(np.argmax(np.abs(sums - 1.0)))
        if abs(sums[worst] - 1.0) > 1e-3:
            raise InvalidInput(f"probs rows must sum to 1, row {worst} sums to {sums[worst]:.6g}")
    return p, y


def _is_empty(probs: Any, y_true: Any) -> bool:
    return np.asarray(probs).size == 0 and np.asarray(y_true).size == 0


def _check_bins(n_bins: int) -> int:
    if int(n_bins) != n_bins or int(n_bins) < 1:
        raise InvalidInput(f"n_bins must be a positive integer, got {n_bins}")
    return int(n_bins)


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not (math.isfinite(t) and t > 0.0):
        raise InvalidInput(f"temperature must be a finite number > 0, got {temperature}")
    return t


# --------------------------------------------------------------------------- binning


def _bin_stats(probs: np.ndarray, y_true: np.ndarray, n_bins: int) -> tuple[np.ndarray, ...]:
    """Per-bin (edges, count, sum of correct, sum of confidence) of the top-1 confidences.

    Bins are equal-width over [0, 1]: ``(lo, hi]``, except the first, which is ``[0, hi]``.
    A confidence of exactly 1.0 (or a hair above, from rounding) lands in the last bin.
    """
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    idx = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    hits = np.bincount(idx, weights=correct, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    return edges, count, hits, conf_sum


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> float:
    """ECE of the top-1 confidence: ``sum_b |B|/N * |accuracy(B) - confidence(B)|``.

    ``n_bins`` equal-width bins over [0, 1], each ``(lo, hi]`` except the first, which
    includes 0; a confidence of exactly 1.0 goes in the last bin. Empty input gives 0.0.
    """
    n_bins = _check_bins(n_bins)
    if _is_empty(probs, y_true):
        return 0.0
    p, y = check_probabilities(probs, y_true)
    if len(p) == 0:
        return 0.0
    _, _, hits, conf_sum = _bin_stats(p, y, n_bins)
    # |B|/N * |acc(B) - conf(B)| == |hits(B) - conf_sum(B)| / N; empty bins contribute 0.
    return float(np.abs(hits - conf_sum).sum() / len(p))


def reliability_bins(probs: np.ndarray, y_true: np.ndarray, n_bins: int = 15) -> list[dict[str, float]]:
    """One dict per bin (all ``n_bins`` of them, in order), JSON-ready:
    ``lo``, ``hi``, ``count``, ``accuracy`` and mean top-1 ``confidence``.

    Bins as in :func:`expected_calibration_error`; an empty bin has accuracy and
    confidence 0.0 (check ``count``).
    """
    n_bins = _check_bins(n_bins)
    if _is_empty(probs, y_true):
        p, y = np.zeros((0, 1)), np.zeros(0, np.int64)
    else:
        p, y = check_probabilities(probs, y_true)
    edges, count, hits, conf_sum = _bin_stats(p, y, n_bins)
    out = []
    for b in range(n_bins):
        n = int(count[b])
        out.append(
            {
                "lo": float(edges[b]),
                "hi": float(edges[b + 1]),
                "count": n,
                "accuracy": float(hits[b] / n) if n else 0.0,
                "confidence": float(conf_sum[b] / n) if n else 0.0,
            }
        )
    return out


# --------------------------------------------------------------------------- temperature scaling


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise float32 softmax of ``logits / temperature`` (:func:`visor.models.classifier.softmax`,
    with the input checked)."""
    return _softmax(check_scores(logits, "logits"), _check_temperature(temperature))


def _nll(logits: np.ndarray, y_true: np.ndarray, temperature: float) -> float:
    """Mean NLL of ``softmax(logits / T)`` in float64 with log-sum-exp; inputs already checked."""
    z = logits / temperature
    zmax = z.max(axis=1, keepdims=True)
    lse = zmax[:, 0] + np.log(np.exp(z - zmax).sum(axis=1))
    return float(np.mean(lse - z[np.arange(len(z)), y_true]))


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (natural log) of the true classes under
    ``softmax(logits / temperature)``, computed in float64 with log-sum-exp. Empty input gives 0.0."""
    t = _check_temperature(temperature)
    if _is_empty(logits, y_true):
        return 0.0
    z = check_scores(logits, "logits")
    y = check_labels(y_true, len(z), z.shape[1])
    return _nll(z, y, t) if len(z) else 0.0


def fit_temperature(logits: np.ndarray, y_true: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The temperature T in ``bounds`` that minimises the mean NLL of ``softmax(logits / T)``.

    Deterministic: a coarse grid over log T, then golden-section search on log T around the
    best grid point down to a bracket of 1e-6. The NLL is convex in 1/T, hence unimodal in
    log T, so this finds the optimum within ``bounds``. Never returns a T whose NLL is worse
    than T = 1 on the same data: if nothing in ``bounds`` beats T = 1 (or the data are empty),
    the answer is 1.0.
    """
    lo, hi = (float(b) for b in bounds)
    if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 < lo < hi):
        raise InvalidInput(f"bounds must be finite with 0 < low < high, got {bounds}")
    if _is_empty(logits, y_true):
        return 1.0
    z = check_scores(logits, "logits")
    y = check_labels(y_true, len(z), z.shape[1])
    if len(z) == 0:
        return 1.0

    def f(log_t: float) -> float:
        return _nll(z, y, math.exp(log_t))

    grid = np.linspace(math.log(lo), math.log(hi), _GRID_POINTS)
    values = [f(float(u)) for u in grid]
    i = int(np.argmin(values))
    a, b = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, len(grid) - 1)])
    best_u, best_f = float(grid[i]), values[i]

    c, d = b - _GOLDEN * (b - a), a + _GOLDEN * (b - a)
    fc, fd = f(c), f(d)
    while b - a > _LOG_T_TOL:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - _GOLDEN * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + _GOLDEN * (b - a)
            fd = f(d)
    for u, fu in ((c, fc), (d, fd)):
        if fu < best_f:
            best_u, best_f = u, fu

    return math.exp(best_u) if best_f < _nll(z, y, 1.0) else 1.0


#: Fewest validation images a temperature is fitted on; below it T = 1 is kept.
MIN_TEMPERATURE_SAMPLES = 50


def choose_temperature(logits: np.ndarray, y_true: np.ndarray, *, bounds: tuple[float, float] = (0.05, 20.0),
                       min_samples: int = MIN_TEMPERATURE_SAMPLES) -> tuple[float, str]:
    """The temperature to ship, and why: ``(T, reason)``.

    A temperature is fitted (:func:`fit_temperature`) only on a set that can inform it: with
    fewer than ``min_samples`` images, or with every image right (the NLL then keeps falling
    as T falls, so the fit runs to the lower bound and makes every answer near-certain:
    T = 0.100 on 15 all-correct images made a 3-class model say 0.97 for a wrong class),
    T = 1 is kept and the reason says so.
    """
    if _is_empty(logits, y_true):
        return 1.0, "not fitted: no validation images; T = 1 kept"
    z = check_scores(logits, "logits")
    y = check_labels(y_true, len(z), z.shape[1])
    n = len(y)
    if n < min_samples:
        return 1.0, (f"not fitted: {n} validation image{'' if n == 1 else 's'}, fewer than {min_samples}; "
                     "T = 1 kept")
    if np.all(z.argmax(axis=1) == y):
        return 1.0, (f"not fitted: all {n} validation images are right, so the fit would only sharpen every "
                     "answer towards certainty; T = 1 kept")
    t = fit_temperature(z, y, bounds=bounds)
    return t, f"fitted on {n} validation images (lowest NLL)"
