"""Face collections the way Amazon Rekognition keeps them: faces are the unit, searched by vector.

Where :class:`~visor.faces.collections.FaceStore` enrols *people* (a name per set of photos),
a :class:`FaceIndex` indexes *faces*, as Rekognition's IndexFaces does: every face found in an
image gets a FaceId (a uuid4), the call an ImageId (a uuid4 shared by the faces it indexed) and,
optionally, the caller's ExternalImageId (Rekognition's way of naming who or what the photo is).
Only the embedding (dlib's 128 float32), the face's box (as ratios of the image) and the detector's
confidence are stored, never the photo. SearchFaces / SearchFacesByImage are :meth:`FaceIndex.search_face`
and :meth:`FaceIndex.search_image`.

Storage: tables of their own (``indexed_collections``, ``indexed_faces``) in the same database as
FaceStore's (an SQLite file, by default :func:`~visor.faces.collections.default_db_path`, created
``0o600``; or a ``postgresql://`` URL that replicas share). A Rekognition collection and a FaceStore
collection of the same name are different collections.

Search: each collection's embeddings sit in memory in a faiss ``IndexIDMap2(IndexFlatL2(128))``
(exact search; the ids are the rows' ids), built from the database the first time the collection
is searched and updated in place when this object indexes or deletes faces. Each collection row
carries a version counter, bumped in the same transaction as every change; each search reads it
(one small query) and rebuilds the vectors when another process or replica changed the collection.
Exact search over 10,000 faces takes about a millisecond, database query included
(``benchmarks/face_search.py``); memory is about 1.2 KB per face (512 bytes of vector in faiss, about
650 of record), so a collection of a million faces needs about 1.2 GB per process and tens of
milliseconds per search.

Scores are Rekognition's: :func:`similarity` maps dlib's euclidean distance to 0-100 so that
dlib's operating point (0.6) is Rekognition's default threshold (80).

Face quality (what Rekognition's QualityFilter filters on) is measured on the face's box:

* ``brightness`` = mean luma (ITU-R 601, PIL's ``"L"``) of the box / 255 x 100;
* ``sharpness`` = 100 x (1 - exp(-r / 0.1)), where r = var(Laplacian) / var(grey) of the box resized
  to 112 x 112 grey: the share of the face's contrast in its finest detail, so it does not depend on
  exposure or contrast; blur (or a face too small to show detail) lowers it. On ``faces/`` the 21
  faces measure 45-96; a Gaussian blur of radius 4 px on a 225 px face gives 18, 8 px gives 0.

The filter levels (:data:`QUALITY_LEVELS`) are minimums on the box's shorter side in pixels, the
detector's confidence, sharpness and brightness. ``AUTO`` is ``MEDIUM``: it keeps every face of
``faces/known`` (shortest side 121 px, confidence 0.93, sharpness 50, brightness 42 at the least)
and refuses clearly unusable ones (under 40 px, blurred, nearly black).

SQLAlchemy, faiss, dlib and ONNX Runtime are imported only when a FaceIndex is opened or used.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import ConfigError, InvalidInput, VisorError
from visor.faces.collections import (
    CollectionExists,
    CollectionNotFound,
    check_collection_name,
    open_faces_database,
)
from visor.faces.detector import EMBEDDING_SIZE, FaceAnalyzer, NoFaceFound, as_embedding
from visor.io import ImageSource, describe_source

__all__ = [
    "DEFAULT_MATCH_THRESHOLD",
    "FACE_MODEL_VERSION",
    "QUALITY_FILTERS",
    "QUALITY_LEVELS",
    "SIMILARITY_SCALE",
    "CollectionExists",
    "CollectionInfo",
    "CollectionNotFound",
    "DetectedFace",
    "FaceIndex",
    "FaceNotFound",
    "FaceRecord",
    "IndexResult",
    "InvalidPaginationToken",
    "NoFaceFound",
    "QualityLevel",
    "distance_for",
    "similarity",
]

#: What Rekognition calls FaceModelVersion: YuNet's faces, dlib's 128-d embeddings.
FACE_MODEL_VERSION = "visor-dlib-1"
#: Rekognition's default FaceMatchThreshold / SimilarityThreshold (dlib's distance 0.6).
DEFAULT_MATCH_THRESHOLD = 80.0
#: The euclidean distance at which :func:`similarity` reaches 0.
SIMILARITY_SCALE = 3.0
#: The most faces one search returns, and one list_faces page holds (Rekognition's limits).
MAX_RESULTS = 4096

#: Up to this many faces a search runs on one thread (see ``_Vectors.nearest``), above it on faiss's threads.
SEQUENTIAL_LIMIT = 100_000

_EXTERNAL_ID = re.compile(r"^[a-zA-Z0-9_.\-:]{1,255}$")
_SHARP_SIDE = 112  # the box is resized to this square before its Laplacian is taken
_SHARP_SCALE = 0.1


class FaceNotFound(VisorError, LookupError):
    """No face of that FaceId in the collection (HTTP 404)."""

    http_status = 404
    code = "face_not_found"


class InvalidPaginationToken(InvalidInput):
    """A ``after`` token that :meth:`FaceIndex.list_faces` did not hand out (HTTP 400)."""

    code = "invalid_pagination_token"


def similarity(distance: float) -> float:
    """dlib's euclidean distance as a Rekognition similarity in [0, 100]: 100 * (1 - distance / 3), clipped.

    dlib's operating point 0.6 maps to 80, Rekognition's default threshold; 0.3 (the same photo at
    another size) to 90.
    """
    return float(min(100.0, max(0.0, 100.0 * (1.0 - float(distance) / SIMILARITY_SCALE))))


def distance_for(similarity: float) -> float:
    """The euclidean distance at which :func:`similarity` gives ``similarity`` (the inverse, for thresholds)."""
    return SIMILARITY_SCALE * (1.0 - float(similarity) / 100.0)


@dataclass(frozen=True)
class QualityLevel:
    """The minimums a face must meet at one QualityFilter level (each failed one is a reason)."""

    min_side: float  # the box's shorter side, pixels of the original image: SMALL_BOUNDING_BOX
    min_confidence: float  # the detector's score: LOW_CONFIDENCE
    min_sharpness: float  # 0..100: LOW_SHARPNESS
    min_brightness: float  # 0..100: LOW_BRIGHTNESS


#: Rekognition's QualityFilter levels. ``AUTO`` is ``MEDIUM``; ``NONE`` filters nothing. Calibrated on faces/:
#: every face there passes LOW and MEDIUM; HIGH refuses faces under 100 px and dim ones.
QUALITY_LEVELS: dict[str, QualityLevel] = {
    "LOW": QualityLevel(min_side=20, min_confidence=0.75, min_sharpness=10, min_brightness=10),
    "MEDIUM": QualityLevel(min_side=40, min_confidence=0.8, min_sharpness=20, min_brightness=15),
    "HIGH": QualityLevel(min_side=100, min_confidence=0.9, min_sharpness=40, min_brightness=30),
}
QUALITY_FILTERS = ("NONE", "AUTO", "LOW", "MEDIUM", "HIGH")


@dataclass(frozen=True)
class CollectionInfo:
    """A collection as DescribeCollection shows it."""

    name: str
    face_count: int
    created_at: datetime
    face_model_version: str = FACE_MODEL_VERSION


@dataclass(frozen=True)
class FaceRecord:
    """One indexed face. ``box`` is ``x0, y0, x1, y1`` as ratios of the image (0..1);
    ``confidence`` the detector's score (0..1)."""

    face_id: str
    image_id: str
    external_image_id: str | None
    box: tuple[float, float, float, float]
    confidence: float
    created_at: datetime


