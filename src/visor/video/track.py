"""Detection + tracking over a video: per-frame tracked detections, scene cuts, zone and line analytics.

* :class:`VideoTracker` is the per-frame core, shared by :func:`track` and ``visor watch``: detect
  (threshold ``options.conf``, low, so that ByteTrack's second stage sees the weak boxes) -> scene-cut
  check (:mod:`visor.video.scenecut`) -> on a cut, reset the tracker, the analytics and the trails
  (no track id spans a cut) -> :class:`~visor.ops.tracking.ByteTracker` -> :class:`~visor.video.analytics.Analytics`.
* :func:`track` opens a source (video file, image sequence, or a live stream) and yields a
  :class:`TrackedFrame` per frame; the next frame is decoded and letterboxed in a background thread
  while the current one is inferred.
* :func:`track_to_folder` writes ``frames.jsonl``, ``tracks.txt``, ``counts.json``, ``annotated.mp4``
  and ``summary.json`` into a folder. Each file is written to a hidden temporary file and renamed into
  place at the end. When the source fails after some frames (a truncated file) or the run is
  interrupted, the frames processed are kept under ``*.partial.*`` names and ``summary.json`` says
  ``"complete": false`` with the error, and the error is raised again; a source that fails before its
  first frame leaves no file at all. On a live stream (which has no end), an interrupt ends the run normally.

``tracks.txt`` is MOTChallenge CSV, one row per tracked box:
``frame,id,x,y,w,h,conf,class_id,-1`` where ``frame`` is the source frame index + 1 (1-based, as MOT
files are), ``id`` the tracker id, ``x,y`` the top-left corner and ``w,h`` the size in pixels, ``conf``
the detector score; the eighth column holds the class id (where MOT16 ground truth keeps its class and
MOT tracker output a world ``x``) and the ninth is -1. :func:`visor.data.mot.read_mot` reads it back.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import queue
import secrets
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from visor.errors import ConfigError, InvalidInput, VisorError
from visor.io.image import DEFAULT_LIMITS, ImageLimits
from visor.io.video import DEFAULT_VIDEO_LIMITS, Frame, VideoLimits
from visor.types import Detections
from visor.video.scenecut import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    from visor.models.detector import Detector
    from visor.video.analytics import FrameAnalytics, ZoneConfig
    from visor.video.render import Trails

__all__ = ["OUTPUT_FILES", "TrackStream", "TrackSummary", "TrackedFrame", "TrackerOptions", "VideoTracker",
           "track", "track_to_folder"]

#: The files :func:`track_to_folder` writes (complete run), by role; a partial run writes the
#: ``.partial`` names of the first four (:data:`PARTIAL_FILES`) and ``summary.json``.
OUTPUT_FILES = {"frames": "frames.jsonl", "tracks": "tracks.txt", "counts": "counts.json", "video": "annotated.mp4",
                "summary": "summary.json"}
PARTIAL_FILES = {"frames": "frames.partial.jsonl", "tracks": "tracks.partial.txt", "counts": "counts.partial.json",
                 "video": "annotated.partial.mp4", "summary": "summary.json"}

# Frames decoded (and letterboxed) ahead of the one being inferred.
_PREFETCH = 2
_END = object()


@dataclass(frozen=True)
class TrackerOptions:
    """How detections become tracks.

    ``track_thresh``, ``match_thresh``, ``low_thresh``, ``track_buffer`` (frames at 30 fps a lost track
    is kept), ``class_aware``: :class:`~visor.ops.tracking.ByteTracker`'s. ``scene_cut_threshold``: the
    histogram distance of a cut (:mod:`visor.video.scenecut`; None: no scene-cut detection). ``conf`` and
    ``iou``: the detector's score threshold (low: ByteTrack uses boxes between ``low_thresh`` and
    ``track_thresh`` to keep occluded tracks) and NMS overlap.
    """

    track_thresh: float = 0.5
    match_thresh: float = 0.8
    low_thresh: float = 0.1
    track_buffer: int = 30
    class_aware: bool = False
    scene_cut_threshold: float | None = DEFAULT_THRESHOLD
    conf: float = 0.1
    iou: float = 0.45

    def __post_init__(self) -> None:
        for name in ("track_thresh", "match_thresh", "low_thresh", "conf", "iou"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"tracker option {name} must be a number in [0, 1], got {value!r}")
        if not self.low_thresh <= self.track_thresh:
            raise ConfigError(f"tracker options need low_thresh <= track_thresh, got {self.low_thresh} "
                              f"and {self.track_thresh}")
        if self.match_thresh == 0:
            raise ConfigError("tracker option match_thresh must be above 0")
        if isinstance(self.track_buffer, bool) or not isinstance(self.track_buffer, int) or self.track_buffer < 0:
            raise ConfigError(f"tracker option track_buffer must be a whole number >= 0, got {self.track_buffer!r}")
        t = self.scene_cut_threshold
        if t is not None and (isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 < t < 1):
            raise ConfigError(f"scene_cut_threshold must be between 0 and 1 (exclusive) or None, got {t!r}")
        if self.conf > self.low_thresh:
            raise ConfigError(f"the detector threshold conf ({self.conf}) is above low_thresh ({self.low_thresh}): "
                              "the tracker would never see its low-confidence boxes")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TrackedFrame:
    """One frame's result: the detections on confirmed tracks (``data["tracker_id"]`` and ``data["class_name"]``),
    its scene (0-based; a cut starts the next), whether it is the first frame of a new scene, and the zone/line
    analytics when zones were given. ``image`` (RGB) is kept only when asked for."""

    index: int
    timestamp_s: float | None
    detections: Detections
    scene: int
    scene_cut: bool
    analytics: FrameAnalytics | None
    image: np.ndarray | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``frames.jsonl`` (no image): frame, timestamp_s, scene, scene_cut, detections
        (each with ``tracker_id`` and ``class_name``), analytics (or null)."""
        return {
            "frame": int(self.index),
            "timestamp_s": None if self.timestamp_s is None else round(float(self.timestamp_s), 6),
            "scene": int(self.scene),
            "scene_cut": bool(self.scene_cut),
            "detections": self.detections.to_dict()["detections"],
            "analytics": None if self.analytics is None else self.analytics.to_dict(),
        }


