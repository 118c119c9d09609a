"""Operations hardening: pixel budgets and deadlines for annotate, bounded metric labels, keys kept out of
the access log, offline /docs, and the ways Prometheus may scrape /metrics."""

from __future__ import annotations

import io
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from conftest import free_port

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"


def flat_png(side: int = 6000) -> bytes:
    """A flat-colour PNG of side x side pixels: a few kB that decode to 36 MP (under the 40 MP cap)."""
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (90, 120, 150)).save(buf, "PNG", optimize=True)
    return buf.getvalue()


def bare_app(tmp_path: Path, **overrides):
    """An app whose models never load (no lifespan): for routes that need no model."""
    from visor.serve.app import create_app
    from visor.serve.settings import ServeSettings

    settings = ServeSettings(db=f"sqlite:///{tmp_path / 'serve.db'}", faces_db=str(tmp_path / "faces.db"),
                             **overrides)
    return create_app(settings)


# --------------------------------------------------------------------------- pixel budgets (library)


def test_face_boxes_of_an_upscaled_photo_map_back_to_original_pixels(shared_data):
    """Faces are found on a copy of at most FACE_PIXELS pixels; boxes come back in the original's pixels."""
    from visor.annotator import FACE_PIXELS, Annotator

    with Image.open(shared_data("faces") / "unknown" / "kit_with_rose.jpg") as im:
        small = im.convert("RGB")
    big = small.resize((small.width * 3, small.height * 3), Image.Resampling.BICUBIC)
    assert big.width * big.height > FACE_PIXELS  # so the budget applies
    annotator = Annotator()
    ref = np.array([f["xyxy"] for f in annotator.annotate(small, ["faces"])["faces"]["faces"]])
    doc = annotator.annotate(big, ["faces"])
    got = np.array([f["xyxy"] for f in doc["faces"]["faces"]])
    assert (doc["width"], doc["height"]) == big.size
    assert len(ref) == len(got) == 2
    a, b = got[np.argsort(got[:, 0])], 3 * ref[np.argsort(ref[:, 0])]
    inter = np.clip(np.minimum(a[:, 2:], b[:, 2:]) - np.maximum(a[:, :2], b[:, :2]), 0, None).prod(axis=1)
    union = (a[:, 2:] - a[:, :2]).prod(axis=1) + (b[:, 2:] - b[:, :2]).prod(axis=1) - inter
    # HOG finds a face at another pyramid scale with a slightly other box (IoU 0.74 and 0.93 here);
    # a mapping error (boxes left in the copy's pixels: 2.4x instead of 3x) gives IoU < 0.65
    assert np.all(inter / union > 0.7), inter / union


def test_face_analyzer_max_pixels_scales_boxes_and_landmarks_exactly(shared_data):
    """Downscaled back to the original's size, a 3x upscale gives 3x the boxes and landmarks."""
    from visor.faces import FaceAnalyzer

    with Image.open(shared_data("faces") / "unknown" / "kit_with_rose.jpg") as im:
        small = im.convert("RGB")
    big = small.resize((small.width * 3, small.height * 3), Image.Resampling.BICUBIC)
    ref = FaceAnalyzer().detect(small, embeddings=False)
    got = FaceAnalyzer(max_pixels=small.width * small.height).detect(big, embeddings=False)
    assert len(ref) == len(got) == 2
    np.testing.assert_allclose(got.xyxy, 3 * ref.xyxy, atol=3 * 2 + 0.5)
    np.testing.assert_allclose(got.landmarks, 3 * ref.landmarks, atol=3 * 2 + 0.5)


def test_text_boxes_of_an_upscaled_image_map_back_to_original_pixels():
    from visor.features.text import TextReader

    with Image.open(BUS) as im:
        photo = im.convert("RGB")
    big = photo.resize((photo.width * 3, photo.height * 3), Image.Resampling.BICUBIC)
    small = big.resize(photo.size, Image.Resampling.BOX)  # the copy the reader makes of big
    reader = TextReader(max_side=max(small.size))
    ref, got = reader.read(small), reader.read(big)
    assert len(ref) >= 1 and list(got.text) == list(ref.text)
    np.testing.assert_allclose(got.polygons, 3 * ref.polygons, rtol=1e-6)


def test_properties_work_on_a_bounded_copy():
    """image_properties on a 3000 x 3000 photo: numpy peak ~ a 512 px copy's, not the full image's
    float64 luma (216 MB before); values match the photo's own within rounding."""
    from visor.features.properties import image_properties

    with Image.open(BUS) as im:
        photo = im.convert("RGB").resize((512, 512), Image.Resampling.BOX)
    big = photo.resize((3000, 3000), Image.Resampling.NEAREST)
    tracemalloc.start()
    try:
        props = image_properties(big)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 40e6, f"numpy peak {peak / 1e6:.0f} MB"
    ref = image_properties(photo)
    assert (props.width, props.height) == (3000, 3000)
    assert abs(props.brightness - ref.brightness) < 0.01
    assert abs(props.exposure.score - ref.exposure.score) < 0.02


