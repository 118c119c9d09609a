"""Drift monitoring: a reference profile of a classifier's outputs, and how far recent data
has moved from it.

A :class:`DriftProfile` keeps, from an evaluation set (normally the validation split):

* the **confidence** distribution (top-1 probability) as the proportions in 10 bins whose
  edges are the reference deciles;
* the **class mix**: the share of each predicted class that takes at least 2% of the
  reference predictions (at most 20 of them), the rest pooled as "other";
* **embedding statistics**: a seeded sample of at most 1,000 of the model's L2-normalised
  pre-logit embeddings, and the RBF kernel bandwidth (the median squared distance between them);
* **input statistics**: the decile bins of each image's brightness (mean luma), contrast
  (luma standard deviation) and sharpness (log variance of the luma Laplacian), measured on
  the preprocessed model input.

:func:`DriftProfile.compare` measures recent data against it:

* ``psi_confidence``, ``psi_class_mix`` and ``psi_inputs``: the population stability index
  ``PSI = sum_i (q_i - p_i) ln(q_i / p_i)`` over those bins, with ``p`` the reference and
  ``q`` the recent proportions, each smoothed by half a count per bin so empty bins stay finite;
* ``embedding_shift``: the squared maximum mean discrepancy (MMD², biased estimator, RBF
  kernel) between the reference and recent embeddings, with a seeded permutation p-value
  (``embedding_p_value``, 200 permutations) that says whether it exceeds sampling noise.

Alert thresholds (:class:`DriftThresholds`, documented defaults):

* PSI above **0.2** on any signal (the industry rule of thumb reads PSI < 0.1 as no shift,
  0.1-0.2 as moderate and > 0.2 as significant), *and* above what sampling noise alone
  gives 1% of the time: with ``k`` bins, ``n`` recent and ``m`` reference images PSI is about
  ``chi²(k - 1) * (1/n + 1/m)`` when nothing has changed, so small windows need a larger PSI
  (150 vs 150 images over 10 bins: 0.289);
* embedding shift with a permutation p-value below **0.01**;
* nothing is judged with fewer than **50** recent images (``insufficient_data``).
"""

from __future__ import annotations

import json
import math
import os
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import ConfigError, InvalidInput

PROFILE_VERSION = 1
CONFIDENCE_BINS = 10
CLASS_MIN_SHARE = 0.02
MAX_CLASS_BINS = 20
MAX_EMBEDDINGS = 1000
PERMUTATIONS = 200
#: Input statistics, in column order of :func:`input_statistics`.
INPUT_STATISTICS: tuple[str, ...] = ("brightness", "contrast", "sharpness")
_SMOOTH = 0.5  # counts added to every bin before proportions are taken
_LUMA = np.array([0.299, 0.587, 0.114], np.float32)


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    embedding_p_value: float = 0.01
    min_samples: int = 50

    def __post_init__(self) -> None:
        if self.psi <= 0 or not 0 < self.embedding_p_value < 1:
            raise ConfigError("drift thresholds: psi must be positive and embedding_p_value in (0, 1)")
        if int(self.min_samples) < 1:
            raise ConfigError(f"min_samples must be at least 1, got {self.min_samples}")


def chi2_quantile(df: int, z: float = 2.3263478740408408) -> float:
    """Wilson-Hilferty approximation of the chi-square quantile (default z: the 99th percentile)."""
    if df < 1:
        return 0.0
    h = 2.0 / (9.0 * df)
    return float(df * max(1.0 - h + z * math.sqrt(h), 0.0) ** 3)


def psi_limit(threshold: float, bins: int, n: int, m: int) -> float:
    """The PSI that alerts: ``threshold`` or the 99th percentile of PSI under no change, if larger."""
    if n < 1 or m < 1:
        return float("inf")
    return max(float(threshold), chi2_quantile(bins - 1) * (1.0 / n + 1.0 / m))


