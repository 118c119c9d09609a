"""Dataset curation: duplicates, near-duplicates, split leakage, likely label mistakes, outliers.

:func:`curate` embeds every image of a classification dataset once (see
:class:`~visor.retrieval.embed.Embedder`) and reports:

* exact duplicates (identical bytes, found by :func:`visor.data.stats.dataset_stats`) and
  near-duplicate clusters: images joined (union-find) when the cosine similarity of their
  embeddings is at least ``near_threshold``;
* leakage: duplicate or near-duplicate pairs whose two images lie in different splits;
* likely label mistakes: a multinomial logistic regression on the embeddings, trained with
  stratified k-fold, predicts every image it did not see; images whose out-of-fold prediction
  disagrees with their label are ranked by ``p(suggested) - p(given)``;
* outliers (largest mean cosine distance to their ``k`` nearest neighbours) and hard examples
  (correctly predicted, but with the smallest margin between the two most likely classes).

Unreadable images are listed with their typed error; they never stop the run.

The default similarity threshold, 0.90, is measured for ``efficientnet_lite0`` on
imagenette-dev: no two different images reach 0.85 (the closest pair is 0.846), while a copy
re-encoded at JPEG quality 40 and cropped by 2% on every side reaches 0.90 in 93% of cases and
0.85 in 99% (0.95 would catch only 35% of them). Other embedders may want another threshold.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.data.dataset import SPLIT_NAMES, ClassificationDataset
from visor.errors import ConfigError
from visor.io.files import atomic_write
from visor.models.registry import DEFAULT_CLASSIFIER
from visor.retrieval.curate_html import render_html

#: Cosine similarity at or above which two images are near-duplicates (see the module notes).
DEFAULT_THRESHOLD = 0.90
#: Neighbours averaged for the outlier score.
OUTLIER_NEIGHBOURS = 5
#: The logistic regression works on at most this many principal components of the embeddings.
_MAX_DIMS = 256
_L2 = 1e-2
_ITERATIONS = 200
_BLOCK = 1024


# --------------------------------------------------------------------------- report


@dataclass(frozen=True)
class Unreadable:
    path: str
    error: str
    """``"ErrorType: message"``, e.g. ``"CorruptImage: cannot decode the image: ..."``."""


@dataclass(frozen=True)
class DuplicateCluster:
    """Images joined by near-duplicate links (similarity >= threshold), most central first."""

    paths: list[str]
    labels: list[str]
    splits: list[str | None]
    similarity: float
    """The weakest link: the lowest, over members, of a member's similarity to its closest other member."""
    exact: bool
    """Every member has the same bytes."""

    @property
    def leaks(self) -> bool:
        return len({s for s in self.splits if s is not None}) > 1

    @property
    def label_conflict(self) -> bool:
        return len(set(self.labels)) > 1


@dataclass(frozen=True)
class LeakagePair:
    """Two duplicate or near-duplicate images in different splits."""

    path_a: str
    split_a: str
    path_b: str
    split_b: str
    similarity: float
    exact: bool
    label_a: str = ""
    label_b: str = ""


@dataclass(frozen=True)
class LabelIssue:
    """An image whose out-of-fold prediction disagrees with its label."""

    path: str
    given: str
    suggested: str
    confidence: float
    """Out-of-fold probability of the suggested label."""
    given_probability: float
    score: float
    """``confidence - given_probability``: the ranking key, higher is more suspicious."""
    split: str | None = None


@dataclass(frozen=True)
class Outlier:
    path: str
    label: str
    score: float
    """Mean cosine distance (1 - similarity) to the nearest neighbours."""
    split: str | None = None


@dataclass(frozen=True)
class HardExample:
    """A correctly predicted image with a small margin between the two most likely classes."""

    path: str
    label: str
    runner_up: str
    probability: float
    margin: float
    split: str | None = None


