"""A similarity index of image embeddings, with its metadata, in one folder.

Vectors live in a `usearch <https://github.com/unum-cloud/usearch>`_ HNSW index (Apache-2.0;
chosen over faiss-cpu for its small wheel, incremental ``add``/``remove`` without rebuilding,
and built-in exact search, and over hnswlib, which PyPI ships only as a source build).
Metadata (path, label, sha256 of the file) sits beside it in SQLite, keyed by the same ids.

Search is exact (brute force over every vector) while the index holds at most
``exact_limit`` vectors, and approximate (HNSW) above that. When an index grows past the
limit, its recall@10 against exact search is measured on a sample of its own vectors and
kept in ``index.json`` (``recall_at_10``), so users see what approximation costs.

Folder layout: ``index.json`` (model, dimension, metric, counts, recall), ``vectors.usearch``,
``meta.sqlite``. Every write goes to temporary files that replace the old ones, so an
interrupted ``add`` leaves the previous index intact.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import ConfigError, InvalidInput, VisorError
from visor.io import ImageSource, describe_source

INDEX_FILE = "index.json"
VECTORS_FILE = "vectors.usearch"
META_FILE = "meta.sqlite"
EXACT_LIMIT = 50_000
FORMAT_VERSION = 1


class IndexNotFound(VisorError, FileNotFoundError):
    """No index at that path (HTTP 404)."""

    http_status = 404
    code = "index_not_found"


@dataclass(frozen=True)
class Hit:
    """One search result: the stored item and its cosine similarity to the query."""

    key: int
    path: str
    label: str | None
    similarity: float

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key, "path": self.path, "label": self.label, "similarity": round(self.similarity, 6)}


@dataclass
class IndexInfo:
    model: str
    model_sha256: str
    dim: int
    metric: str = "cos"
    count: int = 0
    next_key: int = 0
    exact_limit: int = EXACT_LIMIT
    expansion_search: int = 128  # HNSW search breadth: higher finds more true neighbours, slower
    recall_at_10: float | None = None
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    updated: str = ""
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _usearch():
    try:
        from usearch.index import Index, MetricKind, search
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("the similarity index needs usearch: pip install usearch") from None
    return Index, MetricKind, search


#: HNSW graph degree and search breadth (usearch's defaults are 16, 128, 64; a wider search
#: buys recall for a little latency).
CONNECTIVITY, EXPANSION_ADD, EXPANSION_SEARCH = 16, 128, 128


def _hnsw(Index: Any, dim: int) -> Any:
    return Index(ndim=int(dim), metric="cos", dtype="f32", connectivity=CONNECTIVITY, expansion_add=EXPANSION_ADD,
                 expansion_search=EXPANSION_SEARCH)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def exact_search(vectors: np.ndarray, keys: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force cosine top-k for L2-normalised vectors: (keys, similarities), both ``(Q, k)``."""
    k = min(k, len(keys))
    sims = queries @ vectors.T
    top = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < len(keys) else np.tile(np.arange(len(keys)),
                                                                                     (len(queries), 1))
    part = np.take_along_axis(sims, top, 1)
    order = np.argsort(-part, axis=1, kind="stable")
    idx = np.take_along_axis(top, order, 1)
    return keys[idx], np.take_along_axis(sims, idx, 1)