def psi(reference_counts: np.ndarray, recent_counts: np.ndarray, smooth: float = _SMOOTH) -> float:
    """Population stability index of two histograms over the same bins (counts, not shares)."""
    p = np.asarray(reference_counts, np.float64) + smooth
    q = np.asarray(recent_counts, np.float64) + smooth
    if p.shape != q.shape or p.ndim != 1:
        raise InvalidInput(f"histograms must be 1-D and the same length, got {p.shape} and {q.shape}")
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def decile_edges(values: np.ndarray, bins: int = CONFIDENCE_BINS) -> np.ndarray:
    """Interior bin edges: the reference quantiles, duplicates removed."""
    qs = np.quantile(np.asarray(values, np.float64), np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(qs)


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: ``(-inf, e0], (e0, e1], ..., (e_last, inf)``."""
    idx = np.searchsorted(edges, np.asarray(values, np.float64), side="left")
    return np.bincount(idx, minlength=len(edges) + 1).astype(np.float64)


def class_histogram(predicted: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Counts of each tracked class, then one "other" count for the rest."""
    pred = np.asarray(predicted, np.int64)
    tracked = np.asarray(class_ids, np.int64)
    return np.array([(pred == c).sum() for c in tracked] + [(~np.isin(pred, tracked)).sum()], np.float64)


def input_statistics(batch: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(B, 3)`` brightness, contrast and sharpness of a preprocessed ``(B, 3, H, W)`` batch.

    The normalisation (``mean``, ``std`` of the model card) is undone first, so values are on
    the [0, 1] pixel scale: brightness is the mean luma, contrast its standard deviation, and
    sharpness ``log(1 + var(Laplacian(luma * 255)))``.
    """
    x = np.asarray(batch, np.float32)
    if x.ndim != 4 or x.shape[1] != 3:
        raise InvalidInput(f"expected a (B, 3, H, W) batch, got shape {x.shape}")
    rgb = x * np.asarray(std, np.float32)[None, :, None, None] + np.asarray(mean, np.float32)[None, :, None, None]
    luma = np.tensordot(_LUMA, rgb, axes=([0], [1]))  # (B, H, W)
    y = luma * 255.0
    lap = (y[:, 1:-1, :-2] + y[:, 1:-1, 2:] + y[:, :-2, 1:-1] + y[:, 2:, 1:-1] - 4 * y[:, 1:-1, 1:-1])
    flat = luma.reshape(len(luma), -1)
    return np.stack([flat.mean(axis=1), flat.std(axis=1),
                     np.log1p(lap.reshape(len(lap), -1).var(axis=1))], axis=1).astype(np.float64)


def mmd2(kernel: np.ndarray, first: np.ndarray) -> np.ndarray:
    """Biased MMD² between the rows flagged by each row of ``first`` (bool ``(P, N)``) and the rest."""
    a = first.astype(np.float64)
    b = 1.0 - a
    ka, kb = kernel @ a.T, kernel @ b.T
    na, nb = a.sum(axis=1), b.sum(axis=1)
    return ((a.T * ka).sum(0) / na**2 + (b.T * kb).sum(0) / nb**2 - 2 * (a.T * kb).sum(0) / (na * nb))


def embedding_test(reference: np.ndarray, recent: np.ndarray, gamma: float, *, permutations: int = PERMUTATIONS,
                   seed: int = 0) -> tuple[float, float]:
    """(MMD², permutation p-value) of two embedding samples under an RBF kernel ``exp(-gamma d²)``."""
    z = np.concatenate([reference, recent]).astype(np.float64)
    sq = (z * z).sum(axis=1)
    kernel = np.exp(-gamma * np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0))
    n = len(z)
    first = np.zeros((permutations + 1, n), bool)
    first[0, : len(reference)] = True
    rng = np.random.default_rng(seed)
    for i in range(1, permutations + 1):
        first[i, rng.permutation(n)[: len(reference)]] = True
    stats = mmd2(kernel, first)
    return float(stats[0]), float((1 + (stats[1:] >= stats[0]).sum()) / (permutations + 1))


def _subsample(x: np.ndarray, limit: int, seed: int) -> np.ndarray:
    if len(x) <= limit:
        return x
    return x[np.sort(np.random.default_rng(seed).choice(len(x), limit, replace=False))]


@dataclass(frozen=True)
class DriftReport:
    n: int
    n_reference: int
    psi_confidence: float
    psi_class_mix: float
    psi_inputs: dict[str, float]
    embedding_shift: float | None
    embedding_p_value: float | None
    alert: bool
    reasons: tuple[str, ...]
    insufficient_data: bool
    thresholds: DriftThresholds
    mean_confidence: float
    mean_confidence_reference: float
    psi_limits: dict[str, float] = field(default_factory=dict)
    """The PSI above which each signal alerts (:func:`psi_limit`), by the names the reasons use."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["reasons"] = list(self.reasons)
        return d

    def format_table(self) -> str:
        t = self.thresholds
        emb = ("n/a (no embeddings)" if self.embedding_shift is None else
               f"MMD² {self.embedding_shift:.5f}, permutation p = {self.embedding_p_value:.4f} "
               f"(alert below {t.embedding_p_value})")
        signals = [("confidence", self.psi_confidence), ("class-mix", self.psi_class_mix), *self.psi_inputs.items()]
        lines = [
            f"recent images: {self.n}   reference images: {self.n_reference}",
            f"mean confidence: {self.mean_confidence:.4f} (reference {self.mean_confidence_reference:.4f})",
            f"a PSI alerts when it is above {t.psi} and above its 99th percentile under no change for these sample "
            "sizes: above its limit",
            f"  {'signal':<12} {'PSI':>8} {'limit':>8}",
        ]
        for name, value in signals:
            limit = self.psi_limits.get(name)
            if limit is None or self.insufficient_data:
                lines.append(f"  {name:<12} {value:>8.4f} {'-':>8}")
            else:
                lines.append(f"  {name:<12} {value:>8.4f} {limit:>8.4f}  {'ABOVE' if value > limit else 'below'}")
        lines.append(f"embedding shift: {emb}")
        if self.insufficient_data:
            lines.append(f"ALERT: no (fewer than {t.min_samples} recent images: too few to judge)")
        else:
            lines.append("ALERT: " + ("; ".join(self.reasons) if self.alert else "no"))
        return "\n".join(lines)


@dataclass(frozen=True)
class DriftProfile:
    """The reference distributions of one model on one dataset (see the module notes)."""

    model: str
    model_sha256: str
    labels: tuple[str, ...]
    n: int
    confidence_edges: np.ndarray
    confidence_counts: np.ndarray
    class_ids: np.ndarray
    class_counts: np.ndarray
    mean_confidence: float
    input_edges: dict[str, np.ndarray] = field(default_factory=dict)
    input_counts: dict[str, np.ndarray] = field(default_factory=dict)
    embeddings: np.ndarray | None = None
    kernel_gamma: float = 0.0
    thresholds: DriftThresholds = field(default_factory=DriftThresholds)
    seed: int = 0
    source: str = ""

    # ------------------------------------------------------------------ building
    @classmethod
    def build(cls, probs: np.ndarray, embeddings: np.ndarray | None = None, inputs: np.ndarray | None = None, *,
              model: str, labels: Sequence[str], model_sha256: str = "", thresholds: DriftThresholds | None = None,
              seed: int = 0, source: str = "") -> DriftProfile:
        """A profile from ``(N, C)`` probabilities, optional ``(N, D)`` embeddings and optional
        ``(N, 3)`` :func:`input_statistics`."""
        p = np.asarray(probs, np.float64)
        if p.ndim != 2 or len(p) < 2:
            raise InvalidInput(f"a drift profile needs (N, C) probabilities with N >= 2, got shape {p.shape}")
        conf, pred = p.max(axis=1), p.argmax(axis=1)
        edges = decile_edges(conf)
        share = np.bincount(pred, minlength=p.shape[1]) / len(p)
        order = np.argsort(-share, kind="stable")[:MAX_CLASS_BINS]
        tracked = np.sort(order[share[order] >= CLASS_MIN_SHARE])
        ref_emb, gamma = None, 0.0
        if embeddings is not None:
            e = np.asarray(embeddings, np.float32)
            if e.ndim != 2 or e.shape[0] != len(p):
                raise InvalidInput(f"embeddings must be ({len(p)}, D), got shape {e.shape}")
            ref_emb = _subsample(e, MAX_EMBEDDINGS, seed)
            z = ref_emb.astype(np.float64)
            sq = (z * z).sum(axis=1)
            d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)[np.triu_indices(len(z), 1)]
            med = float(np.median(d2)) if len(d2) else 0.0
            gamma = 1.0 / med if med > 0 else 1.0
        in_edges, in_counts = {}, {}
        if inputs is not None:
            x = np.asarray(inputs, np.float64)
            if x.shape != (len(p), len(INPUT_STATISTICS)):
                raise InvalidInput(f"input statistics must be ({len(p)}, {len(INPUT_STATISTICS)}), got {x.shape}")
            for j, name in enumerate(INPUT_STATISTICS):
                in_edges[name] = decile_edges(x[:, j])
                in_counts[name] = histogram(x[:, j], in_edges[name])
        return cls(model=model, model_sha256=model_sha256, labels=tuple(labels), n=len(p),
                   confidence_edges=edges, confidence_counts=histogram(conf, edges),
                   class_ids=tracked.astype(np.int64), class_counts=class_histogram(pred, tracked),
                   mean_confidence=float(conf.mean()), input_edges=in_edges, input_counts=in_counts,
                   embeddings=ref_emb, kernel_gamma=gamma, thresholds=thresholds or DriftThresholds(), seed=seed,
                   source=source)

    # ------------------------------------------------------------------ comparing
    def compare(self, probs: np.ndarray, embeddings: np.ndarray | None = None,
                inputs: np.ndarray | None = None) -> DriftReport:
        """How far recent ``probs`` (and embeddings, input statistics) are from this profile."""
        p = np.asarray(probs, np.float64)
        if p.ndim != 2 or p.shape[1] != len(self.labels):
            raise InvalidInput(f"probabilities must be (N, {len(self.labels)}) for model {self.model}, "
                               f"got shape {p.shape}")
        t = self.thresholds
        conf, pred = p.max(axis=1), p.argmax(axis=1)
        n = len(p)
        psi_c = psi(self.confidence_counts, histogram(conf, self.confidence_edges)) if n else 0.0
        psi_k = psi(self.class_counts, class_histogram(pred, self.class_ids)) if n else 0.0
        psi_in: dict[str, float] = {}
        if inputs is not None and self.input_edges and n:
            x = np.asarray(inputs, np.float64)
            if x.shape != (n, len(INPUT_STATISTICS)):
                raise InvalidInput(f"input statistics must be ({n}, {len(INPUT_STATISTICS)}), got {x.shape}")
            psi_in = {name: psi(self.input_counts[name], histogram(x[:, j], self.input_edges[name]))
                      for j, name in enumerate(INPUT_STATISTICS)}
        shift = p_value = None
        if embeddings is not None and self.embeddings is not None and n:
            e = np.asarray(embeddings, np.float32)
            if e.shape != (n, self.embeddings.shape[1]):
                raise InvalidInput(f"embeddings must be ({n}, {self.embeddings.shape[1]}), got {e.shape}")
            shift, p_value = embedding_test(self.embeddings, _subsample(e, MAX_EMBEDDINGS, self.seed + 1),
                                            self.kernel_gamma, seed=self.seed)
        reasons = []
        insufficient = n < t.min_samples
        bins = {"confidence": len(self.confidence_counts), "class-mix": len(self.class_counts)}
        bins |= {k: len(v) for k, v in self.input_counts.items()}
        signals = [("confidence", psi_c), ("class-mix", psi_k), *psi_in.items()]
        limits = {name: psi_limit(t.psi, bins[name], n, self.n) for name, _ in signals}
        limits = {name: v for name, v in limits.items() if math.isfinite(v)}  # none without images (JSON-safe)
        if not insufficient:
            for name, value in signals:
                limit = limits.get(name, math.inf)
                if value > limit:
                    reasons.append(f"{name} PSI {value:.3f} > {limit:.3f}")
            if p_value is not None and p_value < t.embedding_p_value:
                reasons.append(f"embedding shift MMD² {shift:.4f}, p = {p_value:.4f} < {t.embedding_p_value}")
        return DriftReport(n=n, n_reference=self.n, psi_confidence=psi_c, psi_class_mix=psi_k, psi_inputs=psi_in,
                           embedding_shift=shift, embedding_p_value=p_value, alert=bool(reasons),
                           reasons=tuple(reasons), insufficient_data=insufficient, thresholds=t,
                           mean_confidence=float(conf.mean()) if n else float("nan"),
                           mean_confidence_reference=self.mean_confidence, psi_limits=limits)

    # ------------------------------------------------------------------ files
    def save(self, path: str | os.PathLike) -> Path:
        """Write the profile as one safetensors file (arrays + JSON metadata), atomically."""
        from safetensors.numpy import save

        from visor.io.files import atomic_write

        arrays = {"confidence_edges": self.confidence_edges, "confidence_counts": self.confidence_counts,
                  "class_ids": self.class_ids, "class_counts": self.class_counts}
        arrays |= {f"input_edges.{k}": v for k, v in self.input_edges.items()}
        arrays |= {f"input_counts.{k}": v for k, v in self.input_counts.items()}
        if self.embeddings is not None:
            arrays["embeddings"] = self.embeddings
        meta = {"kind": "visor.drift_profile", "version": PROFILE_VERSION, "model": self.model,
                "model_sha256": self.model_sha256, "labels": list(self.labels), "n": self.n,
                "mean_confidence": self.mean_confidence, "kernel_gamma": self.kernel_gamma,
                "thresholds": asdict(self.thresholds), "seed": self.seed, "source": self.source}
        return atomic_write(path, save({k: np.ascontiguousarray(v) for k, v in arrays.items()},
                                       metadata={"visor": json.dumps(meta)}))

    @classmethod
    def load(cls, path: str | os.PathLike) -> DriftProfile:
        """Read a profile written by :meth:`save`; anything else raises ConfigError."""
        from safetensors import safe_open

        from visor.config import from_mapping

        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"drift profile {p} does not exist")
        try:
            with safe_open(str(p), framework="numpy") as f:
                meta = json.loads((f.metadata() or {}).get("visor", "{}"))
                arrays = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open is not iterable)
        except Exception as e:  # noqa: BLE001 (safetensors raises its own error types for foreign files)
            raise ConfigError(f"{p} is not a visor drift profile: {e}") from None
        if meta.get("kind") != "visor.drift_profile":
            raise ConfigError(f"{p} is not a visor drift profile (write one with 'visor evaluate --profile')")
        if meta.get("version") != PROFILE_VERSION:
            raise ConfigError(f"{p}: drift profile version {meta.get('version')} is not supported")
        prefix_e, prefix_c = "input_edges.", "input_counts."
        return cls(model=meta["model"], model_sha256=meta.get("model_sha256", ""), labels=tuple(meta["labels"]),
                   n=int(meta["n"]), confidence_edges=arrays["confidence_edges"],
                   confidence_counts=arrays["confidence_counts"], class_ids=arrays["class_ids"],
                   class_counts=arrays["class_counts"], mean_confidence=float(meta["mean_confidence"]),
                   input_edges={k[len(prefix_e):]: v for k, v in arrays.items() if k.startswith(prefix_e)},
                   input_counts={k[len(prefix_c):]: v for k, v in arrays.items() if k.startswith(prefix_c)},
                   embeddings=arrays.get("embeddings"), kernel_gamma=float(meta.get("kernel_gamma", 0.0)),
                   thresholds=from_mapping(DriftThresholds, meta.get("thresholds", {})), seed=int(meta.get("seed", 0)),
                   source=meta.get("source", ""))