@dataclass(frozen=True)
class CurationReport:
    """What :func:`curate` found. Paths are strings, as the dataset gives them."""

    model: str
    threshold: float
    num_samples: int
    classes: list[str]
    unreadable: list[Unreadable] = field(default_factory=list)
    exact_duplicates: list[list[str]] = field(default_factory=list)
    """Groups of files with identical bytes; each group and the list sorted."""
    near_duplicates: list[DuplicateCluster] = field(default_factory=list)
    """Clusters of two or more images (exact duplicates included), largest first."""
    leakage: list[LeakagePair] = field(default_factory=list)
    label_mistakes: list[LabelIssue] = field(default_factory=list)
    """The ``top`` most suspicious, most suspicious first."""
    outliers: list[Outlier] = field(default_factory=list)
    hard_examples: list[HardExample] = field(default_factory=list)
    folds: int = 0
    """Cross-validation folds used (0: no classifier, e.g. a single class)."""
    oof_accuracy: float | None = None
    """How often the out-of-fold prediction matches the given label."""
    disagreements: int = 0
    """Images whose out-of-fold prediction differs from their label (``label_mistakes`` keeps the top ones)."""
    splits: dict[str, int] = field(default_factory=dict)
    """Images per split, when the dataset has splits."""

    def summary(self) -> dict[str, Any]:
        return {
            "samples": self.num_samples,
            "classes": len(self.classes),
            "unreadable": len(self.unreadable),
            "exact_duplicate_groups": len(self.exact_duplicates),
            "near_duplicate_clusters": len(self.near_duplicates),
            "leakage_pairs": len(self.leakage),
            "disagreements": self.disagreements,
            "oof_accuracy": self.oof_accuracy,
        }

    def to_dict(self) -> dict[str, Any]:
        def rows(items: Iterable[Any]) -> list[dict[str, Any]]:
            return [asdict(i) for i in items]

        clusters = [{**asdict(c), "leaks": c.leaks, "label_conflict": c.label_conflict} for c in self.near_duplicates]
        return {
            "model": self.model,
            "threshold": self.threshold,
            "folds": self.folds,
            "summary": self.summary(),
            "classes": list(self.classes),
            "splits": dict(self.splits),
            "unreadable": rows(self.unreadable),
            "exact_duplicates": [list(g) for g in self.exact_duplicates],
            "near_duplicates": clusters,
            "leakage": rows(self.leakage),
            "label_mistakes": rows(self.label_mistakes),
            "outliers": rows(self.outliers),
            "hard_examples": rows(self.hard_examples),
        }

    def write(self, out: str | os.PathLike) -> tuple[Path, Path]:
        """Write ``out/curation.json`` and ``out/curation.html`` (folder created); returns both paths."""
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        js, page = folder / "curation.json", folder / "curation.html"
        doc = self.to_dict()
        atomic_write(js, json.dumps(doc, indent=2, allow_nan=False) + "\n")
        atomic_write(page, render_html(doc))
        return js, page

    def format_text(self, limit: int = 10) -> str:
        """A short human summary: counts, then the first ``limit`` items of each list."""
        acc = "n/a" if self.oof_accuracy is None else f"{self.oof_accuracy:.1%}"
        lines = [
            f"{self.num_samples} images, {len(self.classes)} classes; model {self.model}, "
            f"near-duplicate threshold {self.threshold:g}",
            f"unreadable: {len(self.unreadable)}",
            *(f"  {u.path}: {u.error}" for u in self.unreadable[:limit]),
            f"exact duplicate groups: {len(self.exact_duplicates)}",
            f"near-duplicate clusters: {len(self.near_duplicates)}",
            *(f"  [{c.similarity:.3f}] {', '.join(c.paths)}" for c in self.near_duplicates[:limit]),
            f"leakage pairs (across splits): {len(self.leakage)}",
            *(f"  [{p.similarity:.3f}{' exact' if p.exact else ''}] {p.split_a}: {p.path_a}  <->  "
              f"{p.split_b}: {p.path_b}" for p in self.leakage[:limit]),
            f"label disagreements: {self.disagreements} (out-of-fold accuracy {acc}, {self.folds} folds)",
            *(f"  {m.score:.3f}  {m.path}: labelled {m.given}, looks like {m.suggested} ({m.confidence:.2f})"
              for m in self.label_mistakes[:limit]),
            f"outliers (top {min(limit, len(self.outliers))}):",
            *(f"  {o.score:.3f}  {o.path} ({o.label})" for o in self.outliers[:limit]),
            f"hard examples (top {min(limit, len(self.hard_examples))}):",
            *(f"  margin {h.margin:.3f}  {h.path}: {h.label} vs {h.runner_up}" for h in self.hard_examples[:limit]),
        ]
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def similar_pairs(x: np.ndarray, threshold: float, *, neighbours: int = OUTLIER_NEIGHBOURS,
                  block: int = _BLOCK) -> tuple[list[tuple[int, int, float]], np.ndarray]:
    """Pairs ``(i, j, similarity)``, ``i < j``, of rows of ``x`` (L2-normalised) with cosine similarity
    ``>= threshold``, and each row's mean cosine distance to its ``neighbours`` nearest other rows.

    Exact, one block of rows at a time (``block x N`` similarities in memory).
    """
    n = len(x)
    pairs: list[tuple[int, int, float]] = []
    knn = np.zeros(n, np.float64)
    k = min(neighbours, n - 1)
    for start in range(0, n, block):
        stop = min(start + block, n)
        sims = x[start:stop] @ x.T
        rows = np.arange(stop - start)
        sims[rows, start + rows] = -np.inf  # not its own neighbour
        ii, jj = np.nonzero(sims >= threshold)
        keep = jj > ii + start
        pairs.extend(zip((ii[keep] + start).tolist(), jj[keep].tolist(), sims[ii[keep], jj[keep]].tolist(),
                         strict=True))
        if k > 0:
            nearest = -np.partition(-sims, k - 1, axis=1)[:, :k]
            knn[start:stop] = 1.0 - nearest.mean(axis=1)
    return pairs, knn


