"""The web UI's face list: dlib's raw detector scores are labelled as scores, never shown as percentages.

A real browser (Debian's chromium through Playwright, see tests/conftest.py) loads the UI's own
files; the API is answered by a stub, so no model is loaded. Skips without the browser, fails
when ``CI=true``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

STATIC = Path(__file__).resolve().parents[2] / "src" / "visor" / "serve" / "static"
TYPES = {".html": "text/html", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}
ANNOTATION = {"results": [{"image": "face.png", "faces": {"type": "faces", "faces": [
    {"xyxy": [2, 2, 30, 30], "confidence": 1.3742, "landmarks": [], "name": "obama", "distance": 0.41},
    {"xyxy": [34, 2, 60, 30], "confidence": -0.25, "landmarks": []},
    {"xyxy": [2, 34, 30, 60], "confidence": None, "landmarks": []},
]}}]}


def _serve(route) -> None:
    path = route.request.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
    if path.startswith("ui/"):
        file = STATIC / (path[3:] or "index.html")
        route.fulfill(status=200, body=file.read_bytes(), content_type=TYPES.get(file.suffix, "text/plain"))
    elif path == "v1/annotate":
        route.fulfill(status=200, body=json.dumps(ANNOTATION), content_type="application/json")
    elif path == "v1/models":
        route.fulfill(status=200, body=json.dumps({"models": []}), content_type="application/json")
    else:
        route.fulfill(status=200, body="{}", content_type="application/json")


def test_face_scores_are_labelled_raw_scores_not_percentages(chromium):
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.route("http://visor.test/**", _serve)
        page.goto("http://visor.test/ui/")
        buf = io.BytesIO()
        Image.new("RGB", (64, 64), (120, 120, 120)).save(buf, "PNG")
        page.set_input_files("#file-input", files=[{"name": "face.png", "mimeType": "image/png",
                                                     "buffer": buf.getvalue()}])
        page.wait_for_selector("#faces li:nth-child(3)", timeout=30_000)
        rows = page.eval_on_selector_all("#faces li", """items => items.map(li => ({
            name: li.querySelector('.item-name').textContent,
            value: li.querySelector('.item-value').textContent,
            title: li.querySelector('.item-value').getAttribute('title'),
            meters: li.querySelectorAll('[role=meter]').length}))""")
    finally:
        context.close()
    assert rows == [
        {"name": "obama", "value": "score 1.37", "title": "raw detector score (not a probability)", "meters": 0},
        {"name": "Face 2", "value": "score -0.25", "title": "raw detector score (not a probability)", "meters": 0},
        {"name": "Face 3", "value": "", "title": None, "meters": 0},
    ]
    assert errors == []
