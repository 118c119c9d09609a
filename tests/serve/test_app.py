"""The service over real HTTP: auth, inputs and typed errors, deadlines, load shedding, restarts."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import start_server

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
DEEPLAB_SHA = "48a46b346ca7e2e96760b8a10a302046a3b5a9ce55e59d4c659c36d9cbd44118"  # ../shared/README.md


def upload(*items: tuple[str, bytes]) -> list:
    return [("images", (name, data, "application/octet-stream")) for name, data in items]


def png_bomb() -> bytes:
    """A real 30000 x 30000 PNG (about 110 kB compressed): refused before it is decoded."""
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    w = h = 30000
    raw = zlib.compress(b"\x00" * (w // 8 + 1) * h, 9)
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- auth and health


def test_health_routes_need_no_key(live_server):
    assert httpx.get(f"{live_server.url}/livez").json() == {"status": "ok"}
    r = httpx.get(f"{live_server.url}/readyz")
    assert r.status_code == 200 and r.json()["models"] == ["efficientnet_lite0", "yolox_nano", "deeplabv3_voc"]


@pytest.mark.parametrize("route", ["/v1/models", "/metrics", "/v1/review/items", "/v1/collections"])
def test_every_other_route_needs_a_key(live_server, route):
    r = httpx.get(f"{live_server.url}{route}")
    assert r.status_code == 401
    assert r.json()["error"]["code"] == "unauthorized"
    assert httpx.get(f"{live_server.url}{route}", headers={"X-API-Key": "visor_wrong"}).status_code == 401
    assert httpx.get(f"{live_server.url}{route}", headers=live_server.headers).status_code == 200


def test_key_forms(live_server):
    files = upload(("bus.jpg", BUS.read_bytes()))
    bearer = {"Authorization": f"Bearer {live_server.key}"}
    r = httpx.post(f"{live_server.url}/v1/classify", files=files, headers=bearer)
    assert r.status_code == 200
    # Google's forms only on the Cloud Vision route
    goog = {"x-goog-api-key": live_server.key}
    assert httpx.post(f"{live_server.url}/v1/classify", files=files, headers=goog).status_code == 401
    body = {"requests": [{"image": {"content": base64.b64encode(BUS.read_bytes()).decode()},
                          "features": [{"type": "LABEL_DETECTION", "maxResults": 1}]}]}
    assert httpx.post(f"{live_server.url}/v1/images:annotate", json=body, headers=goog).status_code == 200
    r = httpx.post(f"{live_server.url}/v1/images:annotate", json=body, params={"key": live_server.key})
    assert r.status_code == 200
    r = httpx.post(f"{live_server.url}/v1/images:annotate", json=body)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"


def test_revoked_key_is_refused(tmp_path, visor_cache):
    from visor.serve.db import ServiceDB
    from visor.serve.keys import KeyStore

    server = start_server(tmp_path, key_cache_s=0.5)
    try:
        assert httpx.get(f"{server.url}/v1/models", headers=server.headers).status_code == 200
        db = ServiceDB(server.db_url)
        KeyStore(db).revoke(server.key_name)
        db.close()
        time.sleep(0.6)  # past the verified-key cache
        assert httpx.get(f"{server.url}/v1/models", headers=server.headers).status_code == 401
    finally:
        server.stop()


def test_rate_limit_per_key(tmp_path, visor_cache):
    server = start_server(tmp_path, rate_limit=0.5, rate_burst=3)
    try:
        codes = [httpx.get(f"{server.url}/v1/models", headers=server.headers).status_code for _ in range(5)]
        assert codes == [200, 200, 200, 429, 429]
        r = httpx.get(f"{server.url}/v1/models", headers=server.headers)
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    finally:
        server.stop()


# --------------------------------------------------------------------------- recognition routes


def test_classify_multipart_and_json_agree_with_the_library(live_server, classifier):
    data = BUS.read_bytes()
    r = httpx.post(f"{live_server.url}/v1/classify", params={"top_k": 3}, headers=live_server.headers,
                   files=upload(("bus.jpg", data), ("bus2.jpg", data)))
    assert r.status_code == 200
    body = r.json()
    expected = classifier.classify(BUS, top_k=3).to_dict()
    assert [x["classifications"] for x in body["results"]] == [expected, expected]
    assert [x["image"] for x in body["results"]] == ["bus.jpg", "bus2.jpg"]
    r = httpx.post(f"{live_server.url}/v1/classify", headers=live_server.headers,
                   json={"images": [{"content": base64.b64encode(data).decode(), "name": "b.jpg"}], "top_k": 3})
    assert r.status_code == 200 and r.json()["results"][0]["classifications"] == expected


def test_models_route(live_server, classifier, yolox_nano):
    models = httpx.get(f"{live_server.url}/v1/models", headers=live_server.headers).json()["models"]
    yolox_sha = "695e750a5d5754bb5a8d5325643b59282191a7e7a564e435a415fd3c578eab14"  # ../shared/README.md
    assert yolox_nano.card.weights.sha256 == yolox_sha
    assert models == [{"role": "classifier", "name": "efficientnet_lite0", "task": "classification",
                       "version": classifier.card.weights.sha256[:12], "sha256": classifier.card.weights.sha256,
                       "num_classes": 1000, "max_batch": 16},
                      {"role": "detector", "name": "yolox_nano", "task": "detection", "version": yolox_sha[:12],
                       "sha256": yolox_sha, "num_classes": 80, "max_batch": 16},
                      {"role": "segmenter", "name": "deeplabv3_voc", "task": "segmentation",
                       "version": DEEPLAB_SHA[:12], "sha256": DEEPLAB_SHA, "num_classes": 21, "max_batch": 16}]


def test_bad_inputs_get_typed_errors(live_server):
    jpeg = BUS.read_bytes()
    cases = {
        "truncated.jpg": (jpeg[: len(jpeg) // 3], 400, "corrupt_image"),
        "bomb.png": (png_bomb(), 413, "image_too_large"),
        "notes.jpg": (b"just some text, not an image", 415, "unsupported_format"),
    }
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, "PPM")
    cases["image.ppm"] = (buf.getvalue(), 415, "unsupported_format")
    for name, (data, status, code) in cases.items():
        r = httpx.post(f"{live_server.url}/v1/classify", headers=live_server.headers, files=upload((name, data)))
        assert r.status_code == status, (name, r.text)
        assert r.json()["results"][0]["error"]["code"] == code, name
    # one good and one bad image: 200, with the error in its slot
    r = httpx.post(f"{live_server.url}/v1/classify", headers=live_server.headers,
                   files=upload(("ok.jpg", jpeg), ("bad.jpg", b"nope")))
    assert r.status_code == 200
    assert "classifications" in r.json()["results"][0] and r.json()["results"][1]["error"]["code"] == \
        "unsupported_format"


def test_request_level_errors(live_server):
    url, h = f"{live_server.url}/v1/classify", live_server.headers
    assert httpx.post(url, headers=h, content=b"{nope", params={}, ).status_code == 400
    assert httpx.post(url, headers={**h, "Content-Type": "application/json"}, content=b"{nope").status_code == 400
    r = httpx.post(url, headers=h, json={"images": [{"content": "***not base64***"}]})
    assert r.status_code == 400 and "base64" in r.json()["error"]["message"]
    r = httpx.post(url, headers={**h, "Content-Type": "text/plain"}, content=b"hello")
    assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type"
    r = httpx.post(url, headers=h, files=upload(*[(f"{i}.jpg", b"x") for i in range(17)]))
    assert r.status_code == 400 and "at most 16" in r.json()["error"]["message"]
    r = httpx.post(url, headers=h, params={"top_k": 0}, files=upload(("a.jpg", BUS.read_bytes())))
    assert r.status_code == 400


def test_body_over_the_cap_is_413(tmp_path, visor_cache):
    server = start_server(tmp_path, max_body_bytes=100_000)
    try:
        big = BUS.read_bytes() * 2
        assert len(big) > 100_000
        r = httpx.post(f"{server.url}/v1/classify", headers=server.headers, files=upload(("big.jpg", big)))
        assert r.status_code == 413 and r.json()["error"]["code"] == "payload_too_large"

        # chunked upload with no Content-Length: cut off while streaming
        def chunks():
            for _ in range(20):
                yield b"x" * 10_000

        r = httpx.post(f"{server.url}/v1/classify", headers={**server.headers, "Content-Type": "application/json"},
                       content=chunks())
        assert r.status_code == 413
        ok = httpx.post(f"{server.url}/v1/classify", headers=server.headers,
                        files=upload(("small.png", _small_png())))
        assert ok.status_code == 200
    finally:
        server.stop()


def _small_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buf, "PNG")
    return buf.getvalue()


def test_detect_finds_the_bus_with_the_default_detector(live_server, yolox_nano):
    """No --detector: /v1/detect runs yolox_nano, the same boxes as the library, and queues a review item."""
    r = httpx.post(f"{live_server.url}/v1/detect", headers=live_server.headers,
                   files=upload(("bus.jpg", BUS.read_bytes()), ("bad.jpg", b"nope")))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "yolox_nano"
    found = body["results"][0]["detections"]
    assert found == yolox_nano.detect(BUS).to_dict()
    assert [(d["class_name"], round(d["confidence"], 3)) for d in found["detections"]] == [("bus", 0.962),
                                                                                          ("car", 0.253)]
    assert body["results"][1]["error"]["code"] == "unsupported_format"
    # options from the query and from JSON, checked once (400 for the request)
    r = httpx.post(f"{live_server.url}/v1/detect", headers=live_server.headers, params={"conf": 0.5},
                   files=upload(("bus.jpg", BUS.read_bytes())))
    assert [d["class_name"] for d in r.json()["results"][0]["detections"]["detections"]] == ["bus"]
    r = httpx.post(f"{live_server.url}/v1/detect", headers=live_server.headers,
                   json={"images": [{"content": base64.b64encode(BUS.read_bytes()).decode()}], "max_det": 0})
    assert r.status_code == 400 and "max_det must be between 1 and 10000" in r.json()["error"]["message"]


def test_a_review_item_is_queued_from_each_task(live_server):
    """The review threshold (1.0) queues classify items on their top class and detect items on their boxes."""
    h, url = live_server.headers, live_server.url
    ids = {}
    for route in ("classify", "detect"):
        r = httpx.post(f"{url}/v1/{route}", headers=h, files=upload(("bus.jpg", BUS.read_bytes())))
        ids[route] = r.json()["results"][0]["review_id"]
    items = {i: httpx.get(f"{url}/v1/review/items/{i}", headers=h).json() for i in ids.values()}
    classify, detect = items[ids["classify"]], items[ids["detect"]]
    assert (classify["task"], classify["model"], classify["predicted_label"], classify["reason"]) == (
        "classify", "efficientnet_lite0", "school bus", "low_confidence")
    assert len(classify["labels"]) == 1000
    assert (detect["task"], detect["model"], detect["predicted_label"], detect["reason"]) == (
        "detect", "yolox_nano", "bus", "low_confidence")
    assert detect["confidence"] == pytest.approx(0.962151, abs=1e-6) and detect["labels"][5] == "bus"
    assert [d["class_name"] for d in detect["prediction"]["detections"]] == ["bus", "car"]


def test_detector_and_segmenter_none_switch_detection_and_segmentation_off(tmp_path, visor_cache):
    server = start_server(tmp_path, detector="none", segmenter="none")
    try:
        h, url = server.headers, server.url
        assert httpx.get(f"{url}/readyz").json()["models"] == ["efficientnet_lite0"]
        r = httpx.post(f"{url}/v1/detect", headers=h, files=upload(("a.jpg", BUS.read_bytes())))
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert r.json()["error"]["message"] == ("this service has no object detector (it was started with --detector "
                                                "none): start it with --detector MODEL (default yolox_nano)")
        r = httpx.post(f"{url}/v1/segment", headers=h, files=upload(("a.jpg", BUS.read_bytes())))
        assert r.status_code == 404 and r.json()["error"]["message"] == (
            "this service has no segmenter (it was started with --segmenter none): start it with --segmenter MODEL "
            "(default deeplabv3_voc)")
        # annotate: objects are left out of the default features, and asked for, answer 404 in their slot (as
        # segmentation does, never a default model loaded on a request)
        r = httpx.post(f"{url}/v1/annotate", headers=h, params={"features": "objects,properties,segmentation"},
                       files=upload(("bus.jpg", BUS.read_bytes())))
        doc = r.json()["results"][0]
        assert doc["objects"]["error"]["code"] == "model_not_found" and doc["properties"]["type"] == "properties"
        assert doc["segmentation"]["error"]["code"] == "model_not_found"
        assert "objects" not in server.app.state.service.default_features()
        assert httpx.post(f"{url}/v1/classify", headers=h, files=upload(("bus.jpg", BUS.read_bytes()))
                          ).status_code == 200
    finally:
        server.stop()


def test_annotate_matches_the_library(live_server, classifier):
    import visor

    r = httpx.post(f"{live_server.url}/v1/annotate", headers=live_server.headers,
                   params={"features": "labels,properties,crop_hints"}, files=upload(("bus.jpg", BUS.read_bytes())))
    assert r.status_code == 200
    doc = r.json()["results"][0]
    expected = visor.annotate(BUS, ["labels", "properties", "crop_hints"], annotator=visor.Annotator(
        classifier=classifier))
    assert doc["labels"] == expected["labels"]
    assert doc["properties"] == expected["properties"]
    assert doc["crop_hints"] == expected["crop_hints"]
    assert (doc["width"], doc["height"]) == (expected["width"], expected["height"])
    r = httpx.post(f"{live_server.url}/v1/annotate", headers=live_server.headers, params={"features": "lables"},
                   files=upload(("bus.jpg", BUS.read_bytes())))
    assert r.status_code == 400 and "Did you mean 'labels'" in r.json()["error"]["message"]


# --------------------------------------------------------------------------- deadlines and load shedding


def test_deadline_gives_504(live_server):
    r = httpx.post(f"{live_server.url}/v1/classify", headers={**live_server.headers, "X-Visor-Deadline-Ms": "0"},
                   files=upload(("bus.jpg", BUS.read_bytes())))
    assert r.status_code == 504 and r.json()["results"][0]["error"]["code"] == "deadline_exceeded"


def _block_batches(server):
    """Make the classifier's batch function wait for an event (to fill the queue on purpose)."""
    batcher = server.app.state.service.manager.model_for("classification").batcher
    release, entered = threading.Event(), threading.Event()
    real = batcher.fn

    def slow(items):
        entered.set()
        release.wait(30)
        return real(items)

    batcher.fn = slow
    return release, entered


