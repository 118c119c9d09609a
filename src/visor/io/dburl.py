"""Database URLs as the service and the face collections take them: a bare path is an SQLite
file; ``postgresql://...`` uses psycopg 3 when that is the driver installed. Imports SQLAlchemy
only when called."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from visor.errors import ConfigError


def parse_db_url(url: str) -> Any:
    """``url`` as an SQLAlchemy ``URL``; a malformed one raises :class:`ConfigError`."""
    from sqlalchemy.engine import URL, make_url
    from sqlalchemy.exc import ArgumentError

    if "://" not in url:  # a bare path means an SQLite file
        return URL.create("sqlite", database=os.fspath(Path(url).expanduser().absolute()))
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as e:
        raise ConfigError(f"not a database URL: {url!r} ({e})") from None
    # SQLAlchemy's default PostgreSQL driver is psycopg2; use psycopg 3 when only that one is installed
    if (parsed.drivername in ("postgresql", "postgres") and importlib.util.find_spec("psycopg2") is None
            and importlib.util.find_spec("psycopg") is not None):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


__all__ = ["parse_db_url"]
