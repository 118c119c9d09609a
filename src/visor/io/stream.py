"""Live video sources: HTTP(S) MJPEG, RTSP and webcams, with reconnects and a latest-frame slot.

:func:`open_stream` returns a :class:`LiveStream`, a context manager that yields
:class:`~visor.io.video.Frame` objects like :func:`~visor.io.video.open_video` does. A background
thread reads the source; with ``latest_only`` (the default) it keeps only the newest frame in a single
slot, so a consumer slower than the camera always gets the most recent frame and never a growing
queue (frames overwritten before being taken are counted in ``frames_dropped``).

* ``http://`` / ``https://``: a ``multipart/x-mixed-replace`` (MJPEG) answer read with the standard
  library. Each part is capped by ``image_limits.max_bytes`` while it is read and decoded by
  :func:`~visor.io.open_image` (pixel cap before decoding). Credentials in the URL are sent as HTTP
  Basic authentication. Any other answer (another content type, a 3xx or 4xx status) is refused at once.
* ``rtsp://`` / ``rtsps://`` and webcam indices (``0``, ``"1"``): OpenCV (FFmpeg for RTSP, with open and
  read timeouts of ``timeout_s``); frames larger than ``limits.max_pixels`` are refused.

A connection attempt succeeds when its first frame arrives. A lost connection is retried at once, then
after the waits of :class:`Backoff`; ``max_attempts`` consecutive failed attempts end the stream with
:class:`~visor.errors.StreamUnavailable`. Passwords (and secret-looking query parameters) are redacted
in ``LiveStream.source``, in log lines and in error messages.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import logging
import re
import socket
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import numpy as np

from visor.errors import CorruptImage, ImageTooLarge, InvalidInput, StreamUnavailable, VisorError
from visor.io.image import DEFAULT_LIMITS, ImageLimits, open_image
from visor.io.video import DEFAULT_VIDEO_LIMITS, Frame, VideoLimits

log = logging.getLogger("visor.io.stream")

_URL_SCHEMES = ("rtsp", "rtsps", "http", "https")
_SECRET_PARAM = re.compile(r"pass|pwd|token|secret|key|auth|sig", re.IGNORECASE)
_MAX_HEADER_LINE = 8192
_MAX_HEADER_LINES = 64
_MAX_PREAMBLE = 65536
_POLL_S = 0.1


def is_live_source(source: str | int) -> bool:
    """True for ``rtsp://``, ``rtsps://``, ``http://``, ``https://`` URLs and webcam indices (an int or a
    string of digits)."""
    if isinstance(source, bool):
        return False
    if isinstance(source, int):
        return source >= 0
    if not isinstance(source, str):
        return False
    if source.isascii() and source.isdigit():
        return True
    scheme, sep, _ = source.partition("://")
    return bool(sep) and scheme.lower() in _URL_SCHEMES


def redact(source: str | int) -> str:
    """``source`` with the password of its ``user:password@`` part and the values of secret-looking query
    parameters (password, token, key, ...) replaced by ``***``."""
    text = str(source)
    try:
        parts = urllib.parse.urlsplit(text)
    except ValueError:
        return re.sub(r"(://[^/@:]*):[^/@]*@", r"\1:***@", text)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:***@{hostport}" if colon else f"{user}@{hostport}"
    query = parts.query
    if query:
        pairs = urllib.parse.parse_qsl(query, keep_blank_values=True)
        if any(_SECRET_PARAM.search(k) for k, _ in pairs):
            query = "&".join(f"{k}=***" if _SECRET_PARAM.search(k) else f"{k}={v}" for k, v in pairs)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Backoff:
    """Waits between reconnect attempts: ``initial_s``, then multiplied by ``factor`` up to ``max_s``."""

    initial_s: float = 0.5
    factor: float = 2.0
    max_s: float = 30.0
    max_attempts: int | None = None
    """Consecutive failed connection attempts before giving up; None = retry forever."""

    def __post_init__(self) -> None:
        if not (self.initial_s >= 0 and self.max_s >= self.initial_s and self.factor >= 1):
            raise InvalidInput("backoff needs 0 <= initial_s <= max_s and factor >= 1, got "
                               f"initial_s={self.initial_s}, max_s={self.max_s}, factor={self.factor}")
        if self.max_attempts is not None and self.max_attempts < 1:
            raise InvalidInput(f"backoff max_attempts must be at least 1 (or None), got {self.max_attempts}")

    def delays(self) -> Iterator[float]:
        """The waits after the 1st, 2nd, ... failed attempt, endless (the caller counts attempts)."""
        delay = self.initial_s
        while True:
            yield delay
            delay = min(delay * self.factor, self.max_s)


class _Lost(Exception):
    """The connection failed or broke; worth another attempt."""


# ------------------------------------------------------------------------------------------ connections


class _Connection:
    """One connection to the source; ``frames()`` yields payloads until it breaks (raises _Lost)."""

    kind: str

    def frames(self) -> Iterator[Any]:  # pragma: no cover - overridden
        raise NotImplementedError

    def abort(self) -> None:
        """Unblock a read from another thread (best effort)."""

    def close(self) -> None:  # pragma: no cover - overridden
        pass


class _MjpegConnection(_Connection):
    kind = "jpeg"

    def __init__(self, url: str, shown: str, *, timeout_s: float, image_limits: ImageLimits) -> None:
        parts = urllib.parse.urlsplit(url)
        self.shown = shown
        self.max_bytes = image_limits.max_bytes
        host = parts.hostname or ""
        if not host:
            raise InvalidInput(f"{shown}: the URL names no host")
        try:
            port = parts.port
        except ValueError:
            raise InvalidInput(f"{shown}: the URL's port is not valid") from None
        cls = http.client.HTTPSConnection if parts.scheme.lower() == "https" else http.client.HTTPConnection
        self.conn = cls(host, port, timeout=timeout_s)
        self.response: http.client.HTTPResponse | None = None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        headers = {"Accept": "multipart/x-mixed-replace, */*;q=0.1", "User-Agent": "visor", "Connection": "close"}
        if parts.username is not None:
            user = urllib.parse.unquote(parts.username)
            password = urllib.parse.unquote(parts.password or "")
            token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        self.sock: socket.socket | None = None
        try:
            self.conn.connect()
            self.sock = self.conn.sock  # kept: the connection hands its socket to a closing response
            self.conn.request("GET", path, headers=headers)
            response = self.conn.getresponse()
        except (OSError, http.client.HTTPException) as e:
            self.close()
            raise _Lost(_describe(e)) from None
        self.response = response
        status = response.status
        if status != 200:
            self.close()
            reason = f"HTTP {status} {response.reason}".strip()
            if status >= 500 or status in (408, 429):
                raise _Lost(reason)
            hint = " (credentials missing or refused)" if status in (401, 403) else ""
            raise StreamUnavailable(f"{shown}: the server answered {reason}{hint}, not an MJPEG stream")
        ctype = response.getheader("Content-Type") or ""
        mime, params = _content_type(ctype)
        boundary = params.get("boundary", "")
        if not mime.startswith("multipart/") or not boundary:
            self.close()
            raise StreamUnavailable(f"{shown}: the server answered Content-Type {ctype or '(none)'!r}, not an MJPEG "
                                    "stream (multipart/x-mixed-replace with a boundary)")
        b = boundary.encode("latin-1")
        self.delimiters = (b"--" + b, b) if b.startswith(b"--") else (b"--" + b,)
        self.closings = tuple(d + b"--" for d in self.delimiters)

    def _line(self) -> bytes:
        assert self.response is not None
        line = self.response.readline(_MAX_HEADER_LINE + 1)
        if not line:
            raise _Lost("the server closed the stream")
        return line

    def _is_delimiter(self, line: bytes) -> bool:
        return line.strip().startswith(self.delimiters)

    def frames(self) -> Iterator[bytes]:
        try:
            yield from self._parts()
        except VisorError:
            raise
        except (OSError, http.client.HTTPException, ValueError) as e:
            raise _Lost(_describe(e)) from None

    def _parts(self) -> Iterator[bytes]:
        assert self.response is not None
        response = self.response
        at_delimiter = False
        while True:
            if not at_delimiter:  # skip the blank line after a part (and any preamble) up to the boundary
                skipped = 0
                while True:
                    line = self._line()
                    if self._is_delimiter(line):
                        break
                    skipped += len(line)
                    if skipped > _MAX_PREAMBLE:
                        raise _Lost(f"no multipart boundary within {_MAX_PREAMBLE} bytes")
            if line.strip() in self.closings:
                raise _Lost("the server ended the multipart stream")
            length: int | None = None
            for _ in range(_MAX_HEADER_LINES):
                header = self._line()
                if not header.strip():
                    break
                name, _, value = header.decode("latin-1").partition(":")
                if name.strip().lower() == "content-length":
                    try:
                        length = int(value.strip())
                    except ValueError:
                        raise _Lost(f"invalid part Content-Length {value.strip()!r}") from None
                    if length < 0:
                        raise _Lost(f"invalid part Content-Length {length}")
            else:
                raise _Lost(f"a part has more than {_MAX_HEADER_LINES} header lines")
            if length is not None:
                if length > self.max_bytes:
                    raise ImageTooLarge(f"{self.shown}: a frame of {length} bytes exceeds the limit of "
                                        f"{self.max_bytes} bytes")
                body = response.read(length)
                if len(body) < length:
                    raise _Lost("the server closed the stream within a frame")
                at_delimiter = False
            else:  # no length: the part runs until the next boundary line, or a JPEG's end marker at a line end
                chunks: list[bytes] = []
                size = 0
                at_delimiter = True
                while True:
                    line = response.readline(self.max_bytes + 3 - size)
                    if not line:
                        raise _Lost("the server closed the stream within a frame")
                    if self._is_delimiter(line):
                        break
                    chunks.append(line)
                    size += len(line)
                    if size > self.max_bytes + 2:
                        raise ImageTooLarge(f"{self.shown}: a frame exceeds the limit of {self.max_bytes} bytes")
                    if line.endswith((b"\xff\xd9\r\n", b"\xff\xd9\n")) and chunks[0].startswith(b"\xff\xd8"):
                        at_delimiter = False  # handed out now, not when the next frame's boundary arrives
                        break
                body = b"".join(chunks)
                body = body[:-2] if body.endswith(b"\r\n") else body[:-1] if body.endswith(b"\n") else body
                if len(body) > self.max_bytes:
                    raise ImageTooLarge(f"{self.shown}: a frame exceeds the limit of {self.max_bytes} bytes")
            yield body

    def abort(self) -> None:
        sock = self.sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        if self.response is not None:
            self.response.close()
        self.conn.close()


class _CaptureConnection(_Connection):
    """RTSP through OpenCV's FFmpeg backend, or a webcam by index."""

    kind = "bgr"

    def __init__(self, source: str | int, shown: str, *, timeout_s: float, limits: VideoLimits) -> None:
        import cv2  # only live OpenCV sources pay for the import

        self.shown = shown
        ms = max(1, round(timeout_s * 1000))
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
        try:
            if isinstance(source, int):
                cap = cv2.VideoCapture(source, cv2.CAP_ANY, params)
            else:
                cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
        except cv2.error as e:
            raise _Lost(f"OpenCV cannot open it: {_describe(e)}") from None
        if not cap.isOpened():
            cap.release()
            raise _Lost("no camera with that index, or it is busy" if isinstance(source, int)
                        else "cannot connect (unreachable, refused, or not a video stream)")
        self.cap = cap
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        if width * height > limits.max_pixels:
            cap.release()
            raise ImageTooLarge(f"{shown}: frames are {width}x{height} = {width * height} pixels; "
                                f"the limit is {limits.max_pixels}")
        self.max_pixels = limits.max_pixels

    def frames(self) -> Iterator[np.ndarray]:
        import cv2

        while True:
            try:
                ok, bgr = self.cap.read()
            except cv2.error as e:
                raise _Lost(f"OpenCV read failed: {_describe(e)}") from None
            if not ok or bgr is None:
                raise _Lost("no frame within the read timeout, or the stream ended")
            if bgr.ndim != 3 or bgr.shape[2] != 3:
                raise _Lost(f"unexpected frame shape {bgr.shape}")
            if bgr.shape[0] * bgr.shape[1] > self.max_pixels:
                raise ImageTooLarge(f"{self.shown}: a frame is {bgr.shape[1]}x{bgr.shape[0]} pixels; "
                                    f"the limit is {self.max_pixels}")
            yield bgr

    def close(self) -> None:
        self.cap.release()


def _content_type(value: str) -> tuple[str, dict[str, str]]:
    mime, *rest = value.split(";")
    params = {}
    for item in rest:
        key, _, val = item.partition("=")
        params[key.strip().lower()] = val.strip().strip('"')
    return mime.strip().lower(), params


def _describe(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


# ------------------------------------------------------------------------------------------ the stream


class LiveStream:
    """Frames of a live source, the newest first. An iterator (a loop left with ``break`` can be resumed); use
    it as a context manager or call :meth:`close`. Made by :func:`open_stream`."""

    def __init__(self, source: str | int, *, backoff: Backoff, timeout_s: float, limits: VideoLimits,
                 image_limits: ImageLimits, latest_only: bool, stop: threading.Event | None) -> None:
        if not is_live_source(source):
            raise InvalidInput(f"{redact(source)}: not a live source (rtsp://, rtsps://, http://, https:// URL "
                               "or a webcam index)")
        if not timeout_s > 0:
            raise InvalidInput(f"timeout_s must be positive, got {timeout_s}")
        self._target: str | int = int(source) if isinstance(source, int) or source.isdigit() else source
        self.source: str = redact(source)
        """The source as given, any password redacted."""
        self.backoff = backoff
        self.timeout_s = float(timeout_s)
        self.limits = limits
        self.image_limits = image_limits
        self.latest_only = latest_only
        self.frames_received = 0
        """Frames read from the source (counting those dropped)."""
        self.frames_dropped = 0
        """Frames received but never handed out (overwritten in the slot by a newer one, or left at close)."""
        self.frames_corrupt = 0
        """Frames received but skipped because they did not decode."""
        self.reconnects = 0
        """Times an established connection was lost and reconnecting began."""
        self.failed_attempts = 0
        """Connection attempts that failed (all of them, not only consecutive ones)."""
        self.connected = False
        """True while a connection delivers frames."""
        self._stop = stop
        self._closing = threading.Event()
        self._cond = threading.Condition()
        self._slot: tuple[int, float, str, Any] | None = None
        self._error: BaseException | None = None
        self._ever_connected = False
        self._done = False
        self._conn: _Connection | None = None
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"visor-stream {self.source}", daemon=True)

    # ------------------------------------------------------------------ consumer side

    def _start(self) -> None:
        """Start reading; block until the first frame arrives, an error is final, or the stream is stopped."""
        self._thread.start()
        try:
            with self._cond:
                while self._slot is None and self._error is None and not self._done and not self._stopping():
                    self._cond.wait(_POLL_S)
                error = self._error if self._slot is None else None
        except BaseException:
            self.close()
            raise
        if error is not None:
            self.close()
            raise error

    def _stopping(self) -> bool:
        return self._closing.is_set() or (self._stop is not None and self._stop.is_set())

    def __enter__(self) -> LiveStream:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __iter__(self) -> LiveStream:
        return self

    def __next__(self) -> Frame:
        """The newest frame not handed out yet (waits for one); StopIteration once closed or stopped."""
        frame = self._next()
        if frame is None:
            raise StopIteration
        return frame

    def _take(self) -> tuple[int, float, str, Any] | None:
        with self._cond:
            while True:
                if self._slot is not None:
                    item = self._slot
                    self._slot = None
                    self._cond.notify_all()
                    return item
                if self._error is not None:
                    raise self._error
                if self._done or self._stopping():
                    return None
                self._cond.wait(_POLL_S)

    def _next(self) -> Frame | None:
        while True:
            item = self._take()
            if item is None:
                self.close()
                return None
            index, ts, kind, payload = item
            if kind == "bgr":
                import cv2

                return Frame(index, ts, cv2.cvtColor(payload, cv2.COLOR_BGR2RGB))
            try:
                image = np.asarray(open_image(payload, limits=self.image_limits))
            except ImageTooLarge as e:
                raise ImageTooLarge(f"{self.source}: frame {index}: {e}") from None
            except CorruptImage as e:
                self.frames_corrupt += 1
                log.warning("%s: frame %d skipped: %s", self.source, index, e)
                continue
            return Frame(index, ts, image)

    def close(self) -> None:
        """Stop the reader thread and drop the connection. Safe to call twice; iteration then ends."""
        self._closing.set()
        conn = self._conn
        if conn is not None:
            conn.abort()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(self.timeout_s + 1.0)
        with self._cond:
            if self._slot is not None:
                self._slot = None
                self.frames_dropped += 1
            self._cond.notify_all()

    def __repr__(self) -> str:
        return (f"LiveStream({self.source!r}, connected={self.connected}, frames_received={self.frames_received}, "
                f"frames_dropped={self.frames_dropped}, reconnects={self.reconnects})")

    # ------------------------------------------------------------------ reader thread

    def _connect(self) -> _Connection:
        if isinstance(self._target, str) and self._target.lower().startswith(("http://", "https://")):
            return _MjpegConnection(self._target, self.source, timeout_s=self.timeout_s,
                                    image_limits=self.image_limits)
        return _CaptureConnection(self._target, self.source, timeout_s=self.timeout_s, limits=self.limits)

    def _put(self, kind: str, payload: Any) -> None:
        with self._cond:
            if not self.latest_only:
                while self._slot is not None and not self._stopping():
                    self._cond.wait(_POLL_S)
                if self._stopping():
                    return
            elif self._slot is not None:
                self.frames_dropped += 1
            self._slot = (self.frames_received, time.monotonic() - self._t0, kind, payload)
            self.frames_received += 1
            self._cond.notify_all()

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self._stopping():
            left = end - time.monotonic()
            if left <= 0:
                return
            self._closing.wait(min(left, _POLL_S))

    def _fail(self, error: BaseException) -> None:
        with self._cond:
            self._error = error
            self._cond.notify_all()

    def _run(self) -> None:
        failures = 0
        delays = self.backoff.delays()
        max_attempts = self.backoff.max_attempts
        try:
            while not self._stopping():
                delivered = False
                try:
                    conn = self._connect()
                    self._conn = conn
                    try:
                        if self._stopping():
                            return
                        for payload in conn.frames():
                            if not delivered:
                                delivered = True
                                failures = 0
                                delays = self.backoff.delays()
                                self.connected = True
                                log.info("%s: %s", self.source,
                                         "reconnected" if self._ever_connected else "connected")
                                self._ever_connected = True
                            self._put(conn.kind, payload)
                            if self._stopping():
                                return
                        raise _Lost("the stream ended")  # pragma: no cover - frames() ends by raising
                    finally:
                        self._conn = None
                        self.connected = False
                        conn.close()
                except _Lost as e:
                    if self._stopping():
                        return
                    if delivered:
                        self.reconnects += 1
                        log.warning("%s: connection lost (%s); reconnecting", self.source, e)
                        continue
                    failures += 1
                    self.failed_attempts += 1
                    if max_attempts is not None and failures >= max_attempts:
                        what = "reconnect" if self._ever_connected else "connection"
                        self._fail(StreamUnavailable(f"{self.source}: {failures} consecutive {what} attempt"
                                                     f"{'s' if failures != 1 else ''} failed; last: {e}"))
                        return
                    delay = next(delays)
                    log.warning("%s: connection attempt %d failed (%s); retrying in %.2g s",
                                self.source, failures, e, delay)
                    self._sleep(delay)
        except VisorError as e:
            self._fail(e)
        except Exception as e:
            log.exception("%s: reader failed", self.source)
            self._fail(StreamUnavailable(f"{self.source}: the reader failed: {_describe(e)}"))
        finally:
            with self._cond:
                self._done = True
                self._cond.notify_all()


