"""Draw tracked detections, trails, zones and lines on video frames, and write the annotated video.

* :class:`Trails` remembers the last anchors (box bottom centres) of each track;
* :func:`draw_frame` returns a copy of an RGB frame with boxes coloured by tracker id and tagged
  ``"#id class 0.87"``, the trails, the zones (translucent fill, name, objects inside by class)
  and the counting lines (an arrow from ``start`` to ``end``, ``"in N / out M"`` so far);
* :class:`VideoWriter` encodes RGB frames into a hidden temporary file beside the target and
  renames it into place only on :meth:`~VideoWriter.commit`, so a failed run leaves no file that
  looks complete.

Drawing uses OpenCV on an ``HxWx3`` uint8 RGB array (colours are given as RGB): a 640x272 frame
with ten boxes, trails and two zones takes about a millisecond.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from visor.errors import InvalidInput, UnsupportedFormat
from visor.features.annotate import class_color
from visor.io.files import PUBLIC, umasked
from visor.io.outputs import OutputWriteError
from visor.types import Detections

if TYPE_CHECKING:
    from visor.video.analytics import FrameAnalytics, ZoneConfig

__all__ = ["ZONE_ALPHA", "Trails", "VideoWriter", "draw_frame", "track_color"]

#: Opacity of a zone's fill.
ZONE_ALPHA = 0.25

# Zone and line colours (RGB) by their position in the configuration.
_ZONE_COLORS = ((0, 200, 255), (255, 160, 0), (120, 255, 120), (255, 90, 200), (200, 200, 200), (160, 120, 255))
_LINE_COLOR = (255, 255, 0)
_CROSSED_COLOR = (255, 40, 40)

# Four-character codes by file extension; the container follows the extension.
_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".avi": "MJPG"}


def track_color(tracker_id: int) -> tuple[int, int, int]:
    """The RGB colour of a track: fixed per id, neighbouring ids far apart in hue."""
    return class_color(int(tracker_id))


def _anchors(xyxy: np.ndarray) -> np.ndarray:
    """Bottom centres ``(N, 2)`` of boxes ``(N, 4)``."""
    xyxy = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    return np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2.0, xyxy[:, 3]], axis=1)


class Trails:
    """The last ``max_len`` anchors (box bottom centres) of each track, for drawing where it went.

    A track not seen for ``max_len`` updates is forgotten, so memory stays bounded on long streams.
    Detections without ``data["tracker_id"]`` are ignored.
    """

    def __init__(self, max_len: int = 30) -> None:
        if int(max_len) < 1:
            raise InvalidInput(f"trail length must be at least 1, got {max_len}")
        self.max_len = int(max_len)
        self._points: dict[int, deque[tuple[float, float]]] = {}
        self._last_seen: dict[int, int] = {}
        self._updates = 0

    def update(self, detections: Detections) -> None:
        """Add each tracked detection's anchor to its track's trail."""
        self._updates += 1
        ids = detections.data.get("tracker_id")
        if ids is not None and len(ids):
            for tid, (x, y) in zip(np.asarray(ids).tolist(), _anchors(detections.xyxy).tolist(), strict=True):
                tid = int(tid)
                trail = self._points.get(tid)
                if trail is None:
                    trail = self._points[tid] = deque(maxlen=self.max_len)
                trail.append((x, y))
                self._last_seen[tid] = self._updates
        stale = [tid for tid, seen in self._last_seen.items() if self._updates - seen >= self.max_len]
        for tid in stale:
            del self._points[tid], self._last_seen[tid]

    def reset(self) -> None:
        """Forget every trail (at a scene cut)."""
        self._points.clear()
        self._last_seen.clear()

    def points(self, tracker_id: int) -> np.ndarray:
        """The anchors of one track, oldest first, ``(K, 2)`` float64 (``K = 0`` for an unknown id)."""
        trail = self._points.get(int(tracker_id))
        return np.array(trail if trail else np.empty((0, 2)), dtype=np.float64).reshape(-1, 2)

    def ids(self) -> list[int]:
        """The tracker ids that have a trail."""
        return list(self._points)

    def __len__(self) -> int:
        return len(self._points)


def _text_color(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luminance = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luminance > 140 else (255, 255, 255)


def _class_name(detections: Detections, i: int, labels: Sequence[str]) -> str:
    names = detections.data.get("class_name")
    if names is not None:
        return str(names[i])
    cid = int(detections.class_id[i])
    return str(labels[cid]) if 0 <= cid < len(labels) else str(cid)


def _tag(cv2: Any, image: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int], scale: float,
         *, above: bool = True) -> None:
    """Write ``text`` on a filled ``color`` box whose left edge is ``x``, above ``y`` (or below it when no room)."""
    h, w = image.shape[:2]
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    pad = 2
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    top = y - bh if above and y - bh >= 0 else y
    top = min(max(0, top), max(0, h - bh))
    left = min(max(0, x), max(0, w - bw))
    cv2.rectangle(image, (left, top), (left + bw - 1, top + bh - 1), color, -1)
    cv2.putText(image, text, (left + pad, top + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, _text_color(color), 1,
                cv2.LINE_AA)


def _blend_polygon(cv2: Any, image: np.ndarray, pts: np.ndarray, color: tuple[int, int, int], alpha: float) -> None:
    """Fill ``pts`` with ``color`` at opacity ``alpha``, touching only the polygon's bounding box."""
    h, w = image.shape[:2]
    x0, y0 = max(0, int(pts[:, 0].min())), max(0, int(pts[:, 1].min()))
    x1, y1 = min(w, int(pts[:, 0].max()) + 1), min(h, int(pts[:, 1].max()) + 1)
    if x0 >= x1 or y0 >= y1:
        return
    roi = image[y0:y1, x0:x1]
    overlay = roi.copy()
    cv2.fillPoly(overlay, [pts - np.array([x0, y0], dtype=np.int32)], color)
    # Outside the polygon overlay == roi, and alpha * v + (1 - alpha) * v rounds back to v.
    cv2.addWeighted(overlay, alpha, roi, 1.0 - alpha, 0.0, dst=roi)