def test_full_queue_gives_503_with_retry_after_and_a_slow_batch_504(tmp_path, visor_cache):
    server = start_server(tmp_path, max_batch=1, queue_size=1, deadline_ms=3000)
    try:
        release, entered = _block_batches(server)
        results: dict[str, httpx.Response] = {}

        def post(name):
            results[name] = httpx.post(f"{server.url}/v1/classify", headers=server.headers, timeout=30,
                                       files=upload((f"{name}.png", _small_png())))

        first = threading.Thread(target=post, args=("running",))
        first.start()
        assert entered.wait(10)  # the worker is busy with the first image
        second = threading.Thread(target=post, args=("queued",))
        second.start()
        depth = server.app.state.service.manager.model_for("classification").batcher
        for _ in range(100):
            if depth.depth == 1:
                break
            time.sleep(0.05)
        post("refused")
        assert results["refused"].status_code == 503
        assert results["refused"].headers["retry-after"] == "1"
        # refused at the door, before its body is parsed: one error for the request
        assert results["refused"].json()["error"]["code"] == "overloaded"
        time.sleep(3.2)  # past the 3 s deadline of the two waiting requests
        release.set()
        first.join(30)
        second.join(30)
        assert results["running"].status_code == 504  # its batch outlived the deadline
        assert results["queued"].status_code == 504
        metrics = httpx.get(f"{server.url}/metrics", headers=server.headers).text
        assert 'visor_requests_total{method="POST",route="/v1/classify",status="503"} 1.0' in metrics
        assert 'visor_images_total{outcome="deadline_exceeded",route="classify"} 2.0' in metrics
    finally:
        server.stop()


