"""``visor watch``: run zone/line rules over a live stream or a video file and deliver each event.

Each event is printed as one JSON line on stdout, stored with its annotated snapshot in the service database
(``GET /v1/events`` lists them), POSTed to the rules file's webhook and published over its MQTT broker.

Exit status: 0 when the source ended or ``--max-frames`` frames were processed; 130 on Ctrl-C or SIGTERM
(after the webhook queue drained); 1 when the source cannot be read (a live source after its reconnection
attempts); 2 for bad options or a bad rules file.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from visor.cli.common import ExitCode, add_model_option, err, fraction, positive_int
from visor.errors import ConfigError, InvalidInput

#: Seconds ``visor watch`` waits for queued webhook deliveries when it stops.
DRAIN_TIMEOUT_S = 30.0


def port_number(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number up to 65535, got {value}")
    return value


def _source(text: str) -> str | int:
    """A webcam index stays a string here (``is_live_source`` takes all-digit strings)."""
    return text


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """Ctrl-C and SIGTERM set ``stop`` (the loop finishes its frame and ends); a second one interrupts at once."""

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous: dict[int, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
    except ValueError:  # not the main thread: leave the signals alone
        pass
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def tracker_options(conf: float | None) -> Any:
    """The tracker's defaults; a ``--conf`` above its low (or high) threshold raises that threshold with it."""
    from visor.video.track import TrackerOptions

    defaults = TrackerOptions()
    if conf is None:
        return defaults
    return TrackerOptions(conf=conf, low_thresh=max(conf, defaults.low_thresh),
                          track_thresh=max(conf, defaults.track_thresh))


def _print_event(event: Any, snapshot: bytes) -> None:
    print(json.dumps(event.to_dict()), flush=True)


def _mqtt_sink(config: Any) -> Any:
    import os

    from visor.video.mqtt import MqttPublisher

    password = None
    env = getattr(config, "password_env", None)
    if env:
        password = os.environ.get(env)
        if not password:
            raise ConfigError(f"the MQTT password's environment variable {env} is not set")
    return MqttPublisher(config, password)


def cmd_watch(args: argparse.Namespace) -> int:
    from visor.io.stream import Backoff
    from visor.serve.events import EventStore
    from visor.video.rules import load_rules
    from visor.video.watch import WatchMetrics, watch

    config = load_rules(args.rules)
    options = tracker_options(args.conf)
    backoff = Backoff(max_attempts=args.reconnect_attempts)
    metrics = WatchMetrics() if args.metrics_port is not None else None  # ConfigError without prometheus_client
    with contextlib.ExitStack() as stack:
        webhook = mqtt = None
        if config.webhook is not None:
            from visor.video.webhook import WebhookSender

            webhook = WebhookSender.from_config(config.webhook)  # the secret's variable is checked first
            stack.callback(lambda: webhook.close(DRAIN_TIMEOUT_S))
        if config.mqtt is not None:
            mqtt = _mqtt_sink(config.mqtt)
            stack.callback(mqtt.close)
        store = stack.enter_context(EventStore(args.db))
        if metrics is not None:
            if webhook is not None:
                metrics.watch_webhook(webhook)
            server = metrics.serve(args.metrics_port, args.metrics_host)
            stack.callback(server.shutdown)
        sinks = [store, _print_event, *(s for s in (webhook, mqtt) if s is not None)]
        stop = threading.Event()
        try:
            with _stop_on_signals(stop):
                summary = watch(args.source, config, model=args.model, options=options, sinks=sinks, stop=stop,
                                metrics=metrics, backoff=backoff, max_frames=args.max_frames, threads=args.threads)
        except ConfigError:
            raise
        except InvalidInput as e:  # the source: unreadable, or a live one that stayed unreachable
            err(f"{type(e).__name__}: {e}")
            return ExitCode.FAILED
    print(f"visor: watched {summary.frames} frames ({summary.fps:.1f}/s), {summary.events} events, "
          f"{summary.dropped_frames} frames skipped, {summary.reconnects} reconnects, "
          f"{summary.sink_errors} delivery errors", file=sys.stderr)
    return ExitCode.INTERRUPTED if stop.is_set() else ExitCode.OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``visor watch`` to the command parser."""
    p = sub.add_parser(
        "watch",
        help="watch a live stream or video for zone/line events: store, print, webhook, MQTT",
        description=(
            "Detect and track objects in SOURCE (rtsp://, http(s):// MJPEG, a webcam index, or a video file), "
            "count them in the zones and across the lines of the --rules file and fire its rules. Each event is "
            "printed as one JSON line, stored with an annotated snapshot in the service database (GET /v1/events), "
            "POSTed (HMAC-signed) to the rules file's webhook and published to its MQTT broker. A live source is "
            "read newest-frame-first (a slow model skips frames, it never falls behind) and reconnected with "
            "backoff when it drops. Runs until the source ends, --max-frames, or Ctrl-C (exit status 130, after "
            "queued webhook deliveries are sent)."
        ),
    )
    p.add_argument("source", type=_source, metavar="SOURCE", help="stream URL, webcam index or video file")
    p.add_argument("--rules", required=True, metavar="FILE",
                   help="YAML or JSON file: zones, lines, rules, and optional webhook and mqtt settings")
    add_model_option(p, "detection", role="object detector")
    p.add_argument("--db", default=None, metavar="URL",
                   help="database for the events: an SQLAlchemy URL or an SQLite file (default: the service's "
                        "database, the one 'visor serve' uses)")
    p.add_argument("--metrics-port", type=port_number, default=None, metavar="N",
                   help="serve Prometheus metrics on this port (/metrics; needs the serve extra)")
    p.add_argument("--metrics-host", default="127.0.0.1", metavar="HOST",
                   help="address the metrics server listens on (default 127.0.0.1)")
    p.add_argument("--max-frames", type=positive_int, default=None, metavar="N",
                   help="stop after processing N frames")
    p.add_argument("--reconnect-attempts", type=positive_int, default=None, metavar="N",
                   help="give up (exit status 1) after N failed connection attempts in a row (default: retry "
                        "forever)")
    p.add_argument("--conf", type=fraction, default=None,
                   help="detector score threshold (default 0.1: low, so that weak boxes can extend tracks; a "
                        "higher one raises the tracker's thresholds with it)")
    p.add_argument("--threads", type=positive_int, default=None, help="inference threads (default: one per "
                   "physical core)")
    p.set_defaults(func=cmd_watch)
