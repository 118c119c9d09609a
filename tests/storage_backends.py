"""The databases the storage tests run on: an SQLite file, and PostgreSQL (``VISOR_TEST_POSTGRES_URL``).

``VISOR_TEST_POSTGRES_URL`` names a PostgreSQL database whose role may create databases
(``.ci/postgres start DIR`` starts such a cluster and prints the variable; .ci/run does so).
Each test gets a database of its own, created empty and dropped afterwards, so no test sees
another's rows. Without the variable the PostgreSQL cases fail when ``CI=true`` and skip elsewhere.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

POSTGRES_ENV = "VISOR_TEST_POSTGRES_URL"
#: The ``db_url`` fixtures' parameters.
DATABASES = ("sqlite", "postgresql")


def _missing(msg: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg)
    pytest.skip(msg)


def _admin_engine(url: str):
    """An AUTOCOMMIT engine on ``url`` (psycopg 3, the driver of the ``postgres`` extra)."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.pool import NullPool

    return create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT",
                         poolclass=NullPool)


def require_postgres() -> str:
    """``VISOR_TEST_POSTGRES_URL``, checked to reach a server. Missing: a failure in CI, a skip elsewhere."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        _missing(f"{POSTGRES_ENV} is not set: start a server with `.ci/postgres start DIR` and export the line it "
                 "prints (.ci/run does)")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("the PostgreSQL tests need psycopg: pip install '.[postgres]'")
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    engine = _admin_engine(url)
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except OperationalError as e:
        _missing(f"cannot reach the PostgreSQL server of {POSTGRES_ENV}: {str(e.orig).strip()}")
    finally:
        engine.dispose()
    return url


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on the server of ``VISOR_TEST_POSTGRES_URL``; its URL. Dropped after."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    admin = require_postgres()
    name = f"visor_test_{uuid.uuid4().hex[:16]}"
    engine = _admin_engine(admin)
    try:
        with engine.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            yield make_url(admin).set(database=name).render_as_string(hide_password=False)
        finally:
            with engine.connect() as c:  # WITH (FORCE): a server or engine a test left open does not block it
                c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        engine.dispose()


@contextmanager
def database_url(kind: str, folder: Path) -> Iterator[str]:
    """A fresh database's URL: ``sqlite`` (a file in ``folder``) or ``postgresql`` (see :func:`postgres_database`)."""
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'serve.db'}"
    elif kind == "postgresql":
        with postgres_database() as url:
            yield url
    else:
        raise ValueError(kind)


def run_together(open_once: Callable[[], None], n: int = 6) -> list[BaseException]:
    """``open_once`` in ``n`` threads released at the same moment (replicas starting together); the errors
    they raised."""
    barrier, errors = threading.Barrier(n), []

    def start() -> None:
        try:
            barrier.wait(10)
            open_once()
        except BaseException as e:  # noqa: BLE001 - returned to the test, which asserts on it
            errors.append(e)

    threads = [threading.Thread(target=start) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors
