"""Zones and lines over tracked detections: objects inside, dwell time, entries, line crossings in and out.

A zone is a polygon in image pixels, a line a directed segment ``start -> end``; each may be limited to
some classes. Each detection is tested at one point of its box, the *anchor* (``bottom_center``: where
an object stands, the default; or ``center``).

Line crossings. Each track's side of each line (the sign of the cross product ``(end - start) x
(anchor - start)``) is remembered, with the last anchor seen on that side. A crossing is counted when
the anchor is next seen strictly on the other side (further than the line's ``margin`` pixels) and
the step from the remembered anchor to the new one passes through the segment, not the line's
extension. Anchors on the line (within ``margin``) change nothing, so jitter on it counts nothing;
going back across counts the other direction. **"in"** is a move from the left of the directed line
to its right, as seen walking from ``start`` to ``end`` on the image (y pointing down): across a line
drawn left to right, moving down is "in"; across a line drawn top to bottom, moving right to left.

Zones. A *visit* starts when a track's anchor is first seen inside a zone (counted once in
``entries``, under the class it has then) and ends when it is seen outside, when the track is gone
for ``lost_after`` updates, or at :meth:`Analytics.reset`. A track missing for a few frames
(occluded) stays in its visit but is not counted as inside in those frames. Dwell is the time from
the first to the latest frame the track was seen inside: frame timestamps when given, else frame
index / ``fps``, else frame indices (the "seconds" are then frames).

Zone and line files (YAML or JSON, :func:`load_zones`)::

    anchor: bottom_center          # optional: bottom_center | center
    zones:
      - name: yard
        polygon: [[10, 10], [300, 10], [300, 200], [10, 200]]
        classes: [person]          # optional; all classes when absent
    lines:
      - name: gate
        start: [320, 0]
        end: [320, 272]
        classes: [person, bicycle] # optional
        margin: 2                  # optional: pixels either side that count as on the line (default 0)
"""

from __future__ import annotations

import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from visor.config import check_keys, json_depth, parse_json, suggest
from visor.errors import ConfigError, InvalidInput
from visor.types.detections import Detections

ANCHORS = ("bottom_center", "center")
"""Points of a box that zones and lines test."""

MAX_ZONES_BYTES = 1 << 20
"""Largest zones file :func:`load_zones` reads."""

ZONE_KEYS = ("anchor", "zones", "lines")
"""The top-level keys :func:`parse_zones` reads (a larger file, such as watch rules, can pass just these)."""

_ZONE_FIELDS, _ZONE_REQUIRED = ("name", "polygon", "classes"), ("name", "polygon")
_LINE_FIELDS, _LINE_REQUIRED = ("name", "start", "end", "classes", "margin"), ("name", "start", "end")
_SUFFIXES = (".yaml", ".yml", ".json")


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def _point(value: Any, what: str) -> tuple[float, float]:
    """``[x, y]`` as two finite floats, or ConfigError naming ``what``."""
    if (
        isinstance(value, (str, bytes, Mapping))
        or not isinstance(value, (Sequence, np.ndarray))
        or len(value) != 2
        or not all(_is_number(v) for v in value)
    ):
        raise ConfigError(f"{what} must be an [x, y] pair of numbers, got {value!r}")
    x, y = float(value[0]), float(value[1])
    if not (math.isfinite(x) and math.isfinite(y)):
        raise ConfigError(f"{what} must be finite, got {value!r}")
    return x, y