def _load_detector(model: Any, *, limits: ImageLimits, threads: int | None) -> Detector:
    from visor.models import DEFAULT_DETECTOR, load
    from visor.models.detector import Detector

    if isinstance(model, Detector):
        return model
    if model is not None and hasattr(model, "card") and hasattr(model, "predict"):
        raise ConfigError(f"{model.card.name} is a {model.card.task} model; tracking needs an object detector")
    # spin=False: idle ONNX Runtime threads must not busy-wait while the decoding thread needs the core
    detector = load(model if model is not None else DEFAULT_DETECTOR, limits=limits, threads=threads, spin=False)
    if not isinstance(detector, Detector):
        raise ConfigError(f"{detector.name} is a {detector.card.task} model; tracking needs an object detector")
    return detector


def _load_zones(zones: Any) -> ZoneConfig | None:
    if zones is None:
        return None
    from visor.video.analytics import ZoneConfig, load_zones

    if isinstance(zones, ZoneConfig):
        return zones
    if isinstance(zones, (str, os.PathLike)):
        return load_zones(zones)
    raise ConfigError(f"zones must be a ZoneConfig or the path of a zones file, got {type(zones).__name__}")


class VideoTracker:
    """Frame by frame: detect, check for a scene cut, track, count (see the module docstring).

    ``detector``: a loaded :class:`~visor.models.detector.Detector`. ``zones``: the zones and lines to count
    (None: no analytics). ``fps``: the source's frame rate (scales ByteTrack's lost-track buffer, and gives
    dwell times when frames have no timestamps). ``trails``: a :class:`~visor.video.render.Trails` kept up to
    date (reset at cuts) for drawing.
    """

    def __init__(self, detector: Detector, *, options: TrackerOptions = TrackerOptions(),
                 zones: ZoneConfig | None = None, fps: float | None = None, trails: Trails | None = None) -> None:
        from visor.ops.tracking import ByteTracker
        from visor.video.scenecut import SceneCutDetector

        if not isinstance(options, TrackerOptions):
            raise ConfigError(f"options must be TrackerOptions, got {type(options).__name__}")
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            raise InvalidInput(f"fps must be positive, got {fps}")
        self.detector = detector
        self.options = options
        self.zones = zones
        self.fps = fps
        self.trails = trails
        self._detect_options = detector.check_options(conf=options.conf, iou=options.iou)
        self.tracker = ByteTracker(track_thresh=options.track_thresh, match_thresh=options.match_thresh,
                                   low_thresh=options.low_thresh, track_buffer=options.track_buffer,
                                   frame_rate=fps or 30.0, class_aware=options.class_aware)
        self.scene_cuts = (SceneCutDetector(options.scene_cut_threshold)
                           if options.scene_cut_threshold is not None else None)
        self.analytics = None
        if zones is not None:
            from visor.video.analytics import Analytics

            zones.check_classes(self.labels)

            self.analytics = Analytics(zones, fps=fps)
        self.frames = 0
        """Frames processed."""
        self.scene = 0
        """The current scene (0-based)."""
        self.cut_frames: list[int] = []
        """Source indices of the frames that started a new scene."""
        self._track_classes: dict[int, Counter[str]] = {}

    @property
    def labels(self) -> tuple[str, ...]:
        """The detector's class names (index = class id)."""
        return tuple(self.detector.labels)

    def detect(self, image: np.ndarray) -> Detections:
        """The detector's boxes for one RGB frame (at ``options.conf`` / ``options.iou``)."""
        return self.detector.run([image], **self._detect_options)[0]

    def detect_prepared(self, prepared: tuple[Any, Any]) -> Detections:
        """:meth:`detect` for what ``detector.prepare([image])`` returned (letterboxed elsewhere)."""
        return self.detector.run_prepared(prepared, **self._detect_options)[0]

    def process(self, frame: Frame, *, keep_image: bool = False) -> TrackedFrame:
        """Detect, track and count one frame (frames in source order)."""
        return self.update(frame, self.detect(frame.image), keep_image=keep_image)

    def update(self, frame: Frame, detections: Detections, *, keep_image: bool = False) -> TrackedFrame:
        """Track and count one frame's detections (from :meth:`detect`, or any detector's)."""
        cut = self.scene_cuts is not None and self.scene_cuts.update(frame.image) and self.frames > 0
        if cut:
            self.tracker.reset()
            if self.analytics is not None:
                self.analytics.reset()
            if self.trails is not None:
                self.trails.reset()
            self.scene += 1
            self.cut_frames.append(int(frame.index))
        if "class_name" not in detections.data:
            labels = self.labels
            names = [labels[c] if 0 <= c < len(labels) else str(c) for c in np.asarray(detections.class_id).tolist()]
            detections = detections.with_data(class_name=np.array(names, dtype=object))
        tracked = self.tracker.update(detections)
        for tid, name in zip(tracked.data["tracker_id"].tolist(), tracked.data["class_name"].tolist(), strict=True):
            self._track_classes.setdefault(int(tid), Counter())[str(name)] += 1
        if self.trails is not None:
            self.trails.update(tracked)
        analytics = None
        if self.analytics is not None:
            analytics = self.analytics.update(tracked, frame=int(frame.index), timestamp_s=frame.timestamp_s,
                                              labels=self.labels)
        self.frames += 1
        return TrackedFrame(int(frame.index), frame.timestamp_s, tracked, self.scene, bool(cut), analytics,
                            frame.image if keep_image else None)

    @property
    def track_count(self) -> int:
        """Distinct tracker ids so far."""
        return len(self._track_classes)

    def counts(self) -> dict[str, Any]:
        """Totals so far: ``frames``, ``scenes``, ``scene_cuts`` (frame indices), ``tracks`` (distinct ids),
        ``tracks_by_class`` (each track counted once, under the class it was seen as most often) and, with
        zones, the analytics' ``lines`` and ``zones`` (:meth:`~visor.video.analytics.Analytics.counts`)."""
        by_class: Counter[str] = Counter(c.most_common(1)[0][0] for c in self._track_classes.values())
        out: dict[str, Any] = {
            "frames": self.frames,
            "scenes": self.scene + 1 if self.frames else 0,
            "scene_cuts": list(self.cut_frames),
            "tracks": self.track_count,
            "tracks_by_class": dict(sorted(by_class.items())),
        }
        if self.analytics is not None:
            out.update(self.analytics.counts())
        return out

    def reset(self) -> None:
        """Start over as for a new video (tracker, scene-cut history, analytics, trails); ids keep counting up."""
        self.tracker.reset()
        if self.scene_cuts is not None:
            self.scene_cuts.reset()
        if self.analytics is not None:
            self.analytics.reset()
        if self.trails is not None:
            self.trails.reset()