class DriftWindow:
    """The last ``size`` predictions of a running service, compared with a profile on demand.

    Thread-safe: inference threads :meth:`add` while the metrics scrape calls :meth:`report`.
    The comparison is cached until new predictions arrive.
    """

    def __init__(self, profile: DriftProfile, size: int = 500) -> None:
        if int(size) < 1:
            raise ConfigError(f"drift window size must be at least 1, got {size}")
        self.profile = profile
        self.size = int(size)
        self._lock = threading.Lock()
        self._rows: deque[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = deque(maxlen=self.size)
        self._added = 0
        self._cached: tuple[int, DriftReport | None] = (-1, None)

    def add(self, probs: np.ndarray, embeddings: np.ndarray | None = None, inputs: np.ndarray | None = None) -> None:
        """Record a batch: ``(B, C)`` probabilities, optional ``(B, D)`` embeddings and ``(B, 3)`` input statistics."""
        with self._lock:
            for i, row in enumerate(np.asarray(probs, np.float32)):
                self._rows.append((row, None if embeddings is None else np.asarray(embeddings[i], np.float32),
                                   None if inputs is None else np.asarray(inputs[i], np.float64)))
            self._added += len(probs)

    def __len__(self) -> int:
        return len(self._rows)

    def report(self) -> DriftReport | None:
        """The window against the profile, or None before the first prediction."""
        with self._lock:
            if not self._rows:
                return None
            if self._cached[0] == self._added:
                return self._cached[1]
            added, rows = self._added, list(self._rows)
        probs = np.stack([r[0] for r in rows])
        emb = np.stack([r[1] for r in rows]) if all(r[1] is not None for r in rows) else None
        inputs = np.stack([r[2] for r in rows]) if all(r[2] is not None for r in rows) else None
        result = self.profile.compare(probs, emb, inputs)
        with self._lock:
            self._cached = (added, result)
        return result


__all__ = [
    "INPUT_STATISTICS",
    "DriftProfile",
    "DriftReport",
    "DriftThresholds",
    "DriftWindow",
    "chi2_quantile",
    "embedding_test",
    "input_statistics",
    "psi",
    "psi_limit",
]
