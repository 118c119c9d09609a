"""The prediction log: one row per image the service answered, kept for a retention period."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select

from visor.errors import InvalidInput
from visor.serve.db import PredictionRow, ServiceDB, utcnow

__all__ = ["PredictionLog"]


class PredictionLog:
    """Log predictions in a :class:`ServiceDB` and purge the old ones."""

    def __init__(self, db: ServiceDB) -> None:
        self.db = db

    def log(self, *, route: str, model: str, image_sha256: str, result: dict[str, Any], latency_ms: float,
            key_name: str | None) -> None:
        """Record one answered image: its route, model, image hash, result JSON, latency and API key name."""
        row = PredictionRow(created_at=utcnow(), route=route, model=model, image_sha256=image_sha256,
                            result=json.dumps(result), latency_ms=float(latency_ms), key_name=key_name)
        with self.db.session() as s:
            s.add(row)

    def purge(self, older_than: timedelta) -> int:
        """Delete the rows logged more than ``older_than`` ago; returns how many."""
        if not isinstance(older_than, timedelta) or older_than < timedelta(0):
            raise InvalidInput(f"retention must be a non-negative timedelta, got {older_than!r}")
        cutoff = utcnow() - older_than
        with self.db.session() as s:
            result = s.execute(delete(PredictionRow).where(PredictionRow.created_at < cutoff))
            return int(result.rowcount or 0)

    def count(self) -> int:
        with self.db.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(PredictionRow)) or 0
