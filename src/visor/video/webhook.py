"""Webhook delivery of watch events: HMAC-signed JSON POSTs from a background thread.

A receiver checks a request with :func:`verify`: the signature header ``X-Visor-Signature`` is
``sha256=<hex>``, the HMAC-SHA256 with the shared secret over ``timestamp + "." + body``, where
``timestamp`` is the ``X-Visor-Timestamp`` header (Unix seconds); a timestamp more than
``tolerance_s`` away from the receiver's clock is refused, so a captured request cannot be replayed
later. ``X-Visor-Event-Id`` carries the event id (a receiver can drop repeats: a retry after a lost
response sends the same event again).

:class:`WebhookSender` never blocks the video loop: events wait in a bounded queue (a full queue drops
the new event and counts it) and one thread posts them with :mod:`urllib.request` (no extra
dependency), retrying connection errors, timeouts, 429 and 5xx with exponential backoff.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import queue
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from visor.errors import ConfigError
from visor.video.sinks import EventLike as Event

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Visor-Timestamp"
SIGNATURE_HEADER = "X-Visor-Signature"
EVENT_ID_HEADER = "X-Visor-Event-Id"
MAX_RESPONSE_BYTES = 64 * 1024
"""At most this much of a receiver's answer is read (and then ignored)."""


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """``"sha256=<hex>"``: HMAC-SHA256 with ``secret`` over ``timestamp + "." + body``."""
    mac = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str | bytes, *, tolerance_s: float = 300,
           now: float | None = None) -> bool:
    """Whether ``signature`` is :func:`sign`'s for this request and ``timestamp`` (Unix seconds) is within
    ``tolerance_s`` of ``now`` (default: the current time). Constant-time comparison; a malformed timestamp or
    signature is False, never an exception."""
    try:
        sent = float(timestamp)
        expected = sign(secret, timestamp, body).encode("ascii")
        given = signature.encode("ascii") if isinstance(signature, str) else bytes(signature)
    except (TypeError, ValueError, UnicodeError):
        return False
    if not abs((time.time() if now is None else now) - sent) <= tolerance_s:  # also False for nan
        return False
    return hmac.compare_digest(expected, given)


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url`` for logs: no credentials, path or query (a webhook path or query
    often is the secret)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<invalid url>"
    tail = "/..." if (parts.path not in ("", "/") or parts.query) else ""
    return f"{parts.scheme}://{host}{port}{tail}"