BIG_ANNOTATE = r"""
import io, json, re, time
from PIL import Image
from visor.annotator import Annotator
buf = io.BytesIO()
Image.new("RGB", (6000, 6000), (90, 120, 150)).save(buf, "PNG", optimize=True)
annotator = Annotator()
started = time.perf_counter()
doc = annotator.annotate(buf.getvalue(), ["faces", "properties", "labels", "crop_hints"])
print(json.dumps({"bytes": len(buf.getvalue()), "seconds": time.perf_counter() - started,
                  # VmHWM is this program's own peak; ru_maxrss would carry the forking pytest's over exec
                  "max_rss_mb": int(re.search(r"VmHWM:\s+(\d+) kB", open("/proc/self/status").read())[1]) / 1024,
                  "size": [doc["width"], doc["height"]], "faces": doc["faces"]["faces"],
                  "color": doc["properties"]["dominant_colors"][0]["hex"]}))
"""


def test_annotate_of_a_36_mp_png_is_bounded():
    """The issue's image: a few-kB PNG decoding to 6000 x 6000, in a fresh process. Before: faces alone
    took ~28 s and the process peaked at 2.3 GB; now each feature works on its budget (~6 s, ~0.6 GB
    on 2 cores, most of it the decoded image and the models)."""
    import json

    r = subprocess.run([sys.executable, "-c", BIG_ANNOTATE], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["bytes"] < 200_000 and out["size"] == [6000, 6000]
    assert out["faces"] == [] and out["color"] == "#5a7896"
    assert out["max_rss_mb"] < 1200, out
    assert out["seconds"] < 60, out  # ~6 s on 2 idle cores; 170 s before on the same busy machine


def test_annotate_check_stops_between_features_and_propagates():
    from visor.annotator import Annotator
    from visor.serve.batcher import DeadlineExceeded

    seen = []

    def check(feature: str) -> None:
        seen.append(feature)
        if len(seen) == 2:
            raise DeadlineExceeded("late")

    with pytest.raises(DeadlineExceeded):
        Annotator().annotate(BUS, ["properties", "crop_hints", "labels"], check=check)
    assert seen == ["properties", "labels"]  # crop hints run last; labels never started


# --------------------------------------------------------------------------- deadlines and concurrency (service)


def test_annotate_honours_the_deadline_header(live_server):
    """X-Visor-Deadline-Ms: 500 on the 36 MP PNG: answered by the deadline, with 504 deadline_exceeded
    when the features did not finish in time (before: 83 s, 200). The whole document takes 1.25 s here with
    the models loaded (decoding alone 0.45 s), so 500 ms is short of it even on a CPU twice as fast (2000 ms
    was not, once OCR and NMS got faster: CI answered 200)."""
    headers = {**live_server.headers, "X-Visor-Deadline-Ms": "500"}
    files = [("images", ("big.png", flat_png(), "image/png"))]
    started = time.perf_counter()
    r = httpx.post(f"{live_server.url}/v1/annotate", files=files, headers=headers,
                   params={"features": "faces,text,properties,labels,crop_hints"}, timeout=120)
    took = time.perf_counter() - started
    assert took < 10, f"{took:.1f} s"  # 0.5 s + upload, decoding and scheduling on a busy machine
    assert r.status_code == 504 and r.json()["results"][0]["error"]["code"] == "deadline_exceeded"


@pytest.mark.parametrize("route", ["/v1/annotate", "/v1/images:annotate", "/v1/collections/{c}/identify",
                                   "/v1/collections/{c}/people/someone"])
def test_every_image_route_honours_the_deadline(live_server, route):
    import base64

    c = "deadline-test"
    httpx.post(f"{live_server.url}/v1/collections", json={"name": c}, headers=live_server.headers)
    headers = {**live_server.headers, "X-Visor-Deadline-Ms": "0"}
    url = live_server.url + route.format(c=c)
    if route == "/v1/images:annotate":
        body = {"requests": [{"image": {"content": base64.b64encode(BUS.read_bytes()).decode()},
                              "features": [{"type": "LABEL_DETECTION"}]}]}
        r = httpx.post(url, json=body, headers=headers, timeout=60)
        assert r.status_code == 504 and r.json()["error"]["code"] == 504
        return
    r = httpx.post(url, files=[("images", ("bus.jpg", BUS.read_bytes(), "image/jpeg"))], headers=headers,
                   timeout=60)
    assert r.status_code == 504
    body = r.json()
    code = body["results"][0]["error"]["code"] if "results" in body else body["error"]["code"]
    assert code == "deadline_exceeded"


def test_a_slow_annotate_does_not_stall_other_annotate_requests(live_server):
    """One request runs faces and text on a 9 MP image; a labels-only request sent after it is answered
    first (before, one lock held for the whole document made it wait)."""
    done: dict[str, float] = {}

    def slow() -> None:
        httpx.post(f"{live_server.url}/v1/annotate", files=[("images", ("big.png", flat_png(3000), "image/png"))],
                   params={"features": "faces,text,properties"}, headers=live_server.headers, timeout=120)
        done["slow"] = time.perf_counter()

    t = threading.Thread(target=slow)
    t.start()
    time.sleep(0.5)
    r = httpx.post(f"{live_server.url}/v1/annotate", files=[("images", ("bus.jpg", BUS.read_bytes(), "image/jpeg"))],
                   params={"features": "labels"}, headers=live_server.headers, timeout=120)
    done["fast"] = time.perf_counter()
    t.join(120)
    assert r.status_code == 200 and "error" not in r.json()["results"][0]["labels"]
    assert done["fast"] < done["slow"]


# --------------------------------------------------------------------------- metrics labels


def test_made_up_methods_and_paths_do_not_grow_the_metric_series(tmp_path):
    from visor.serve.metrics import METHODS

    app = bare_app(tmp_path)
    client = TestClient(app)
    rng = random.Random(0)
    for i in range(300):
        method = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(8))
        path = rng.choice(["/v1/models", "/v1/classify", f"/nope/{i}", f"/v1/collections/x{i}", "/livez"])
        client.request(method, path)
    client.get(f"/made/up/{rng.random()}")
    text = app.state.service.metrics.render().decode()
    series = [line for line in text.splitlines() if line.startswith("visor_requests_total{")]
    methods = set(re.findall(r'method="([^"]*)"', "\n".join(series)))
    routes = set(re.findall(r'route="([^"]*)"', "\n".join(series)))
    assert methods <= METHODS | {"other"} and "other" in methods
    assert routes <= {"/v1/models", "/v1/classify", "/v1/collections/{name}", "/livez", "unmatched"}
    assert len(series) <= 12, series


