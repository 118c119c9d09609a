"""The events ``visor watch`` raised, kept in the service database (:class:`~visor.serve.db.EventRow`).

``visor watch`` adds each event with its annotated snapshot; the service lists them
(``GET /v1/events``) and serves the snapshots (``GET /v1/events/{id}/snapshot``).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import undefer

from visor.errors import InvalidInput, VisorError
from visor.serve.db import EventRow, ServiceDB

__all__ = ["MAX_SNAPSHOT_BYTES", "EventNotFound", "EventStore"]

log = logging.getLogger("visor.serve")

#: Snapshots larger than this are not stored (the event is).
MAX_SNAPSHOT_BYTES = 2 * 1024 * 1024
#: The most events one :meth:`EventStore.list` call returns.
MAX_LIST = 1000


class EventNotFound(VisorError, LookupError):
    """No event (or no snapshot) has that id (HTTP 404)."""

    http_status = 404
    code = "event_not_found"


def _iso(value: Any) -> str | None:
    return None if value is None else value.isoformat()


def _row_dict(row: EventRow, has_snapshot: bool) -> dict[str, Any]:
    return {
        "id": row.id, "rule": row.rule, "kind": row.kind, "class_name": row.class_name,
        "tracker_id": int(row.tracker_id), "frame": int(row.frame), "timestamp_s": row.timestamp_s,
        "time": _iso(row.created), "source": row.source, "zone": row.zone, "line": row.line,
        "direction": row.direction, "confidence": float(row.confidence), "box": json.loads(row.box),
        "snapshot": has_snapshot,
    }


class EventStore:
    """Watch events in the service database: ``db`` is a :class:`ServiceDB` (shared, left open by
    :meth:`close`), a database URL or path, or None for the default service database (owned, closed by
    :meth:`close`)."""

    def __init__(self, db: ServiceDB | str | os.PathLike | None = None) -> None:
        self._owned = not isinstance(db, ServiceDB)
        self.db = db if isinstance(db, ServiceDB) else ServiceDB(None if db is None else os.fspath(db))

    def add(self, event: Any, snapshot: bytes | None = None) -> bool:
        """Store ``event`` (a :class:`visor.video.rules.Event`) and its JPEG ``snapshot``; a snapshot over
        :data:`MAX_SNAPSHOT_BYTES` is left out. Returns False (and stores nothing) when the id is already
        stored."""
        if snapshot is not None and len(snapshot) > MAX_SNAPSHOT_BYTES:
            log.warning("event %s: snapshot of %d bytes over the %d byte limit, not stored", event.id,
                        len(snapshot), MAX_SNAPSHOT_BYTES)
            snapshot = None
        row = EventRow(
            id=str(event.id), rule=str(event.rule), kind=str(event.kind), class_name=str(event.class_name),
            tracker_id=int(event.tracker_id), frame=int(event.frame),
            timestamp_s=None if event.timestamp_s is None else float(event.timestamp_s), created=event.time,
            source=str(event.source), zone=event.zone, line=event.line, direction=event.direction,
            confidence=float(event.confidence), box=json.dumps([float(v) for v in event.box]),
            snapshot=None if snapshot is None else bytes(snapshot),
        )
        with self.db.session() as s:
            if s.get(EventRow, row.id) is not None:
                return False
            s.add(row)
        return True

    def list(self, limit: int = 100, rule: str | None = None) -> list[dict[str, Any]]:
        """Up to ``limit`` events (of ``rule`` only, when given), newest first, as JSON-safe dicts
        (``"snapshot"``: whether one is stored)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIST:
            raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIST}, got {limit!r}")
        query = (select(EventRow, EventRow.snapshot.is_not(None))
                 .order_by(EventRow.created.desc(), EventRow.frame.desc(), EventRow.id).limit(limit))
        if rule is not None:
            query = query.where(EventRow.rule == rule)
        with self.db.session(write=False) as s:
            return [_row_dict(row, bool(has)) for row, has in s.execute(query).all()]

    def snapshot(self, event_id: str) -> bytes | None:
        """The event's JPEG snapshot; None when there is no such event or it has none."""
        with self.db.session(write=False) as s:
            row = s.scalar(select(EventRow).where(EventRow.id == str(event_id)).options(undefer(EventRow.snapshot)))
            return None if row is None or row.snapshot is None else bytes(row.snapshot)

    def count(self) -> int:
        """How many events are stored."""
        with self.db.session(write=False) as s:
            return s.scalar(select(func.count()).select_from(EventRow)) or 0

    def close(self) -> None:
        """Close the database if this store opened it."""
        if self._owned:
            self.db.close()

    def __call__(self, event: Any, snapshot: bytes | None) -> None:
        """A ``watch`` sink: :meth:`add`."""
        self.add(event, snapshot)

    def __enter__(self) -> EventStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EventStore({self.db.url!r})"
