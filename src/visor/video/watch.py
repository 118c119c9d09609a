"""Watch a live stream (or a video file) for rule events: detect, track, count, fire rules, deliver events.

:func:`watch` runs the loop ``visor watch`` runs: frames from :func:`visor.io.stream.open_stream` (RTSP,
HTTP MJPEG, webcams: the newest frame only, so a slow detector skips frames rather than falling behind)
or :func:`visor.io.video.open_video` (files: every frame), each through
:meth:`~visor.video.track.VideoTracker.process` and :meth:`~visor.video.rules.RuleEngine.update`; each
event with a JPEG snapshot of the annotated frame goes to every sink (a callable ``sink(event, jpeg)``:
the event store, the webhook sender, the MQTT publisher, a printer). A sink that raises is logged and
counted; the loop goes on.

:class:`WatchMetrics` holds the Prometheus metrics of a watch loop in a registry of its own.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from visor.errors import ConfigError

if TYPE_CHECKING:
    from visor.io.stream import Backoff
    from visor.video.rules import Event, WatchConfig
    from visor.video.track import TrackerOptions

__all__ = ["SNAPSHOT_QUALITY", "WatchMetrics", "WatchSummary", "snapshot_jpeg", "watch"]

log = logging.getLogger("visor.video")

#: JPEG quality of event snapshots.
SNAPSHOT_QUALITY = 85

Sink = Callable[["Event", bytes], None]


@dataclass(frozen=True)
class WatchSummary:
    """What one :func:`watch` run did."""

    frames: int
    """Frames processed."""
    events: int
    """Events raised (each delivered to every sink)."""
    dropped_frames: int
    """Frames the live source received but the loop never saw (it was busy); 0 for files."""
    reconnects: int
    """Times the live source reconnected."""
    sink_errors: int
    """Sink calls that raised."""
    fps: float
    """Frames processed per second of wall-clock time."""
    max_latency_s: float = 0.0
    """The largest frame age when its processing ended (live: since it arrived; files: processing time)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise ConfigError("the Prometheus metrics need prometheus_client: pip install 'visor-vision[serve]'") from None
    return prometheus_client


class _DeliveryCollector:
    """``visor_watch_webhook_deliveries_total{outcome}`` read from a webhook sender's counters when scraped."""

    OUTCOMES = ("sent", "failed", "retries", "dropped")

    def __init__(self) -> None:
        self.sender: Any = None

    def collect(self) -> Iterable[Any]:
        from prometheus_client.core import CounterMetricFamily

        family = CounterMetricFamily("visor_watch_webhook_deliveries", "webhook deliveries by outcome (sent, "
                                     "failed after the last attempt, retries, dropped on a full queue)",
                                     labels=["outcome"])
        sender = self.sender
        for outcome in self.OUTCOMES:
            family.add_metric([outcome], float(getattr(sender, outcome, 0) or 0) if sender is not None else 0.0)
        yield family


class WatchMetrics:
    """The metrics of a watch loop, in a :class:`prometheus_client.CollectorRegistry` of their own (never the
    global one): ``visor_watch_frames_total``, ``visor_watch_frames_dropped_total``,
    ``visor_watch_events_total{rule}``, ``visor_watch_reconnects_total``,
    ``visor_watch_webhook_deliveries_total{outcome}`` (see :meth:`watch_webhook`) and the gauge
    ``visor_watch_latency_seconds`` (the last frame's age when its processing ended).

    Raises :class:`~visor.errors.ConfigError` when prometheus_client (the ``serve`` extra) is missing.
    """

    def __init__(self) -> None:
        prom = _prometheus()
        self.registry = prom.CollectorRegistry()
        r = self.registry
        self.frames = prom.Counter("visor_watch_frames", "frames processed", registry=r)
        self.dropped = prom.Counter("visor_watch_frames_dropped", "live frames received but skipped (the loop was "
                                    "busy)", registry=r)
        self.events = prom.Counter("visor_watch_events", "events raised, by rule", ["rule"], registry=r)
        self.reconnects = prom.Counter("visor_watch_reconnects", "reconnections to the live source", registry=r)
        self.latency = prom.Gauge("visor_watch_latency_seconds", "age of the last frame when its processing "
                                  "ended, in seconds", registry=r)
        self._deliveries = _DeliveryCollector()
        r.register(self._deliveries)

    def watch_webhook(self, sender: Any) -> None:
        """Report ``sender``'s counters (``sent``, ``failed``, ``retries``, ``dropped``) as
        ``visor_watch_webhook_deliveries_total{outcome}``."""
        self._deliveries.sender = sender

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return _prometheus().generate_latest(self.registry)

    def serve(self, port: int, host: str = "127.0.0.1") -> Any:
        """Serve ``/metrics`` on ``host:port`` from a daemon thread; returns the server (``shutdown()`` it)."""
        prom = _prometheus()
        try:
            result = prom.start_http_server(port, addr=host, registry=self.registry)
        except OSError as e:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {e.strerror or e}") from None
        return result[0] if isinstance(result, tuple) else result


def snapshot_jpeg(image: Any, tracked: Any, *, labels: Sequence[str], zones: Any = None, trails: Any = None,
                  totals: dict | None = None, quality: int = SNAPSHOT_QUALITY) -> bytes:
    """The frame with its tracks, zones and lines drawn (:func:`visor.video.render.draw_frame`), as JPEG."""
    import io

    from PIL import Image

    from visor.video.render import draw_frame

    drawn = draw_frame(image, tracked.detections, labels=labels, trails=trails, zones=zones,
                       analytics=tracked.analytics, totals=totals)
    buf = io.BytesIO()
    Image.fromarray(drawn).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _detector(model: Any, threads: int | None, limits: Any) -> Any:
    """``model`` when it is a loaded detector, else the detector it names (default: the registry's)."""
    from visor.models import DEFAULT_DETECTOR, load
    from visor.models.detector import Detector

    if model is not None and not isinstance(model, (str, os.PathLike)):  # a loaded detector (or a wrapper)
        task = getattr(getattr(model, "card", None), "task", "detection")
        if task != "detection":
            raise ConfigError(f"{model.card.name} is a {task} model; watching needs an object detector")
        return model
    # spin=False: idle ONNX Runtime threads must not busy-wait while the stream's reader thread needs a core
    detector = load(model or DEFAULT_DETECTOR, limits=limits, threads=threads, spin=False)
    if not isinstance(detector, Detector):
        raise ConfigError(f"{detector.name} is a {detector.card.task} model; watching needs an object detector")
    return detector


def _deliver(sinks: Sequence[Sink], event: Any, snapshot: bytes) -> int:
    """``event`` to every sink; returns how many raised (each logged)."""
    errors = 0
    for sink in sinks:
        try:
            sink(event, snapshot)
        except Exception:
            errors += 1
            log.exception("event %s (rule %s): sink %r failed", getattr(event, "id", "?"),
                          getattr(event, "rule", "?"), sink)
    return errors


def watch(
    source: str | int,
    config: WatchConfig,
    *,
    model: Any = None,
    options: TrackerOptions | None = None,
    sinks: Sequence[Sink] = (),
    stop: threading.Event | None = None,
    metrics: WatchMetrics | None = None,
    backoff: Backoff | None = None,
    max_frames: int | None = None,
    threads: int | None = None,
    timeout_s: float = 10.0,
    limits: Any = None,
    image_limits: Any = None,
) -> WatchSummary:
    """Run rules over a live source or a video file until it ends, ``stop`` is set or ``max_frames`` frames
    were processed.

    ``source``: an RTSP/HTTP(S) URL or a webcam index (:func:`visor.io.stream.is_live_source`; opened with
    ``backoff`` and ``timeout_s``, reconnecting when the connection drops) or a video file. ``model``: a loaded
    detector, a model name or None for the default detector (``threads`` for the ones loaded here).
    ``config``: zones, lines and rules (:func:`visor.video.rules.load_rules`); its webhook/MQTT settings are
    not used here: pass their senders in ``sinks``. Each event and its JPEG snapshot go to every sink in
    order. Raises :class:`~visor.errors.StreamUnavailable` when a live source cannot be (re)connected within
    ``backoff.max_attempts``, :class:`~visor.errors.CorruptVideo` for a file that breaks off.
    """
    from visor.io.image import DEFAULT_LIMITS
    from visor.io.stream import Backoff, is_live_source, open_stream
    from visor.io.video import DEFAULT_VIDEO_LIMITS, open_video
    from visor.video.render import Trails
    from visor.video.rules import RuleEngine
    from visor.video.track import TrackerOptions, VideoTracker

    if max_frames is not None and (isinstance(max_frames, bool) or not isinstance(max_frames, int)
                                   or max_frames < 1):
        raise ConfigError(f"max_frames must be a whole number of at least 1, got {max_frames!r}")
    options = options or TrackerOptions()
    limits = limits or DEFAULT_VIDEO_LIMITS
    image_limits = image_limits or DEFAULT_LIMITS
    detector = _detector(model, threads, image_limits)
    live = is_live_source(source)
    # a live stream's frame timestamps count from its opening (microseconds after this): frame age is
    # time.monotonic() - (started + timestamp_s)
    started = time.monotonic()
    if live:
        reader = open_stream(source, backoff=backoff or Backoff(), timeout_s=timeout_s, limits=limits,
                             image_limits=image_limits, latest_only=True, stop=stop)
    else:
        reader = open_video(source, max_frames=max_frames, limits=limits, image_limits=image_limits)
    trails = Trails()
    frames = events = sink_errors = 0
    dropped_seen = reconnects_seen = 0
    max_latency = 0.0
    with reader:
        tracker = VideoTracker(detector, options=options, zones=config.zones, fps=getattr(reader, "fps", None),
                               trails=trails)
        shown = reader.source if live else str(source)  # a stream's is redacted
        engine = RuleEngine(config.rules, source=shown, labels=tracker.labels)
        for frame in reader:
            arrived = started + frame.timestamp_s if live else time.monotonic()
            # at a scene cut, the tracker resets its tracks, counts and trails, the engine its streaks
            tracked = tracker.process(frame)
            fired = engine.update(tracked)
            if fired:
                jpeg = snapshot_jpeg(frame.image, tracked, labels=tracker.labels, zones=config.zones, trails=trails,
                                     totals=tracker.counts())
                for event in fired:
                    sink_errors += _deliver(sinks, event, jpeg)
                    if metrics is not None:
                        metrics.events.labels(event.rule).inc()
                events += len(fired)
            frames += 1
            latency = max(0.0, time.monotonic() - arrived)
            max_latency = max(max_latency, latency)
            dropped = int(getattr(reader, "frames_dropped", 0))
            reconnects = int(getattr(reader, "reconnects", 0))
            if metrics is not None:
                metrics.frames.inc()
                metrics.latency.set(latency)
                metrics.dropped.inc(max(0, dropped - dropped_seen))
                metrics.reconnects.inc(max(0, reconnects - reconnects_seen))
            dropped_seen, reconnects_seen = dropped, reconnects
            if (max_frames is not None and frames >= max_frames) or (stop is not None and stop.is_set()):
                break
    # closed: a frame left in the slot counts as dropped now
    dropped = int(getattr(reader, "frames_dropped", dropped_seen))
    reconnects = int(getattr(reader, "reconnects", reconnects_seen))
    if metrics is not None:
        metrics.dropped.inc(max(0, dropped - dropped_seen))
        metrics.reconnects.inc(max(0, reconnects - reconnects_seen))
    elapsed = time.monotonic() - started
    return WatchSummary(frames=frames, events=events, dropped_frames=dropped, reconnects=reconnects,
                        sink_errors=sink_errors, fps=frames / elapsed if elapsed > 0 else 0.0,
                        max_latency_s=max_latency)