def _classes(value: Any, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ConfigError(f"{what}: classes must be a list of class names, got {value!r}")
    if not len(value):
        raise ConfigError(f"{what}: classes is empty (leave it out to count every class)")
    for c in value:
        if not isinstance(c, str) or not c.strip():
            raise ConfigError(f"{what}: class names must be non-empty strings, got {c!r}")
    return tuple(dict.fromkeys(value))


def _name(value: Any, kind: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{kind} name must be a non-empty string, got {value!r}")
    return value


@dataclass(frozen=True)
class Zone:
    """A polygon in image pixels (``(K, 2)`` float64, K >= 3, non-zero area), optionally for some classes only.

    The polygon's inside follows the even-odd rule (a self-crossing outline leaves holes).
    """

    name: str
    polygon: np.ndarray
    classes: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        name = _name(self.name, "zone")
        what = f"zone {name!r}"
        poly = self.polygon
        if isinstance(poly, np.ndarray):
            if poly.dtype.kind not in "iuf" or poly.ndim != 2 or poly.shape[1] != 2:
                raise ConfigError(f"{what}: polygon must be a (K, 2) array of numbers, got {poly.dtype} {poly.shape}")
            arr = np.array(poly, dtype=np.float64)
            if not np.isfinite(arr).all():
                raise ConfigError(f"{what}: polygon points must be finite")
        else:
            if isinstance(poly, (str, bytes, Mapping)) or not isinstance(poly, Sequence):
                raise ConfigError(f"{what}: polygon must be a list of [x, y] points, got {poly!r}")
            arr = np.array([_point(p, f"{what}: polygon point {i}") for i, p in enumerate(poly)],
                           dtype=np.float64).reshape(-1, 2)
        if len(arr) < 3:
            raise ConfigError(f"{what}: polygon needs at least 3 points, got {len(arr)}")
        x, y = arr[:, 0], arr[:, 1]
        if np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)) == 0:
            raise ConfigError(f"{what}: polygon has zero area")
        arr.flags.writeable = False
        object.__setattr__(self, "polygon", arr)
        object.__setattr__(self, "classes", _classes(self.classes, what))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Zone):
            return NotImplemented
        return (self.name, self.classes) == (other.name, other.classes) and np.array_equal(self.polygon, other.polygon)

    def __hash__(self) -> int:
        return hash((self.name, self.classes, self.polygon.tobytes()))

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Which of the ``(N, 2)`` points lie inside (ray casting, vectorised); ``(N,)`` bool."""
        return points_in_polygon(points, self.polygon)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "polygon": self.polygon.tolist()}
        if self.classes is not None:
            d["classes"] = list(self.classes)
        return d


@dataclass(frozen=True)
class Line:
    """A directed segment ``start -> end`` in image pixels, optionally for some classes only.

    ``margin``: anchors closer to the line than this many pixels count as on it (no side), so an
    object must move more than ``margin`` past the line to cross it.
    """

    name: str
    start: tuple[float, float]
    end: tuple[float, float]
    classes: tuple[str, ...] | None = None
    margin: float = 0.0

    def __post_init__(self) -> None:
        name = _name(self.name, "line")
        what = f"line {name!r}"
        start, end = _point(self.start, f"{what}: start"), _point(self.end, f"{what}: end")
        if start == end:
            raise ConfigError(f"{what}: start and end are the same point {list(start)}")
        if not _is_number(self.margin) or not math.isfinite(self.margin) or self.margin < 0:
            raise ConfigError(f"{what}: margin must be a number >= 0, got {self.margin!r}")
        object.__setattr__(self, "start", start)
        object.__setattr__(self, "end", end)
        object.__setattr__(self, "margin", float(self.margin))
        object.__setattr__(self, "classes", _classes(self.classes, what))

    def side(self, points: np.ndarray) -> np.ndarray:
        """``(N,)`` int8: +1 right of the directed line, -1 left, 0 within ``margin`` of it (see the module doc)."""
        (sx, sy), (ex, ey) = self.start, self.end
        dx, dy = ex - sx, ey - sy
        dist = (dx * (points[:, 1] - sy) - dy * (points[:, 0] - sx)) / math.hypot(dx, dy)
        return np.where(dist > self.margin, 1, np.where(dist < -self.margin, -1, 0)).astype(np.int8)

    def passes_through(self, p: np.ndarray, q: np.ndarray) -> bool:
        """Whether the step ``p -> q`` (points on opposite sides) meets the line within the segment."""
        a, b = np.asarray(self.start), np.asarray(self.end)
        d = b - a
        cp = d[0] * (p[1] - a[1]) - d[1] * (p[0] - a[0])
        cq = d[0] * (q[1] - a[1]) - d[1] * (q[0] - a[0])
        if cp == cq:
            return False
        x = p + (q - p) * (cp / (cp - cq))
        t = float(np.dot(x - a, d) / np.dot(d, d))
        return 0.0 <= t <= 1.0

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "start": list(self.start), "end": list(self.end)}
        if self.classes is not None:
            d["classes"] = list(self.classes)
        if self.margin:
            d["margin"] = self.margin
        return d


def _unique(names: Sequence[str], kind: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise ConfigError(f"{kind} name {n!r} is used twice")
        seen.add(n)


@dataclass(frozen=True)
class ZoneConfig:
    """The zones and lines of one camera view, and the anchor point of a box that they test."""

    zones: tuple[Zone, ...] = ()
    lines: tuple[Line, ...] = ()
    anchor: str = "bottom_center"

    def __post_init__(self) -> None:
        object.__setattr__(self, "zones", tuple(self.zones))
        object.__setattr__(self, "lines", tuple(self.lines))
        if any(not isinstance(z, Zone) for z in self.zones) or any(not isinstance(li, Line) for li in self.lines):
            raise ConfigError("ZoneConfig takes Zone and Line objects")
        if self.anchor not in ANCHORS:
            raise ConfigError(f"anchor must be one of {', '.join(map(repr, ANCHORS))}, got {self.anchor!r}."
                              f"{suggest(str(self.anchor), ANCHORS)}")
        _unique([z.name for z in self.zones], "zone")
        _unique([li.name for li in self.lines], "line")

    @property
    def classes(self) -> set[str]:
        """Every class a zone or line names."""
        return {c for item in (*self.zones, *self.lines) for c in (item.classes or ())}

    def check_classes(self, labels: Sequence[str]) -> None:
        """Raise ConfigError for a zone or line naming a class that ``labels`` (the detector's) lacks."""
        known = set(labels)
        for kind, items in (("zone", self.zones), ("line", self.lines)):
            for item in items:
                for c in item.classes or ():
                    if c not in known:
                        raise ConfigError(f"{kind} {item.name!r}: the model has no class {c!r}.{suggest(c, labels)}")

    def anchors(self, xyxy: np.ndarray) -> np.ndarray:
        """``(N, 2)`` float64 anchor points of ``(N, 4)`` boxes."""
        b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
        cx = (b[:, 0] + b[:, 2]) / 2
        y = b[:, 3] if self.anchor == "bottom_center" else (b[:, 1] + b[:, 3]) / 2
        return np.stack([cx, y], axis=1)

    def to_dict(self) -> dict[str, Any]:
        return {"anchor": self.anchor, "zones": [z.to_dict() for z in self.zones],
                "lines": [li.to_dict() for li in self.lines]}


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd ray casting: which ``(N, 2)`` points are inside the ``(K, 2)`` polygon; ``(N,)`` bool."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, :1], pts[:, 1:]  # (N, 1)
    x1, y1 = polygon[:, 0], polygon[:, 1]  # (K,)
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    straddles = (y1 > y) != (y2 > y)  # (N, K): the edge spans the point's height (horizontal edges never do)
    dy = np.where(y2 == y1, 1.0, y2 - y1)
    x_cross = x1 + (y - y1) * (x2 - x1) / dy
    return (np.count_nonzero(straddles & (x < x_cross), axis=1) % 2) == 1


def _items(doc: Mapping[str, Any], key: str, source: str) -> list[Mapping[str, Any]]:
    value = doc.get(key)
    if value is None:
        return []
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigError(f"{source}: {key!r} must be a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, Mapping):
            raise ConfigError(f"{source}: {key}[{i}] must be a mapping, got {type(item).__name__}")
    return list(value)


def parse_zones(doc: Mapping[str, Any], *, source: str = "<zones>") -> ZoneConfig:
    """Build a :class:`ZoneConfig` from a parsed zones document (format in the module doc).

    Strict: unknown keys, missing names, bad geometry, duplicate names or an unknown anchor raise
    :class:`ConfigError` naming ``source`` and the zone or line.
    """
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{source}: expected a mapping with 'zones' and/or 'lines', got {type(doc).__name__}")
    check_keys(doc, ZONE_KEYS, source)
    built: dict[str, list[Any]] = {"zones": [], "lines": []}
    kinds = (("zones", Zone, _ZONE_FIELDS, _ZONE_REQUIRED), ("lines", Line, _LINE_FIELDS, _LINE_REQUIRED))
    for key, cls, fields, required in kinds:
        for i, item in enumerate(_items(doc, key, source)):
            label = repr(item["name"]) if isinstance(item.get("name"), str) else f"[{i}]"
            where = f"{source}: {key[:-1]} {label}"
            check_keys(item, fields, where)
            missing = [f for f in required if f not in item]
            if missing:
                raise ConfigError(f"missing key(s) {', '.join(map(repr, missing))} in {where}")
            try:
                built[key].append(cls(**item))
            except ConfigError as e:
                raise ConfigError(f"{source}: {e}") from None
    try:
        return ZoneConfig(tuple(built["zones"]), tuple(built["lines"]), doc.get("anchor", "bottom_center"))
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None


def _yaml_loader() -> type:
    import yaml

    class _NoAliasLoader(yaml.SafeLoader):
        """SafeLoader refusing aliases, which could expand a small file into a huge document."""

        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                raise ConfigError("YAML aliases (*name) are not supported in zone files")
            return super().compose_node(parent, index)

    return _NoAliasLoader


def load_document(path: str | os.PathLike, *, what: str = "zones file", max_bytes: int = MAX_ZONES_BYTES) -> Any:
    """Read a small YAML (``.yaml`` / ``.yml``) or JSON (``.json``) file; every failure is a :class:`ConfigError`.

    At most ``max_bytes``; nesting at most 64 deep; YAML through a safe loader without aliases.
    """
    path = Path(path)
    if path.suffix.lower() not in _SUFFIXES:
        raise ConfigError(f"{what} {path} must be .yaml, .yml or .json")
    try:
        if not path.is_file():  # a FIFO or a device would block or never end
            raise ConfigError(f"no {what} at {path}" if not path.exists() else f"{what} {path} is not a file")
        with open(path, "rb") as f:
            raw = f.read(max_bytes + 1)
    except OSError as e:
        raise ConfigError(f"cannot read {what} {path}: {e.strerror or e}") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{what} {path} is larger than {max_bytes} bytes")
    if path.suffix.lower() == ".json":
        return parse_json(raw, f"{what} {path}")
    import yaml

    try:
        doc = yaml.load(raw.decode("utf-8"), Loader=_yaml_loader())  # noqa: S506 (a SafeLoader subclass)
    except UnicodeDecodeError:
        raise ConfigError(f"{what} {path} is not UTF-8 text") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests too deeply") from None
    except ConfigError as e:
        raise ConfigError(f"{what} {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{what} {path} is not valid YAML: {' '.join(str(e).split())}") from None
    if json_depth(doc) > 64:
        raise ConfigError(f"{what} {path} nests arrays or objects more than 64 deep")
    return doc


def load_zones(path: str | os.PathLike) -> ZoneConfig:
    """Read a zones file (YAML or JSON, at most :data:`MAX_ZONES_BYTES`) into a :class:`ZoneConfig`."""
    doc = load_document(path)
    if doc is None:
        raise ConfigError(f"zones file {path} is empty; expected a mapping with 'zones' and/or 'lines'")
    return parse_zones(doc, source=f"zones file {path}")


@dataclass(frozen=True)
class Crossing:
    """One track crossing one line (``direction`` "in" or "out", see the module doc)."""

    line: str
    tracker_id: int
    class_name: str
    direction: str
    frame: int
    timestamp_s: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "tracker_id": int(self.tracker_id), "class_name": self.class_name,
                "direction": self.direction, "frame": int(self.frame),
                "timestamp_s": None if self.timestamp_s is None else round(float(self.timestamp_s), 6)}


@dataclass(frozen=True)
class FrameAnalytics:
    """What the zones and lines saw in one frame.

    ``zones``: zone -> class -> objects inside now (every zone present, ``{}`` when empty);
    ``members``: zone -> tracker ids inside now (ascending); ``dwell_s``: zone -> tracker id -> time
    inside so far; ``crossings``: the line crossings in this frame.
    """

    zones: dict[str, dict[str, int]]
    members: dict[str, tuple[int, ...]]
    dwell_s: dict[str, dict[int, float]]
    crossings: tuple[Crossing, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe; ``dwell_s`` keys are the tracker ids as strings (JSON object keys are strings)."""
        return {
            "zones": {z: {c: int(n) for c, n in counts.items()} for z, counts in self.zones.items()},
            "members": {z: [int(t) for t in ids] for z, ids in self.members.items()},
            "dwell_s": {z: {str(int(t)): round(float(s), 6) for t, s in d.items()} for z, d in self.dwell_s.items()},
            "crossings": [c.to_dict() for c in self.crossings],
        }


@dataclass
class _Visit:
    enter_t: float
    last_t: float


@dataclass
class _ZoneTotals:
    entries: Counter = field(default_factory=Counter)
    max_inside: dict[str, int] = field(default_factory=dict)
    dwell_sum: float = 0.0
    dwell_max: float = 0.0
    visits: int = 0


class Analytics:
    """Counts, dwell and crossings over a tracked video, frame by frame (see the module doc).

    ``fps`` turns frame indices into seconds when frames have no timestamps. ``lost_after``: updates a
    track may be missing before its visits end and its line sides are forgotten (the tracker's
    ``track_buffer``; ids are not reused).
    """

    def __init__(self, config: ZoneConfig, *, fps: float | None = None, lost_after: int = 30) -> None:
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise ConfigError(f"fps must be a positive number, got {fps!r}")
        if lost_after < 1:
            raise ConfigError(f"lost_after must be at least 1, got {lost_after!r}")
        self.config = config
        self.fps = fps
        self.lost_after = int(lost_after)
        self._updates = 0
        self._last_seen: dict[int, int] = {}  # tracker id -> update number
        self._visits: list[dict[int, _Visit]] = [{} for _ in config.zones]
        self._sides: list[dict[int, tuple[int, np.ndarray]]] = [{} for _ in config.lines]
        self._zone_totals = [_ZoneTotals() for _ in config.zones]
        self._line_totals = [{"in": Counter(), "out": Counter()} for _ in config.lines]

    def _time(self, frame: int, timestamp_s: float | None) -> float:
        if timestamp_s is not None:
            return float(timestamp_s)
        return frame / self.fps if self.fps else float(frame)

    def _end_visit(self, zi: int, tid: int) -> None:
        visit = self._visits[zi].pop(tid)
        totals = self._zone_totals[zi]
        dwell = visit.last_t - visit.enter_t
        totals.dwell_sum += dwell
        totals.dwell_max = max(totals.dwell_max, dwell)
        totals.visits += 1

    def _forget(self, tid: int) -> None:
        for zi, visits in enumerate(self._visits):
            if tid in visits:
                self._end_visit(zi, tid)
        for sides in self._sides:
            sides.pop(tid, None)
        self._last_seen.pop(tid, None)

    def update(self, detections: Detections, *, frame: int, timestamp_s: float | None,
               labels: Sequence[str]) -> FrameAnalytics:
        """Add one frame's tracked detections (``data["tracker_id"]``); class from ``data["class_name"]`` or labels."""
        n = len(detections)
        if n and "tracker_id" not in detections.data:
            raise InvalidInput("analytics needs tracked detections (data['tracker_id']); run a tracker first")
        ids = [int(t) for t in detections.data["tracker_id"]] if n else []
        if "class_name" in detections.data:
            names = [str(c) for c in detections.data["class_name"]]
        else:
            names = []
            for c in detections.class_id:
                if not 0 <= int(c) < len(labels):
                    raise InvalidInput(f"class id {int(c)} has no label (the model has {len(labels)} classes)")
                names.append(labels[int(c)])
        self._updates += 1
        now = self._time(frame, timestamp_s)
        stamp = None if timestamp_s is None else float(timestamp_s)
        anchors = self.config.anchors(detections.xyxy)
        for tid in ids:
            self._last_seen[tid] = self._updates

        zones: dict[str, dict[str, int]] = {}
        members: dict[str, tuple[int, ...]] = {}
        dwell: dict[str, dict[int, float]] = {}
        for zi, zone in enumerate(self.config.zones):
            visits, totals = self._visits[zi], self._zone_totals[zi]
            inside = zone.contains(anchors) if n else np.zeros(0, dtype=bool)
            counted: list[int] = []
            for i, tid in enumerate(ids):
                if not inside[i]:
                    if tid in visits:
                        self._end_visit(zi, tid)
                    continue
                if zone.classes is not None and names[i] not in zone.classes:
                    continue  # another class inside: neither counted nor ending a visit
                counted.append(i)
                if tid in visits:
                    visits[tid].last_t = now
                else:
                    visits[tid] = _Visit(now, now)
                    totals.entries[names[i]] += 1
            per_class = Counter(names[i] for i in counted)
            for c, k in per_class.items():
                totals.max_inside[c] = max(totals.max_inside.get(c, 0), k)
            zones[zone.name] = dict(sorted(per_class.items()))
            members[zone.name] = tuple(sorted(ids[i] for i in counted))
            dwell[zone.name] = {t: visits[t].last_t - visits[t].enter_t for t in members[zone.name]}

        crossings: list[Crossing] = []
        for li, line in enumerate(self.config.lines):
            sides, totals_l = self._sides[li], self._line_totals[li]
            side = line.side(anchors) if n else np.zeros(0, dtype=np.int8)
            for i, tid in enumerate(ids):
                s = int(side[i])
                if s == 0:
                    continue  # on the line: the remembered side stays
                before = sides.get(tid)
                sides[tid] = (s, anchors[i])
                if before is None or before[0] == s or not line.passes_through(before[1], anchors[i]):
                    continue
                if line.classes is not None and names[i] not in line.classes:
                    continue
                direction = "in" if s > 0 else "out"
                totals_l[direction][names[i]] += 1
                crossings.append(Crossing(line.name, tid, names[i], direction, int(frame), stamp))

        for tid in [t for t, seen in self._last_seen.items() if self._updates - seen > self.lost_after]:
            self._forget(tid)
        return FrameAnalytics(zones, members, dwell, tuple(crossings))

    def reset(self) -> None:
        """A scene cut: open visits end (counted) and every track's line sides are forgotten; totals stay."""
        for tid in list(self._last_seen):
            self._forget(tid)

    def counts(self) -> dict[str, Any]:
        """Totals so far: line crossings in/out per class; per zone entries and the most inside at once per
        class, and dwell (mean and max over finished and current visits, and their number)."""
        lines = {
            line.name: {d: dict(sorted(t[d].items())) for d in ("in", "out")}
            for line, t in zip(self.config.lines, self._line_totals, strict=True)
        }
        zones: dict[str, Any] = {}
        for zone, totals, visits in zip(self.config.zones, self._zone_totals, self._visits, strict=True):
            current = [v.last_t - v.enter_t for v in visits.values()]
            n = totals.visits + len(current)
            total = totals.dwell_sum + sum(current)
            zones[zone.name] = {
                "entries": dict(sorted(totals.entries.items())),
                "max_inside": dict(sorted(totals.max_inside.items())),
                "dwell_s": {"mean": round(total / n, 6) if n else 0.0,
                            "max": round(max([totals.dwell_max, *current]), 6),
                            "visits": n},
            }
        return {"lines": lines, "zones": zones}
