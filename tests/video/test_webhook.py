"""Webhook delivery: HMAC signatures, retries with backoff, give-up, a bounded queue; a loopback receiver."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import socket
import threading
import time
from datetime import UTC, datetime

import pytest

from visor.errors import ConfigError
from visor.video.rules import Event
from visor.video.webhook import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WebhookConfig,
    WebhookSender,
    redact_url,
    secret_from_env,
    sign,
    verify,
)

SECRET = b"s3cret-shared"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


def event(i: int = 0) -> Event:
    return Event(id=f"{i:032x}", rule="gate-in", kind="line", class_name="person", tracker_id=3, frame=10 + i,
                 timestamp_s=0.4, time=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), source="bikes.mp4", zone=None,
                 line="gate", direction="in", confidence=0.75, box=(1.0, 2.0, 3.0, 4.0))


class Receiver:
    """A loopback HTTP server: answers each POST with the next of ``statuses`` (then 200) and records the
    requests whose signature verifies with ``secret``."""

    def __init__(self, statuses=(), secret: bytes = SECRET, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses)
        self.requests: list[dict] = []
        self.verified = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(delay_s)
                ts, sig = self.headers.get(TIMESTAMP_HEADER), self.headers.get(SIGNATURE_HEADER)
                with outer.lock:
                    ok = sig is not None and verify(secret, ts, body, sig)
                    outer.verified += ok
                    outer.requests.append({"body": body, "headers": dict(self.headers), "verified": ok})
                    status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/visor?token=abc"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()


def config(url: str, **kw) -> WebhookConfig:
    return WebhookConfig(url=url, **{"backoff_initial_s": 0.01, "backoff_max_s": 0.05, "timeout_s": 5.0, **kw})


def test_sign_and_verify():
    body, ts = b'{"a":1}', "1700000000"
    signature = sign(SECRET, ts, body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    # the documented construction, computed independently
    import hashlib
    import hmac

    assert signature == "sha256=" + hmac.new(SECRET, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert verify(SECRET, ts, body, signature, now=1700000000 + 299)
    assert verify(SECRET, ts, body, signature.encode(), now=1700000000 - 300)
    assert not verify(b"wrong", ts, body, signature, now=1700000000)
    assert not verify(SECRET, ts, body + b" ", signature, now=1700000000)
    assert not verify(SECRET, "1700000001", body, signature, now=1700000000)  # the timestamp is signed
    # a replay outside the tolerance is refused, even with a valid signature
    assert not verify(SECRET, ts, body, signature, now=1700000000 + 301)
    assert not verify(SECRET, ts, body, signature, now=1700000000 + 3600, tolerance_s=3000)
    for bad_ts in ("", "soon", "nan", "inf"):
        assert not verify(SECRET, bad_ts, body, sign(SECRET, bad_ts, body), now=1700000000)
    assert not verify(SECRET, ts, body, "sha256=é", now=1700000000)


def test_delivered_once_after_two_503s_signature_verified():
    with Receiver(statuses=[503, 503]) as rx:
        sender = WebhookSender(config(rx.url), SECRET)
        assert sender.send(event(), b"\xff\xd8jpeg") is True
        assert sender.close(timeout_s=10) is True
    assert (sender.sent, sender.failed, sender.retries, sender.dropped) == (1, 0, 2, 0)
    assert len(rx.requests) == 3 and rx.verified == 3
    last = rx.requests[-1]
    assert last["headers"][EVENT_ID_HEADER] == event().id
    assert last["headers"]["Content-Type"] == "application/json"
    doc = json.loads(last["body"])
    assert doc["event"] == event().to_dict()
    assert base64.b64decode(doc["snapshot_jpeg_base64"]) == b"\xff\xd8jpeg"


def test_wrong_secret_fails_verification():
    with Receiver(secret=b"another") as rx:
        sender = WebhookSender(config(rx.url), SECRET)
        sender.send(event(), None)
        sender.close()
    assert rx.verified == 0 and len(rx.requests) == 1
    assert json.loads(rx.requests[0]["body"])["snapshot_jpeg_base64"] is None


def test_unsigned_without_secret_and_snapshots_off():
    with Receiver() as rx:
        sender = WebhookSender(config(rx.url, snapshots=False), None)
        sender.send(event(), b"jpeg")
        sender.close()
    (req,) = rx.requests
    assert SIGNATURE_HEADER not in req["headers"] and not req["verified"]
    assert json.loads(req["body"])["snapshot_jpeg_base64"] is None


def test_400_is_not_retried():
    with Receiver(statuses=[400]) as rx:
        sender = WebhookSender(config(rx.url), SECRET)
        sender.send(event())
        sender.close()
    assert (sender.sent, sender.failed, sender.retries) == (0, 1, 0) and len(rx.requests) == 1


def test_429_and_500_are_retried_then_given_up():
    with Receiver(statuses=[429, 500, 502]) as rx:
        sender = WebhookSender(config(rx.url, max_attempts=3), SECRET)
        sender.send(event())
        sender.close()
    assert (sender.sent, sender.failed, sender.retries) == (0, 1, 2) and len(rx.requests) == 3


def test_receiver_down_gives_up_after_max_attempts(caplog):
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook?token=very-secret-token"
    caplog.set_level(logging.DEBUG, logger="visor.video.webhook")
    start = time.monotonic()
    sender = WebhookSender(config(url, max_attempts=4, backoff_initial_s=0.02, backoff_factor=2.0,
                                  backoff_max_s=0.05), SECRET)
    sender.send(event())
    assert sender.close(timeout_s=10) is True
    elapsed = time.monotonic() - start
    assert (sender.sent, sender.failed, sender.retries, sender.dropped) == (0, 1, 3, 0)
    assert elapsed >= 0.02 + 0.04 + 0.05  # waits 0.02, 0.04, then capped at 0.05
    logged = caplog.text + repr(sender)
    assert "given up after 4 attempts" in caplog.text
    assert "very-secret-token" not in logged and "/hook" not in logged and SECRET.decode() not in logged
    assert f"http://127.0.0.1:{port}" in caplog.text


def test_full_queue_drops_without_blocking():
    with Receiver(delay_s=0.3) as rx:  # a slow receiver
        sender = WebhookSender(config(rx.url, queue_size=2), SECRET)
        start = time.monotonic()
        results = [sender.send(event(i)) for i in range(20)]
        spent = time.monotonic() - start
        assert spent < 0.2  # never waits for the receiver
        # one may be taken by the thread at once, two wait in the queue; the rest are dropped
        assert results[:2] == [True, True] and results.count(True) in (2, 3)
        assert sender.dropped == 20 - results.count(True)
        assert sender.close(timeout_s=10) is True
    assert sender.sent == results.count(True) == len(rx.requests)
    assert sender.send(event(99)) is False and sender.dropped == 20 - sender.sent + 1  # closed: dropped


def test_close_timeout_counts_the_rest_as_dropped():
    with Receiver(delay_s=0.3) as rx:
        sender = WebhookSender(config(rx.url, queue_size=10), SECRET)
        for i in range(5):
            sender.send(event(i))
        assert sender.close(timeout_s=0.1) is False
        assert sender.sent + sender.dropped + sender.failed == 5 and sender.dropped >= 3
        assert len(rx.requests) == sender.sent + sender.failed


def test_redirect_is_not_followed():
    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(307)
            self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        sender = WebhookSender(config(f"http://127.0.0.1:{server.server_address[1]}/"), SECRET)
        sender.send(event())
        sender.close()
    finally:
        server.shutdown()
        server.server_close()
    assert (sender.sent, sender.failed, sender.retries) == (0, 1, 0)


def test_secret_from_env(monkeypatch):
    cfg = WebhookConfig(url="https://example.invalid/x", secret_env="VISOR_TEST_HOOK_SECRET")
    monkeypatch.delenv("VISOR_TEST_HOOK_SECRET", raising=False)
    with pytest.raises(ConfigError, match="VISOR_TEST_HOOK_SECRET is not set"):
        secret_from_env(cfg)
    monkeypatch.setenv("VISOR_TEST_HOOK_SECRET", "hunter2")
    assert secret_from_env(cfg) == b"hunter2"
    assert secret_from_env(WebhookConfig(url="https://example.invalid/x")) is None


def test_config_validation_and_delays():
    assert list(WebhookConfig(url="http://h/", max_attempts=6).delays()) == [0.5, 1.0, 2.0, 4.0, 8.0]
    assert list(WebhookConfig(url="http://h/", max_attempts=8, backoff_max_s=10).delays())[-2:] == [10, 10]
    for kwargs, message in [({"url": "ftp://h/x"}, "http"), ({"url": "http:///x"}, "host"),
                            ({"url": "http://h:99999/"}, "valid URL"),
                            ({"url": "http://h/", "timeout_s": 0}, "timeout"),
                            ({"url": "http://h/", "backoff_factor": 0.5}, "backoff_factor"),
                            ({"url": "http://h/", "queue_size": 0}, "queue_size"),
                            ({"url": "http://h/", "secret_env": ""}, "secret_env")]:
        with pytest.raises(ConfigError, match=message):
            WebhookConfig(**kwargs)


def test_redact_url():
    assert redact_url("https://u:p@hooks.example.com:8443/api/webhook/abc?key=1") == "https://hooks.example.com:8443/..."
    assert redact_url("http://127.0.0.1:5000/") == "http://127.0.0.1:5000"