def _total(by_class: Mapping[str, Any] | None) -> int:
    return int(sum(int(v) for v in (by_class or {}).values()))


def _draw_zones(cv2: Any, image: np.ndarray, zones: ZoneConfig, analytics: FrameAnalytics | None,
                scale: float, lw: int) -> None:
    inside: Mapping[str, Mapping[str, int]] = analytics.zones if analytics is not None else {}
    for k, zone in enumerate(zones.zones):
        color = _ZONE_COLORS[k % len(_ZONE_COLORS)]
        pts = np.round(np.asarray(zone.polygon, dtype=np.float64)).astype(np.int32).reshape(-1, 2)
        if len(pts) < 3:
            continue
        _blend_polygon(cv2, image, pts, color, ZONE_ALPHA)
        cv2.polylines(image, [pts], True, color, lw, cv2.LINE_AA)
        counts = inside.get(zone.name)
        text = zone.name
        if analytics is not None:
            text += f": {_total(counts)}"
            parts = [f"{n} {c}" for c, n in sorted((counts or {}).items()) if int(n)]
            if len(parts) == 1:
                text = f"{zone.name}: {parts[0]}"
            elif parts:
                text += f" ({', '.join(parts)})"
        top = int(np.argmin(pts[:, 1]))
        _tag(cv2, image, text, int(pts[top, 0]), int(pts[top, 1]), color, scale)