def _is_live(source: Any) -> bool:
    """A live source (``rtsp://``, ``rtsps://``, ``http(s)://``, a webcam index) and not a file of that name."""
    from visor.io.stream import is_live_source

    if isinstance(source, str) and os.path.lexists(source):
        return False
    return is_live_source(source) if isinstance(source, (str, int)) else False


def _yield_to_inference() -> None:
    """Lower the calling thread's scheduling priority (Linux: threads have their own nice value), so that
    decoding and encoding fill the gaps of ONNX Runtime's threads instead of stalling them; elsewhere a no-op."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + 5)


def _produce(reader: Any, prepare: Any, out: queue.Queue, stop: threading.Event) -> None:
    """The decoding thread: ``(frame, prepare([image]))`` per frame into ``out``, then ``(_END, error or None)``."""
    _yield_to_inference()
    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        for frame in reader:
            if not put((frame, prepare([frame.image]))):
                return
        put((_END, None))
    except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
        put((_END, e))


class TrackStream:
    """The iterator :func:`track` returns: a :class:`TrackedFrame` per frame, in order.

    Attributes: ``tracker`` (the :class:`VideoTracker`: ``counts()``, ``labels``...), ``fps``, ``size``
    ``(width, height)`` and ``frame_count`` (declared by the source; None when unknown). A background thread
    decodes and letterboxes up to two frames ahead. Use it as a context manager, or call :meth:`close`,
    when not iterating to the end. A source error after some frames is raised after those frames.
    """

    def __init__(self, reader: Any, tracker: VideoTracker, *, keep_images: bool, live: bool = False) -> None:
        self.reader = reader
        self.live = live
        self.tracker = tracker
        self.keep_images = keep_images
        self.fps: float | None = getattr(reader, "fps", None)
        size = getattr(reader, "size", None)
        if size is None and getattr(reader, "width", None):
            size = (reader.width, reader.height)
        self.size: tuple[int, int] | None = tuple(size) if size else None
        self.frame_count: int | None = getattr(reader, "frame_count", None)
        self._queue: queue.Queue = queue.Queue(maxsize=_PREFETCH)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._done = False
        weakref.finalize(self, self._stop.set)

    def __iter__(self) -> TrackStream:
        return self

    def __next__(self) -> TrackedFrame:
        if self._done:
            raise StopIteration
        if self._thread is None:
            # the thread holds no reference to self: a stream dropped unclosed is collected, and its finalizer
            # stops the thread
            self._thread = threading.Thread(target=_produce, name="visor-track-decode", daemon=True,
                                            args=(self.reader, self.tracker.detector.prepare, self._queue,
                                                  self._stop))
            self._thread.start()
        try:
            item = self._queue.get()
        except BaseException:
            self.close()
            raise
        if item[0] is _END:
            self.close()
            if item[1] is not None:
                raise item[1]
            raise StopIteration
        frame, prepared = item
        try:
            return self.tracker.update(frame, self.tracker.detect_prepared(prepared), keep_image=self.keep_images)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop decoding and release the source."""
        self._done = True
        self._stop.set()
        if self.live:  # a live stream's reader may wait for the network: closing it ends its iteration
            self.reader.close()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            with contextlib.suppress(queue.Empty):
                while True:
                    self._queue.get_nowait()
            thread.join()
        if not self.live:  # a file's decoder is released only once the thread is done with it
            self.reader.close()

    def __enter__(self) -> TrackStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def frames_read(self) -> int:
        """Frames processed so far."""
        return self.tracker.frames


