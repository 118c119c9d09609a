"""``visor.video.watch``: the live loop, the event store, the events routes and the live acceptance test."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

BIKES_FRAMES = 250
#: A vertical line across the road of bikes.mp4 (640x272), drawn top to bottom: with yolox_nano, two people
#: walk across it from left to right ("out"), around frames 38 and 201; nothing else crosses it.
GATE = {"name": "gate", "start": [400, 0], "end": [400, 290]}
SECRET = b"test-webhook-secret"


# --------------------------------------------------------------------------- helpers


class WebhookReceiver:
    """A loopback webhook endpoint that checks each request's signature with :func:`visor.video.webhook.verify`."""

    def __init__(self, secret: bytes) -> None:
        self.secret = secret
        self.requests: list[dict] = []  # {"valid", "event", "snapshot", "event_id_header"}
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/hook"

    def __enter__(self) -> WebhookReceiver:
        from visor.video.webhook import EVENT_ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify(receiver.secret, self.headers.get(TIMESTAMP_HEADER, ""), body,
                               self.headers.get(SIGNATURE_HEADER, ""))
                doc = json.loads(body)
                receiver.requests.append({"valid": valid, "event": doc["event"],
                                          "snapshot": doc.get("snapshot_jpeg_base64"),
                                          "event_id_header": self.headers.get(EVENT_ID_HEADER)})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()


def make_event(i: int, *, rule: str = "crossing", when: datetime | None = None):
    from visor.video.rules import Event

    return Event(id=f"{i:032x}", rule=rule, kind="line", class_name="person", tracker_id=i, frame=10 * i,
                 timestamp_s=0.4 * i, time=when or datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=i),
                 source="rtsp://cam/1", zone=None, line="gate", direction="out", confidence=0.5 + i / 100,
                 box=(1.0, 2.0, 3.5, 4.25))


def stop_when_sent(server, n: int, stop: threading.Event, settle_s: float = 0.5) -> threading.Thread:
    """Set ``stop`` ``settle_s`` after ``server`` has sent ``n`` frames (or after 60 s)."""

    def run() -> None:
        deadline = time.monotonic() + 60
        while server.sent < n and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(settle_s)
        stop.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


class FakeDetector:
    """One box 20x20 moving 10 px right per frame, from x=0, class 0 ("person"); ``delay`` s per call."""

    labels = ("person", "car")

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    def check_options(self, **options):
        return options

    def run(self, images, **options):
        from visor.types import Detections

        time.sleep(self.delay)
        x = 10.0 * self.calls
        self.calls += 1
        return [Detections(np.array([[x, 20, x + 20, 40]], np.float32), np.array([0.9], np.float32),
                           np.array([0]), model="fake") for _ in images]


class Slowed:
    """A detector that sleeps ``delay`` seconds before each inference (a model slower than the camera)."""

    def __init__(self, detector, delay: float) -> None:
        self.detector = detector
        self.delay = delay
        self.card = detector.card
        self.longest = 0.0

    @property
    def labels(self):
        return self.detector.labels

    def check_options(self, **options):
        return self.detector.check_options(**options)

    def run(self, images, **options):
        start = time.monotonic()
        time.sleep(self.delay)
        out = self.detector.run(images, **options)
        self.longest = max(self.longest, time.monotonic() - start)
        return out


@pytest.fixture
def frames_folder(tmp_path: Path) -> Path:
    """12 grey 160x64 PNG frames."""
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(12):
        Image.fromarray(np.full((64, 160, 3), 90 + i, np.uint8)).save(folder / f"{i:03d}.png")
    return folder


def fake_config():
    from visor.video.rules import parse_rules

    # the box's bottom centre (x + 10, 40) crosses x = 55 between frames 4 (at x = 50) and 5 (at x = 60)
    return parse_rules({"lines": [{"name": "gate", "start": [55, 0], "end": [55, 64]}],
                        "rules": [{"name": "crossing", "line": "gate", "classes": ["person"]}]})


