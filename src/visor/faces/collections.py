"""Face collections: named sets of enrolled people, persisted in SQLite, searched by embedding.

Like Amazon Rekognition's collections: create a collection, enroll people from one or more
photos each (every photo must show exactly one face), then identify the faces in any image
against it. Only embeddings are stored (128 float32 per photo), never the photos. The
database is an ordinary SQLite file: re-open it with a new :class:`FaceStore` after a restart.
Replicas of the service share one PostgreSQL database instead: pass its URL (``postgresql://...``).

Default location (:func:`default_db_path`): ``$VISOR_HOME/faces.db`` when ``VISOR_HOME`` is
set, otherwise ``~/.local/share/visor/faces.db``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import suggest
from visor.errors import InvalidInput, VisorError
from visor.faces.detector import DEFAULT_THRESHOLD, EMBEDDING_SIZE, FaceAnalyzer, as_embedding
from visor.io import ImageSource, describe_source
from visor.io.dburl import parse_db_url
from visor.io.files import SQLITE_SIDE_FILES, data_home, make_private, private_dir, private_sqlite
from visor.types.faces import Faces

UNKNOWN = "unknown"
_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,255}$")


class CollectionNotFound(VisorError, LookupError):
    """No collection of that name (HTTP 404)."""

    http_status = 404
    code = "collection_not_found"


class CollectionExists(VisorError):
    """A collection of that name already exists (HTTP 409)."""

    http_status = 409
    code = "collection_exists"


class PersonNotFound(VisorError, LookupError):
    """No enrolled person of that name in the collection (HTTP 404)."""

    http_status = 404
    code = "person_not_found"


def default_db_path() -> Path:
    """``$VISOR_HOME/faces.db``, or ``~/.local/share/visor/faces.db`` when VISOR_HOME is unset."""
    return data_home() / "faces.db"


def check_person_name(person: object) -> str:
    if not isinstance(person, str) or not person.strip() or len(person) > 255:
        raise InvalidInput(f"invalid person name {person!r}")
    if person.strip().casefold() == UNKNOWN:
        raise InvalidInput(f"the person name {person!r} is reserved: identify names every face that matches "
                           f"nobody {UNKNOWN!r}; choose another name")
    return person


def check_collection_name(name: object) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"invalid collection name {name!r}: use 1-255 of A-Z a-z 0-9 _ . -")
    return name


@dataclass(frozen=True)
class _Schema:
    base: Any
    collection: Any
    person: Any
    face: Any


def _schema() -> _Schema:
    """The ORM classes, built per store so that importing this module imports no SQLAlchemy."""
    # Plain Column declarations: string annotations (this module uses postponed evaluation) would
    # need SQLAlchemy's names imported at module level, which would import it with visor.faces.
    from sqlalchemy import Column, DateTime, ForeignKey, Integer, LargeBinary, String, UniqueConstraint
    from sqlalchemy.orm import DeclarativeBase, relationship

    class Base(DeclarativeBase):
        pass

    class Collection(Base):
        __tablename__ = "collections"
        id = Column(Integer, primary_key=True)
        name = Column(String(255), unique=True, nullable=False)
        created_at = Column(DateTime, nullable=False)
        people = relationship("Person", back_populates="collection", cascade="all, delete-orphan")

    class Person(Base):
        __tablename__ = "people"
        __table_args__ = (UniqueConstraint("collection_id", "name"),)
        id = Column(Integer, primary_key=True)
        collection_id = Column(Integer, ForeignKey("collections.id", ondelete="CASCADE"), index=True, nullable=False)
        name = Column(String(255), nullable=False)
        collection = relationship("Collection", back_populates="people")
        faces = relationship("Face", back_populates="person", cascade="all, delete-orphan")

    class Face(Base):
        __tablename__ = "faces"
        id = Column(Integer, primary_key=True)
        person_id = Column(Integer, ForeignKey("people.id", ondelete="CASCADE"), index=True, nullable=False)
        source = Column(String(1024), nullable=False)
        embedding = Column(LargeBinary, nullable=False)
        created_at = Column(DateTime, nullable=False)
        person = relationship("Person", back_populates="faces")

    return _Schema(Base, Collection, Person, Face)


class FaceStore:
    """Face collections in one SQLite file, or a database server's URL (``postgresql://...``)
    (a file is created ``0o600`` with its folder ``0o700`` if missing;
    visor's data folder is made ``0o700`` even if it exists).

    ``analyzer`` detects and embeds faces (a default :class:`FaceAnalyzer` otherwise: YuNet's faces,
    dlib's 128-d embeddings); ``detect_kwargs`` go to its ``detect`` for enrolment and identification
    (e.g. ``model="hog"`` for dlib's detector). Embeddings enrolled with one detector identify faces
    found by another: they are dlib's either way.
    Use as a context manager, or call :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, analyzer: FaceAnalyzer | None = None,
                 **detect_kwargs: Any) -> None:
        self.analyzer = analyzer or FaceAnalyzer()
        self.detect_kwargs = detect_kwargs
        self._s = _schema()
        self.path, self._engine = open_faces_database(path, self._s.base.metadata)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _session(self) -> Any:
        from sqlalchemy.orm import Session

        return Session(self._engine, expire_on_commit=False)

    def _collection(self, session: Any, name: str) -> Any:
        from sqlalchemy import select

        found = session.scalar(select(self._s.collection).where(self._s.collection.name == name))
        if found is None:
            names = session.scalars(select(self._s.collection.name)).all()
            raise CollectionNotFound(f"no collection {name!r}.{suggest(name, names)}")
        return found

    # ------------------------------------------------------------------ collections

    def create_collection(self, name: str) -> None:
        """Create an empty collection; names are 1-255 of ``A-Z a-z 0-9 _ . -``."""
        from sqlalchemy import select

        check_collection_name(name)
        with self._session() as s, s.begin():
            if s.scalar(select(self._s.collection).where(self._s.collection.name == name)) is not None:
                raise CollectionExists(f"collection {name!r} already exists")
            s.add(self._s.collection(name=name, created_at=datetime.now(UTC)))

    def delete_collection(self, name: str) -> None:
        """Delete a collection with everyone enrolled in it."""
        with self._session() as s, s.begin():
            s.delete(self._collection(s, name))

    def list_collections(self) -> list[str]:
        from sqlalchemy import select

        with self._session() as s:
            return sorted(s.scalars(select(self._s.collection.name)).all())

    # ------------------------------------------------------------------ people

    def enroll(self, collection: str, person: str, images: ImageSource | Sequence[ImageSource], *,
               create: bool = False, names: Sequence[str] | None = None) -> int:
        """Add one or more photos of ``person``; returns how many faces were stored.

        Every photo must show exactly one face: otherwise :class:`NoFaceFound` or
        :class:`MultipleFaces` naming the photo is raised and nothing is enrolled. ``names``
        name the photos in errors and in the record (uploads' file names; by default a path
        names itself). ``create`` creates a missing collection (only once every photo worked);
        otherwise a missing one raises :class:`CollectionNotFound`. ``unknown`` is reserved
        (it is what :meth:`identify` calls a face that matches nobody).
        """
        from visor.models.batching import is_batch

        sources = list(images) if is_batch(images) else [images]  # type: ignore[arg-type]
        if not sources:
            raise InvalidInput("enroll needs at least one photo")
        labels = [describe_source(s) for s in sources] if names is None else [str(n) for n in names]
        if len(labels) != len(sources):
            raise InvalidInput(f"{len(sources)} photos but {len(labels)} names")
        check_person_name(person)
        if create:
            check_collection_name(collection)
        else:
            self.require_collection(collection)
        embeddings = [self._embed(src, label) for src, label in zip(sources, labels, strict=True)]
        return self.add_embeddings(collection, person, embeddings, labels, create=create)

    def _embed(self, source: ImageSource, label: str) -> np.ndarray:
        """The photo's only face's embedding; an error names the photo ``label``."""
        try:
            return self.analyzer.embed_one(source, **self.detect_kwargs)
        except VisorError as e:
            message = str(e).removeprefix(f"{describe_source(source)}: ")
            if message.startswith(f"{label}: "):
                raise
            renamed = type(e)(f"{label}: {message}")
            raise renamed from None

    def add_embeddings(self, collection: str, person: str, embeddings: Iterable[Any],
                       sources: Sequence[str] | None = None, *, create: bool = False) -> int:
        """Store precomputed 128-d embeddings for ``person`` (``sources`` names each, for the record).

        ``create`` creates the collection if it is missing, in the same transaction.
        """
        from sqlalchemy import select

        check_person_name(person)
        if create:
            check_collection_name(collection)
        vectors = []
        for e in embeddings:
            v = as_embedding(e)
            if v is None:
                raise InvalidInput(f"an embedding must have {EMBEDDING_SIZE} numbers")
            vectors.append(v)
        names = list(sources) if sources is not None else [""] * len(vectors)
        if len(names) != len(vectors):
            raise InvalidInput(f"{len(vectors)} embeddings but {len(names)} sources")
        now = datetime.now(UTC)
        P = self._s.person
        with self._session() as s, s.begin():
            C = self._s.collection
            col = s.scalar(select(C).where(C.name == collection)) if create else self._collection(s, collection)
            if col is None:
                col = C(name=collection, created_at=now)
                s.add(col)
            row = s.scalar(select(P).where(P.collection_id == col.id, P.name == person)) if col.id else None
            if row is None:
                row = P(name=person, collection=col)
                s.add(row)
            for v, src in zip(vectors, names, strict=True):
                row.faces.append(self._s.face(source=src[:1024], embedding=v.astype("<f4").tobytes(), created_at=now))
        return len(vectors)

    def list_people(self, collection: str) -> list[str]:
        from sqlalchemy import select

        P = self._s.person
        with self._session() as s:
            col = self._collection(s, collection)
            return sorted(s.scalars(select(P.name).where(P.collection_id == col.id)).all())

    def face_counts(self, collection: str) -> dict[str, int]:
        """Faces enrolled per person (every person listed, sorted by name)."""
        from collections import Counter

        counts = Counter(self._embeddings(collection)[0])
        return {person: counts.get(person, 0) for person in self.list_people(collection)}

    def remove_person(self, collection: str, person: str) -> None:
        """Forget ``person`` and all their photos' embeddings."""
        from sqlalchemy import select

        P = self._s.person
        with self._session() as s, s.begin():
            col = self._collection(s, collection)
            row = s.scalar(select(P).where(P.collection_id == col.id, P.name == person))
            if row is None:
                names = s.scalars(select(P.name).where(P.collection_id == col.id)).all()
                raise PersonNotFound(f"no person {person!r} in collection {collection!r}.{suggest(person, names)}")
            s.delete(row)

    def require_collection(self, collection: str) -> None:
        """Raise :class:`CollectionNotFound` (with the ways to create it) unless ``collection`` exists."""
        with self._session() as s:
            try:
                self._collection(s, collection)
            except CollectionNotFound as e:
                raise CollectionNotFound(
                    f"{e} Create it first ('visor faces collections create {collection}', POST /v1/collections "
                    f"or FaceStore.create_collection), or enroll with create=True"
                ) from None

    def _embeddings(self, collection: str) -> tuple[list[str], np.ndarray]:
        from sqlalchemy import select

        P, F = self._s.person, self._s.face
        with self._session() as s:
            col = self._collection(s, collection)
            rows = s.execute(select(P.name, F.embedding).join(F, F.person_id == P.id)
                             .where(P.collection_id == col.id).order_by(F.id)).all()
        names = [r[0] for r in rows]
        matrix = np.array([np.frombuffer(r[1], "<f4") for r in rows], np.float32).reshape(-1, EMBEDDING_SIZE)
        return names, matrix

    # ------------------------------------------------------------------ search

    def identify(self, collection: str, image: ImageSource, *, threshold: float = DEFAULT_THRESHOLD,
                 top_k: int = 3) -> Faces:
        """Every face in ``image`` with who it is.

        ``data["name"]`` is the enrolled person nearest to the face if within ``threshold``
        (euclidean; 0.6 is dlib's LFW operating point), else ``"unknown"``; ``data["distance"]``
        is the distance to that nearest enrolled embedding (NaN for an empty collection);
        ``data["matches"]`` lists the ``top_k`` nearest people, each ``{"person", "distance"}``
        with their nearest photo's distance, nearest first.
        """
        if int(top_k) < 1:
            raise InvalidInput(f"top_k must be at least 1, got {top_k}")
        names, matrix = self._embeddings(collection)
        faces = self.analyzer.detect(image, embeddings=True, **self.detect_kwargs)
        labels, dists, matches = [], [], []
        for emb in faces.embeddings:
            d = np.linalg.norm(matrix - emb, axis=1) if len(matrix) else np.zeros(0, np.float32)
            best: dict[str, float] = {}
            for name, dist in zip(names, d.tolist(), strict=True):
                best[name] = min(dist, best.get(name, np.inf))
            ranked = sorted(best.items(), key=lambda kv: kv[1])
            nearest = ranked[0] if ranked else (UNKNOWN, float("nan"))
            labels.append(nearest[0] if nearest[1] <= threshold else UNKNOWN)
            dists.append(nearest[1])
            matches.append([{"person": n, "distance": round(v, 6)} for n, v in ranked[: int(top_k)]])
        obj = np.empty(len(matches), dtype=object)
        for i, m in enumerate(matches):
            obj[i] = m
        return faces.with_data(name=np.array(labels, dtype=object), distance=np.array(dists, np.float32),
                               matches=obj)


#: pg_advisory_xact_lock key under which a FaceStore creates its tables (any fixed 64-bit number).
_SCHEMA_LOCK = 0x76697330_66616365


def open_faces_database(path: str | os.PathLike | None, metadata: Any) -> tuple[Path | None, Any]:
    """The faces database at ``path``: ``(file, engine)`` with ``metadata``'s tables created.

    ``path`` is an SQLite file (default :func:`default_db_path`; created ``0o600`` with its folder ``0o700`` if
    missing, visor's data folder made ``0o700`` even if it exists: face embeddings are personal data) or a database
    server's URL (``postgresql://...``: one database every replica shares; ``file`` is then None). Stores opening
    one new database together take turns creating the tables: PostgreSQL's advisory lock, or SQLite's write lock
    taken before the tables are looked for (waits up to the busy timeout).
    """
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.engine import URL

    server = _server_url(path)
    file = None if server is not None else Path(path) if path is not None else default_db_path()
    if file is not None:
        try:
            if not file.parent.exists() or file.parent.absolute() == data_home().absolute():
                private_dir(file.parent)
            private_sqlite(file)  # SQLite's journal takes this mode too
        except OSError as e:
            raise InvalidInput(f"cannot create {file}: {e.strerror or e}") from None
        engine = create_engine(URL.create("sqlite", database=os.fspath(file)))
        event.listen(engine, "connect", _enable_foreign_keys)
    else:
        engine = create_engine(server)
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        metadata.create_all(conn)
    return file, engine


def _server_url(path: str | os.PathLike | None) -> Any:
    """``path`` as an SQLAlchemy URL when it names a database server (``postgresql://...``), else None."""
    if not isinstance(path, str) or "://" not in path or path.startswith("sqlite"):
        return None
    return parse_db_url(path)  # the service's URL rules: ConfigError, psycopg 3 when installed


def _enable_foreign_keys(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    path = next((r[2] for r in cursor.execute("PRAGMA database_list").fetchall() if r[1] == "main"), "")
    cursor.close()
    for suffix in ("", *SQLITE_SIDE_FILES) if path else ():
        make_private(path + suffix)  # fixes files an older visor created world-readable