def track(
    source: str | os.PathLike | int,
    *,
    model: Any = None,
    zones: ZoneConfig | str | os.PathLike | None = None,
    options: TrackerOptions = TrackerOptions(),
    stride: int = 1,
    max_frames: int | None = None,
    keep_images: bool = False,
    fps: float | None = None,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    image_limits: ImageLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    trails: Trails | None = None,
    reconnect_attempts: int | None = 5,
) -> TrackStream:
    """Track the objects of a video: an iterator of :class:`TrackedFrame`, one per frame read.

    ``source``: a video file, a folder or glob of images (``fps`` gives it a frame rate), or a live source
    (``rtsp://``, ``http(s)://`` MJPEG, a webcam index; read through :func:`visor.io.stream.open_stream`, latest
    frame first, until closed). ``model``: a loaded detector, or a registry name / model folder (default
    ``yolox_nano``; ``threads`` for its ONNX Runtime). ``zones``: a :class:`~visor.video.analytics.ZoneConfig` or
    the path of a zones file. ``stride`` keeps every n-th frame; ``max_frames`` stops after that many.
    ``keep_images`` keeps each frame's RGB image on its result. ``reconnect_attempts``: a live source is
    given up (:class:`~visor.errors.StreamUnavailable`) after that many failed connection attempts in a row
    (None: retry for ever), with exponential backoff between them.

    The model, options, zones and source are checked and opened now: a bad one raises its typed error from this
    call (:class:`~visor.errors.ConfigError`, :class:`~visor.errors.ImageNotFound`,
    :class:`~visor.errors.UnsupportedFormat`, :class:`~visor.errors.CorruptVideo`...). A file that breaks off
    raises :class:`~visor.errors.CorruptVideo` after its last good frame.
    """
    if not isinstance(options, TrackerOptions):
        raise ConfigError(f"options must be TrackerOptions, got {type(options).__name__}")
    zone_config = _load_zones(zones)
    live = _is_live(source)
    if live:
        from visor.io.stream import open_stream

        if stride != 1:
            raise ConfigError("stride applies to files; a live source always gives its latest frame")
        from visor.io.stream import Backoff

        reader: Any = open_stream(source, limits=limits, image_limits=image_limits,
                                  backoff=Backoff(max_attempts=reconnect_attempts))
        if max_frames is not None:
            reader = _Limited(reader, max_frames)
    else:
        from visor.io.video import open_video

        reader = open_video(source, stride=stride, max_frames=max_frames, fps=fps, limits=limits,
                            image_limits=image_limits)
    try:  # the source first (a bad one fails fast), then the model
        detector = _load_detector(model, limits=image_limits, threads=threads)
        source_fps = getattr(reader, "fps", None) or fps
        tracker = VideoTracker(detector, options=options, zones=zone_config,
                               fps=source_fps / stride if source_fps else None, trails=trails)
    except BaseException:
        reader.close()
        raise
    return TrackStream(reader, tracker, keep_images=keep_images, live=live)


