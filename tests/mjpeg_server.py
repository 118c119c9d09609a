"""A loopback MJPEG server for tests of live sources (``from mjpeg_server import MjpegServer``).

Paths: ``/stream.mjpg`` serves the frames as ``multipart/x-mixed-replace`` at ``fps`` (``?length=0`` leaves
out each part's Content-Length, so clients must scan for the boundary), ``/page.html`` answers a 200
``text/html`` page, ``/busy`` 503, anything else 404. Frames are served from one shared position: a new connection
continues where the previous one stopped, so a reconnecting client sees the rest of the sequence.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BOUNDARY = "visorframe"


def encode_video(path: str | os.PathLike, *, max_frames: int | None = None, quality: int = 85) -> list[bytes]:
    """The frames of a video file as JPEG bytes (OpenCV, ``quality``)."""
    import cv2

    from visor.io.video import open_video

    out = []
    with open_video(path, max_frames=max_frames) as reader:
        for frame in reader:
            ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR),
                                   [cv2.IMWRITE_JPEG_QUALITY, quality])
            assert ok
            out.append(buf.tobytes())
    return out


class MjpegServer:
    """Serve JPEG frames as an MJPEG stream on 127.0.0.1 (a context manager; ``url`` is the stream's URL).

    ``drop_after=N`` closes the first connection after N frames; ``pause()`` closes every open stream and
    refuses connections (closed without an answer) until ``resume()``. ``connections`` counts the requests
    answered, ``sent`` the frames written (the index of the next frame), ``auth_headers`` the Authorization
    headers received.
    """

    def __init__(self, frames: list[bytes] | str | os.PathLike, fps: float = 25.0, drop_after: int | None = None,
                 *, max_frames: int | None = None, loop: bool = False) -> None:
        self.frames = list(frames) if isinstance(frames, list) else encode_video(Path(frames), max_frames=max_frames)
        self.fps = fps
        self.drop_after = drop_after
        self.loop = loop
        self.connections = 0
        self.sent = 0
        self.auth_headers: list[str | None] = []
        self._lock = threading.Lock()
        self._paused = threading.Event()
        self._closing = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ control

    @property
    def port(self) -> int:
        assert self._httpd is not None, "start the server first (use it as a context manager)"
        return self._httpd.server_address[1]

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/stream.mjpg"

    def pause(self) -> None:
        """Close open streams and refuse new connections until :meth:`resume`."""
        self._paused.set()

    def resume(self) -> None:
        self._paused.clear()

    def __enter__(self) -> MjpegServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                server._serve(self)

        class Httpd(ThreadingHTTPServer):
            daemon_threads = True

            def verify_request(self, request, client_address):
                return not server._paused.is_set()

        self._httpd = Httpd(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closing.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    # ------------------------------------------------------------------ serving

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.connections += 1
            first = self.connections == 1
            self.auth_headers.append(h.headers.get("Authorization"))
        url = urllib.parse.urlsplit(h.path)
        if url.path == "/page.html":
            body = b"<html><body>not a stream</body></html>"
            h.send_response(200)
            h.send_header("Content-Type", "text/html; charset=utf-8")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body)
            return
        if url.path == "/busy":
            h.send_error(503)
            return
        if url.path != "/stream.mjpg":
            h.send_error(404)
            return
        with_length = urllib.parse.parse_qs(url.query).get("length", ["1"])[0] != "0"
        h.send_response(200)
        h.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        h.send_header("Cache-Control", "no-cache")
        h.end_headers()
        start = time.monotonic()
        served = 0
        try:
            while not self._closing.is_set() and not self._paused.is_set():
                if first and self.drop_after is not None and served >= self.drop_after:
                    return
                with self._lock:
                    if self.sent >= len(self.frames) and not self.loop:
                        return
                    index = self.sent % len(self.frames)
                jpeg = self.frames[index]
                head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n"
                if with_length:
                    head += f"Content-Length: {len(jpeg)}\r\n"
                h.wfile.write(head.encode() + b"\r\n" + jpeg + b"\r\n")
                h.wfile.flush()
                with self._lock:
                    self.sent += 1
                served += 1
                wait = start + served / self.fps - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
        except (BrokenPipeError, ConnectionResetError):
            return
