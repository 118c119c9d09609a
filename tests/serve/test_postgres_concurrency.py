"""Several writers on one service database: SQLite and PostgreSQL, threads and two real `visor serve` processes.

Decisions are last-writer-wins, and each is applied whole: when two reviewers decide the same item
at once, both requests succeed and the item ends up exactly as one of them left it (two identical
decisions are idempotent), never with the status of one and the reviewer or boxes of the other.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from visor.serve.db import ServiceDB
from visor.serve.review import ReviewQueue

BOXES = [{"xyxy": [1.0, 2.0, 30.0, 40.0], "label": "person"}]


def _detect_item(queue: ReviewQueue) -> int:
    return queue.add(image=b"\xff\xd8\xffimage", filename="a.jpg", media_type="image/jpeg", model="yolo",
                     task="detect", labels=["bus", "person"], reason="low_confidence",
                     prediction={"detections": [{"xyxy": [0, 0, 10, 10], "class_id": 0, "confidence": 0.3}]})


def _state(queue: ReviewQueue, item_id: int) -> tuple:
    item = queue.get(item_id)
    return item.status, item.label, item.reviewer, item.boxes


def test_racing_decisions_apply_whole(db_url, monkeypatch):
    """An accept that read the item before a correction committed must not keep the correction's boxes and
    reviewer: the old code updated only the columns it changed (READ COMMITTED on PostgreSQL)."""
    with ServiceDB(db_url) as d:
        item_id = _detect_item(ReviewQueue(d))
    first_read, second_done = threading.Event(), threading.Event()
    original = ReviewQueue._row

    def row(self, s, item, *args, **kwargs):
        found = original(self, s, item, *args, **kwargs)
        if threading.current_thread().name == "accept":
            first_read.set()
            # the correction cannot commit while this transaction holds the item: go on after 1.5 s
            second_done.wait(1.5)
        return found

    monkeypatch.setattr(ReviewQueue, "_row", row)
    errors: list[BaseException] = []

    def decide(action: str, **kwargs) -> None:
        try:
            with ServiceDB(db_url) as d:  # an engine each, as two service processes would have
                ReviewQueue(d).decide(item_id, action, **kwargs)
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            errors.append(e)
        finally:
            if threading.current_thread().name == "correct":
                second_done.set()

    accept = threading.Thread(target=decide, args=("accept",), name="accept")
    correct = threading.Thread(target=decide, args=("correct",), kwargs={"boxes": BOXES, "reviewer": "bob"},
                               name="correct")
    accept.start()
    assert first_read.wait(30)
    correct.start()
    accept.join(30)
    correct.join(30)
    assert errors == []
    with ServiceDB(db_url) as d:
        got = _state(ReviewQueue(d), item_id)
    assert got in (("accepted", "bus", None, None), ("corrected", "person", "bob", BOXES)), got


# --------------------------------------------------------------------------- two service processes


def _pngs(n: int) -> list[bytes]:
    """``n`` different small PNGs."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buf, "PNG")
        out.append(buf.getvalue())
    assert len({hashlib.sha256(b).hexdigest() for b in out}) == n
    return out


def _serve(db: str, port: int, home: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "VISOR_HOME": str(home), "VISOR_CACHE": str(cache)}
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "stderr.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            [sys.executable, "-m", "visor", "serve", "--no-keys", "--host", "127.0.0.1", "--port", str(port),
             "--db", db, "--review-sample-rate", "1", "--no-batch-calibration", "--log-level", "warning"],
            env=env, stdout=subprocess.DEVNULL, stderr=log)


def _wait_ready(url: str, proc: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"visor serve exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"visor serve at {url} was not ready within 90 s: {log.read_text()[-2000:]}")


def test_two_services_on_one_postgresql_database(tmp_path, visor_cache, classifier):
    """Two `visor serve` processes on one PostgreSQL database, 60 classify requests 8 at a time split between
    them, every prediction queued for review: exactly 60 items, 60 distinct ids, each with its image's bytes;
    then both servers decide the same items at once."""
    import httpx

    from conftest import free_port
    from storage_backends import postgres_database

    n, concurrency = 60, 8
    images = _pngs(n)
    with postgres_database() as db:
        ports = [free_port(), free_port()]
        homes = [tmp_path / "a", tmp_path / "b"]
        procs = [_serve(db, port, home, visor_cache) for port, home in zip(ports, homes, strict=True)]
        try:
            urls = [f"http://127.0.0.1:{port}" for port in ports]
            for url, proc, home in zip(urls, procs, homes, strict=True):
                _wait_ready(url, proc, home / "stderr.log")
            with httpx.Client(timeout=60) as client:
                def classify(i: int) -> tuple[int, int]:
                    r = client.post(f"{urls[i % 2]}/v1/classify", files={"images": (f"{i}.png", images[i],
                                                                                    "image/png")})
                    assert r.status_code == 200, r.text
                    return i, r.json()["results"][0]["review_id"]

                with ThreadPoolExecutor(concurrency) as pool:
                    review_ids = dict(pool.map(classify, range(n)))
                assert len(set(review_ids.values())) == n and all(isinstance(v, int) for v in review_ids.values())

                listed = [client.get(f"{url}/v1/review/items", params={"status": "all", "limit": 1000}).json()
                          for url in urls]
                assert listed[0] == listed[1]  # both servers see the same queue
                items = listed[0]["items"]
                assert listed[0]["counts"]["all"] == listed[0]["counts"]["pending"] == n
                assert sorted(i["id"] for i in items) == sorted(review_ids.values())
                by_id = {i["id"]: i for i in items}
                for i, item_id in review_ids.items():
                    assert by_id[item_id]["image"] == f"{i}.png"
                    got = client.get(f"{urls[item_id % 2]}/v1/review/items/{item_id}/image")
                    assert got.content == images[i] and got.headers["content-type"] == "image/png"

                # the same decision from both servers at once: both succeed, the same result (idempotent);
                # different decisions at once: both succeed and the item is exactly one of them
                ids = sorted(review_ids.values())
                same, different = ids[:10], ids[10:20]

                def decide(job: tuple[int, int, dict]) -> dict:
                    server, item_id, body = job
                    r = client.post(f"{urls[server]}/v1/review/items/{item_id}", json=body)
                    assert r.status_code == 200, r.text
                    return r.json()

                jobs = [(s, i, {"action": "accept"}) for i in same for s in (0, 1)]
                jobs += [(0, i, {"action": "reject"}) for i in different]
                jobs += [(1, i, {"action": "correct", "label": "fixed"}) for i in different]
                with ThreadPoolExecutor(concurrency) as pool:
                    answers = list(pool.map(decide, jobs))
                assert all(a["status"] == "accepted" for a in answers[:20])
                final = {i["id"]: i for i in client.get(f"{urls[0]}/v1/review/items",
                                                        params={"status": "all", "limit": 1000}).json()["items"]}
                for i in same:
                    assert (final[i]["status"], final[i]["label"]) == ("accepted", by_id[i]["predicted_label"])
                for i in different:
                    assert (final[i]["status"], final[i]["label"]) in (("rejected", None), ("corrected", "fixed"))
                counts = client.get(f"{urls[1]}/v1/review/items").json()["counts"]
                assert (counts["all"], counts["pending"], counts["accepted"]) == (n, n - 20, 10)
                assert counts["rejected"] + counts["corrected"] == 10
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