class _Limited:
    """The first ``n`` frames of a live stream."""

    def __init__(self, stream: Any, n: int) -> None:
        self._stream, self._n = stream, n
        self.fps = getattr(stream, "fps", None)
        self.frame_count = n

    def __iter__(self) -> Iterator[Frame]:
        for i, frame in enumerate(self._stream):
            if i >= self._n:
                return
            yield frame

    def close(self) -> None:
        self._stream.close()


# --------------------------------------------------------------------------- the output folder


@dataclass(frozen=True)
class TrackSummary:
    """What :func:`track_to_folder` did: ``complete`` (False: the source failed or the run was interrupted, and the
    files have ``.partial`` names), frames processed, tracks, scene cuts, the counts, time, the files by role."""

    complete: bool
    source: str
    model: str
    frames: int
    tracks: int
    scene_cuts: tuple[int, ...]
    counts: dict[str, Any]
    elapsed_s: float
    out_dir: Path
    files: dict[str, Path]
    error: str | None = None

    @property
    def fps(self) -> float:
        """Frames processed per second (end to end: decoding, detection, tracking, drawing, writing)."""
        return self.frames / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "complete": self.complete,
            "source": self.source,
            "model": self.model,
            "frames": self.frames,
            "tracks": self.tracks,
            "scene_cuts": list(self.scene_cuts),
            "elapsed_s": round(self.elapsed_s, 3),
            "fps": round(self.fps, 2),
            "error": self.error,
            "files": {k: p.name for k, p in self.files.items()},
            "counts": self.counts,
        }


