"""A similarity index of image embeddings, with its metadata, in one folder.

Vectors live in a `faiss <https://github.com/facebookresearch/faiss>`_ index (faiss-cpu, MIT):
the field's standard library for vector search, with exact (flat), HNSW and IVF-PQ indexes
for millions of vectors. It replaced usearch, whose 2.26 wheels crash the process (SIGSEGV)
when imported before onnxruntime; faiss imports safely in either order.
Metadata (path, label, sha256 of the file) sits beside it in SQLite, keyed by the same ids.

Up to ``exact_limit`` vectors (50,000 by default) the index is flat and search is exact
(brute force); above that it is an HNSW graph (approximate search, breadth ``efSearch`` =
``expansion_search``, kept per index in ``index.json``). When an index grows past the limit,
its recall@10 against exact search is measured on a sample of its own vectors and kept in
``index.json`` (``recall_at_10``), so users see what approximation costs. Adding is
incremental; faiss's HNSW cannot delete, so removing items from an HNSW index rebuilds the
graph from the remaining vectors (removal is rare: curation, not serving).

Paths are stored relative to the index's ``root`` (the folder the images were indexed from,
kept in ``index.json``), so results never show where the images live on a server:
:meth:`VectorIndex.absolute` turns one back into a full path.

Folder layout: ``index.json`` (model, dimension, metric, counts, recall, root), ``vectors.faiss``,
``meta.sqlite``. Every write goes through :mod:`visor.io.files` (temporary files that replace
the old ones), so an interrupted ``add`` leaves the previous index intact.

To query an index repeatedly, open it once: ``index = VectorIndex.open(path)`` then
``index.search(image, k)`` (the embedding model loads on the first query). The convenience
function :func:`search` (``visor.search``) keeps a few indexes it opened by path in a small
bounded cache, keyed by the folder and the identity of its ``index.json``, so a loop of
``visor.search(path, image)`` calls is fast too and never sees a stale index.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from visor.errors import ConfigError, InvalidInput, VisorError
from visor.io import ImageSource, describe_source
from visor.io.files import PUBLIC, atomic_path, atomic_write
from visor.models.registry import DEFAULT_CLASSIFIER

INDEX_FILE = "index.json"
VECTORS_FILE = "vectors.faiss"
META_FILE = "meta.sqlite"
#: The vectors file of format 1 (usearch), which this version cannot read.
OLD_VECTORS_FILE = "vectors.usearch"
EXACT_LIMIT = 50_000
FORMAT_VERSION = 2
#: How many indexes :func:`search` keeps open (with their embedding models) between calls.
OPEN_INDEXES = 4


class IndexNotFound(VisorError, FileNotFoundError):
    """No index at that path (HTTP 404)."""

    http_status = 404
    code = "index_not_found"


class IndexOutdated(ConfigError):
    """The index folder was written by another visor version and must be rebuilt (HTTP 400)."""

    code = "index_outdated"


@dataclass(frozen=True)
class Hit:
    """One search result: the stored item (path relative to the index's root) and its cosine similarity."""

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
    expansion_search: int = 128  # HNSW search breadth (faiss efSearch): higher finds more true neighbours, slower
    recall_at_10: float | None = None
    root: str | None = None  # the folder stored paths are relative to
    created: str = field(default_factory=lambda: datetime.now(UTC).isoformat())
    updated: str = ""
    version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("the similarity index needs faiss: pip install faiss-cpu") from None
    return faiss


#: HNSW graph degree (faiss M) and construction breadth (efConstruction); the search breadth is per index.
CONNECTIVITY, EXPANSION_ADD = 16, 128


def _new_index(dim: int, approximate: bool) -> Any:
    """An empty id-mapped faiss index: flat (exact) or HNSW, inner product on unit vectors = cosine."""
    faiss = _faiss()
    if approximate:
        inner = faiss.IndexHNSWFlat(int(dim), CONNECTIVITY, faiss.METRIC_INNER_PRODUCT)
        inner.hnsw.efConstruction = EXPANSION_ADD
    else:
        inner = faiss.IndexFlatIP(int(dim))
    return faiss.IndexIDMap2(inner)  # faiss's Python wrapper keeps ``inner`` alive with it


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


def common_root(paths: Iterable[str | os.PathLike]) -> Path | None:
    """The deepest folder holding every one of ``paths`` (files), or None when there are none."""
    parents = [os.fspath(Path(p).resolve().parent) for p in paths]
    return Path(os.path.commonpath(parents)) if parents else None


class VectorIndex:
    """Embeddings of images plus their metadata; open with :meth:`open`, create with :meth:`create`.

    Usable from any thread: its SQLite connection and faiss index are used under one lock
    (embedding a query image happens outside it).
    """

    def __init__(self, folder: Path, info: IndexInfo, index: Any, *, embedder: Any = None) -> None:
        self.folder = folder
        self.info = info
        self._index = index
        self._lock = threading.RLock()
        self._embedder = embedder
        # one connection, shared by threads under self._lock (a server opens the index in one
        # thread, searches in others and closes it in yet another)
        self._db = sqlite3.connect(folder / META_FILE, check_same_thread=False)
        with self._lock:
            self._db.execute("CREATE TABLE IF NOT EXISTS items (key INTEGER PRIMARY KEY, path TEXT NOT NULL UNIQUE, "
                             "label TEXT, sha256 TEXT, added TEXT NOT NULL)")
            self._db.commit()

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def create(cls, folder: str | os.PathLike, *, model: str, model_sha256: str, dim: int,
               exact_limit: int = EXACT_LIMIT, overwrite: bool = False,
               root: str | os.PathLike | None = None) -> VectorIndex:
        """A new, empty index at ``folder``; paths added later are stored relative to ``root``."""
        folder = Path(folder)
        if (folder / INDEX_FILE).exists() and not overwrite:
            raise InvalidInput(f"{folder} already holds an index: use `visor index add`, or overwrite it")
        folder.mkdir(parents=True, exist_ok=True)
        for name in (META_FILE, VECTORS_FILE, OLD_VECTORS_FILE):
            (folder / name).unlink(missing_ok=True)
        info = IndexInfo(model=model, model_sha256=model_sha256, dim=int(dim), exact_limit=int(exact_limit),
                         root=None if root is None else os.fspath(Path(root).resolve()))
        out = cls(folder, info, _new_index(info.dim, approximate=False))
        out.save()
        return out

    @classmethod
    def open(cls, folder: str | os.PathLike, *, embedder: Any = None) -> VectorIndex:
        """Open the index at ``folder``; ``embedder`` embeds query images (default: the index's model, loaded once)."""
        faiss = _faiss()
        folder = Path(folder)
        if not (folder / INDEX_FILE).is_file():
            raise IndexNotFound(f"no index at {folder} (expected {INDEX_FILE}; build one with `visor index build`)")
        try:
            raw = json.loads((folder / INDEX_FILE).read_text())
        except (OSError, ValueError) as e:
            raise InvalidInput(f"{folder / INDEX_FILE} is not a visor index description: {e}") from None
        version = raw.get("version") if isinstance(raw, dict) else None
        if (folder / OLD_VECTORS_FILE).exists() or (isinstance(version, int) and version < FORMAT_VERSION):
            raise IndexOutdated(f"{folder} was built by an older visor; rebuild it with `visor index build` "
                                "(--overwrite)")
        if version != FORMAT_VERSION:
            raise IndexOutdated(f"{folder} has index format {version!r}, this visor reads format {FORMAT_VERSION}: "
                                "rebuild it with `visor index build`, or upgrade visor")
        try:
            info = IndexInfo(**raw)
        except TypeError as e:
            raise InvalidInput(f"{folder / INDEX_FILE} is not a visor index description: {e}") from None
        vectors = folder / VECTORS_FILE
        if not vectors.is_file():
            raise InvalidInput(f"{folder} is missing {VECTORS_FILE}: rebuild it with `visor index build`")
        try:
            index = faiss.read_index(os.fspath(vectors))
        except RuntimeError as e:
            first = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
            raise InvalidInput(f"{vectors} is not a readable faiss index ({first[:200]})") from None
        if not isinstance(index, faiss.IndexIDMap2) or index.d != info.dim:
            raise InvalidInput(f"{vectors} does not hold {info.dim}-d vectors with ids, as {INDEX_FILE} says")
        return cls(folder, info, index, embedder=embedder)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> VectorIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def save(self) -> None:
        """Write vectors and description atomically (metadata commits with each change)."""
        faiss = _faiss()
        with self._lock:
            self.info.count = len(self)
            self.info.updated = datetime.now(UTC).isoformat()
            with atomic_path(self.folder / VECTORS_FILE, permissions=PUBLIC) as tmp:
                faiss.write_index(self._index, os.fspath(tmp))
            atomic_write(self.folder / INDEX_FILE, json.dumps(self.info.to_dict(), indent=2), permissions=PUBLIC)

    # ------------------------------------------------------------------ paths

    @property
    def root(self) -> Path | None:
        """The folder stored paths are relative to (None before the first image file is added)."""
        return None if self.info.root is None else Path(self.info.root)

    def relative(self, path: str | os.PathLike) -> str:
        """How the file at ``path`` is stored in this index: relative to :attr:`root`, with ``/``."""
        if self.info.root is None:
            return Path(path).resolve().as_posix()
        return Path(os.path.relpath(Path(path).resolve(), self.info.root)).as_posix()

    def absolute(self, stored: str) -> Path:
        """The file a stored (relative) path, such as :attr:`Hit.path`, refers to."""
        return Path(stored) if self.info.root is None else Path(self.info.root) / stored

    # ------------------------------------------------------------------ contents

    @property
    def approximate(self) -> bool:
        """Whether the vectors are in an HNSW graph (above ``exact_limit``) rather than a flat index."""
        return isinstance(_faiss().downcast_index(self._index.index), _faiss().IndexHNSWFlat)

    def _storage(self) -> Any:
        """The flat index holding every vector, in the order of ``self._index.id_map``."""
        faiss = _faiss()
        inner = faiss.downcast_index(self._index.index)
        return faiss.downcast_index(inner.storage) if isinstance(inner, faiss.IndexHNSWFlat) else inner

    def keys(self) -> np.ndarray:
        with self._lock:
            return _faiss().vector_to_array(self._index.id_map).astype(np.int64)

    def vectors(self, keys: np.ndarray | None = None) -> np.ndarray:
        with self._lock:
            if keys is None:
                storage = self._storage()
                return np.asarray(storage.reconstruct_n(0, storage.ntotal), np.float32).reshape(-1, self.info.dim)
            keys = np.asarray(keys, np.int64)
            if not len(keys):
                return np.zeros((0, self.info.dim), np.float32)
            return np.asarray(self._index.reconstruct_batch(keys), np.float32).reshape(len(keys), self.info.dim)

    def paths(self) -> set[str]:
        with self._lock:
            return {r[0] for r in self._db.execute("SELECT path FROM items")}

    def _rebuild(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the faiss index by one holding exactly ``keys``/``vectors``, flat or HNSW by their number."""
        index = _new_index(self.info.dim, approximate=len(keys) > self.info.exact_limit)
        if len(keys):
            index.add_with_ids(np.ascontiguousarray(vectors, np.float32), np.ascontiguousarray(keys, np.int64))
        self._index = index

    def add(self, vectors: np.ndarray, paths: Sequence[str], labels: Sequence[str | None] | None = None,
            sha256s: Sequence[str | None] | None = None) -> np.ndarray:
        """Add L2-normalised ``vectors`` under ``paths`` (already present paths are replaced); returns their keys.

        The paths are stored as given: :func:`add_images` makes them relative to the index's root.
        """
        vectors = np.ascontiguousarray(np.asarray(vectors, np.float32).reshape(-1, self.info.dim))
        if len(vectors) != len(paths):
            raise InvalidInput(f"{len(vectors)} vectors for {len(paths)} paths")
        if len(set(paths)) != len(paths):
            raise InvalidInput("the same path appears twice in one add")
        with self._lock:
            self.remove(paths, save=False)  # a path added again replaces its old vector
            labels = list(labels) if labels is not None else [None] * len(paths)
            sha256s = list(sha256s) if sha256s is not None else [None] * len(paths)
            keys = np.arange(self.info.next_key, self.info.next_key + len(paths), dtype=np.int64)
            if len(keys):
                if not self.approximate and len(self) + len(keys) > self.info.exact_limit:  # grows past the limit
                    self._rebuild(np.concatenate([self.keys(), keys]), np.concatenate([self.vectors(), vectors]))
                else:
                    self._index.add_with_ids(vectors, keys)
            now = datetime.now(UTC).isoformat()
            self._db.executemany("INSERT INTO items (key, path, label, sha256, added) VALUES (?, ?, ?, ?, ?)",
                                 [(int(k), str(p), lbl, sha, now)
                                  for k, p, lbl, sha in zip(keys, paths, labels, sha256s, strict=True)])
            self._db.commit()
            self.info.next_key += len(paths)
            self.save()
        return keys

    def estimate_recall(self, *, k: int = 10, sample: int = 200) -> float | None:
        """Measure (and store) recall@k of approximate search on a sample of stored vectors; None when exact."""
        with self._lock:
            if self.exact:
                self.info.recall_at_10 = None
            else:
                keys = self.keys()
                rng = np.random.default_rng(0)
                pick = np.sort(rng.choice(len(keys), size=min(sample, len(keys)), replace=False))
                queries = self.vectors(keys[pick])
                truth, _ = self._search(queries, k, exact=True)
                found, _ = self._search(queries, k, exact=False)
                self.info.recall_at_10 = float(np.mean([len(set(map(int, t)) & set(map(int, f)) - {-1}) / len(t)
                                                        for t, f in zip(truth, found, strict=True)]))
            self.save()
        return self.info.recall_at_10

    def remove(self, paths: Iterable[str], *, save: bool = True) -> int:
        """Remove the items stored under ``paths`` (as stored: see :meth:`relative`); returns how many were removed."""
        paths = list(paths)
        if not paths:
            return 0
        with self._lock:
            rows = []
            for chunk in range(0, len(paths), 500):
                part = paths[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                rows += self._db.execute(f"SELECT key FROM items WHERE path IN ({marks})",  # noqa: S608
                                         part).fetchall()
            keys = np.array([int(r[0]) for r in rows], np.int64)
            if len(keys):
                if self.approximate:  # faiss HNSW cannot delete: rebuild from what is left
                    all_keys = self.keys()
                    keep = ~np.isin(all_keys, keys)
                    self._rebuild(all_keys[keep], self.vectors()[keep])
                else:
                    self._index.remove_ids(keys)
            self._db.executemany("DELETE FROM items WHERE key = ?", [(int(k),) for k in keys])
            self._db.commit()
            if save:
                self.save()
        return len(keys)

    def metadata(self, keys: Iterable[int]) -> dict[int, tuple[str, str | None]]:
        keys = [int(k) for k in keys]
        out: dict[int, tuple[str, str | None]] = {}
        with self._lock:
            for chunk in range(0, len(keys), 500):
                part = keys[chunk : chunk + 500]
                marks = ",".join("?" * len(part))
                for k, path, label in self._db.execute(
                        f"SELECT key, path, label FROM items WHERE key IN ({marks})", part):  # noqa: S608
                    out[int(k)] = (path, label)
        return out

    # ------------------------------------------------------------------ search

    @property
    def exact(self) -> bool:
        return len(self) <= self.info.exact_limit

    def set_expansion(self, expansion: int) -> None:
        """HNSW search breadth (faiss efSearch) for approximate search (kept in ``index.json`` on the next save)."""
        if expansion < 1:
            raise InvalidInput(f"expansion must be at least 1, got {expansion}")
        self.info.expansion_search = int(expansion)

    def _search(self, queries: np.ndarray, k: int, *, exact: bool) -> tuple[np.ndarray, np.ndarray]:
        """(keys, similarities), ``(Q, k)``, best first; key -1 where fewer than k were found. Under the lock."""
        faiss = _faiss()
        queries = np.ascontiguousarray(queries, np.float32)
        if exact or not self.approximate:
            sims, rows = self._storage().search(queries, k)
            ids = self.keys()
            return np.where(rows >= 0, ids[np.clip(rows, 0, None)], -1), sims
        params = faiss.SearchParametersHNSW(efSearch=max(int(self.info.expansion_search), k))
        sims, found = self._index.search(queries, k, params=params)
        return found, sims

    def search_vectors(self, queries: np.ndarray, k: int = 10, *, exact: bool | None = None) -> list[list[Hit]]:
        """The ``k`` most similar stored items for each query vector (cosine similarity, best first)."""
        if k < 1:
            raise InvalidInput(f"k must be at least 1, got {k}")
        queries = np.asarray(queries, np.float32).reshape(-1, self.info.dim)
        with self._lock:
            if not len(self):
                return [[] for _ in range(len(queries))]
            found, sims = self._search(queries, min(k, len(self)), exact=self.exact if exact is None else exact)
            meta = self.metadata(np.unique(found[found >= 0]))
        return [[Hit(int(key), *meta[int(key)], float(s)) for key, s in zip(row_k, row_s, strict=True)
                 if int(key) in meta] for row_k, row_s in zip(found, sims, strict=True)]

    @property
    def embedder(self) -> Any:
        """The model that embeds query images: the one given to :meth:`open`, else the index's own, loaded once."""
        if self._embedder is None:
            from visor.retrieval.embed import Embedder

            emb = Embedder(self.info.model)
            _check_model(self, emb)
            with self._lock:
                if self._embedder is None:
                    self._embedder = emb
        return self._embedder

    def search(self, query: ImageSource | np.ndarray, k: int = 10, *, exact: bool | None = None,
               embedder: Any = None) -> list[Hit]:
        """The ``k`` stored images most similar to ``query`` (an image, or an embedding vector), best first."""
        if isinstance(query, np.ndarray) and query.dtype != np.uint8:
            vector = query
        else:
            emb = embedder if embedder is not None else self.embedder
            _check_model(self, emb)
            vector = emb.embed(query)
        return self.search_vectors(np.asarray(vector)[None], k, exact=exact)[0]


# --------------------------------------------------------------------------- image-level API


def build_index(sources: Iterable[ImageSource], out: str | os.PathLike, *, model: Any = DEFAULT_CLASSIFIER,
                labels: Sequence[str | None] | None = None, embedder: Any = None, batch_size: int = 32,
                exact_limit: int = EXACT_LIMIT, overwrite: bool = False, progress: bool = False,
                root: str | os.PathLike | None = None) -> tuple[VectorIndex, list[tuple[str, VisorError]]]:
    """Embed ``sources`` into a new index at ``out``; returns it and the images that failed.

    File paths are stored relative to ``root`` (default: the deepest folder holding every image
    that was added), and search results give them that way.
    """
    from visor.retrieval.embed import Embedder

    emb = embedder or Embedder(model)
    index = VectorIndex.create(out, model=emb.name, model_sha256=emb.classifier.card.weights.sha256 or "",
                               dim=emb.dim, exact_limit=exact_limit, overwrite=overwrite, root=root)
    failed = add_images(index, sources, labels=labels, embedder=emb, batch_size=batch_size, progress=progress)
    return index, failed


def _check_model(index: VectorIndex, embedder: Any) -> None:
    sha = embedder.classifier.card.weights.sha256 or ""
    if (embedder.name, sha) != (index.info.model, index.info.model_sha256):
        raise ConfigError(f"the index was built with {index.info.model} ({index.info.model_sha256[:12]}); "
                          f"embedding with {embedder.name} ({sha[:12]}) would not be comparable")


def add_images(index: VectorIndex, sources: Iterable[ImageSource], *, labels: Sequence[str | None] | None = None,
               embedder: Any = None, batch_size: int = 32, progress: bool = False) -> list[tuple[str, VisorError]]:
    """Embed and add images (a path already in the index is replaced); returns the failures.

    File paths are stored relative to the index's root (see :meth:`VectorIndex.relative`).
    """
    from tqdm import tqdm

    from visor.retrieval.embed import Embedder

    emb = embedder or Embedder(index.info.model)
    _check_model(index, emb)
    sources = list(sources)
    labels = list(labels) if labels is not None else [None] * len(sources)
    vectors, paths, files, kept_labels, shas, failed = [], [], [], [], [], []
    for outcome, label in tqdm(zip(emb.embed_iter(sources, batch_size=batch_size), labels, strict=True),
                               total=len(sources), unit="img", disable=not progress, desc="embedding"):
        name = describe_source(outcome.source)
        if outcome.error is not None:
            failed.append((name, outcome.error))
            continue
        vectors.append(outcome.result)
        files.append(outcome.source if isinstance(outcome.source, str | os.PathLike) else None)
        paths.append(name)
        kept_labels.append(label)
        shas.append(_sha256(outcome.source))
    if index.info.root is None and any(f is not None for f in files):  # the first files added fix the root
        index.info.root = os.fspath(common_root(f for f in files if f is not None))
    paths = [name if f is None else index.relative(f) for name, f in zip(paths, files, strict=True)]
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


class _OpenIndexes:
    """The indexes :func:`search` opened by path, most recently used last (at most ``size``).

    Keyed by the resolved folder and the identity of its ``index.json`` (inode, size, mtime),
    which every change to the index replaces: a changed index is reopened, never served stale.
    An evicted index is not closed (another thread may still be searching it); its SQLite
    connection closes when it is garbage-collected.
    """

    def __init__(self, size: int = OPEN_INDEXES) -> None:
        self.size = size
        self._items: OrderedDict[tuple[str, int, int, int], VectorIndex] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, folder: str | os.PathLike) -> VectorIndex:
        path = Path(folder).resolve()
        try:
            st = (path / INDEX_FILE).stat()
        except OSError:
            return VectorIndex.open(path)  # raises IndexNotFound
        key = (os.fspath(path), st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        index = VectorIndex.open(path)
        with self._lock:
            for old in [k for k in self._items if k[0] == key[0]]:  # older versions of the same index
                del self._items[old]
            index = self._items.setdefault(key, index)
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return index

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


#: The one piece of module state in visor.retrieval: a bounded, thread-safe cache (see :class:`_OpenIndexes`).
_OPEN = _OpenIndexes()


def clear_search_cache() -> None:
    """Forget the indexes (and embedding models) :func:`search` keeps open between calls."""
    _OPEN.clear()


def search(index: str | os.PathLike | VectorIndex, query: ImageSource | np.ndarray, k: int = 10, *,
           embedder: Any = None, exact: bool | None = None) -> list[Hit]:
    """The ``k`` stored images most similar to ``query`` (an image, or an embedding vector).

    ``index`` is an open :class:`VectorIndex` (best for many queries: ``VectorIndex.open(path)``
    once, then ``index.search(image)``), or a folder: then the index and its embedding model
    are opened once and kept in a small cache (the :data:`OPEN_INDEXES` most recently used),
    so repeated calls cost milliseconds, not a reload. Result paths are relative to the
    index's root.
    """
    idx = index if isinstance(index, VectorIndex) else _OPEN.get(index)
    return idx.search(query, k, exact=exact, embedder=embedder)
