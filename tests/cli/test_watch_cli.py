"""``visor watch``: options, errors, and the live acceptance test in a fresh process (MJPEG on loopback, a
dropped connection, signed webhooks, the service database, Prometheus, Ctrl-C)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from visor.cli.main import main

SECRET = "cli-webhook-secret"
SECRET_ENV = "VISOR_TEST_WATCH_SECRET"
RULES = """\
lines:
  - name: gate
    start: [400, 0]
    end: [400, 290]
rules:
  - name: crossing
    line: gate
    classes: [person]
"""


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_rules(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES + extra)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- errors, before any frame


def test_rules_are_required(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main(["watch", "rtsp://127.0.0.1:1/x"])
    assert e.value.code == 2
    assert "--rules" in capsys.readouterr().err


@pytest.mark.parametrize(("rules", "message"), [
    ("lines: []\nrules:\n  - name: r\n    line: gaet\n", "names line 'gaet', which is not defined"),
    ("rulez: []\n", "did you mean 'rules'"),
])
def test_a_bad_rules_file_is_a_usage_error(capsys, tmp_path: Path, rules: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(rules)
    code, out, err = run(capsys, "watch", "rtsp://127.0.0.1:1/x", "--rules", str(path), "--db", str(tmp_path / "e.db"))
    assert code == 2
    assert out == ""
    assert err.startswith("visor: error: ConfigError: ")
    assert message in err.lower()
    assert err.count("\n") == 1


def test_an_unset_webhook_secret_is_named(capsys, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    path = write_rules(tmp_path, f"webhook:\n  url: http://127.0.0.1:1/hook\n  secret_env: {SECRET_ENV}\n")
    code, _, err = run(capsys, "watch", "rtsp://127.0.0.1:1/x", "--rules", str(path), "--db", str(tmp_path / "e.db"))
    assert code == 2
    assert SECRET_ENV in err and "not set" in err


def test_an_unreachable_stream_fails_after_its_attempts(capsys, tmp_path: Path, zoo_cache) -> None:
    url = f"http://127.0.0.1:{free_port()}/stream.mjpg"  # nothing listens there
    code, out, err = run(capsys, "watch", url, "--rules", str(write_rules(tmp_path)), "--db", str(tmp_path / "e.db"),
                         "--reconnect-attempts", "2", "--threads", "1")
    assert code == 1
    assert out == ""
    assert err.startswith("visor: error: StreamUnavailable: ")
    assert "2 consecutive connection attempts failed" in err


def test_a_video_file_prints_and_stores_its_events(capsys, tmp_path: Path, zoo_cache, shared_data) -> None:
    from visor.serve.events import EventStore

    db = tmp_path / "serve.db"
    code, out, err = run(capsys, "watch", str(shared_data("videos") / "bikes.mp4"), "--rules",
                         str(write_rules(tmp_path)), "--db", str(db), "--max-frames", "60", "--threads", "1")
    assert code == 0, err
    printed = [json.loads(line) for line in out.splitlines()]
    # the first person walks across the gate, left to right, on frame 38 (track 1)
    assert [(e["rule"], e["frame"], e["tracker_id"], e["direction"]) for e in printed] == [("crossing", 38, 1, "out")]
    assert printed[0]["timestamp_s"] == 1.52
    assert err.splitlines()[-1].startswith("visor: watched 60 frames (")
    with EventStore(db) as store:
        assert [e["id"] for e in store.list()] == [printed[0]["id"]]


def test_conf_raises_the_tracker_thresholds_with_it() -> None:
    from visor.cli.watch import tracker_options

    assert tracker_options(None).conf == 0.1
    high = tracker_options(0.6)
    assert (high.conf, high.low_thresh, high.track_thresh) == (0.6, 0.6, 0.6)
    low = tracker_options(0.05)
    assert (low.conf, low.low_thresh, low.track_thresh) == (0.05, 0.1, 0.5)


# --------------------------------------------------------------------------- the acceptance test, a fresh process


class Receiver:
    """A loopback webhook endpoint recording (signature valid?, event) per POST."""

    def __init__(self) -> None:
        from visor.video.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        got = self.got = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                valid = verify(SECRET.encode(), self.headers.get(TIMESTAMP_HEADER, ""), body,
                               self.headers.get(SIGNATURE_HEADER, ""))
                got.append((valid, json.loads(body)["event"]))
                self.send_response(204)
                self.end_headers()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_watch_cli_live_acceptance(tmp_path: Path, zoo_cache, shared_data) -> None:
    from mjpeg_server import MjpegServer, encode_video
    from visor.serve.events import EventStore

    frames = encode_video(shared_data("videos") / "bikes.mp4")
    receiver = Receiver()
    rules = write_rules(tmp_path, f"webhook:\n  url: {receiver.url}\n  secret_env: {SECRET_ENV}\n"
                                  "  backoff_initial_s: 0.05\n")
    db = tmp_path / "serve.db"
    port = free_port()
    env = {**os.environ, SECRET_ENV: SECRET, "OMP_NUM_THREADS": "1"}
    try:
        with MjpegServer(frames, fps=25, drop_after=100) as server:
            proc = subprocess.Popen([sys.executable, "-m", "visor", "watch", server.url, "--rules", str(rules),
                                     "--db", f"sqlite:///{db}", "--metrics-port", str(port)],
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 90
                while server.sent < len(frames) and time.monotonic() < deadline and proc.poll() is None:
                    time.sleep(0.05)
                time.sleep(0.5)
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
                proc.send_signal(signal.SIGINT)  # Ctrl-C: finish the frame, drain the webhook queue, exit 130
                out, err = proc.communicate(timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.communicate()
    finally:
        receiver.close()
    assert proc.returncode == 130, err
    assert server.connections >= 2  # the first connection was dropped after 100 frames
    printed = [json.loads(line) for line in out.splitlines()]
    ids = sorted(e["id"] for e in printed)
    assert 1 <= len(ids) <= 2
    assert all((e["rule"], e["line"], e["class_name"], e["direction"]) == ("crossing", "gate", "person", "out")
               for e in printed)
    assert all(30 <= e["frame"] <= 45 or 190 <= e["frame"] <= 215 for e in printed)
    assert sorted(e["id"] for _, e in receiver.got) == ids
    assert all(valid for valid, _ in receiver.got)
    assert "visor_watch_reconnects_total 1.0" in metrics or "visor_watch_reconnects_total 2.0" in metrics
    assert f'visor_watch_events_total{{rule="crossing"}} {float(len(ids))}' in metrics
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("visor: watched ") and f"{len(ids)} events" in summary, err
    with EventStore(db) as store:  # after the process ended: the events are in the database
        stored = store.list()
        assert sorted(e["id"] for e in stored) == ids
        assert all(e["snapshot"] and store.snapshot(e["id"])[:2] == b"\xff\xd8" for e in stored)