# --------------------------------------------------------------------------- the event store


def test_event_store_lists_newest_first_and_survives_a_restart(tmp_path: Path) -> None:
    from visor.serve.events import MAX_SNAPSHOT_BYTES, EventStore

    path = tmp_path / "db" / "events.db"
    with EventStore(path) as store:
        assert store.add(make_event(1), b"\xff\xd8one") is True
        assert store.add(make_event(3, rule="other"), None) is True
        assert store.add(make_event(2), b"x" * (MAX_SNAPSHOT_BYTES + 1)) is True  # stored without its snapshot
        assert store.add(make_event(1), b"again") is False  # the same id once
        assert [e["id"] for e in store.list()] == [f"{i:032x}" for i in (3, 2, 1)]
        assert [e["id"] for e in store.list(rule="crossing")] == [f"{2:032x}", f"{1:032x}"]
        assert [e["id"] for e in store.list(limit=1)] == [f"{3:032x}"]
        assert store.list(rule="nothing") == []
    assert (path.stat().st_mode & 0o777) == 0o600
    with EventStore(f"sqlite:///{path}") as again:  # a new store on the same file: still there
        first = again.list(rule="crossing")[-1]
        assert first == {**make_event(1).to_dict(), "snapshot": True}
        assert first["time"] == "2026-01-01T00:00:01+00:00"
        assert again.snapshot(f"{1:032x}") == b"\xff\xd8one"
        assert again.snapshot(f"{2:032x}") is None  # over the cap
        assert again.snapshot("nope") is None
        assert again.count() == 3


def test_event_store_refuses_bad_limits(tmp_path: Path) -> None:
    from visor.errors import InvalidInput
    from visor.serve.events import EventStore

    with EventStore(tmp_path / "e.db") as store:
        for bad in (0, 1001, True, 2.0):
            with pytest.raises(InvalidInput, match="limit"):
                store.list(limit=bad)


def test_events_routes(tmp_path: Path) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from visor.serve.app import create_app
    from visor.serve.db import ServiceDB
    from visor.serve.events import EventStore
    from visor.serve.keys import KeyStore
    from visor.serve.settings import ServeSettings

    url = f"sqlite:///{tmp_path / 'serve.db'}"
    with ServiceDB(url) as db:
        _, key = KeyStore(db).create("t")
        store = EventStore(db)
        store.add(make_event(1), b"\xff\xd8jpeg")
        store.add(make_event(2, rule="other"))
    app = create_app(ServeSettings(db=url, faces_db=str(tmp_path / "faces.db")))
    h = {"X-API-Key": key}

    client = TestClient(app)  # no lifespan: the models never load; the events routes need none
    paths = ["/v1/events", "/v1/events?rule=crossing&limit=5", "/v1/events?limit=0",
             f"/v1/events/{1:032x}/snapshot", f"/v1/events/{2:032x}/snapshot", "/v1/events/nope/snapshot"]
    r = {p: client.get(p, headers=h) for p in paths}
    r["no key"] = client.get("/v1/events")
    assert r["no key"].status_code == 401
    assert r["/v1/events"].status_code == 200
    assert [e["id"] for e in r["/v1/events"].json()] == [f"{2:032x}", f"{1:032x}"]
    assert [e["rule"] for e in r["/v1/events?rule=crossing&limit=5"].json()] == ["crossing"]
    assert r["/v1/events?limit=0"].status_code == 400
    snap = r[f"/v1/events/{1:032x}/snapshot"]
    assert (snap.status_code, snap.headers["content-type"], snap.content) == (200, "image/jpeg", b"\xff\xd8jpeg")
    for missing in (f"/v1/events/{2:032x}/snapshot", "/v1/events/nope/snapshot"):  # no snapshot; no such event
        assert (r[missing].status_code, r[missing].json()["error"]["code"]) == (404, "event_not_found")


# --------------------------------------------------------------------------- the loop (a fake detector)