def test_micro_batching_groups_concurrent_requests(tmp_path, visor_cache, classifier):
    server = start_server(tmp_path, max_batch=8, max_wait_ms=2000)
    try:
        data = BUS.read_bytes()
        out = []
        threads = [threading.Thread(target=lambda: out.append(httpx.post(
            f"{server.url}/v1/classify", headers=server.headers, timeout=30, files=upload(("bus.jpg", data)))))
            for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert [r.status_code for r in out] == [200] * 8
        expected = classifier.classify(BUS).to_dict()
        assert all(r.json()["results"][0]["classifications"] == expected for r in out)
        metrics = httpx.get(f"{server.url}/metrics", headers=server.headers).text
        # 8 images arrived within the 2 s window: one batch of 8
        assert 'visor_batch_size_bucket{le="4.0",model="efficientnet_lite0"} 0.0' in metrics
        assert 'visor_batch_size_count{model="efficientnet_lite0"} 1.0' in metrics
        assert 'visor_requests_total{method="POST",route="/v1/classify",status="200"} 8.0' in metrics
    finally:
        server.stop()


def test_batch_calibration_picks_a_measured_size(tmp_path, visor_cache):
    server = start_server(tmp_path, max_batch=4, batch_calibration=True, detector="none")
    try:
        manager = server.app.state.service.manager
        rates = manager.batch_rates["efficientnet_lite0"]
        assert sorted(rates) == [1, 2, 4] and all(r > 0 for r in rates.values())
        chosen = manager.model_for("classification").max_batch
        assert rates[chosen] >= 0.95 * max(rates.values())
        assert all(rates[n] < 0.95 * max(rates.values()) for n in rates if n < chosen)
        model = httpx.get(f"{server.url}/v1/models", headers=server.headers).json()["models"][0]
        assert model["max_batch"] == chosen
    finally:
        server.stop()


def test_not_ready_answers_503(tmp_path):
    from fastapi.testclient import TestClient

    from visor.serve.app import create_app
    from visor.serve.settings import ServeSettings

    app = create_app(ServeSettings(db=f"sqlite:///{tmp_path / 's.db'}", require_keys=False))
    client = TestClient(app)  # no lifespan: the models never load
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {"status": "loading"}
    r = client.post("/v1/classify", files=upload(("bus.jpg", BUS.read_bytes())))
    assert r.status_code == 503 and r.json()["results"][0]["error"]["code"] == "loading"
    assert client.get("/livez").status_code == 200


# --------------------------------------------------------------------------- persistence and shutdown


def test_review_decisions_survive_a_restart(tmp_path, visor_cache, db_url):
    server = start_server(tmp_path / "a", review_threshold=1.0, db=db_url)  # SQLite, then PostgreSQL
    db = server.db_url
    try:
        r = httpx.post(f"{server.url}/v1/classify", headers=server.headers,
                       files=upload(("one.jpg", BUS.read_bytes()), ("two.png", _small_png())))
        ids = [x["review_id"] for x in r.json()["results"]]
        assert all(isinstance(i, int) for i in ids)
        h = server.headers
        assert httpx.post(f"{server.url}/v1/review/items/{ids[0]}", headers=h,
                          json={"action": "accept"}).json()["status"] == "accepted"
        assert httpx.post(f"{server.url}/v1/review/items/{ids[1]}", headers=h,
                          json={"action": "correct", "label": "red square"}).json()["label"] == "red square"
        bad = httpx.post(f"{server.url}/v1/review/items/{ids[1]}", headers=h, json={"action": "acept"})
        assert bad.status_code == 400
    finally:
        server.stop()
    again = start_server(tmp_path / "b", db=db, review_threshold=1.0)
    try:
        items = httpx.get(f"{again.url}/v1/review/items", params={"status": "reviewed"}, headers=again.headers)
        got = {i["id"]: (i["status"], i["label"]) for i in items.json()["items"]}
        assert got == {ids[0]: ("accepted", "school bus"), ids[1]: ("corrected", "red square")}
        image = httpx.get(f"{again.url}/v1/review/items/{ids[0]}/image", headers=again.headers)
        assert image.content == BUS.read_bytes() and image.headers["content-type"] == "image/jpeg"
    finally:
        again.stop()


def test_prediction_log_records_each_image(tmp_path, visor_cache):
    from visor.serve.db import ServiceDB
    from visor.serve.predictions import PredictionLog

    server = start_server(tmp_path, log_predictions=True)
    try:
        r = httpx.post(f"{server.url}/v1/classify", headers=server.headers,
                       files=upload(("a.jpg", BUS.read_bytes()), ("bad.jpg", b"nope")))
        assert r.status_code == 200 and r.json()["results"][0]["review_id"] is None  # review queue off
    finally:
        server.stop()
    db = ServiceDB(server.db_url)
    try:
        assert PredictionLog(db).count() == 1  # the good image only
    finally:
        db.close()


def test_sigterm_finishes_requests_in_flight(tmp_path, visor_cache):
    from conftest import free_port

    port = free_port()
    env = {**os.environ, "VISOR_HOME": str(tmp_path), "VISOR_CACHE": str(visor_cache)}
    proc = subprocess.Popen([sys.executable, "-m", "visor", "serve", "--no-keys", "--port", str(port),
                             "--max-wait-ms", "1500", "--max-batch", "4", "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        result = {}

        def post():
            result["r"] = httpx.post(f"{url}/v1/classify", files=upload(("bus.jpg", BUS.read_bytes())), timeout=30)

        t = threading.Thread(target=post)
        t.start()
        time.sleep(0.7)  # the request now waits in the 1.5 s batching window
        proc.send_signal(signal.SIGTERM)
        t.join(30)
        assert result["r"].status_code == 200
        assert result["r"].json()["results"][0]["classifications"]["predictions"][0]["label"] == "school bus"
        # a requested stop after the graceful shutdown exits 0
        assert proc.wait(30) == 0
        with pytest.raises(httpx.TransportError):
            httpx.get(f"{url}/livez", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_face_collections_over_http(live_server, shared_data):
    faces = shared_data("faces")
    people = [faces / "known" / "biden", faces / "known" / "obama"]
    h, url = live_server.headers, live_server.url
    assert httpx.post(f"{url}/v1/collections", headers=h, json={"name": "staff"}).status_code == 201
    assert httpx.post(f"{url}/v1/collections", headers=h, json={"name": "staff"}).status_code == 409
    for person in people:
        photo = sorted(person.glob("*.jpg"))[0]
        r = httpx.post(f"{url}/v1/collections/staff/people/{person.name}", headers=h, timeout=60,
                       files=upload((photo.name, photo.read_bytes())))
        assert r.status_code == 200 and r.json()["faces_added"] == 1, r.text
    listing = httpx.get(f"{url}/v1/collections", headers=h).json()["collections"]
    assert {"name": "staff", "people": 2, "faces": 2} in listing
    probe = sorted(people[0].glob("*.jpg"))[-1]
    r = httpx.post(f"{url}/v1/collections/staff/identify", headers=h, timeout=60,
                   files=upload((probe.name, probe.read_bytes())))
    assert r.status_code == 200
    assert [f["name"] for f in r.json()["results"][0]["faces"]] == [people[0].name]
    assert httpx.delete(f"{url}/v1/collections/staff/people/{people[1].name}", headers=h).status_code == 204
    assert httpx.get(f"{url}/v1/collections/staff", headers=h).json()["people"] == [
        {"name": people[0].name, "faces": 1}]
    assert httpx.delete(f"{url}/v1/collections/staff", headers=h).status_code == 204
    assert httpx.get(f"{url}/v1/collections/staff", headers=h).status_code == 404


def test_openapi_schema_documents_every_route(live_server):
    schema = httpx.get(f"{live_server.url}/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, op in methods.items():
            assert op.get("description") or op.get("summary"), (method, path)
            assert "200" in op["responses"] or "201" in op["responses"] or "204" in op["responses"], (method, path)
    body = schema["paths"]["/v1/classify"]["post"]["requestBody"]["content"]
    assert set(body) == {"multipart/form-data", "application/json"}
    assert body["application/json"]["example"]["images"][0]["content"]
    assert json.dumps(schema)  # serializable


def test_search_route(tmp_path, visor_cache, shared_data, classifier):
    from visor.retrieval import Embedder, build_index

    folder = shared_data("imagenette-dev") / "val" / "n01440764"
    photos = sorted(folder.glob("*.JPEG"))
    index, _ = build_index([str(p) for p in photos], tmp_path / "idx", embedder=Embedder(classifier),
                           labels=["tench"] * len(photos))
    index.close()
    server = start_server(tmp_path / "srv", index=str(tmp_path / "idx"))
    try:
        r = httpx.post(f"{server.url}/v1/search", headers=server.headers, params={"k": 3}, timeout=60,
                       files=upload((photos[2].name, photos[2].read_bytes()), ("bad.jpg", b"x")))
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["index"] == {"model": "efficientnet_lite0", "count": 15, "exact": True}
        hits = body["results"][0]["hits"]
        assert len(hits) == 3 and hits[0]["path"] == photos[2].name and hits[0]["label"] == "tench"  # relative path
        assert hits[0]["similarity"] == pytest.approx(1.0, abs=1e-5)
        assert body["results"][1]["error"]["code"] == "unsupported_format"
    finally:
        server.stop()


def test_search_without_an_index_is_404(live_server):
    r = httpx.post(f"{live_server.url}/v1/search", headers=live_server.headers, files=upload(("a.jpg", b"x")))
    assert r.status_code == 404 and "--index" in r.json()["error"]["message"]
