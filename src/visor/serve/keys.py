"""API keys: created once, shown once, stored only as a SHA-256 hash.

A key is ``visor_`` followed by 43 URL-safe characters (:func:`secrets.token_urlsafe` of 32
bytes). The table keeps its SHA-256 (hex) and, for display, its first 12 characters.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from visor.config import suggest
from visor.errors import InvalidInput, VisorError
from visor.serve.db import ApiKeyRow, ServiceDB, utcnow

__all__ = ["KEY_PREFIX", "ApiKey", "KeyExists", "KeyNotFound", "KeyStore", "hash_key"]

KEY_PREFIX = "visor_"
#: Characters of the key kept in clear for display (``visor_`` and 6 more).
DISPLAY_CHARS = 12
MAX_NAME = 255


class KeyExists(VisorError):
    """An active key already has that name (HTTP 409)."""

    http_status = 409
    code = "key_exists"


class KeyNotFound(VisorError, LookupError):
    """No active key has that name (HTTP 404)."""

    http_status = 404
    code = "key_not_found"


@dataclass(frozen=True)
class ApiKey:
    """A key's public record (never the key itself)."""

    id: int
    name: str
    prefix: str
    created_at: datetime
    revoked: bool

    def to_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "prefix": self.prefix,
                "created_at": self.created_at.isoformat(), "revoked": self.revoked}


def hash_key(key: str) -> str:
    """The SHA-256 hex digest stored for ``key``."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _record(row: ApiKeyRow) -> ApiKey:
    return ApiKey(row.id, row.name, row.prefix, row.created_at, row.revoked_at is not None)


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput("a key needs a non-empty name")
    name = name.strip()
    if len(name) > MAX_NAME:
        raise InvalidInput(f"a key name has at most {MAX_NAME} characters, got {len(name)}")
    if not name.isprintable():
        raise InvalidInput(f"a key name must be printable text, got {name!r}")
    return name


class KeyStore:
    """Create, verify, list and revoke the API keys of a :class:`ServiceDB`."""

    def __init__(self, db: ServiceDB) -> None:
        self.db = db

    def create(self, name: str) -> tuple[ApiKey, str]:
        """A new key called ``name``: its record and the plaintext, which is not stored anywhere.

        Raises KeyExists if an active key has that name (a revoked one is replaced).
        """
        name = _check_name(name)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        try:
            with self.db.session() as s:
                # FOR UPDATE (PostgreSQL): a concurrent create of this name waits, then finds the old row gone
                old = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name).with_for_update())
                if old is not None:
                    if old.revoked_at is None:
                        raise KeyExists(f"a key named {name!r} already exists; revoke it first or pick another name")
                    s.delete(old)
                    s.flush()
                row = ApiKeyRow(name=name, prefix=key[:DISPLAY_CHARS], key_sha256=hash_key(key), created_at=utcnow())
                s.add(row)
                s.flush()
                record = _record(row)
        except IntegrityError:  # created concurrently under the same name
            raise KeyExists(f"a key named {name!r} already exists") from None
        return record, key

    def verify(self, key: str | None) -> ApiKey | None:
        """The key's record, or None when ``key`` is missing, unknown or revoked."""
        if not key or not isinstance(key, str):
            return None
        digest = hash_key(key)
        with self.db.session(write=False) as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_sha256 == digest))
            if row is None or not hmac.compare_digest(row.key_sha256, digest) or row.revoked_at is not None:
                return None
            return _record(row)

    def list(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first."""
        with self.db.session(write=False) as s:
            return [_record(r) for r in s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id))]

    def revoke(self, name: str) -> ApiKey:
        """Revoke the key called ``name`` (again: no change). Raises KeyNotFound."""
        with self.db.session() as s:
            row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.name == name))
            if row is None:
                names = s.scalars(select(ApiKeyRow.name)).all()
                raise KeyNotFound(f"no key named {name!r}.{suggest(name, names)}".rstrip("."))
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            s.flush()
            return _record(row)

    def count_active(self) -> int:
        with self.db.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(ApiKeyRow).where(ApiKeyRow.revoked_at.is_(None))) or 0
