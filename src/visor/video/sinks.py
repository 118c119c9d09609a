"""What an event sink (the webhook, MQTT, the service's event store) takes of a :class:`visor.video.rules.Event`.

A protocol, so that the sinks need not import ``rules`` (which imports their configurations).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol


class EventLike(Protocol):
    """An event as the sinks use it: its id, its rule, and its JSON document."""

    id: str
    rule: str

    def to_dict(self) -> dict[str, Any]: ...


#: A sink: called with each event and its annotated snapshot (JPEG bytes, or None).
Sink = Callable[[EventLike, "bytes | None"], None]