@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One face as found in an image, with what visor measures on it.

    ``xyxy`` in pixels of the image (``width`` x ``height``); ``confidence`` the detector's score
    (0..1); ``landmarks`` its 5 points in pixels (YuNet's: right eye, left eye, nose tip, right and
    left mouth corner, the person's right and left); ``embedding`` dlib's 128-d descriptor;
    ``brightness`` and ``sharpness`` 0..100 (see the module's doc); ``quality_reasons`` the
    Rekognition reasons it fails the quality filter it was detected with (empty: it passes).
    (Compared by identity: it holds an array.)
    """

    xyxy: tuple[float, float, float, float]
    confidence: float
    landmarks: list[tuple[float, float]]
    embedding: np.ndarray
    width: int
    height: int
    brightness: float
    sharpness: float
    quality_reasons: tuple[str, ...] = ()

    @property
    def box(self) -> tuple[float, float, float, float]:
        """``xyxy`` as ratios of the image (0..1)."""
        x0, y0, x1, y1 = self.xyxy
        w, h = max(self.width, 1), max(self.height, 1)
        return (x0 / w, y0 / h, x1 / w, y1 / h)

    @property
    def area(self) -> float:
        x0, y0, x1, y1 = self.xyxy
        return max(0.0, x1 - x0) * max(0.0, y1 - y0)


@dataclass(frozen=True)
class IndexResult:
    """What :meth:`FaceIndex.index_faces` did: the faces it indexed (largest first) and those it did not,
    each with Rekognition's reasons (``EXCEEDS_MAX_FACES``, ``SMALL_BOUNDING_BOX``, ``LOW_CONFIDENCE``,
    ``LOW_SHARPNESS``, ``LOW_BRIGHTNESS``)."""

    indexed: list[tuple[FaceRecord, DetectedFace]]
    unindexed: list[tuple[DetectedFace, tuple[str, ...]]]


def quality_reasons(face_side: float, confidence: float, sharpness: float, brightness: float,
                    quality_filter: str) -> tuple[str, ...]:
    """Rekognition's reasons a face with these measurements fails ``quality_filter`` (empty: it passes)."""
    level = _quality_level(quality_filter)
    if level is None:
        return ()
    reasons = []
    if face_side < level.min_side:
        reasons.append("SMALL_BOUNDING_BOX")
    if confidence < level.min_confidence:
        reasons.append("LOW_CONFIDENCE")
    if sharpness < level.min_sharpness:
        reasons.append("LOW_SHARPNESS")
    if brightness < level.min_brightness:
        reasons.append("LOW_BRIGHTNESS")
    return tuple(reasons)


def _quality_level(quality_filter: object) -> QualityLevel | None:
    if quality_filter not in QUALITY_FILTERS:
        raise InvalidInput(f"invalid quality filter {quality_filter!r}: use one of {', '.join(QUALITY_FILTERS)}")
    if quality_filter == "NONE":
        return None
    return QUALITY_LEVELS["MEDIUM" if quality_filter == "AUTO" else str(quality_filter)]


def measure(grey: np.ndarray) -> tuple[float, float]:
    """``(brightness, sharpness)`` of a face crop given as 8-bit grey (both 0..100; see the module's doc)."""
    from PIL import Image

    g = np.asarray(grey)
    if g.size == 0:
        return 0.0, 0.0
    brightness = float(g.mean()) / 255.0 * 100.0
    small = np.asarray(Image.fromarray(g.astype(np.uint8)).resize((_SHARP_SIDE, _SHARP_SIDE), Image.BILINEAR),
                       np.float64)
    lap = small[1:-1, :-2] + small[1:-1, 2:] + small[:-2, 1:-1] + small[2:, 1:-1] - 4.0 * small[1:-1, 1:-1]
    spread = float(small.var())
    ratio = float(lap.var()) / spread if spread > 1e-6 else 0.0
    sharpness = 100.0 * (1.0 - math.exp(-ratio / _SHARP_SCALE))
    return brightness, sharpness


def _check_external_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not _EXTERNAL_ID.match(value):
        raise InvalidInput(f"invalid external image id {value!r}: use 1-255 of A-Z a-z 0-9 _ . - :")
    return value


def _check_count(value: object, what: str, low: int = 1, high: int = MAX_RESULTS) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= int(value) <= high:
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def _check_threshold(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not 0 <= float(value) <= 100:
        raise InvalidInput(f"the match threshold must be a similarity from 0 to 100, got {value!r}")
    return float(value)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _encode_token(row_id: int) -> str:
    return base64.urlsafe_b64encode(f"visor-faces:{row_id}".encode()).decode().rstrip("=")


def _decode_token(token: object) -> int:
    try:
        if not isinstance(token, str) or len(token) > 200:
            raise ValueError
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        prefix, _, number = text.partition(":")
        if prefix != "visor-faces" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidPaginationToken(f"invalid pagination token {token!r}: pass the token a listing returned") \
            from None


@dataclass(frozen=True)
class _Schema:
    base: Any
    collection: Any
    face: Any


def _schema() -> _Schema:
    """The ORM classes, built per index so that importing this module imports no SQLAlchemy."""
    from sqlalchemy import Column, DateTime, Float, ForeignKey, Integer, LargeBinary, String
    from sqlalchemy.orm import DeclarativeBase

    class Base(DeclarativeBase):
        pass

    class Collection(Base):
        __tablename__ = "indexed_collections"
        id = Column(Integer, primary_key=True)
        name = Column(String(255), unique=True, nullable=False)
        created_at = Column(DateTime(timezone=True), nullable=False)
        version = Column(Integer, nullable=False, default=0)  # bumped by every change of its faces

    class Face(Base):
        __tablename__ = "indexed_faces"
        id = Column(Integer, primary_key=True)  # the faiss id
        collection_id = Column(Integer, ForeignKey("indexed_collections.id", ondelete="CASCADE"), index=True,
                               nullable=False)
        face_id = Column(String(36), unique=True, nullable=False)
        image_id = Column(String(36), nullable=False)
        external_image_id = Column(String(255), nullable=True)
        x0 = Column(Float, nullable=False)
        y0 = Column(Float, nullable=False)
        x1 = Column(Float, nullable=False)
        y1 = Column(Float, nullable=False)
        confidence = Column(Float, nullable=False)
        embedding = Column(LargeBinary, nullable=False)
        created_at = Column(DateTime(timezone=True), nullable=False)

    return _Schema(Base, Collection, Face)


@dataclass
class _Vectors:
    """One collection's faces in memory: the faiss index and the records by row id, as of ``version``."""

    collection_id: int
    version: int
    index: Any
    records: dict[int, FaceRecord] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # FaceId -> row id

    def add(self, ids: Sequence[int], records: Sequence[FaceRecord], vectors: np.ndarray) -> None:
        new = [i for i, row in enumerate(ids) if row not in self.records]  # idempotent: a reload may have them
        if not new:
            return
        self.index.add_with_ids(np.ascontiguousarray(vectors[new], np.float32),
                                np.asarray([ids[i] for i in new], np.int64))
        for i in new:
            self.records[ids[i]] = records[i]
            self.rows[records[i].face_id] = ids[i]

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest faces' squared distances and row ids, nearest first (exact).

        Up to :data:`SEQUENTIAL_LIMIT` faces the distances come from faiss's sequential SIMD kernel
        (``fvec_L2sqr_ny``) over the flat index's own storage: one query gains nothing from faiss's
        OpenMP threads, and loses much when the cores are busy (measured on 2 busy cores at 10,000 faces:
        0.36 ms against 8-24 ms with two OpenMP threads). Larger collections use faiss's threaded search.
        """
        faiss = _faiss()
        query = np.ascontiguousarray(vector.reshape(-1), np.float32)
        n = int(self.index.ntotal)
        k = min(int(k), n)
        if k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        if n > SEQUENTIAL_LIMIT:
            squared, ids = self.index.search(query[None], k)
            return squared[0], ids[0]
        flat = faiss.downcast_index(self.index.index)
        squared = np.empty(n, np.float32)
        faiss.fvec_L2sqr_ny(faiss.swig_ptr(squared), faiss.swig_ptr(query), flat.get_xb(), EMBEDDING_SIZE, n)
        ids = faiss.rev_swig_ptr(self.index.id_map.data(), n)
        best = np.argpartition(squared, k - 1)[:k] if k < n else np.arange(n)
        best = best[np.argsort(squared[best], kind="stable")]
        return squared[best], np.array(ids[best], np.int64)

    def remove(self, face_ids: Sequence[str]) -> None:
        rows = [self.rows.pop(f) for f in face_ids if f in self.rows]
        if rows:
            self.index.remove_ids(np.asarray(rows, np.int64))
            for row in rows:
                self.records.pop(row, None)


class FaceIndex:
    """Rekognition-style face collections in one database (see the module's doc).

    ``path``: an SQLite file (default: FaceStore's, :func:`~visor.faces.collections.default_db_path`;
    created ``0o600``, its folder ``0o700`` if missing) or a ``postgresql://`` URL. ``analyzer`` detects
    and embeds faces (a default :class:`FaceAnalyzer`: YuNet's faces, dlib's embeddings);
    ``detect_kwargs`` go to its ``detect``. Safe to share between threads (one lock per index).
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, analyzer: FaceAnalyzer | None = None,
                 **detect_kwargs: Any) -> None:
        self._analyzer = analyzer
        self.detect_kwargs = detect_kwargs
        self._s = _schema()
        self.path, self._engine = open_faces_database(path, self._s.base.metadata)
        self._sqlite = self._engine.dialect.name == "sqlite"
        self._lock = threading.RLock()
        self._vectors_by_name: dict[str, _Vectors] = {}

    @property
    def analyzer(self) -> FaceAnalyzer:
        """The face analyzer (made on first use: opening an index for search by vector loads no model)."""
        if self._analyzer is None:
            self._analyzer = FaceAnalyzer()
        return self._analyzer

    def close(self) -> None:
        with self._lock:
            self._vectors_by_name.clear()
        self._engine.dispose()

    def __enter__(self) -> FaceIndex:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ database helpers

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self._engine, expire_on_commit=False)

    def _write_lock(self, session: Any) -> None:
        """Take SQLite's write lock first, so that writers from other processes wait instead of deadlocking."""
        if self._sqlite:
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")

    def _collection(self, session: Any, name: str) -> Any:
        from sqlalchemy import select

        C = self._s.collection
        found = session.scalar(select(C).where(C.name == name)) if isinstance(name, str) else None
        if found is None:
            names = session.scalars(select(C.name)).all()
            raise CollectionNotFound(f"no collection {name!r}.{suggest(str(name), names)}")
        return found

    def _bump(self, session: Any, collection_id: int) -> int:
        """Add one to the collection's version (taking its row lock on PostgreSQL); the new version."""
        from sqlalchemy import select, update

        C = self._s.collection
        session.execute(update(C).where(C.id == collection_id).values(version=C.version + 1))
        return int(session.scalar(select(C.version).where(C.id == collection_id)))

    def _record(self, row: Any) -> FaceRecord:
        return FaceRecord(face_id=row.face_id, image_id=row.image_id, external_image_id=row.external_image_id,
                          box=(float(row.x0), float(row.y0), float(row.x1), float(row.y1)),
                          confidence=float(row.confidence), created_at=_utc(row.created_at))

    # ------------------------------------------------------------------ collections

    def create_collection(self, name: str) -> CollectionInfo:
        """Create an empty collection; names are Rekognition's: 1-255 of ``A-Z a-z 0-9 _ . -``."""
        from sqlalchemy import select

        check_collection_name(name)
        now = datetime.now(UTC)
        C = self._s.collection
        with self._session() as s, s.begin():
            self._write_lock(s)
            if s.scalar(select(C.id).where(C.name == name)) is not None:
                raise CollectionExists(f"collection {name!r} already exists")
            s.add(C(name=name, created_at=now, version=0))
        return CollectionInfo(name=name, face_count=0, created_at=now)

    def delete_collection(self, name: str) -> None:
        """Delete a collection and every face indexed in it."""
        from sqlalchemy import delete

        with self._session() as s, s.begin():
            self._write_lock(s)
            col = self._collection(s, name)
            s.execute(delete(self._s.face).where(self._s.face.collection_id == col.id))
            s.execute(delete(self._s.collection).where(self._s.collection.id == col.id))
        with self._lock:
            self._vectors_by_name.pop(name, None)

    def list_collections(self) -> list[str]:
        """Every collection's name, sorted."""
        from sqlalchemy import select

        with self._session() as s:
            return sorted(s.scalars(select(self._s.collection.name)).all())

    def describe_collection(self, name: str) -> CollectionInfo:
        from sqlalchemy import func, select

        with self._session() as s:
            col = self._collection(s, name)
            count = s.scalar(select(func.count()).select_from(self._s.face)
                             .where(self._s.face.collection_id == col.id))
            return CollectionInfo(name=col.name, face_count=int(count or 0), created_at=_utc(col.created_at))

    def face_count(self, collection: str) -> int:
        return self.describe_collection(collection).face_count

    def _require(self, collection: str) -> None:
        with self._session() as s:
            self._collection(s, collection)

    # ------------------------------------------------------------------ detection

    def detect(self, image: ImageSource, *, quality_filter: str = "NONE") -> list[DetectedFace]:
        """Every face in ``image``, largest first, measured, with its reasons to fail ``quality_filter``."""
        _quality_level(quality_filter)
        analyzer = self.analyzer
        img = analyzer.decode(image)
        faces = analyzer.detect(img, embeddings=True, **self.detect_kwargs)
        width, height = img.size
        grey = np.asarray(img.convert("L"))
        found = []
        for i in range(len(faces)):
            x0, y0, x1, y1 = (float(v) for v in faces.xyxy[i])
            c = float(faces.confidence[i])
            confidence = min(1.0, max(0.0, c)) if math.isfinite(c) else 1.0
            top, bottom, left, right = (max(0, round(v)) for v in (y0, y1, x0, x1))
            crop = grey[top:bottom, left:right]
            brightness, sharpness = measure(crop)
            side = min(x1 - x0, y1 - y0)
            found.append(DetectedFace(
                xyxy=(x0, y0, x1, y1), confidence=confidence,
                landmarks=[(float(x), float(y)) for x, y in faces.landmarks[i]],
                embedding=np.asarray(faces.embeddings[i], np.float32), width=width, height=height,
                brightness=round(brightness, 3), sharpness=round(sharpness, 3),
                quality_reasons=quality_reasons(side, confidence, sharpness, brightness, quality_filter)))
        found.sort(key=lambda f: -f.area)  # stable: equal areas keep the detector's order
        return found

    # ------------------------------------------------------------------ indexing

    def index_faces(self, collection: str, image: ImageSource, *, external_image_id: str | None = None,
                    max_faces: int | None = None, quality_filter: str = "AUTO") -> IndexResult:
        """Index every face in ``image`` that passes ``quality_filter`` (the largest ``max_faces`` of them).

        ``quality_filter``: ``NONE``, ``AUTO`` (= ``MEDIUM``), ``LOW``, ``MEDIUM`` or ``HIGH``
        (:data:`QUALITY_LEVELS`). The faces indexed share one new ImageId and ``external_image_id``.
        An image without faces indexes nothing (no error, as Rekognition). Nothing is written when it raises.
        """
        _check_external_id(external_image_id)
        if max_faces is not None:
            _check_count(max_faces, "max_faces")
        _quality_level(quality_filter)
        self._require(collection)
        faces = self.detect(image, quality_filter=quality_filter)
        passing = [f for f in faces if not f.quality_reasons]
        unindexed = [(f, f.quality_reasons) for f in faces if f.quality_reasons]
        if max_faces is not None and len(passing) > max_faces:
            unindexed += [(f, ("EXCEEDS_MAX_FACES",)) for f in passing[max_faces:]]
            passing = passing[:max_faces]
        if not passing:
            return IndexResult(indexed=[], unindexed=unindexed)
        records = self._insert(collection, np.stack([f.embedding for f in passing]),
                               external_image_ids=[external_image_id] * len(passing),
                               boxes=np.array([f.box for f in passing], np.float64),
                               confidences=np.array([f.confidence for f in passing], np.float64),
                               image_ids=[str(uuid.uuid4())] * len(passing))
        return IndexResult(indexed=list(zip(records, passing, strict=True)), unindexed=unindexed)

    def add_embeddings(self, collection: str, embeddings: np.ndarray, *,
                       external_image_ids: Sequence[str | None] | None = None, boxes: np.ndarray | None = None,
                       confidences: np.ndarray | None = None) -> list[FaceRecord]:
        """Index precomputed 128-d embeddings ``(N, 128)`` (imports; tests at scale), in one transaction.

        Each gets its own FaceId and ImageId. ``boxes`` ``(N, 4)`` are ratios of the image (default: the
        whole image), ``confidences`` ``(N,)`` 0..1 (default 1).
        """
        matrix = np.asarray(embeddings, np.float32)
        if matrix.ndim == 1 and as_embedding(matrix) is not None:
            matrix = matrix[None]
        if matrix.ndim != 2 or matrix.shape[1] != EMBEDDING_SIZE or not len(matrix):
            raise InvalidInput(f"embeddings must be an (N, {EMBEDDING_SIZE}) array with N >= 1, got shape "
                               f"{matrix.shape}")
        if not np.isfinite(matrix).all():
            raise InvalidInput("embeddings must be finite numbers")
        n = len(matrix)
        ids = [None] * n if external_image_ids is None else list(external_image_ids)
        if len(ids) != n:
            raise InvalidInput(f"{n} embeddings but {len(ids)} external image ids")
        for e in ids:
            _check_external_id(e)
        box = np.tile([0.0, 0.0, 1.0, 1.0], (n, 1)) if boxes is None else np.asarray(boxes, np.float64)
        if box.shape != (n, 4) or not np.isfinite(box).all() or (box < 0).any() or (box > 1).any() \
                or (box[:, 2] < box[:, 0]).any() or (box[:, 3] < box[:, 1]).any():
            raise InvalidInput(f"boxes must be ({n}, 4) ratios x0 <= x1, y0 <= y1 between 0 and 1")
        conf = np.ones(n) if confidences is None else np.asarray(confidences, np.float64).reshape(-1)
        if conf.shape != (n,) or not np.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
            raise InvalidInput(f"confidences must be {n} numbers between 0 and 1")
        return self._insert(collection, matrix, external_image_ids=ids, boxes=box, confidences=conf,
                            image_ids=[str(uuid.uuid4()) for _ in range(n)])

    def _insert(self, collection: str, matrix: np.ndarray, *, external_image_ids: Sequence[str | None],
                boxes: np.ndarray, confidences: np.ndarray, image_ids: Sequence[str]) -> list[FaceRecord]:
        from sqlalchemy import insert

        F = self._s.face
        now = datetime.now(UTC)
        vectors = np.ascontiguousarray(matrix, np.float32)
        records = [FaceRecord(face_id=str(uuid.uuid4()), image_id=image_ids[i], external_image_id=external_image_ids[i],
                              box=tuple(float(v) for v in boxes[i]),  # type: ignore[arg-type]
                              confidence=float(confidences[i]), created_at=now) for i in range(len(vectors))]
        with self._session() as s, s.begin():
            self._write_lock(s)
            col = self._collection(s, collection)
            version = self._bump(s, col.id)
            rows = [{"collection_id": col.id, "face_id": r.face_id, "image_id": r.image_id,
                     "external_image_id": r.external_image_id, "x0": r.box[0], "y0": r.box[1], "x1": r.box[2],
                     "y1": r.box[3], "confidence": r.confidence, "embedding": vectors[i].astype("<f4").tobytes(),
                     "created_at": now} for i, r in enumerate(records)]
            ids = list(s.scalars(insert(F).returning(F.id, sort_by_parameter_order=True), rows))
            collection_id = col.id
        with self._lock:
            cached = self._vectors_by_name.get(collection)
            if cached is not None and cached.collection_id == collection_id and cached.version == version - 1:
                cached.add(ids, records, vectors)
                cached.version = version
        return records

    # ------------------------------------------------------------------ listing and deleting

    def list_faces(self, collection: str, *, max_results: int = 1000, after: str | None = None,
                   face_ids: Sequence[str] | None = None) -> tuple[list[FaceRecord], str | None]:
        """The collection's faces, oldest first, a page of at most ``max_results`` (1-4096).

        Returns the page and the token of the next one (pass it as ``after``), or None at the end.
        ``face_ids`` lists only those faces.
        """
        from sqlalchemy import select

        limit = _check_count(max_results, "max_results")
        start = None if after is None else _decode_token(after)
        F = self._s.face
        with self._session() as s:
            col = self._collection(s, collection)
            query = select(F).where(F.collection_id == col.id)
            if start is not None:
                query = query.where(F.id > start)
            if face_ids is not None:
                wanted = [f for f in dict.fromkeys(face_ids) if isinstance(f, str)]
                if not wanted:
                    return [], None
                query = query.where(F.face_id.in_(wanted))
            rows = s.scalars(query.order_by(F.id).limit(limit + 1)).all()
        more = len(rows) > limit
        rows = rows[:limit]
        return [self._record(r) for r in rows], (_encode_token(rows[-1].id) if more else None)

    def delete_faces(self, collection: str, face_ids: Sequence[str]) -> tuple[list[str], list[str]]:
        """Delete faces by FaceId; returns ``(deleted, not found)``, each in the order given."""
        from sqlalchemy import delete, select

        if isinstance(face_ids, str):
            raise InvalidInput("face_ids must be a list of FaceIds, not one string")
        wanted = list(dict.fromkeys(face_ids))
        F = self._s.face
        with self._session() as s, s.begin():
            self._write_lock(s)
            col = self._collection(s, collection)
            valid = [f for f in wanted if isinstance(f, str)]
            found = set(s.scalars(select(F.face_id).where(F.collection_id == col.id, F.face_id.in_(valid))).all()) \
                if valid else set()
            deleted = [f for f in wanted if f in found]
            missing = [f for f in wanted if f not in found]
            if not deleted:
                return [], missing
            version = self._bump(s, col.id)
            s.execute(delete(F).where(F.collection_id == col.id, F.face_id.in_(deleted)))
            collection_id = col.id
        with self._lock:
            cached = self._vectors_by_name.get(collection)
            if cached is not None and cached.collection_id == collection_id and cached.version == version - 1:
                cached.remove(deleted)
                cached.version = version
        return deleted, missing

    # ------------------------------------------------------------------ search

    def _vectors(self, collection: str) -> _Vectors:
        """The collection's vectors as of its current version (one small query; a rebuild if it changed).
        Call with ``self._lock`` held."""
        from sqlalchemy import select

        C, F = self._s.collection, self._s.face
        with self._session() as s:
            row = s.execute(select(C.id, C.version).where(C.name == collection)).first() \
                if isinstance(collection, str) else None
            if row is None:
                self._vectors_by_name.pop(collection, None)  # deleted by another process
                self._collection(s, collection)  # raises CollectionNotFound, with a suggestion
                raise CollectionNotFound(f"no collection {collection!r}")
            collection_id, version = int(row[0]), int(row[1])
            cached = self._vectors_by_name.get(collection)
            if cached is not None and cached.collection_id == collection_id and cached.version == version:
                return cached
            # rows read after the version: never older than it (a newer write bumps the version: rebuilt again)
            rows = s.execute(select(F.id, F.face_id, F.image_id, F.external_image_id, F.x0, F.y0, F.x1, F.y1,
                                    F.confidence, F.embedding, F.created_at)
                             .where(F.collection_id == collection_id).order_by(F.id)).all()
        faiss = _faiss()
        vectors = _Vectors(collection_id, version, faiss.IndexIDMap2(faiss.IndexFlatL2(EMBEDDING_SIZE)))
        if rows:
            matrix = np.frombuffer(b"".join(r.embedding for r in rows), "<f4").reshape(-1, EMBEDDING_SIZE)
            vectors.add([int(r.id) for r in rows], [self._record(r) for r in rows], matrix)
        self._vectors_by_name[collection] = vectors
        return vectors

    def search(self, collection: str, embedding: np.ndarray, *, max_faces: int = 80,
               threshold: float = DEFAULT_MATCH_THRESHOLD,
               exclude: str | None = None) -> list[tuple[FaceRecord, float]]:
        """The collection's faces nearest to ``embedding``: ``(record, similarity 0..100)``, best first,
        similarity >= ``threshold``, at most ``max_faces`` (1-4096); ``exclude`` leaves out one FaceId."""
        vector = as_embedding(embedding)
        if vector is None or not np.isfinite(vector).all():
            raise InvalidInput(f"an embedding must have {EMBEDDING_SIZE} finite numbers")
        limit = _check_count(max_faces, "max_faces")
        cutoff = _check_threshold(threshold)
        with self._lock:
            return self._search(self._vectors(collection), vector, limit, cutoff, exclude)

    def _search(self, vectors: _Vectors, vector: np.ndarray, limit: int, cutoff: float,
                exclude: str | None) -> list[tuple[FaceRecord, float]]:
        squared, ids = vectors.nearest(vector, limit + (1 if exclude is not None else 0))
        found = []
        for d2, row in zip(squared.tolist(), ids.tolist(), strict=True):
            if row < 0:
                continue
            record = vectors.records[row]
            if record.face_id == exclude:
                continue
            score = similarity(math.sqrt(max(d2, 0.0)))
            if score < cutoff:
                break  # nearest first: the rest score lower
            found.append((record, score))
            if len(found) == limit:
                break
        return found

    def search_face(self, collection: str, face_id: str, **kw: Any) -> list[tuple[FaceRecord, float]]:
        """The faces most like an indexed face (the face itself left out, as Rekognition's SearchFaces).
        Keywords as :meth:`search`; :class:`FaceNotFound` for an unknown FaceId."""
        limit = _check_count(kw.pop("max_faces", 80), "max_faces")
        cutoff = _check_threshold(kw.pop("threshold", DEFAULT_MATCH_THRESHOLD))
        if kw:
            raise TypeError(f"search_face() got unexpected keyword arguments {sorted(kw)}")
        with self._lock:
            vectors = self._vectors(collection)
            row = vectors.rows.get(face_id) if isinstance(face_id, str) else None
            if row is None:
                raise FaceNotFound(f"no face {face_id!r} in collection {collection!r}")
            vector = np.asarray(vectors.index.reconstruct(row), np.float32)
            return self._search(vectors, vector, limit, cutoff, face_id)

    def search_image(self, collection: str, image: ImageSource, *, quality_filter: str = "NONE",
                     **kw: Any) -> tuple[DetectedFace, list[tuple[FaceRecord, float]]]:
        """Search the largest face of ``image`` (that passes ``quality_filter``), as SearchFacesByImage.

        Returns that face and its matches (keywords as :meth:`search`); :class:`NoFaceFound` when the image
        has no face (that passes the filter).
        """
        _quality_level(quality_filter)
        self._require(collection)
        faces = self.detect(image, quality_filter=quality_filter)
        usable = [f for f in faces if not f.quality_reasons]
        if not usable:
            filtered = f" that passes the quality filter {quality_filter}" if faces else ""
            raise NoFaceFound(f"{describe_source(image)}: no face found{filtered}")
        face = usable[0]
        return face, self.search(collection, face.embedding, **kw)


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - a declared dependency
        raise ConfigError("face search needs faiss: pip install faiss-cpu") from None
    return faiss
