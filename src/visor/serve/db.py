"""The service database: API keys (bearer, AWS), the review queue, the prediction log and watch events (SQLAlchemy 2).

SQLite by default (:func:`default_db_url`), in WAL mode with a 5 s busy timeout and foreign
keys on; any other SQLAlchemy URL (``postgresql://...``) works unchanged, since nothing here
uses SQLite-only SQL. Tables are created when a :class:`ServiceDB` opens.

Datetimes are timezone-aware UTC in Python; SQLite stores them as naive UTC text.
Nothing happens on import: no engine, no file.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import DeclarativeBase, Session, deferred, sessionmaker
from sqlalchemy.pool import StaticPool

from visor.errors import ConfigError, InvalidInput
from visor.io.dburl import parse_db_url
from visor.io.files import SQLITE_SIDE_FILES, data_home, make_private, private_dir, private_sqlite

__all__ = ["ApiKeyRow", "AwsKeyRow", "EventRow", "PredictionRow", "ReviewItemRow", "ServiceDB", "default_db_url",
           "utcnow"]

DB_FILE = "serve.db"


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def default_db_path() -> Path:
    """``$VISOR_HOME/serve.db``, or ``~/.local/share/visor/serve.db`` when VISOR_HOME is unset."""
    return data_home() / DB_FILE


def default_db_url() -> str:
    """``sqlite:///`` + :func:`default_db_path`; its folder is created ``0o700``."""
    path = default_db_path()
    _make_parent(path)
    return URL.create("sqlite", database=os.fspath(path.absolute())).render_as_string()


def _make_parent(path: Path) -> None:
    """Create the database's folder ``0o700``; visor's data folder is made ``0o700`` even if it exists,
    any other existing folder is left as it is."""
    try:
        if not path.parent.exists() or path.parent.absolute() == data_home().absolute():
            private_dir(path.parent)
    except OSError as e:
        raise InvalidInput(f"cannot create {path.parent}: {e.strerror or e}") from None


def _private_file(path: Path) -> None:
    try:
        private_sqlite(path)
    except OSError as e:
        raise InvalidInput(f"cannot create {path}: {e.strerror or e}") from None


# --------------------------------------------------------------------------- schema