class _Spool:
    """A hidden temporary file in the output folder, renamed to its final name at the end (or deleted)."""

    def __init__(self, folder: Path, stem: str) -> None:
        from visor.io.files import PUBLIC, umasked

        self.path = folder / f".{stem}.{secrets.token_hex(6)}.tmp"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.fchmod(fd, umasked(PUBLIC))
            self.fh: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        except BaseException:
            os.close(fd)
            self.path.unlink(missing_ok=True)
            raise

    def commit(self, target: Path) -> Path:
        self.fh.close()
        os.replace(self.path, target)
        return target

    def abort(self) -> None:
        with contextlib.suppress(OSError):
            self.fh.close()
        self.path.unlink(missing_ok=True)


class _BackgroundWriter:
    """A :class:`~visor.video.render.VideoWriter` fed from a bounded queue by a thread of its own (at a lower
    priority), so that drawing and encoding overlap inference; :meth:`write` takes a frame, or a function that
    draws one; the first error is raised by the next :meth:`write` or :meth:`commit`."""

    def __init__(self, writer: Any, depth: int = 4) -> None:
        self.writer = writer
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="visor-track-encode", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        _yield_to_inference()
        while True:
            image = self._queue.get()
            if image is None:
                return
            if self._error is None:
                try:
                    self.writer.write(image() if callable(image) else image)
                except BaseException as e:  # noqa: BLE001 - raised in the caller's thread
                    self._error = e

    def write(self, image: np.ndarray | Callable[[], np.ndarray]) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(image)

    def _finish(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def commit(self) -> Path:
        self._finish()
        if self._error is not None:
            self.writer.abort()
            raise self._error
        return self.writer.commit()

    def abort(self) -> None:
        self._finish()
        self.writer.abort()


def _mot_text(tf: TrackedFrame) -> str:
    from visor.data.mot import MotTracks

    d = tf.detections
    n = len(d)
    if not n:
        return ""
    xyxy = np.asarray(d.xyxy, np.float64).round(3)
    boxes = np.column_stack([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]]).round(3)
    extra = np.column_stack([np.asarray(d.class_id, np.float64), np.full(n, -1.0)])
    conf = np.asarray(d.confidence, np.float64).round(6)
    return MotTracks(np.full(n, tf.index + 1), d.data["tracker_id"], boxes, conf, extra).to_text()