def test_watch_file_sends_each_event_to_every_sink(frames_folder: Path) -> None:
    from visor.video.watch import WatchMetrics, watch

    got: list = []

    def failing(event, jpeg):
        raise RuntimeError("sink down")

    metrics = WatchMetrics()
    summary = watch(str(frames_folder / "*.png"), fake_config(), model=FakeDetector(),
                    sinks=[failing, lambda e, j: got.append((e, j))], metrics=metrics)
    assert (summary.frames, summary.events, summary.sink_errors) == (12, 1, 1)
    assert (summary.dropped_frames, summary.reconnects) == (0, 0)
    (event, jpeg), = got  # the failing sink stopped nothing
    assert (event.rule, event.kind, event.line, event.class_name, event.direction) == ("crossing", "line", "gate",
                                                                                       "person", "out")
    # ByteTrack confirms the track on its 2nd frame; the crossing is seen on frame 5
    assert (event.frame, event.tracker_id) == (5, 1)
    assert event.box == (50.0, 20.0, 70.0, 40.0)
    assert jpeg[:2] == b"\xff\xd8"
    import io

    from PIL import Image

    assert Image.open(io.BytesIO(jpeg)).size == (160, 64)
    text = metrics.exposition().decode()
    assert "visor_watch_frames_total 12.0" in text
    assert 'visor_watch_events_total{rule="crossing"} 1.0' in text
    assert "visor_watch_frames_dropped_total 0.0" in text
    assert 'visor_watch_webhook_deliveries_total{outcome="sent"} 0.0' in text


def test_watch_stops_at_max_frames_and_on_stop(frames_folder: Path) -> None:
    from visor.errors import ConfigError
    from visor.video.watch import watch

    assert watch(str(frames_folder), fake_config(), model=FakeDetector(), max_frames=3).frames == 3
    stop = threading.Event()
    stop.set()
    assert watch(str(frames_folder), fake_config(), model=FakeDetector(), stop=stop).frames == 1
    with pytest.raises(ConfigError, match="max_frames"):
        watch(str(frames_folder), fake_config(), model=FakeDetector(), max_frames=0)


def test_watch_metrics_serve_prometheus_text() -> None:
    import urllib.request

    from visor.video.watch import WatchMetrics

    metrics = WatchMetrics()
    metrics.frames.inc(3)

    class Sender:
        sent, failed, retries, dropped = 4, 1, 2, 0

    metrics.watch_webhook(Sender())
    server = metrics.serve(0)
    try:
        port = server.server_address[1]
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert "visor_watch_frames_total 3.0" in text
    assert 'visor_watch_webhook_deliveries_total{outcome="sent"} 4.0' in text
    assert 'visor_watch_webhook_deliveries_total{outcome="retries"} 2.0' in text
    assert "visor_watch_latency_seconds 0.0" in text
    assert WatchMetrics().registry is not metrics.registry


# --------------------------------------------------------------------------- the live acceptance test


@pytest.fixture(scope="module")
def bikes_jpegs(shared_data) -> list[bytes]:
    from mjpeg_server import encode_video

    frames = encode_video(shared_data("videos") / "bikes.mp4")
    assert len(frames) == BIKES_FRAMES
    return frames