def open_stream(
    source: str | int,
    *,
    backoff: Backoff = Backoff(),
    timeout_s: float = 10.0,
    limits: VideoLimits = DEFAULT_VIDEO_LIMITS,
    image_limits: ImageLimits = DEFAULT_LIMITS,
    latest_only: bool = True,
    stop: threading.Event | None = None,
) -> LiveStream:
    """Open a live source and wait until its first frame has arrived (or ``stop`` is set).

    ``timeout_s`` bounds each connect and each read. ``latest_only=False`` hands out every frame: the reader
    then waits for the consumer (a slow consumer makes the stream lag instead of skipping frames).
    ``limits.max_pixels`` caps RTSP and webcam frames; ``image_limits`` caps each MJPEG part (bytes while it
    is read, pixels before it is decoded). HTTP redirects are not followed.

    Raises :class:`~visor.errors.InvalidInput` (not a live source), :class:`~visor.errors.StreamUnavailable`
    (a refused answer: 3xx, 4xx, not multipart; or ``backoff.max_attempts`` failed attempts) or
    :class:`~visor.errors.ImageTooLarge`. Iteration raises the same when the connection is lost for good, and
    :class:`~visor.errors.UnsupportedFormat` for a part that is not an image; a frame that does not decode is
    skipped (``frames_corrupt``). Iteration ends when the stream is closed or ``stop`` is set.
    """
    stream = LiveStream(source, backoff=backoff, timeout_s=timeout_s, limits=limits, image_limits=image_limits,
                        latest_only=latest_only, stop=stop)
    stream._start()
    return stream
