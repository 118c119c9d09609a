"""API-key extraction, per-key rate limiting (token buckets), and keeping keys out of logs."""

from __future__ import annotations

import hmac
import logging
import math
import re
import threading
import time
from collections.abc import Mapping

from visor.errors import VisorError


class Unauthorized(VisorError):
    """No API key, or an unknown or revoked one (HTTP 401)."""

    http_status = 401
    code = "unauthorized"


class RateLimited(VisorError):
    """Too many requests for this key (HTTP 429); retry after ``retry_after`` seconds."""

    http_status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def key_from_request(headers: Mapping[str, str], query: Mapping[str, str], *, google: bool = False) -> str | None:
    """The API key a request carries: ``Authorization: Bearer``, ``X-API-Key``, and for the
    Cloud Vision route also Google's ``x-goog-api-key`` header and ``key`` query parameter."""
    auth = headers.get("authorization", "")
    if auth[:7].lower() == "bearer " and auth[7:].strip():
        return auth[7:].strip()
    if headers.get("x-api-key"):
        return headers["x-api-key"].strip()
    if google:
        if headers.get("x-goog-api-key"):
            return headers["x-goog-api-key"].strip()
        if query.get("key"):
            return query["key"].strip()
    return None


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second on average, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: int, clock=time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one token for ``key`` or raise :class:`RateLimited`."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[key] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise RateLimited(f"rate limit of {self.rate:g} requests/s exceeded for this key", max(1, wait))
            self._buckets[key] = (tokens - 1.0, now)


def bearer_matches(headers: Mapping[str, str], token: str) -> bool:
    """Whether the request's ``Authorization: Bearer`` credential is ``token`` (constant-time)."""
    auth = headers.get("authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    return bool(given) and hmac.compare_digest(given.encode("utf-8", "surrogatepass"),
                                               token.encode("utf-8", "surrogatepass"))


#: Query parameters that carry credentials (``?key=`` is the Cloud Vision clients' form).
CREDENTIAL_PARAMS = ("key", "api_key", "apikey", "access_token", "token")
_CREDENTIAL = re.compile(r"([?&](?:" + "|".join(CREDENTIAL_PARAMS) + r")=)[^&#\s\"]*", re.IGNORECASE)
REDACTED = "REDACTED"


def redact(text: str) -> str:
    """``text`` (a URL or a log line) with the values of credential query parameters replaced by REDACTED."""
    return _CREDENTIAL.sub(r"\1" + REDACTED, text)


class RedactCredentials(logging.Filter):
    """A logging filter that redacts credential query parameters from a record's message and arguments
    (uvicorn's access log line carries the full path with its query string)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log(loggers: tuple[str, ...] = ("uvicorn.access", "uvicorn.error")) -> None:
    """Attach :class:`RedactCredentials` to uvicorn's loggers (once): ``?key=`` never reaches a log file."""
    for name in loggers:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCredentials) for f in logger.filters):
            logger.addFilter(RedactCredentials())