def _source_paths(source: Any) -> list[str]:
    if isinstance(source, (str, os.PathLike)) and not _is_live(os.fspath(source)):
        text = os.fspath(source)
        if any(c in text for c in "*?[") and not Path(text).exists():
            return [str(Path(text).parent)]
        return [text]
    return []


def track_to_folder(
    source: str | os.PathLike | int,
    out_dir: str | os.PathLike,
    *,
    model: Any = None,
    zones: ZoneConfig | str | os.PathLike | None = None,
    options: TrackerOptions = TrackerOptions(),
    video: bool = True,
    overwrite: bool = False,
    progress: bool = False,
    stride: int = 1,
    max_frames: int | None = None,
    fps: float | None = None,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    image_limits: ImageLimits = DEFAULT_LIMITS,
    threads: int | None = None,
    trail_length: int = 30,
    reconnect_attempts: int | None = 5,
) -> TrackSummary:
    """Track ``source`` (as :func:`track`) and write the results into ``out_dir``:

    ``frames.jsonl`` (:meth:`TrackedFrame.to_dict` per frame), ``tracks.txt`` (MOT CSV, see the module
    docstring), ``counts.json`` (:meth:`VideoTracker.counts`), ``annotated.mp4`` (boxes, ids, trails, zones, lines;
    same frame count and rate; not with ``video=False``) and ``summary.json`` (:meth:`TrackSummary.to_dict`).

    ``out_dir`` may not be, contain or be inside the source; files already there are refused
    (:class:`~visor.errors.OutputConflict`) unless ``overwrite``. On a source error after some frames, or
    an interrupt, the processed frames are written under ``.partial`` names, ``summary.json`` gets
    ``"complete": false``, and the exception is raised again. ``progress`` draws a bar on stderr.
    """
    from visor.errors import OutputConflict
    from visor.io.outputs import OutputWriteError, check_output_folder

    folder = check_output_folder(out_dir, _source_paths(source), what="output folder")
    names = sorted({*OUTPUT_FILES.values(), *PARTIAL_FILES.values()})
    if not overwrite:
        existing = [n for n in names if (folder / n).exists() or (folder / n).is_symlink()]
        if existing:
            raise OutputConflict(f"{folder / existing[0]} already exists; choose an empty folder or pass --overwrite")
    trails = None
    if video:
        from visor.video.render import Trails

        trails = Trails(trail_length)
    stream = track(source, model=model, zones=zones, options=options, stride=stride, max_frames=max_frames,
                   keep_images=video, fps=fps, limits=limits, image_limits=image_limits, threads=threads,
                   trails=trails, reconnect_attempts=reconnect_attempts)
    tracker = stream.tracker
    detector = tracker.detector
    made_folder = not folder.exists()
    spools: dict[str, _Spool] = {}
    writer: Any = None
    video_tmp: Path | None = None
    started = time.perf_counter()
    error: BaseException | None = None
    interrupted = False
    written = 0
    total = stream.frame_count
    if total is not None:
        total = -(-total // stride)
        if max_frames is not None:
            total = min(total, max_frames)

    def discard() -> None:
        for s in spools.values():
            s.abort()
        if writer is not None:
            writer.abort()
        if video_tmp is not None:
            video_tmp.unlink(missing_ok=True)
        if made_folder:
            with contextlib.suppress(OSError):
                folder.rmdir()

    from tqdm import tqdm

    try:
        with stream, tqdm(total=total, unit="frame", disable=not progress, desc="track", leave=False) as bar:
            for tf in stream:
                if not spools:
                    folder.mkdir(parents=True, exist_ok=True)
                    spools = {"frames": _Spool(folder, "frames.jsonl"), "tracks": _Spool(folder, "tracks.txt")}
                    if video:
                        from visor.video.render import VideoWriter

                        size = stream.size or (tf.image.shape[1], tf.image.shape[0])
                        video_tmp = folder / f".annotated.{secrets.token_hex(6)}.mp4"
                        writer = _BackgroundWriter(VideoWriter(video_tmp, fps=stream.tracker.fps or 25.0,
                                                               size=size))
                spools["frames"].fh.write(json.dumps(tf.to_dict(), separators=(",", ":")) + "\n")
                spools["tracks"].fh.write(_mot_text(tf))
                if writer is not None:
                    from visor.video.render import TrailView, draw_frame

                    totals = tracker.analytics.counts() if tracker.analytics is not None else None
                    # drawn in the encoding thread, from a copy of this frame's trails (the tracker moves on)
                    writer.write(functools.partial(
                        draw_frame, tf.image, tf.detections, labels=tracker.labels, zones=tracker.zones,
                        trails=TrailView.of(trails, tf.detections), analytics=tf.analytics, totals=totals))
                written += 1
                bar.update(1)
    except KeyboardInterrupt as e:
        if not written:
            discard()
            raise
        if stream.live:  # a live stream has no end: Ctrl-C is how a run on one ends, and it is complete
            interrupted = True
        else:
            error = e
    except BaseException as e:  # the partial files are written, then it is raised again
        error = e
        if isinstance(e, OSError) and not isinstance(e, VisorError):
            error = OutputWriteError(f"cannot write into {folder}: {e.strerror or e}")
        if not written:
            discard()
            if error is e:
                raise
            raise error from None
    elapsed = time.perf_counter() - started
    complete = error is None
    final = OUTPUT_FILES if complete else PARTIAL_FILES
    files: dict[str, Path] = {}
    try:
        if not written:  # no frame at all, and no error: an empty sequence
            raise InvalidInput(f"{source}: no frames to track")
        counts = tracker.counts()
        from visor.io.files import atomic_write

        files["frames"] = spools["frames"].commit(folder / final["frames"])
        files["tracks"] = spools["tracks"].commit(folder / final["tracks"])
        spools.clear()
        files["counts"] = atomic_write(folder / final["counts"], json.dumps(counts, indent=2) + "\n")
        if writer is not None and video_tmp is not None:
            writer.commit()
            writer = None
            os.replace(video_tmp, folder / final["video"])
            video_tmp = None
            files["video"] = folder / final["video"]
        summary = TrackSummary(
            complete=complete, source=os.fspath(source) if not isinstance(source, int) else str(source),
            model=detector.name, frames=written, tracks=tracker.track_count,
            scene_cuts=tuple(tracker.cut_frames), counts=counts, elapsed_s=elapsed, out_dir=folder,
            files={**files, "summary": folder / final["summary"]},
            error=None if complete else f"{type(error).__name__}: {error}".rstrip(": "))
        doc = summary.to_dict()
        doc["options"] = options.to_dict()
        doc["frames_declared"] = stream.frame_count
        doc["source_fps"] = stream.fps
        doc["stopped_by_interrupt"] = interrupted
        atomic_write(folder / final["summary"], json.dumps(doc, indent=2) + "\n")
        # files of an earlier run (only there with overwrite) that would contradict this one: the other
        # outcome's, and a video this run did not write
        stale = [name for role, name in (PARTIAL_FILES if complete else OUTPUT_FILES).items() if role != "summary"]
        if "video" not in files:
            stale.append(final["video"])
        for name in stale:
            (folder / name).unlink(missing_ok=True)
    except BaseException as e:
        for path in files.values():  # no file may stay that a summary does not vouch for
            path.unlink(missing_ok=True)
        discard()
        if isinstance(e, OSError):
            raise OutputWriteError(f"cannot write into {folder}: {e.strerror or e}") from error
        raise
    if error is not None:
        raise error
    return summary