# --------------------------------------------------------------------------- keys out of the access log


def test_query_keys_are_redacted_from_the_access_log(tmp_path):
    """A real `visor serve`: ?key= on /v1/images:annotate is logged as key=REDACTED."""
    port = free_port()
    env = {**os.environ, "VISOR_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    secret = "visor_s3cr3tKEYdoNotLog0123456789"
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "visor", "serve", "--port", str(port), "--db",
                                 f"sqlite:///{tmp_path / 'serve.db'}", "--no-batch-calibration"],
                                stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(300):
                try:
                    httpx.get(f"{url}/livez", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            r = httpx.post(f"{url}/v1/images:annotate", params={"key": secret, "$alt": "json"}, json={})
            assert r.status_code == 401
            httpx.get(f"{url}/livez", params={"api_key": secret, "x": "1"})
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
    text = log.read_text()
    assert "/v1/images:annotate?key=REDACTED&%24alt=json" in text, text
    assert "/livez?api_key=REDACTED&x=1" in text
    assert secret not in text


def test_redact_credentials():
    from visor.serve.auth import redact

    assert redact("/v1/images:annotate?key=abc&$alt=json") == "/v1/images:annotate?key=REDACTED&$alt=json"
    assert redact("/x?a=1&Access_Token=t0k#f") == "/x?a=1&Access_Token=REDACTED#f"
    assert redact("/x?monkey=1&keys=2") == "/x?monkey=1&keys=2"


# --------------------------------------------------------------------------- offline docs


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_pages_load_nothing_from_the_internet(tmp_path, page):
    client = TestClient(bare_app(tmp_path))
    r = client.get(page)
    assert r.status_code == 200
    assert not re.search(r"https?://", r.text), r.text
    assets = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', r.text)
    assert any(a.endswith(".js") for a in assets)
    for asset in assets:
        got = client.get(asset)
        assert got.status_code == 200 and len(got.content) > 0, asset
    assert client.get("/openapi.json").status_code == 200


# --------------------------------------------------------------------------- scraping /metrics


def test_metrics_accepts_the_token_file_bearer(tmp_path):
    token = "0123456789abcdef0123456789abcdef"
    (tmp_path / "metrics.token").write_text(token + "\n")
    client = TestClient(bare_app(tmp_path, metrics_token_file=str(tmp_path / "metrics.token")))
    r = client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 200 and "visor_requests_total" in r.text
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer " + "0" * 32}).status_code == 401
    # the metrics token is no API key
    assert client.get("/v1/models", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_metrics_public_only_on_loopback(tmp_path):
    from visor.errors import ConfigError
    from visor.serve.settings import ServeSettings

    client = TestClient(bare_app(tmp_path, metrics_public=True))
    assert client.get("/metrics").status_code == 200
    assert client.get("/v1/models").status_code == 401
    with pytest.raises(ConfigError, match="loopback"):
        ServeSettings(host="0.0.0.0", metrics_public=True)


@pytest.mark.parametrize("args, message", [
    (["--host", "0.0.0.0", "--metrics-public"], "--metrics-public needs a loopback address"),
    (["--metrics-token-file", "/nonexistent/token"], "cannot read the metrics token file"),
])
def test_cli_refuses_bad_metrics_options_in_one_line(args, message):
    r = subprocess.run([sys.executable, "-m", "visor", "serve", *args, "--print-settings"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr
