"""Live sources: an MJPEG stream served on loopback (order, reconnects, backoff, latest frame, caps, refusals,
redaction), RTSP to a closed port, and the helpers."""

from __future__ import annotations

import itertools
import logging
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mjpeg_server import MjpegServer, encode_video  # tests/mjpeg_server.py
from visor.errors import ImageTooLarge, InvalidInput, StreamUnavailable
from visor.io.image import ImageLimits, load_image
from visor.io.stream import Backoff, LiveStream, is_live_source, open_stream, redact

FAST = Backoff(initial_s=0.05, factor=2.0, max_s=0.2, max_attempts=5)


@pytest.fixture(scope="module")
def jpegs(shared_data) -> list[bytes]:
    """The first 40 frames of bikes.mp4 as JPEG (quality 85)."""
    return encode_video(Path(shared_data("videos")) / "bikes.mp4", max_frames=40)


@pytest.fixture(scope="module")
def decoded(jpegs) -> list[np.ndarray]:
    return [load_image(j) for j in jpegs]


def take(stream: LiveStream, n: int, *, pause_s: float = 0.0) -> list:
    out = []
    for frame in stream:
        out.append(frame)
        if len(out) == n:
            break
        if pause_s:
            time.sleep(pause_s)
    return out


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------------------ helpers


@pytest.mark.parametrize(("source", "live"), [
    ("rtsp://cam.local:554/stream1", True), ("RTSP://cam/x", True), ("rtsps://cam/x", True),
    ("http://127.0.0.1:8080/video.mjpg", True), ("https://cam/video", True), (0, True), (3, True), ("0", True),
    ("12", True), (-1, False), (True, False), ("", False), ("video.mp4", False), ("/tmp/http://x", False),
    ("ftp://host/x.mp4", False), ("file:///tmp/x.mp4", False), ("1.5", False), ("٣", False), (None, False),
])
def test_is_live_source(source, live):
    assert is_live_source(source) is live


def test_redact():
    assert redact("rtsp://admin:s3cret@10.0.0.5:554/ch1") == "rtsp://admin:***@10.0.0.5:554/ch1"
    assert redact("http://user@cam/video") == "http://user@cam/video"
    assert redact("http://cam/video.cgi?user=admin&password=s3cret&res=hd") == \
        "http://cam/video.cgi?user=admin&password=***&res=hd"
    assert redact("http://a:b%40c@cam/x?token=t0k") == "http://a:***@cam/x?token=***"
    assert redact(0) == "0"