def test_watch_live_stream_reconnects_signs_and_stores(yolox_nano, bikes_jpegs, tmp_path: Path) -> None:
    from mjpeg_server import MjpegServer
    from visor.io.stream import Backoff
    from visor.serve.events import EventStore
    from visor.video.rules import parse_rules
    from visor.video.watch import WatchMetrics, watch
    from visor.video.webhook import WebhookSender

    db = tmp_path / "serve.db"
    seen: list = []
    with WebhookReceiver(SECRET) as hook, MjpegServer(bikes_jpegs, fps=25, drop_after=100) as server:
        config = parse_rules({"lines": [GATE], "rules": [{"name": "crossing", "line": "gate", "classes": ["person"]}],
                              "webhook": {"url": hook.url, "secret_env": "UNUSED_HERE", "backoff_initial_s": 0.05}})
        sender = WebhookSender(config.webhook, SECRET)
        metrics = WatchMetrics()
        metrics.watch_webhook(sender)
        stop = threading.Event()
        stopper = stop_when_sent(server, BIKES_FRAMES, stop)
        with EventStore(db) as store:
            summary = watch(server.url, config, model=yolox_nano, sinks=[store, sender, lambda e, j: seen.append(e)],
                            stop=stop, metrics=metrics, backoff=Backoff(initial_s=0.05, max_attempts=5))
        stopper.join()
        assert sender.close(10)
        assert server.connections >= 2
    # the connection dropped after frame 100 and the loop went on from frame 101
    assert summary.reconnects >= 1
    assert summary.frames + summary.dropped_frames == BIKES_FRAMES
    assert summary.sink_errors == 0
    ids = [e.id for e in seen]
    assert 1 <= summary.events == len(ids) <= 2
    assert all((e.line, e.class_name, e.direction) == ("gate", "person", "out") for e in seen)
    # the two people cross near frames 38 and 201 (the second after the reconnect)
    assert all(30 <= e.frame <= 45 or 190 <= e.frame <= 215 for e in seen)
    assert summary.dropped_frames > 0 or summary.events == 2
    # every event reached the receiver once, signed
    assert sorted(r["event"]["id"] for r in hook.requests) == sorted(ids)
    assert all(r["valid"] and r["event_id_header"] == r["event"]["id"] and r["snapshot"] for r in hook.requests)
    assert (sender.sent, sender.failed, sender.dropped) == (len(ids), 0, 0)
    text = metrics.exposition().decode()
    assert f'visor_watch_events_total{{rule="crossing"}} {float(len(ids))}' in text
    assert f'visor_watch_webhook_deliveries_total{{outcome="sent"}} {float(len(ids))}' in text
    assert f"visor_watch_reconnects_total {float(summary.reconnects)}" in text
    # a restart: a new store on the same database file lists them, snapshots included
    with EventStore(db) as again:
        listed = again.list()
        assert sorted(e["id"] for e in listed) == sorted(ids)
        assert [e["frame"] for e in listed] == sorted((e.frame for e in seen), reverse=True)
        assert all(again.snapshot(i)[:2] == b"\xff\xd8" for i in ids)


def test_watch_latency_stays_bounded_with_a_slow_model(yolox_nano, bikes_jpegs) -> None:
    from mjpeg_server import MjpegServer
    from visor.video.rules import parse_rules
    from visor.video.watch import WatchMetrics, watch

    n = 100  # 4 s at 25 fps; the slowed model takes over 0.15 s per frame
    slow = Slowed(yolox_nano, 0.15)
    config = parse_rules({"lines": [GATE], "rules": [{"name": "crossing", "line": "gate"}]})
    metrics = WatchMetrics()
    with MjpegServer(bikes_jpegs[:n], fps=25) as server:
        stop = threading.Event()
        stop_when_sent(server, n, stop, settle_s=0.3)
        summary = watch(server.url, config, model=slow, stop=stop, metrics=metrics)
    # newest frame first: the model sees a fraction of the frames, and none waits behind a queue
    assert summary.frames + summary.dropped_frames == n
    assert summary.dropped_frames > n / 2
    assert 5 <= summary.frames <= n / 3
    # the frame taken is the newest (at most one frame interval, 0.04 s, old): its age when done is about one
    # inference (+ decoding, tracking); a queue would make it grow to seconds
    assert summary.max_latency_s < slow.longest + 0.2
    assert summary.max_latency_s < 0.5
    gauge = metrics.registry.get_sample_value("visor_watch_latency_seconds")
    assert 0.15 <= gauge <= summary.max_latency_s
    assert metrics.registry.get_sample_value("visor_watch_frames_dropped_total") == summary.dropped_frames