def stratified_folds(y: np.ndarray, folds: int, seed: int = 0) -> np.ndarray:
    """A fold number in ``[0, folds)`` per sample: each class shuffled (seeded) and dealt round-robin."""
    rng = np.random.default_rng(seed)
    out = np.empty(len(y), np.int64)
    offset = 0
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        out[idx] = (np.arange(len(idx)) + offset) % folds
        offset += len(idx)
    return out


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_softmax_regression(z: np.ndarray, y: np.ndarray, num_classes: int, *, l2: float = _L2,
                           iterations: int = _ITERATIONS, lipschitz: float | None = None
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression (mean cross-entropy + ``l2/2 * |W|^2``) by Nesterov-accelerated
    gradient descent from zero; deterministic. Returns ``(W, b)``: predict with ``softmax(z @ W + b)``."""
    n, d = z.shape
    if lipschitz is None:
        lipschitz = float(np.linalg.norm(z, 2)) ** 2
    step = 1.0 / (lipschitz / (2 * n) + l2 + 1e-12)
    onehot = np.eye(num_classes, dtype=z.dtype)[y]
    w = w_prev = np.zeros((d, num_classes), z.dtype)
    b = b_prev = np.zeros(num_classes, z.dtype)
    for t in range(iterations):
        momentum = t / (t + 3)
        wv, bv = w + momentum * (w - w_prev), b + momentum * (b - b_prev)
        grad = (_softmax(z @ wv + bv) - onehot) / n
        w_prev, b_prev = w, b
        w = wv - step * (z.T @ grad + l2 * wv)
        b = bv - step * grad.sum(axis=0)
    return w, b


def out_of_fold_probabilities(x: np.ndarray, y: np.ndarray, num_classes: int, *, folds: int = 5,
                              seed: int = 0) -> np.ndarray:
    """``(N, num_classes)`` probabilities, each row from a model trained on the other folds.

    The embeddings are centred and projected on their principal components (at most 256),
    which keeps every distance the L2-regularised model can see while making it cheap.
    """
    xc = x.astype(np.float64) - x.mean(axis=0)
    _, s, vt = np.linalg.svd(xc, full_matrices=False)
    dims = int(min(_MAX_DIMS, max(1, (s > s[0] * 1e-6).sum()))) if len(s) and s[0] > 0 else 1
    z = (xc @ vt[:dims].T).astype(np.float32)
    z /= max(float(z.std()), 1e-12)
    lipschitz = float(np.linalg.norm(z, 2)) ** 2  # bounds every fold's subset
    fold = stratified_folds(y, folds, seed)
    probs = np.zeros((len(y), num_classes), np.float64)
    for k in range(folds):
        test = fold == k
        if not test.any():
            continue
        w, b = fit_softmax_regression(z[~test], y[~test], num_classes, lipschitz=lipschitz)
        probs[test] = _softmax(z[test] @ w + b)
    return probs


def _split_of(sample: Any, split_column: str | None) -> str | None:
    if split_column in (None, "split"):
        return sample.split
    value = sample.metadata.get(split_column)
    return value or None


def _load(data: ClassificationDataset | str | os.PathLike) -> ClassificationDataset:
    return data if isinstance(data, ClassificationDataset) else ClassificationDataset.load(data)


def _embed_all(embedder: Any, paths: list[Path], batch_size: int, progress: bool
               ) -> tuple[dict[int, np.ndarray], dict[int, str]]:
    from tqdm import tqdm

    vectors: dict[int, np.ndarray] = {}
    errors: dict[int, str] = {}
    outcomes = embedder.embed_iter(paths, batch_size=batch_size)
    with tqdm(total=len(paths), unit="img", desc="embedding", disable=not progress, file=sys.stderr) as bar:
        for i, outcome in enumerate(outcomes):
            bar.update(1)
            if outcome.error is not None:
                errors[i] = f"{type(outcome.error).__name__}: {outcome.error}"
            else:
                vectors[i] = np.asarray(outcome.result, np.float32).reshape(-1)
    return vectors, errors


# --------------------------------------------------------------------------- curate


def curate(
    data: ClassificationDataset | str | os.PathLike,
    *,
    model: Any = DEFAULT_CLASSIFIER,
    embedder: Any = None,
    split_column: str | None = None,
    near_threshold: float = DEFAULT_THRESHOLD,
    folds: int = 5,
    seed: int = 0,
    top: int = 50,
    batch_size: int = 32,
    progress: bool = False,
) -> CurationReport:
    """Find duplicates, leakage, likely label mistakes, outliers and hard examples in ``data``.

    ``data`` is a dataset, a folder or a CSV / JSON Lines manifest (see
    :meth:`ClassificationDataset.load`). ``embedder`` (anything with ``embed_iter``, such as an
    :class:`~visor.retrieval.embed.Embedder`) overrides ``model`` (a registry name or trained run
    folder). ``split_column`` names the manifest column holding each image's split (default:
    the dataset's own ``split``, from the folder layout or the manifest's ``split`` column).
    ``top`` caps the label mistakes, outliers and hard examples listed. ``progress`` shows a
    tqdm bar on stderr while embedding.
    """
    if not 0.0 < near_threshold <= 1.0:
        raise ConfigError(f"near_threshold must be in (0, 1], got {near_threshold}")
    if folds < 2:
        raise ConfigError(f"folds must be at least 2, got {folds}")
    if top < 0:
        raise ConfigError(f"top must be at least 0, got {top}")
    ds = _load(data)
    if split_column not in (None, "split") and not any(split_column in s.metadata for s in ds.samples):
        found = sorted({k for s in ds.samples for k in s.metadata})
        raise ConfigError(f"no sample has a {split_column!r} column; the dataset's extra columns are: "
                          f"{', '.join(found) or '(none)'}")

    from visor.data.stats import dataset_stats

    stats = dataset_stats(ds, check_images=False)
    if embedder is None:
        from visor.retrieval.embed import Embedder

        embedder = Embedder(model)
    name = getattr(embedder, "name", None) or str(model)

    samples = list(ds.samples)
    paths = [os.fspath(s.path) for s in samples]
    splits = [_split_of(s, split_column) for s in samples]
    vectors, errors = _embed_all(embedder, [s.path for s in samples], batch_size, progress)
    unread = {path: message for path, message in stats.unreadable}
    unread.update((paths[i], message) for i, message in errors.items())
    unreadable = [Unreadable(p, unread[p]) for p in paths if p in unread]

    good = [i for i in range(len(samples)) if i in vectors and paths[i] not in unread]
    x = np.stack([vectors[i] for i in good]) if good else np.zeros((0, 1), np.float32)
    pairs, knn = similar_pairs(x, near_threshold) if len(good) else ([], np.zeros(0))
    edges = {(good[a], good[b]): s for a, b, s in pairs}
    index = {p: i for i, p in enumerate(paths)}
    exact_pairs: set[tuple[int, int]] = set()
    for group in stats.duplicates:
        members = sorted(index[p] for p in group)
        exact_pairs.update((a, b) for k, a in enumerate(members) for b in members[k + 1:])
    clusters = _clusters(len(samples), edges, exact_pairs, vectors, paths, [s.label for s in samples], splits)
    leakage = _leakage(edges, exact_pairs, samples, paths, splits)

    report_args: dict[str, Any] = {}
    if len(good):
        report_args = _classifier_findings(x, good, samples, ds.classes, paths, splits, folds, seed, top)
        order = np.argsort(-knn, kind="stable")[:top]
        report_args["outliers"] = [Outlier(paths[good[j]], samples[good[j]].label, round(float(knn[j]), 6),
                                           splits[good[j]]) for j in order]
    counts: dict[str, int] = {}
    for s in splits:
        if s is not None:
            counts[s] = counts.get(s, 0) + 1
    return CurationReport(
        model=name, threshold=near_threshold, num_samples=len(samples), classes=list(ds.classes),
        unreadable=unreadable, exact_duplicates=[list(g) for g in stats.duplicates], near_duplicates=clusters,
        leakage=leakage, splits=counts, **report_args,
    )


def _clusters(n: int, edges: dict[tuple[int, int], float], exact_pairs: set[tuple[int, int]],
              vectors: dict[int, np.ndarray], paths: list[str], labels: list[str],
              splits: list[str | None]) -> list[DuplicateCluster]:
    uf = _UnionFind(n)
    for a, b in [*edges, *exact_pairs]:
        uf.union(a, b)
    groups: dict[int, list[int]] = {}
    for i in {i for pair in [*edges, *exact_pairs] for i in pair}:
        groups.setdefault(uf.find(i), []).append(i)
    exact_sets: dict[int, set[int]] = {}
    for a, b in exact_pairs:
        exact_sets.setdefault(a, {a}).add(b)
        exact_sets.setdefault(b, {b}).add(a)
    out = []
    for members in groups.values():
        members.sort()
        embedded = [i for i in members if i in vectors]
        if len(embedded) >= 2:
            v = np.stack([vectors[i] for i in embedded])
            sims = v @ v.T
            np.fill_diagonal(sims, -np.inf)
            best = sims.max(axis=1)
            order = [embedded[j] for j in np.argsort(-sims.clip(min=-1).sum(axis=1), kind="stable")]
            order += [i for i in members if i not in vectors]
            weakest = float(best.min())
        else:
            order, weakest = members, 1.0
        exact = exact_sets.get(members[0], {members[0]}) >= set(members)
        out.append(DuplicateCluster([paths[i] for i in order], [labels[i] for i in order],
                                    [splits[i] for i in order], round(min(weakest, 1.0), 6), exact))
    out.sort(key=lambda c: (-len(c.paths), -c.similarity, c.paths))
    return out


def _leakage(edges: dict[tuple[int, int], float], exact_pairs: set[tuple[int, int]], samples: list[Any],
             paths: list[str], splits: list[str | None]) -> list[LeakagePair]:
    out = []
    for a, b in sorted(set(edges) | exact_pairs):
        if splits[a] is None or splits[b] is None or splits[a] == splits[b]:
            continue
        exact = (a, b) in exact_pairs
        sim = 1.0 if exact else round(min(float(edges[(a, b)]), 1.0), 6)
        if _split_rank(splits[b]) < _split_rank(splits[a]):  # train before val before test
            a, b = b, a
        out.append(LeakagePair(paths[a], splits[a], paths[b], splits[b], sim, exact,
                               samples[a].label, samples[b].label))
    out.sort(key=lambda p: (not p.exact, -p.similarity, p.path_a, p.path_b))
    return out


def _split_rank(split: str) -> tuple[int, str]:
    return (SPLIT_NAMES.index(split) if split in SPLIT_NAMES else len(SPLIT_NAMES), split)


def _classifier_findings(x: np.ndarray, good: list[int], samples: list[Any], classes: tuple[str, ...],
                         paths: list[str], splits: list[str | None], folds: int, seed: int,
                         top: int) -> dict[str, Any]:
    """Out-of-fold label mistakes and hard examples (classes with fewer than two images are left out)."""
    cid = {c: i for i, c in enumerate(classes)}
    y_all = np.array([cid[samples[i].label] for i in good], np.int64)
    counts = np.bincount(y_all, minlength=len(classes))
    usable = np.flatnonzero(counts[y_all] >= 2)
    kept = np.unique(y_all[usable])
    if len(kept) < 2:
        return {}
    remap = {int(c): j for j, c in enumerate(kept)}
    y = np.array([remap[int(c)] for c in y_all[usable]], np.int64)
    k = int(min(folds, np.bincount(y).max()))
    probs = out_of_fold_probabilities(x[usable], y, len(kept), folds=k, seed=seed)
    rows = np.arange(len(y))
    given = probs[rows, y]
    predicted = probs.argmax(axis=1)
    ranked = np.sort(probs, axis=1)
    wrong = np.flatnonzero(predicted != y)
    score = probs[wrong, predicted[wrong]] - given[wrong]
    mistakes = []
    for j in wrong[np.argsort(-score, kind="stable")][:top]:
        i = good[int(usable[j])]
        p_sug = float(probs[j, predicted[j]])
        mistakes.append(LabelIssue(paths[i], samples[i].label, classes[int(kept[predicted[j]])], round(p_sug, 6),
                                   round(float(given[j]), 6), round(p_sug - float(given[j]), 6), splits[i]))
    right = np.flatnonzero(predicted == y)
    margin = ranked[right, -1] - ranked[right, -2]
    hard = []
    for j in right[np.argsort(margin, kind="stable")][:top]:
        i = good[int(usable[j])]
        second = np.argsort(-probs[j], kind="stable")[1]
        hard.append(HardExample(paths[i], samples[i].label, classes[int(kept[second])], round(float(given[j]), 6),
                                round(float(ranked[j, -1] - ranked[j, -2]), 6), splits[i]))
    return {
        "label_mistakes": mistakes, "hard_examples": hard, "folds": k,
        "oof_accuracy": round(float(len(right) / len(y)), 6), "disagreements": len(wrong),
    }


__all__ = [
    "DEFAULT_THRESHOLD",
    "CurationReport",
    "DuplicateCluster",
    "HardExample",
    "LabelIssue",
    "LeakagePair",
    "Outlier",
    "Unreadable",
    "curate",
    "fit_softmax_regression",
    "out_of_fold_probabilities",
    "similar_pairs",
    "stratified_folds",
]