def _draw_lines(cv2: Any, image: np.ndarray, zones: ZoneConfig, analytics: FrameAnalytics | None,
                totals: Mapping[str, Any] | None, scale: float, lw: int) -> None:
    crossed = {c.line for c in analytics.crossings} if analytics is not None else set()
    line_totals: Mapping[str, Any] = (totals or {}).get("lines", {})
    for line in zones.lines:
        start = (round(float(line.start[0])), round(float(line.start[1])))
        end = (round(float(line.end[0])), round(float(line.end[1])))
        hit = line.name in crossed
        color = _CROSSED_COLOR if hit else _LINE_COLOR
        length = math.hypot(end[0] - start[0], end[1] - start[1])
        tip = min(0.5, 12.0 / length) if length > 0 else 0.1
        cv2.arrowedLine(image, start, end, color, lw * 2 if hit else lw, cv2.LINE_AA, 0, tip)
        text = line.name
        if totals is not None:
            got = line_totals.get(line.name, {})
            text += f": in {_total(got.get('in'))} / out {_total(got.get('out'))}"
        mid = ((start[0] + end[0]) // 2, (start[1] + end[1]) // 2)
        _tag(cv2, image, text, mid[0] + lw + 2, mid[1], color, scale)


class TrailView:
    """A frozen copy of some tracks' trails (what :func:`draw_frame` reads of :class:`Trails`), for drawing in
    another thread while the :class:`Trails` moves on."""

    def __init__(self, points: dict[int, np.ndarray]) -> None:
        self._points = points

    @classmethod
    def of(cls, trails: Trails | None, detections: Detections) -> TrailView | None:
        """The trails of the tracks in ``detections`` now (None when ``trails`` is None)."""
        if trails is None:
            return None
        ids = detections.data.get("tracker_id")
        return cls({int(t): trails.points(int(t)) for t in (() if ids is None else ids)})

    def points(self, tracker_id: int) -> np.ndarray:
        return self._points.get(int(tracker_id), np.zeros((0, 2)))


def _draw_trails(cv2: Any, image: np.ndarray, trails: Trails | TrailView, ids: Sequence[int], lw: int) -> None:
    for tid in ids:
        pts = trails.points(tid)
        if len(pts) >= 2:
            pts = np.clip(np.round(pts), -(2**20), 2**20).astype(np.int32)
            cv2.polylines(image, [pts], False, track_color(tid), lw, cv2.LINE_8)


def draw_frame(
    image: np.ndarray,
    detections: Detections,
    *,
    labels: Sequence[str],
    trails: Trails | TrailView | None = None,
    zones: ZoneConfig | None = None,
    analytics: FrameAnalytics | None = None,
    totals: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """A copy of the ``HxWx3`` uint8 RGB ``image`` with ``detections`` and the scene's analytics drawn on it.

    Bottom to top: zones (fill at :data:`ZONE_ALPHA`, outline, and ``"name: N (n class, ...)"``,
    or ``"name: n class"`` for one class, from ``analytics.zones`` when given); counting lines
    (arrow ``start`` -> ``end``, thicker and red on a frame with a crossing; ``"name: in N / out M"``
    summed over classes from ``totals``, i.e. ``Analytics.counts()``); trails of the tracks in
    ``detections`` (``trails`` is only read: update it before drawing); boxes in their track's
    colour (:func:`track_color`; the class colour when untracked) and tags ``"#id class 0.87"``.
    The class is ``data["class_name"]``, else ``labels[class_id]``, else the id. ``image`` is left
    unchanged.
    """
    import cv2

    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise InvalidInput(f"draw_frame needs an HxWx3 uint8 RGB array, got {arr.dtype} {arr.shape}")
    out = np.array(arr, dtype=np.uint8, order="C", copy=True)
    h, w = out.shape[:2]
    lw = max(1, round((w + h) / 2 * 0.004))
    scale = max(0.35, min(1.2, (w + h) / 2 / 1000))
    if zones is not None:
        _draw_zones(cv2, out, zones, analytics, scale, lw)
        _draw_lines(cv2, out, zones, analytics, totals, scale, lw)

    ids = detections.data.get("tracker_id")
    tracked = [int(t) for t in np.asarray(ids).tolist()] if ids is not None else None
    if trails is not None and tracked:
        _draw_trails(cv2, out, trails, tracked, lw)
    boxes = np.clip(np.round(np.asarray(detections.xyxy, dtype=np.float64)), -(2**20), 2**20)
    xyxy = boxes.astype(np.int64).reshape(-1, 4).tolist()
    # The lowest scores first, so the best boxes and their tags end up on top.
    for i in np.argsort(np.asarray(detections.confidence), kind="stable").tolist():
        x1, y1, x2, y2 = xyxy[i]
        color = track_color(tracked[i]) if tracked is not None else class_color(int(detections.class_id[i]))
        cv2.rectangle(out, (x1, y1), (max(x1, x2), max(y1, y2)), color, lw)
        text = f"{_class_name(detections, i, labels)} {float(detections.confidence[i]):.2f}"
        if tracked is not None:
            text = f"#{tracked[i]} {text}"
        _tag(cv2, out, text, x1, y1, color, scale)
    return out


def _discard(writer: Any, tmp: Path) -> None:
    """Release ``writer`` and remove ``tmp`` (also run when a writer is dropped without commit/abort)."""
    try:
        writer.release()
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


class VideoWriter:
    """Encode RGB frames into ``path``, which appears only when :meth:`commit` succeeds.

    Frames go to a hidden temporary file beside ``path`` (``.<name>.<random>.tmp<suffix>``, so
    FFmpeg picks the container from the suffix). ``.mp4``/``.m4v``/``.mov`` use MPEG-4 Part 2
    (``mp4v``), ``.avi`` Motion JPEG. :meth:`commit` releases the encoder and renames the file
    into place with mode ``0o644`` less the umask; :meth:`abort` deletes it. As a context
    manager it commits when the block succeeds and aborts when it raises. A writer dropped
    without either removes its temporary file. Every frame must be ``size`` = ``(width, height)``.
    Both codecs need even sizes: an odd width or height gets one more column or row copied from
    the edge (``encoded_size`` is what the file holds).
    """

    def __init__(self, path: str | os.PathLike, *, fps: float, size: tuple[int, int]) -> None:
        import cv2

        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in _FOURCC:
            raise UnsupportedFormat(f"cannot write video {self.path}: use one of {', '.join(sorted(_FOURCC))}")
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and 0 < fps <= 1000):
            raise InvalidInput(f"video fps must be a number in (0, 1000], got {fps!r}")
        try:
            width, height = (int(v) for v in size)
        except (TypeError, ValueError):
            raise InvalidInput(f"video size must be (width, height), got {size!r}") from None
        if width < 1 or height < 1 or width * height > 100_000_000:
            raise InvalidInput(f"video size must be positive and at most 100 MP, got {width}x{height}")
        self.fps = float(fps)
        self.size = (width, height)
        self.encoded_size = (width + width % 2, height + height % 2)
        self.frames_written = 0
        self._done = False
        self._committed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OutputWriteError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._tmp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(6)}.tmp{suffix}")
        self._writer = cv2.VideoWriter(str(self._tmp), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*_FOURCC[suffix]),
                                       self.fps, self.encoded_size)
        self._finalizer = weakref.finalize(self, _discard, self._writer, self._tmp)
        if not self._writer.isOpened():
            self._finalizer()
            self._done = True
            raise OutputWriteError(f"cannot write video {self.path}: the encoder could not open {self._tmp.name}")

    def write(self, image: np.ndarray) -> None:
        """Append one ``HxWx3`` uint8 RGB frame of the writer's size."""
        import cv2

        if self._done:
            raise InvalidInput(f"video writer for {self.path} is closed")
        arr = np.asarray(image)
        w, h = self.size
        if arr.dtype != np.uint8 or arr.shape != (h, w, 3):
            raise InvalidInput(f"video frame must be {h}x{w}x3 uint8 RGB, got {arr.dtype} {arr.shape}")
        bgr = cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
        if self.encoded_size != self.size:
            bgr = cv2.copyMakeBorder(bgr, 0, h % 2, 0, w % 2, cv2.BORDER_REPLICATE)
        self._writer.write(bgr)
        self.frames_written += 1

    def commit(self) -> Path:
        """Finish the file and move it to ``path`` (replacing a file there); returns ``path``.

        Raises :class:`OutputWriteError` (and leaves nothing behind) when no frame was written
        or the encoder produced no file.
        """
        if self._committed:
            return self.path
        if self._done:
            raise InvalidInput(f"video writer for {self.path} was aborted")
        self._done = True
        try:
            self._writer.release()
            if self.frames_written == 0:
                raise OutputWriteError(f"no frames were written to {self.path}")
            if not self._tmp.is_file() or self._tmp.stat().st_size == 0:
                raise OutputWriteError(f"cannot write video {self.path}: the encoder wrote nothing")
            os.chmod(self._tmp, umasked(PUBLIC))
            os.replace(self._tmp, self.path)
        except OSError as e:
            self._finalizer()
            raise OutputWriteError(f"cannot write {self.path}: {e.strerror or e}") from None
        except BaseException:
            self._finalizer()
            raise
        self._finalizer.detach()
        self._committed = True
        return self.path

    def abort(self) -> None:
        """Stop and delete the temporary file; ``path`` is left as it was."""
        self._done = True
        self._finalizer()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def __repr__(self) -> str:
        return f"VideoWriter({str(self.path)!r}, fps={self.fps}, size={self.size}, frames={self.frames_written})"
