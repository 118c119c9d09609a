"""Watch rules: when a tracked object fires an event, and the rules file that defines them.

A rule has one of three kinds:

- **zone** (``zone:`` set): fires when a track of the rule's classes has been inside the zone for
  ``min_frames`` consecutive processed frames;
- **line** (``line:`` set): fires when a track of the rule's classes crosses the line (``direction``: only
  "in" or "out" crossings, as :mod:`visor.video.analytics` defines them; None: both), once the track has
  been seen for ``min_frames`` consecutive frames;
- **presence** (neither): fires when a track of the rule's classes has been seen for ``min_frames``
  consecutive frames.

Cooldown: a rule fires at most once per track per ``cooldown_s`` seconds (``clock``, wall time by default),
and a zone or presence rule at most once per stay (the track must leave, or the streak break, before it
can fire again); after a suppressed start it fires once ``cooldown_s`` has passed if the track is still
there. ``rule_cooldown_s`` (default 0: none) also spaces any two events of one rule, whatever the track,
against floods in a crowd. A scene cut (``TrackedFrame.scene_cut``) clears the streaks; tracker ids are
never reused after a cut, so per-track cooldowns stay as they are.

The rules file (YAML or JSON) holds the zones and lines of :func:`visor.video.analytics.parse_zones` plus::

    rules:
      - name: person-in-yard
        zone: yard
        classes: [person]
        min_frames: 5
        cooldown_s: 60
    webhook: {url: "https://example.net/hook", secret_env: VISOR_WEBHOOK_SECRET}
    mqtt: {host: broker.local, topic: visor/events, username: visor, password_env: VISOR_MQTT_PASSWORD}
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from visor.config import check_keys, from_mapping
from visor.errors import ConfigError, ImageNotFound
from visor.video.mqtt import MqttConfig
from visor.video.webhook import WebhookConfig

if TYPE_CHECKING:
    from visor.video.analytics import ZoneConfig
    from visor.video.track import TrackedFrame

MAX_RULES_BYTES = 1024 * 1024
"""The largest rules file read."""

DIRECTIONS = ("in", "out")
ZONE_KEYS = ("anchor", "zones", "lines")
"""Top-level keys of a rules file that belong to the zones part (:func:`visor.video.analytics.parse_zones`)."""
WATCH_KEYS = ("rules", "webhook", "mqtt")
_RULE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,63}$")


@dataclass(frozen=True)
class Rule:
    """When an event fires (see the module docstring). ``name`` is used in MQTT topics and URLs: letters,
    digits, ``_ . -``, at most 64 characters."""

    name: str
    classes: tuple[str, ...] | None = None
    zone: str | None = None
    line: str | None = None
    direction: str | None = None
    min_frames: int = 1
    cooldown_s: float = 30.0
    rule_cooldown_s: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _RULE_NAME.match(self.name):
            raise ConfigError(f"rule name {self.name!r} must be 1-64 letters, digits, '_', '.' or '-'")
        where = f"rule {self.name!r}"
        if self.classes is not None:
            if isinstance(self.classes, str) or not isinstance(self.classes, Iterable):
                raise ConfigError(f"{where}: classes must be a list of class names")
            classes = tuple(self.classes)
            if not classes or not all(isinstance(c, str) and c for c in classes):
                raise ConfigError(f"{where}: classes must be a non-empty list of class names")
            object.__setattr__(self, "classes", classes)
        for key in ("zone", "line"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigError(f"{where}: {key} must be a name")
        if self.zone is not None and self.line is not None:
            raise ConfigError(f"{where}: give a zone or a line, not both")
        if self.direction is not None:
            if self.direction not in DIRECTIONS:
                raise ConfigError(f"{where}: direction must be 'in' or 'out', got {self.direction!r}")
            if self.line is None:
                raise ConfigError(f"{where}: direction needs a line")
        if isinstance(self.min_frames, bool) or not isinstance(self.min_frames, int) or self.min_frames < 1:
            raise ConfigError(f"{where}: min_frames must be an integer >= 1, got {self.min_frames!r}")
        for key in ("cooldown_s", "rule_cooldown_s"):
            value = getattr(self, key)
            if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
                    or value < 0):
                raise ConfigError(f"{where}: {key} must be a number >= 0, got {value!r}")

    @property
    def kind(self) -> str:
        """``"zone"``, ``"line"`` or ``"presence"``."""
        return "zone" if self.zone is not None else "line" if self.line is not None else "presence"

    def matches(self, class_name: str) -> bool:
        return self.classes is None or class_name in self.classes


@dataclass(frozen=True)
class WatchConfig:
    """A rules file: the zones and lines, the rules, and where events go."""

    zones: ZoneConfig
    rules: tuple[Rule, ...]
    webhook: WebhookConfig | None = None
    mqtt: MqttConfig | None = None


@dataclass(frozen=True)
class Event:
    """One firing of a rule. ``id`` is a uuid4 hex; ``frame`` / ``timestamp_s`` place it in the source,
    ``time`` (UTC) in the world; ``box`` is the track's box (x1, y1, x2, y2 pixels) in that frame."""

    id: str
    rule: str
    kind: str
    class_name: str
    tracker_id: int
    frame: int
    timestamp_s: float | None
    time: datetime
    source: str
    zone: str | None
    line: str | None
    direction: str | None
    confidence: float
    box: tuple[float, float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe: ``time`` as ISO-8601 with its UTC offset, numbers as plain ints and floats."""
        return {
            "id": self.id, "rule": self.rule, "kind": self.kind, "class_name": self.class_name,
            "tracker_id": int(self.tracker_id), "frame": int(self.frame),
            "timestamp_s": None if self.timestamp_s is None else round(float(self.timestamp_s), 6),
            "time": self.time.isoformat(), "source": self.source, "zone": self.zone, "line": self.line,
            "direction": self.direction, "confidence": round(float(self.confidence), 6),
            "box": [round(float(v), 3) for v in self.box],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """The inverse of :meth:`to_dict`."""
        values = dict(d)
        values["time"] = datetime.fromisoformat(values["time"])
        values["box"] = tuple(float(v) for v in values["box"])
        return cls(**values)


# --------------------------------------------------------------------------- the rules file


def parse_rules(doc: Mapping[str, Any], *, source: str = "<rules>") -> WatchConfig:
    """A :class:`WatchConfig` from a parsed rules document: unknown keys, bad values and rules naming a zone
    or line the file does not define raise :class:`ConfigError`."""
    from visor.video.analytics import parse_zones

    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: the rules file must be a mapping, got {type(doc).__name__}")
    check_keys(doc, (*ZONE_KEYS, *WATCH_KEYS), source)
    zones = parse_zones({k: v for k, v in doc.items() if k not in WATCH_KEYS}, source=source)
    items = doc.get("rules")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{source}: 'rules' must be a non-empty list of rules")
    zone_names = {z.name for z in zones.zones}
    line_names = {ln.name for ln in zones.lines}
    rules: list[Rule] = []
    for i, item in enumerate(items):
        where = f"{source}: rules[{i}]"
        if isinstance(item, Mapping) and isinstance(item.get("classes"), list):
            item = {**item, "classes": tuple(item["classes"])}
        try:
            rule = from_mapping(Rule, item, where)
        except ConfigError as e:
            raise ConfigError(str(e) if where in str(e) else f"{where}: {e}") from None
        if rule.zone is not None and rule.zone not in zone_names:
            raise ConfigError(f"{where}: rule {rule.name!r} names zone {rule.zone!r}, which is not defined."
                              f"{_suggest(rule.zone, zone_names)}")
        if rule.line is not None and rule.line not in line_names:
            raise ConfigError(f"{where}: rule {rule.name!r} names line {rule.line!r}, which is not defined."
                              f"{_suggest(rule.line, line_names)}")
        if any(r.name == rule.name for r in rules):
            raise ConfigError(f"{where}: two rules are named {rule.name!r}")
        rules.append(rule)
    webhook = _section(WebhookConfig, doc.get("webhook"), f"{source}: webhook")
    mqtt = _section(MqttConfig, doc.get("mqtt"), f"{source}: mqtt")
    return WatchConfig(zones=zones, rules=tuple(rules), webhook=webhook, mqtt=mqtt)


def _suggest(name: str, options: Iterable[str]) -> str:
    from visor.config import suggest

    return suggest(name, sorted(options)) or (f" Defined: {', '.join(sorted(options))}." if options else "")


def _section(cls: type, value: Any, where: str) -> Any:
    if value is None:
        return None
    try:
        return from_mapping(cls, value, where)
    except ConfigError as e:
        raise ConfigError(str(e) if where in str(e) else f"{where}: {e}") from None


def load_rules(path: str | Path) -> WatchConfig:
    """Read a rules file (``.yaml`` / ``.yml`` or ``.json``, at most 1 MiB) through the zones file reader
    (:func:`visor.video.analytics.load_document`: safe YAML without aliases, nesting capped)."""
    from visor.video.analytics import load_document

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise ImageNotFound(f"rules file not found: {path}")
    doc = load_document(path, what="rules file", max_bytes=MAX_RULES_BYTES)
    return parse_rules(doc, source=str(path))


# --------------------------------------------------------------------------- the engine


@dataclass
class _State:
    streak: int = 0
    fired_this_stay: bool = False


@dataclass
class _RuleState:
    tracks: dict[int, _State] = field(default_factory=dict)
    last_fired: dict[int, float] = field(default_factory=dict)  # tracker id -> clock of its last event
    last_any: float | None = None


class RuleEngine:
    """Turns tracked frames into events. ``update`` takes one :class:`~visor.video.track.TrackedFrame`
    (detections with ``data["tracker_id"]`` and ``data["class_name"]``, the frame's analytics for zone and
    line rules) and returns the events that fire on it. ``source`` names the video or stream in each event
    (give it redacted); ``labels`` names classes when the detections carry no ``class_name``."""

    def __init__(self, rules: Sequence[Rule], *, source: str = "", clock: Callable[[], float] = time.monotonic,
                 labels: Sequence[str] = ()) -> None:
        self.rules = tuple(rules)
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ConfigError("two rules have the same name")
        self.source = source
        self.labels = tuple(labels)
        self._clock = clock
        self._state = {r.name: _RuleState() for r in self.rules}

    def reset(self) -> None:
        """Forget every streak (a scene cut); cooldowns stay (tracker ids are not reused)."""
        for state in self._state.values():
            state.tracks.clear()

    def update(self, tracked: TrackedFrame) -> list[Event]:
        """The events that fire on this frame, in rule order."""
        if getattr(tracked, "scene_cut", False):
            self.reset()
        now = self._clock()
        tracks = self._tracks(tracked.detections)
        analytics = getattr(tracked, "analytics", None)
        events: list[Event] = []
        for rule in self.rules:
            state = self._state[rule.name]
            self._expire(rule, state, now)
            if rule.kind == "line":
                seen = {tid for tid, t in tracks.items() if rule.matches(t[0])}
                self._advance(state, seen)
                crossings = getattr(analytics, "crossings", ()) if analytics is not None else ()
                for c in crossings:
                    tid = int(c.tracker_id)
                    if c.line != rule.line or (rule.direction is not None and c.direction != rule.direction):
                        continue
                    class_name = tracks[tid][0] if tid in tracks else str(c.class_name)
                    if not rule.matches(class_name):
                        continue
                    if state.tracks.get(tid, _State()).streak < rule.min_frames:
                        continue
                    if self._cooling(rule, state, tid, now):
                        continue
                    events.append(self._event(rule, tracked, tid, tracks, class_name, direction=c.direction))
                    self._fired(state, tid, now)
                continue
            if rule.kind == "zone":
                members = getattr(analytics, "members", {}) if analytics is not None else {}
                inside = {int(t) for t in members.get(rule.zone, ())}
                seen = {tid for tid in inside if tid in tracks and rule.matches(tracks[tid][0])}
            else:
                seen = {tid for tid, t in tracks.items() if rule.matches(t[0])}
            self._advance(state, seen)
            for tid in sorted(seen):
                track = state.tracks[tid]
                if track.fired_this_stay or track.streak < rule.min_frames or self._cooling(rule, state, tid, now):
                    continue
                events.append(self._event(rule, tracked, tid, tracks, tracks[tid][0], direction=None))
                self._fired(state, tid, now)
                track.fired_this_stay = True
        return events

    # ------------------------------------------------------------------ helpers

    def _tracks(self, detections: Any) -> dict[int, tuple[str, float, tuple[float, float, float, float]]]:
        """tracker id -> (class name, confidence, box) for the detections that carry a tracker id."""
        data = getattr(detections, "data", {}) or {}
        ids = data.get("tracker_id")
        if ids is None or not len(ids):
            return {}
        names = data.get("class_name")
        class_ids = np.asarray(detections.class_id)
        conf = np.asarray(detections.confidence, dtype=np.float64)
        xyxy = np.asarray(detections.xyxy, dtype=np.float64).reshape(-1, 4)
        out = {}
        for i, tid in enumerate(np.asarray(ids)):
            if names is not None:
                name = str(names[i])
            else:
                k = int(class_ids[i])
                name = self.labels[k] if 0 <= k < len(self.labels) else str(k)
            box = tuple(round(float(v), 3) for v in xyxy[i])  # as in JSON, so that events round-trip
            out[int(tid)] = (name, round(float(conf[i]), 6), box)
        return out

    @staticmethod
    def _advance(state: _RuleState, seen: set[int]) -> None:
        """Count one more frame for the tracks in ``seen``; forget the others (their streak broke)."""
        for tid in [t for t in state.tracks if t not in seen]:
            del state.tracks[tid]
        for tid in seen:
            state.tracks.setdefault(tid, _State()).streak += 1

    @staticmethod
    def _expire(rule: Rule, state: _RuleState, now: float) -> None:
        """Drop cooldowns that have passed, so the table stays as small as the tracks seen lately."""
        for tid in [t for t, at in state.last_fired.items() if now - at >= rule.cooldown_s]:
            del state.last_fired[tid]

    @staticmethod
    def _cooling(rule: Rule, state: _RuleState, tid: int, now: float) -> bool:
        at = state.last_fired.get(tid)
        if at is not None and now - at < rule.cooldown_s:
            return True
        return state.last_any is not None and now - state.last_any < rule.rule_cooldown_s

    @staticmethod
    def _fired(state: _RuleState, tid: int, now: float) -> None:
        state.last_fired[tid] = now
        state.last_any = now

    def _event(self, rule: Rule, tracked: TrackedFrame, tid: int, tracks: dict, class_name: str, *,
               direction: str | None) -> Event:
        _, confidence, box = tracks.get(tid, (class_name, 0.0, (0.0, 0.0, 0.0, 0.0)))
        return Event(id=uuid.uuid4().hex, rule=rule.name, kind=rule.kind, class_name=class_name, tracker_id=tid,
                     frame=int(tracked.index), timestamp_s=tracked.timestamp_s, time=datetime.now(UTC),
                     source=self.source, zone=rule.zone, line=rule.line, direction=direction,
                     confidence=confidence, box=box)


__all__ = ["Event", "Rule", "RuleEngine", "WatchConfig", "load_rules", "parse_rules"]