@dataclass(frozen=True)
class WebhookConfig:
    """Where and how events are POSTed. ``secret_env`` names the environment variable that holds the
    shared HMAC secret (the secret never sits in the rules file); None sends unsigned requests.
    ``max_attempts`` counts every try of one event, the first included; retries wait ``backoff_initial_s``,
    then ``backoff_factor`` times longer each time, at most ``backoff_max_s``. ``queue_size`` events wait at
    most; ``snapshots`` adds the annotated JPEG (base64) to each POST."""

    url: str
    secret_env: str | None = None
    timeout_s: float = 10.0
    max_attempts: int = 5
    backoff_initial_s: float = 0.5
    backoff_factor: float = 2.0
    backoff_max_s: float = 30.0
    queue_size: int = 100
    snapshots: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.url, str):
            raise ConfigError("webhook url must be a string")
        try:
            parts = urllib.parse.urlsplit(self.url)
            parts.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError as e:
            raise ConfigError(f"webhook url is not a valid URL: {e}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("webhook url must be an http:// or https:// URL with a host")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("webhook url must not carry credentials; sign requests with secret_env instead")
        if self.secret_env is not None and (not isinstance(self.secret_env, str) or not self.secret_env
                                            or "=" in self.secret_env):
            raise ConfigError("webhook secret_env must be the name of an environment variable")
        _check_number("timeout_s", self.timeout_s, low=0.0, exclusive=True)
        _check_number("backoff_initial_s", self.backoff_initial_s, low=0.0)
        _check_number("backoff_factor", self.backoff_factor, low=1.0)
        _check_number("backoff_max_s", self.backoff_max_s, low=0.0)
        for name in ("max_attempts", "queue_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"webhook {name} must be an integer >= 1, got {value!r}")
        if not isinstance(self.snapshots, bool):
            raise ConfigError(f"webhook snapshots must be true or false, got {self.snapshots!r}")

    def delays(self) -> Iterator[float]:
        """The waits before the 2nd, 3rd... attempt (``max_attempts - 1`` of them)."""
        delay = self.backoff_initial_s
        for _ in range(self.max_attempts - 1):
            yield min(delay, self.backoff_max_s)
            delay *= self.backoff_factor


def _check_number(name: str, value: Any, *, low: float, exclusive: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and value != float("inf")
    if not ok or value < low or (exclusive and value == low):
        bound = f"> {low:g}" if exclusive else f">= {low:g}"
        raise ConfigError(f"webhook {name} must be a number {bound}, got {value!r}")


def secret_from_env(config: WebhookConfig) -> bytes | None:
    """The secret named by ``config.secret_env`` (UTF-8 bytes), None when it names none. A variable that is
    unset or empty raises :class:`ConfigError` naming the variable, never showing a value."""
    if config.secret_env is None:
        return None
    value = os.environ.get(config.secret_env)
    if not value:
        raise ConfigError(f"the webhook secret's environment variable {config.secret_env} is not set")
    return value.encode("utf-8")


def _opener() -> Any:
    """A urllib opener that refuses redirects: a POST must reach the configured URL (urllib would turn it
    into a GET without the body, or send it to another host). The 3xx answer raises HTTPError and counts as
    a failure."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    return urllib.request.build_opener(NoRedirect)


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


class WebhookSender:
    """POSTs events to ``config.url`` from a background thread. ``send`` (or calling the sender, which
    makes it a watch sink) only queues: a full queue drops the event (``dropped``). Each event is tried up to
    ``max_attempts`` times; connection errors, timeouts, 429 and 5xx are retried after a backoff (a 429's
    ``Retry-After`` seconds are honoured up to ``backoff_max_s``), any other answer outside 2xx is a failure
    at once. Counters: ``sent``, ``failed`` (given up), ``retries`` (attempts after a first), ``dropped``.
    Use as a context manager or call :meth:`close`."""

    def __init__(self, config: WebhookConfig, secret: bytes | None) -> None:
        self.config = config
        self._secret = secret
        self._queue: queue.Queue[tuple[Event, bytes | None]] = queue.Queue(maxsize=config.queue_size)
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._abort = threading.Event()
        self.sent = self.failed = self.retries = self.dropped = 0
        self._url = redact_url(config.url)
        self._thread = threading.Thread(target=self._run, name="visor-webhook", daemon=True)
        self._thread.start()

    @classmethod
    def from_config(cls, config: WebhookConfig) -> WebhookSender:
        """A sender whose secret comes from the environment variable ``config.secret_env``."""
        return cls(config, secret_from_env(config))

    def __repr__(self) -> str:  # never the secret, never the full URL
        return (f"WebhookSender({self._url}, sent={self.sent}, failed={self.failed}, retries={self.retries}, "
                f"dropped={self.dropped})")

    # ------------------------------------------------------------------ queueing

    def send(self, event: Event, snapshot: bytes | None = None) -> bool:
        """Queue ``event`` (and its JPEG snapshot); returns at once, False when it was dropped (queue full or
        sender closed)."""
        if self._closing.is_set():
            self._count("dropped")
            return False
        try:
            self._queue.put_nowait((event, snapshot))
        except queue.Full:
            self._count("dropped")
            log.warning("webhook %s: queue full (%d events), event %s dropped", self._url,
                        self.config.queue_size, event.id)
            return False
        return True

    def __call__(self, event: Event, snapshot: bytes | None = None) -> None:
        self.send(event, snapshot)

    @property
    def pending(self) -> int:
        """Events queued and not yet taken by the thread."""
        return self._queue.qsize()

    def close(self, timeout_s: float = 10.0) -> bool:
        """Stop taking events and deliver those queued, waiting at most ``timeout_s``; then the ones left are
        counted as dropped (an attempt under way ends within the HTTP timeout). True when all were handled."""
        self._closing.set()
        self._thread.join(max(0.0, timeout_s))
        drained = not self._thread.is_alive()
        if not drained:
            self._abort.set()
            self._thread.join(self.config.timeout_s + 1.0)
        while True:  # an event queued as the thread ended (send raced with close)
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
            self._count("dropped")
            drained = False
        return drained

    def __enter__(self) -> WebhookSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ the thread

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def _run(self) -> None:
        while True:
            try:
                event, snapshot = self._queue.get(timeout=0.05)
            except queue.Empty:
                if self._closing.is_set():
                    return
                continue
            if self._abort.is_set():
                self._count("dropped")
                continue
            try:
                self._deliver(event, snapshot)
            except Exception:  # a bug must not kill the thread and let the queue fill up
                log.exception("webhook %s: event %s could not be sent", self._url, event.id)
                self._count("failed")

    def body(self, event: Event, snapshot: bytes | None) -> bytes:
        """The JSON body POSTed for ``event``."""
        jpeg = base64.b64encode(snapshot).decode("ascii") if snapshot and self.config.snapshots else None
        return json.dumps({"event": event.to_dict(), "snapshot_jpeg_base64": jpeg},
                          separators=(",", ":")).encode("utf-8")

    def _deliver(self, event: Event, snapshot: bytes | None) -> None:
        body = self.body(event, snapshot)
        opener = _opener()
        delays = self.config.delays()
        attempt = 0
        while True:
            attempt += 1
            status, reason, retry_after = self._post(opener, event, body)
            if status is not None and 200 <= status < 300:
                self._count("sent")
                log.debug("webhook %s: event %s delivered (HTTP %d, attempt %d)", self._url, event.id, status,
                          attempt)
                return
            if status is not None and not _retryable(status):
                self._count("failed")
                log.warning("webhook %s: event %s refused (%s), not retried", self._url, event.id, reason)
                return
            delay = next(delays, None)
            if delay is None:
                self._count("failed")
                log.warning("webhook %s: event %s given up after %d attempts (%s)", self._url, event.id,
                            attempt, reason)
                return
            if retry_after is not None:
                delay = min(max(delay, retry_after), self.config.backoff_max_s)
            log.info("webhook %s: event %s attempt %d failed (%s), retrying in %.2f s", self._url, event.id,
                     attempt, reason, delay)
            if self._abort.wait(delay):
                self._count("failed")
                return
            self._count("retries")

    def _post(self, opener: Any, event: Event, body: bytes) -> tuple[int | None, str, float | None]:
        """One POST: (HTTP status or None for no answer, a reason for logs, Retry-After seconds or None)."""
        import http.client
        import urllib.error
        import urllib.request

        from visor.version import __version__

        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", "User-Agent": f"visor/{__version__}",
                   TIMESTAMP_HEADER: timestamp, EVENT_ID_HEADER: event.id}
        if self._secret is not None:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        request = urllib.request.Request(self.config.url, data=body, headers=headers, method="POST")  # noqa: S310 - http(s) only, checked in WebhookConfig
        try:
            with opener.open(request, timeout=self.config.timeout_s) as response:
                response.read(MAX_RESPONSE_BYTES)
                return response.status, f"HTTP {response.status}", None
        except urllib.error.HTTPError as e:
            with e:
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            return e.code, f"HTTP {e.code}", retry_after
        except (urllib.error.URLError, OSError, ValueError) as e:  # refused, unreachable, timeout, TLS, bad reply
            reason = getattr(e, "reason", e)
            return None, type(reason).__name__ if not isinstance(reason, str) else reason, None
        except http.client.HTTPException as e:  # a malformed answer, a connection closed mid-answer
            return None, type(e).__name__, None


def _retry_after(value: str | None) -> float | None:
    """A Retry-After header given in seconds (the HTTP-date form is ignored)."""
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < float("inf") else None


__all__ = ["EVENT_ID_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WebhookConfig", "WebhookSender",
           "redact_url", "secret_from_env", "sign", "verify"]