class VectorIndex:
    """Embeddings of images plus their metadata; open with :meth:`open`, create with :meth:`create`."""

    def __init__(self, folder: Path, info: IndexInfo, index: Any) -> None:
        self.folder = folder
        self.info = info
        self._index = index
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None  # (next_key, keys, vectors)
        self._db = sqlite3.connect(folder / META_FILE)
        self._db.execute("CREATE TABLE IF NOT EXISTS items (key INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, "
                         "label TEXT, sha256 TEXT, added TEXT NOT NULL)")
        self._db.commit()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, folder: str | os.PathLike, *, model: str, model_sha256: str, dim: int,
               exact_limit: int = EXACT_LIMIT, overwrite: bool = False) -> VectorIndex:
        Index, _, _ = _usearch()
        folder = Path(folder)
        if (folder / INDEX_FILE).exists() and not overwrite:
            raise InvalidInput(f"{folder} already holds an index: use `visor index add`, or overwrite it")
        folder.mkdir(parents=True, exist_ok=True)
        for name in (META_FILE, VECTORS_FILE):
            (folder / name).unlink(missing_ok=True)
        info = IndexInfo(model=model, model_sha256=model_sha256, dim=int(dim), exact_limit=int(exact_limit))
        out = cls(folder, info, _hnsw(Index, info.dim))
        out.save()
        return out

    @classmethod
    def open(cls, folder: str | os.PathLike) -> VectorIndex:
        Index, _, _ = _usearch()
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise IndexNotFound(f"no index at {folder} (expected {INDEX_FILE}; build one with `visor index build`)")
        try:
            info = IndexInfo(**json.loads((folder / INDEX_FILE).read_text()))
        except (ValueError, TypeError) as e:
            raise InvalidInput(f"{folder / INDEX_FILE} is not a visor index description: {e}") from None
        index = _hnsw(Index, info.dim)
        if (folder / VECTORS_FILE).is_file():
            index.load(os.fspath(folder / VECTORS_FILE))
        index.expansion_search = info.expansion_search
        return cls(folder, info, index)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return len(self._index)

    def save(self) -> None:
        """Write vectors and description atomically (metadata commits with each change)."""
        self.info.count = len(self._index)
        self.info.updated = datetime.now(UTC).isoformat()
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".vectors.", suffix=".tmp")
        os.close(fd)
        try:
            self._index.save(tmp)
            os.replace(tmp, self.folder / VECTORS_FILE)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        _atomic_write(self.folder / INDEX_FILE, json.dumps(self.info.to_dict(), indent=2).encode())

    # ------------------------------------------------------------------ contents

    def keys(self) -> np.ndarray:
        return np.fromiter(self._index.keys, dtype=np.uint64, count=len(self._index))

    def vectors(self, keys: np.ndarray | None = None) -> np.ndarray:
        keys = self.keys() if keys is None else keys
        if not len(keys):
            return np.zeros((0, self.info.dim), np.float32)
        return np.asarray(self._index.get(keys), np.float32).reshape(len(keys), self.info.dim)

    def paths(self) -> set[str]:
        return {r[0] for r in self._db.execute("SELECT path FROM items")}

    def add(self, vectors: np.ndarray, paths: Sequence[str], labels: Sequence[str | None] | None = None,
            sha256s: Sequence[str | None] | None = None) -> np.ndarray:
        """Add L2-normalised ``vectors`` for ``paths`` (already present paths are replaced); returns their keys."""
        vectors = np.asarray(vectors, np.float32).reshape(-1, self.info.dim)
        if len(vectors) != len(paths):
            raise InvalidInput(f"{len(vectors)} vectors for {len(paths)} paths")
        if len(set(paths)) != len(paths):
            raise InvalidInput("the same path appears twice in one add")
        self.remove(paths, save=False)  # a path added again replaces its old vector
        labels = list(labels) if labels is not None else [None] * len(paths)
        sha256s = list(sha256s) if sha256s is not None else [None] * len(paths)
        keys = np.arange(self.info.next_key, self.info.next_key + len(paths), dtype=np.uint64)
        if len(keys):
            self._index.add(keys, vectors, threads=0)  # 0: every core
        now = datetime.now(UTC).isoformat()
        self._db.executemany("INSERT INTO items (key, path, label, sha256, added) VALUES (?, ?, ?, ?, ?)",
                             [(int(k), str(p), lbl, sha, now) for k, p, lbl, sha in zip(keys, paths, labels, sha256s,
                                                                                       strict=True)])
        self._db.commit()
        self.info.next_key += len(paths)
        self.save()
        return keys

    def estimate_recall(self, *, k: int = 10, sample: int = 200) -> float | None:
        """Measure (and store) recall@k of approximate search on a sample of stored vectors; None when exact."""
        if self.exact:
            self.info.recall_at_10 = None
        else:
            keys = self.keys()
            rng = np.random.default_rng(0)
            pick = np.sort(rng.choice(len(keys), size=min(sample, len(keys)), replace=False))
            queries = self.vectors(keys[pick])
            truth = []
            for start in range(0, len(keys), 20_000):  # exact top-k in blocks: bounded memory
                block = keys[start : start + 20_000]
                truth.append(exact_search(self.vectors(block), block, queries, k))
            all_keys = np.concatenate([t[0] for t in truth], axis=1)
            all_sims = np.concatenate([t[1] for t in truth], axis=1)
            best = np.take_along_axis(all_keys, np.argsort(-all_sims, axis=1, kind="stable")[:, :k], 1)
            found = np.asarray(self._index.search(queries, k).keys).reshape(len(queries), -1)
            self.info.recall_at_10 = float(np.mean([len(set(map(int, t)) & set(map(int, f))) / len(t)
                                                    for t, f in zip(best, found, strict=True)]))
        self.save()
        return self.info.recall_at_10

    def remove(self, paths: Iterable[str], *, save: bool = True) -> int:
        """Remove the items stored under ``paths``; returns how many were removed."""
        paths = list(paths)
        if not paths:
            return 0
        rows = []
        for chunk in range(0, len(paths), 500):
            part = paths[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            rows += self._db.execute(f"SELECT key FROM items WHERE path IN ({marks})", part).fetchall()  # noqa: S608
        keys = [int(r[0]) for r in rows]
        for k in keys:
            self._index.remove(k)
        self._db.executemany("DELETE FROM items WHERE key = ?", [(k,) for k in keys])
        self._db.commit()
        if save:
            self.save()
        return len(keys)

    def metadata(self, keys: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        keys = [int(k) for k in keys]
        out: dict[int, tuple[str, str | None]] = {}
        for chunk in range(0, len(keys), 500):
            part = keys[chunk : chunk + 500]
            marks = ",".join("?" * len(part))
            for k, path, label in self._db.execute(
                    f"SELECT key, path, label FROM items WHERE key IN ({marks})", part):  # noqa: S608
                out[int(k)] = (path, label)
        return out

    # ------------------------------------------------------------------ search

    def _matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """All keys and vectors, copied out of the HNSW index once per change (for exact search)."""
        if self._cache is None or self._cache[0] != self.info.next_key or len(self._cache[1]) != len(self._index):
            keys = self.keys()
            self._cache = (self.info.next_key, keys, self.vectors(keys))
        return self._cache[1], self._cache[2]

    @property
    def exact(self) -> bool:
        return len(self._index) <= self.info.exact_limit

    def set_expansion(self, expansion: int) -> None:
        """HNSW search breadth for approximate search (kept in ``index.json`` on the next save)."""
        if expansion < 1:
            raise InvalidInput(f"expansion must be at least 1, got {expansion}")
        self.info.expansion_search = int(expansion)
        self._index.expansion_search = int(expansion)

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, exact: bool | None = None) -> list[list[Hit]]:
        """The ``k`` most similar stored items for each query vector (cosine similarity, best first)."""
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        queries = np.asarray(queries, np.float32).reshape(-1, self.info.dim)
        if not len(self._index):
            return [[] for _ in range(len(queries))]
        use_exact = self.exact if exact is None else exact
        if use_exact:
            keys, matrix = self._matrix()
            found, sims = exact_search(matrix, keys, queries, k)
        else:
            matches = self._index.search(queries, min(k, len(self._index)), threads=0)
            found = np.asarray(matches.keys).reshape(len(queries), -1)
            sims = 1.0 - np.asarray(matches.distances).reshape(len(queries), -1)
        meta = self.metadata(np.unique(found))
        return [[Hit(int(key), *meta[int(key)], float(s)) for key, s in zip(row_k, row_s, strict=True)
                 if int(key) in meta] for row_k, row_s in zip(found, sims, strict=True)]


# --------------------------------------------------------------------------- image-level API


def build_index(sources: Iterable[ImageSource], out: str | os.PathLike, *, model: Any = "efficientnet_lite0",
                labels: Sequence[str | None] | None = None, embedder: Any = None, batch_size: int = 32,
                exact_limit: int = EXACT_LIMIT, overwrite: bool = False, progress: bool = False
                ) -> tuple[VectorIndex, list[tuple[str, VisorError]]]:
    """Embed ``sources`` into a new index at ``out``; returns it and the images that failed."""
    from visor.retrieval.embed import Embedder

    emb = embedder or Embedder(model)
    index = VectorIndex.create(out, model=emb.name, model_sha256=emb.classifier.card.weights.sha256 or "",
                               dim=emb.dim, exact_limit=exact_limit, overwrite=overwrite)
    failed = add_images(index, sources, labels=labels, embedder=emb, batch_size=batch_size, progress=progress)
    return index, failed


def _check_model(index: VectorIndex, embedder: Any) -> None:
    sha = embedder.classifier.card.weights.sha256 or ""
    if (embedder.name, sha) != (index.info.model, index.info.model_sha256):
        raise ConfigError(f"the index was built with {index.info.model} ({index.info.model_sha256[:12]}); "
                          f"embedding with {embedder.name} ({sha[:12]}) would not be comparable")


def add_images(index: VectorIndex, sources: Iterable[ImageSource], *, labels: Sequence[str | None] | None = None,
               embedder: Any = None, batch_size: int = 32, progress: bool = False) -> list[tuple[str, VisorError]]:
    """Embed and add images (a path already in the index is replaced); returns the failures."""
    from tqdm import tqdm

    from visor.retrieval.embed import Embedder

    emb = embedder or Embedder(index.info.model)
    _check_model(index, emb)
    sources = list(sources)
    labels = list(labels) if labels is not None else [None] * len(sources)
    vectors, paths, kept_labels, shas, failed = [], [], [], [], []
    for outcome, label in tqdm(zip(emb.embed_iter(sources, batch_size=batch_size), labels, strict=True),
                               total=len(sources), unit="img", disable=not progress, desc="embedding"):
        name = describe_source(outcome.source)
        if outcome.error is not None:
            failed.append((name, outcome.error))
            continue
        vectors.append(outcome.result)
        paths.append(name)
        kept_labels.append(label)
        shas.append(_sha256(outcome.source))
    if vectors:
        index.add(np.stack(vectors), paths, kept_labels, shas)
    if not index.exact:
        index.estimate_recall()
    return failed


def _sha256(source: Any) -> str | None:
    import hashlib

    from visor.models.weights import sha256_file

    if isinstance(source, str | os.PathLike):
        return sha256_file(source)
    if isinstance(source, bytes | bytearray):
        return hashlib.sha256(source).hexdigest()
    return None


def search(index: str | os.PathLike | VectorIndex, query: ImageSource | np.ndarray, k: int = 10, *,
           embedder: Any = None, exact: bool | None = None) -> list[Hit]:
    """The ``k`` stored images most similar to ``query`` (an image, or an embedding vector)."""
    from visor.retrieval.embed import Embedder

    own = not isinstance(index, VectorIndex)
    idx = VectorIndex.open(index) if own else index
    try:
        if isinstance(query, np.ndarray) and query.dtype != np.uint8:
            vector = query
        else:
            emb = embedder or Embedder(idx.info.model)
            _check_model(idx, emb)
            vector = emb.embed(query)
        return idx.search_vectors(vector[None], k, exact=exact)[0]
    finally:
        if own:
            idx.close()