def test_backoff():
    assert [d for d, _ in zip(Backoff(initial_s=0.5, factor=2, max_s=3).delays(), range(6), strict=False)] == \
        [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert [d for d, _ in zip(Backoff(initial_s=1, factor=1, max_s=1).delays(), range(3), strict=False)] == [1, 1, 1]
    for bad in ({"initial_s": -1}, {"factor": 0.5}, {"initial_s": 2, "max_s": 1}, {"max_attempts": 0}):
        with pytest.raises(InvalidInput):
            Backoff(**bad)


def test_not_a_live_source():
    with pytest.raises(InvalidInput, match="not a live source"):
        open_stream("video.mp4")
    with pytest.raises(InvalidInput, match="timeout_s"):
        open_stream("http://127.0.0.1:1/x", timeout_s=0)


# ------------------------------------------------------------------------------------------ MJPEG


@pytest.mark.parametrize("length", [True, False], ids=["content-length", "boundary-scan"])
def test_frames_in_order(jpegs, decoded, length):
    with MjpegServer(jpegs[:12], fps=60) as server, \
            open_stream(server.url + ("" if length else "?length=0"), latest_only=False, backoff=FAST) as stream:
        frames = take(stream, 12)
        assert stream.connected
        assert stream.frames_dropped == 0 and stream.reconnects == 0 and stream.failed_attempts == 0
    assert [f.index for f in frames] == list(range(12))
    for f, expected in zip(frames, decoded, strict=False):
        assert f.image.shape == (272, 640, 3) and f.image.dtype == np.uint8
        np.testing.assert_array_equal(f.image, expected)  # each part's bytes exactly, in order
    ts = [f.timestamp_s for f in frames]
    assert ts == sorted(ts) and ts[0] >= 0 and ts[-1] - ts[0] > 9 / 60  # paced by the server
    assert server.connections == 1
    assert not stream._thread.is_alive()  # close() joined the reader


def test_drop_midstream_reconnects(jpegs, decoded, caplog):
    caplog.set_level(logging.INFO, logger="visor.io.stream")
    with MjpegServer(jpegs[:15], fps=60, drop_after=5) as server, \
            open_stream(server.url, latest_only=False, backoff=FAST) as stream:
        frames = take(stream, 15)
        assert stream.reconnects == 1 and stream.failed_attempts == 0
    assert server.connections == 2
    assert [f.index for f in frames] == list(range(15))
    for f in frames:
        np.testing.assert_array_equal(f.image, decoded[f.index])
    assert "connection lost" in caplog.text and "reconnected" in caplog.text


def test_pause_backs_off_then_recovers(jpegs, decoded, caplog):
    caplog.set_level(logging.WARNING, logger="visor.io.stream")
    backoff = Backoff(initial_s=0.1, factor=2.0, max_s=0.4, max_attempts=50)
    with MjpegServer(jpegs[:30], fps=50) as server, open_stream(server.url, latest_only=False, backoff=backoff) as s:
        frames = take(s, 3)
        server.pause()
        paused_at = time.monotonic()
        resume = threading.Timer(1.0, server.resume)
        resume.start()
        try:
            more = take(s, 5)
        finally:
            resume.cancel()
        gap = time.monotonic() - paused_at
        assert s.reconnects == 1
        # refused at once, then after 0.1, 0.2, 0.4, 0.4 s ...: 3 to 6 failures in the ~1 s pause
        assert 3 <= s.failed_attempts <= 7, s.failed_attempts
    assert 0.9 < gap < 3.0
    got = frames + more
    assert [f.index for f in got] == sorted({f.index for f in got})  # increasing, no duplicates
    for f in got:
        np.testing.assert_array_equal(f.image, decoded[f.index])  # the server continued where it stopped
    assert "connection attempt 2 failed" in caplog.text and "retrying in 0.2 s" in caplog.text


def test_slow_consumer_gets_latest_frame(jpegs, decoded):
    with MjpegServer(jpegs, fps=25) as server, open_stream(server.url, backoff=FAST) as stream:
        frames, behind = [], []
        for frame in stream:
            behind.append(server.sent - 1 - frame.index)
            frames.append(frame)
            if len(frames) == 6:
                break
            time.sleep(0.2)  # 5 frames arrive while we sleep
        received, dropped = stream.frames_received, stream.frames_dropped
    assert max(behind) <= 2, behind  # bounded latency: the newest frame, not a queue
    indices = [f.index for f in frames]
    assert all(3 <= b - a <= 10 for a, b in itertools.pairwise(indices)), indices
    assert dropped >= sum(b - a - 1 for a, b in itertools.pairwise(indices)) > 0
    assert received >= indices[-1] + 1
    for f in frames:
        np.testing.assert_array_equal(f.image, decoded[f.index])  # index is the frame's sequence number


def test_every_frame_when_not_latest_only(jpegs, decoded):
    with MjpegServer(jpegs[:10], fps=60) as server, open_stream(server.url, latest_only=False) as stream:
        frames = take(stream, 6, pause_s=0.05)  # slower than the server: the reader waits instead of dropping
        assert stream.frames_dropped == 0
    assert [f.index for f in frames] == list(range(6))


def test_server_errors_are_retried(jpegs):
    with MjpegServer(jpegs[:3]) as server:
        with pytest.raises(StreamUnavailable, match="3 consecutive connection attempts failed; last: HTTP 503"):
            open_stream(server.base + "/busy", backoff=Backoff(initial_s=0.02, max_attempts=3))
        assert server.connections == 3


def test_max_attempts_exhausted(jpegs):
    with MjpegServer(jpegs[:5]) as server:
        server.pause()
        start = time.monotonic()
        with pytest.raises(StreamUnavailable, match="2 consecutive connection attempts failed"):
            open_stream(server.url, backoff=Backoff(initial_s=0.05, max_attempts=2), timeout_s=2)
        assert time.monotonic() - start < 2
    start = time.monotonic()
    with pytest.raises(StreamUnavailable, match=r"3 consecutive connection attempts failed; last: .*Connection"):
        open_stream(f"http://127.0.0.1:{closed_port()}/x", backoff=Backoff(initial_s=0.05, max_attempts=3))
    assert time.monotonic() - start < 2


def test_lost_for_good_raises_in_iteration(jpegs):
    with MjpegServer(jpegs[:4], fps=60) as server, open_stream(server.url, latest_only=False,
                                                                backoff=Backoff(initial_s=0.05, max_attempts=2)) as s:
        got = []
        with pytest.raises(StreamUnavailable, match="2 consecutive reconnect attempts failed"):
            for frame in s:  # the server runs out of frames: every reconnect ends without a frame
                got.append(frame.index)
        assert got == [0, 1, 2, 3] and s.reconnects == 1 and s.failed_attempts == 2


def test_rtsp_closed_port_gives_up_quickly():
    start = time.monotonic()
    with pytest.raises(StreamUnavailable, match=r"rtsp://127\.0\.0\.1:\d+/x: 2 consecutive connection attempts"):
        open_stream(f"rtsp://127.0.0.1:{closed_port()}/x", backoff=Backoff(initial_s=0.05, max_attempts=2),
                    timeout_s=2)
    assert time.monotonic() - start < 5


def test_missing_webcam_gives_up_quickly():
    start = time.monotonic()
    with pytest.raises(StreamUnavailable, match="63: 2 consecutive connection attempts failed; last: no camera"):
        open_stream("63", backoff=Backoff(initial_s=0.05, max_attempts=2), timeout_s=1)
    assert time.monotonic() - start < 5


@pytest.mark.parametrize(("path", "message"), [
    ("/page.html", r"Content-Type 'text/html; charset=utf-8', not an MJPEG stream"),
    ("/missing.mjpg", r"answered HTTP 404 Not Found, not an MJPEG stream"),
])
def test_not_an_mjpeg_answer_is_refused_at_once(jpegs, path, message):
    with MjpegServer(jpegs[:3]) as server:
        with pytest.raises(StreamUnavailable, match=message):
            open_stream(server.base + path, backoff=Backoff(initial_s=0.05, max_attempts=5))
        assert server.connections == 1  # no retries for a permanent refusal


@pytest.mark.parametrize("query", ["", "?length=0"], ids=["content-length", "boundary-scan"])
def test_part_over_byte_cap(jpegs, query):
    limits = ImageLimits(max_bytes=5000)  # bikes frames are ~12 kB
    with MjpegServer(jpegs[:5]) as server, pytest.raises(ImageTooLarge, match="exceeds the limit of 5000 bytes"):
        open_stream(server.url + query, image_limits=limits, backoff=FAST)


def test_frame_over_pixel_cap(jpegs):
    with MjpegServer(jpegs[:5]) as server, \
            open_stream(server.url, image_limits=ImageLimits(max_pixels=640 * 271)) as stream, \
            pytest.raises(ImageTooLarge, match=r"frame 0: image is 640x272"):
        next(iter(stream))


def test_corrupt_part_is_skipped(jpegs, decoded):
    bad = jpegs[1][:200]  # a JPEG cut short
    with MjpegServer([jpegs[0], bad, jpegs[2]], fps=60) as server, \
            open_stream(server.url, latest_only=False) as stream:
        frames = take(stream, 2)
        assert stream.frames_corrupt == 1
    assert [f.index for f in frames] == [0, 2]
    np.testing.assert_array_equal(frames[1].image, decoded[2])


def test_credentials_sent_and_redacted(jpegs, caplog):
    caplog.set_level(logging.DEBUG, logger="visor.io.stream")
    with MjpegServer(jpegs[:8], fps=60, drop_after=2) as server:
        url = server.url.replace("http://", "http://admin:s3cr%40t@") + "?res=hd&token=abc123"
        with open_stream(url, latest_only=False, backoff=FAST) as stream:
            take(stream, 4)
            assert stream.source == server.url.replace("http://", "http://admin:***@") + "?res=hd&token=***"
            assert "s3cr" not in repr(stream) and "abc123" not in stream._thread.name
        assert server.auth_headers == ["Basic YWRtaW46czNjckB0"] * 2  # admin:s3cr@t, on the reconnect too
        server.pause()
        with pytest.raises(StreamUnavailable) as err:
            open_stream(url, backoff=Backoff(initial_s=0.01, max_attempts=2))
    assert "admin:***@" in str(err.value) and "s3cr" not in str(err.value) and "abc123" not in str(err.value)
    assert "reconnected" in caplog.text and "attempt 1 failed" in caplog.text
    assert "s3cr" not in caplog.text and "abc123" not in caplog.text


def test_stop_event_and_close_end_iteration(jpegs):
    stop = threading.Event()
    with MjpegServer(jpegs, fps=25, loop=True) as server:
        stream = open_stream(server.url, stop=stop)
        threading.Timer(0.3, stop.set).start()
        start = time.monotonic()
        n = sum(1 for _ in stream)  # ends by itself once stop is set
        assert 0.2 < time.monotonic() - start < 2 and 3 <= n <= 12
        assert not stream._thread.is_alive()
        with open_stream(server.url) as stream:
            it = iter(stream)
            next(it)
            stream.close()
            stream.close()  # twice is fine
            assert list(it) == [] and not stream._thread.is_alive()
            assert list(stream) == []


def test_close_unblocks_a_stalled_read(jpegs):
    with MjpegServer(jpegs[:3], fps=0.2) as server:  # the next frame would come in 5 s
        stream = open_stream(server.url, timeout_s=10)
        next(stream)
        time.sleep(0.1)  # the reader is now blocked reading the socket
        start = time.monotonic()
        stream.close()
        assert time.monotonic() - start < 1 and not stream._thread.is_alive()


def test_stop_during_backoff_returns_quickly(jpegs):
    stop = threading.Event()
    with MjpegServer(jpegs[:3]) as server:
        server.pause()
        threading.Timer(0.3, stop.set).start()
        start = time.monotonic()
        stream = open_stream(server.url, backoff=Backoff(initial_s=5.0), stop=stop)  # retries forever
        assert time.monotonic() - start < 1.5
        assert list(stream) == [] and stream.failed_attempts == 1
        stream.close()