class UTCDateTime(TypeDecorator):
    """A timezone-aware UTC datetime on every backend (naive UTC where the backend has no zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class ApiKeyRow(Base):
    __tablename__ = "api_keys"
    id = Column(Integer, primary_key=True)
    name = Column(String(255), unique=True, nullable=False)
    prefix = Column(String(32), nullable=False)
    key_sha256 = Column(String(64), unique=True, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    revoked_at = Column(UTCDateTime, nullable=True)


class AwsKeyRow(Base):
    """An AWS-style access key (:mod:`visor.serve.awsauth`): the secret is kept encrypted (AES-256-GCM, nonce +
    ciphertext), never in clear and never hashed, since verifying a SigV4 signature needs the secret itself."""

    __tablename__ = "aws_keys"
    id = Column(Integer, primary_key=True)
    name = Column(String(255), unique=True, nullable=False)
    access_key_id = Column(String(32), unique=True, nullable=False)
    secret_encrypted = Column(LargeBinary, nullable=False)
    created_at = Column(UTCDateTime, nullable=False)
    revoked_at = Column(UTCDateTime, nullable=True)


class ReviewItemRow(Base):
    __tablename__ = "review_items"
    id = Column(Integer, primary_key=True)
    created_at = Column(UTCDateTime, nullable=False)
    model = Column(String(255), nullable=False)
    task = Column(String(32), nullable=False)
    filename = Column(String(1024), nullable=False)
    media_type = Column(String(255), nullable=False)
    image = deferred(Column(LargeBinary, nullable=False))  # loaded only when asked for
    image_sha256 = Column(String(64), nullable=False, index=True)
    reason = Column(String(255), nullable=False)
    prediction = Column(Text, nullable=False)  # JSON
    predicted_label = Column(String(1024), nullable=True)
    confidence = Column(Float, nullable=True)
    labels = Column(Text, nullable=False)  # JSON list
    status = Column(String(32), nullable=False, index=True)
    label = Column(String(1024), nullable=True)
    boxes = Column(Text, nullable=True)  # JSON list of {"xyxy", "label"}, corrected detect items only
    reviewer = Column(String(255), nullable=True)
    decided_at = Column(UTCDateTime, nullable=True)


class PredictionRow(Base):
    __tablename__ = "predictions"
    id = Column(Integer, primary_key=True)
    created_at = Column(UTCDateTime, nullable=False, index=True)
    route = Column(String(255), nullable=False)
    model = Column(String(255), nullable=False)
    image_sha256 = Column(String(64), nullable=False)
    result = Column(Text, nullable=False)  # JSON
    latency_ms = Column(Float, nullable=False)
    key_name = Column(String(255), nullable=True)


class EventRow(Base):
    """One ``visor watch`` event (:class:`visor.video.rules.Event`) and its annotated snapshot."""

    __tablename__ = "events"
    id = Column(String(32), primary_key=True)  # the event's uuid4 hex
    rule = Column(String(255), nullable=False, index=True)
    kind = Column(String(16), nullable=False)
    class_name = Column(String(255), nullable=False)
    tracker_id = Column(BigInteger, nullable=False)
    frame = Column(BigInteger, nullable=False)
    timestamp_s = Column(Float, nullable=True)  # video time
    created = Column(UTCDateTime, nullable=False, index=True)  # the event's wall-clock time
    source = Column(String(1024), nullable=False)
    zone = Column(String(255), nullable=True)
    line = Column(String(255), nullable=True)
    direction = Column(String(8), nullable=True)
    confidence = Column(Float, nullable=False)
    box = Column(Text, nullable=False)  # JSON [x1, y1, x2, y2]
    snapshot = deferred(Column(LargeBinary, nullable=True))  # JPEG, at most events.MAX_SNAPSHOT_BYTES


# --------------------------------------------------------------------------- engine

_IMMEDIATE = "visor_sqlite_immediate"


#: How long a new connection retries switching to WAL while other connections open the same new file.
WAL_SWITCH_TIMEOUT_S = 5.0


def _switch_to_wal(cursor: Any) -> None:
    """``PRAGMA journal_mode=WAL``, retried while the database is locked: when several connections open a
    new file at once, the switch can answer SQLITE_BUSY without calling the busy handler (about 2 in 900
    openings measured here), so busy_timeout alone does not cover it."""
    deadline, delay = time.monotonic() + WAL_SWITCH_TIMEOUT_S, 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy's "begin" event (below) issue BEGIN itself, so writes can take the lock up front.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=5000")  # first: switching to WAL waits for other openers too
        _switch_to_wal(cursor)
        cursor.execute("PRAGMA foreign_keys=ON")
        # SQLite gives the -wal and -shm files the database's mode (0o600, see ServiceDB); files an
        # older visor left world-readable are fixed on each connection
        path = next((r[2] for r in cursor.execute("PRAGMA database_list").fetchall() if r[1] == "main"), "")
        if path:  # "" for an in-memory database
            for suffix in ("", *SQLITE_SIDE_FILES):
                make_private(path + suffix)
    finally:
        cursor.close()


def _sqlite_begin(conn: Any) -> None:
    # BEGIN IMMEDIATE for write sessions: a deferred transaction that reads and then writes fails
    # at once with SQLITE_BUSY (no busy wait) when another connection wrote in between.
    immediate = conn.get_execution_options().get(_IMMEDIATE, False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


#: pg_advisory_xact_lock key under which a ServiceDB creates the tables (any fixed 64-bit number).
_SCHEMA_LOCK = 0x76697330_73636865


def _create_tables(engine: Engine) -> None:
    """The missing tables, created in one transaction that concurrent openers (replicas starting together
    on a new database) take in turn: the SQLite write lock, or a PostgreSQL advisory lock."""
    with engine.execution_options(**{_IMMEDIATE: True}).begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _SCHEMA_LOCK})
        Base.metadata.create_all(conn)


class ServiceDB:
    """The service's database at ``url`` (default :func:`default_db_url`; a bare path is an SQLite file).

    Use :meth:`session` for a unit of work, and :meth:`close` (or ``with``) when done.
    """

    def __init__(self, url: str | None = None) -> None:
        parsed = parse_db_url(url or default_db_url())
        self.url = parsed.render_as_string(hide_password=True)
        self.path: Path | None = None
        """The SQLite file (None for an in-memory or server database)."""
        kwargs: dict[str, Any] = {}
        sqlite = parsed.get_backend_name() == "sqlite"
        if sqlite:
            kwargs["connect_args"] = {"check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = StaticPool  # one shared in-memory database
            elif not parsed.query.get("uri"):  # a plain file name, not an SQLite "file:" URI
                self.path = Path(parsed.database).absolute()
                _make_parent(self.path)
                _private_file(self.path)  # SQLite then creates the -wal and -shm files 0o600 too
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except (ArgumentError, ImportError) as e:  # unknown dialect or driver not installed
            raise ConfigError(f"cannot open database {self.url}: {e}") from None
        if sqlite:
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        _create_tables(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False)

    @contextmanager
    def session(self, *, write: bool = True) -> Iterator[Session]:
        """An ORM session: committed when the block ends, rolled back if it raises.

        ``write=False`` for read-only work (on SQLite it then does not take the write lock).
        """
        with (self._write if write else self._read)() as s:
            try:
                yield s
                s.commit()
            except BaseException:
                s.rollback()
                raise

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> ServiceDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServiceDB({self.url!r})"
