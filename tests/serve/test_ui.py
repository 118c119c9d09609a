"""The web UI in a real browser: Playwright drives Debian's chromium against a live visor server.

Acceptance (issue 6): upload an image in the UI and see its labels; accept and correct two
review items with the keyboard; the two then appear in ``visor review export``. The page must
log no console errors and throw no uncaught exceptions.

Needs ``/usr/bin/chromium`` (``VISOR_CHROMIUM`` overrides the path) and the ``playwright``
package; Playwright never downloads a browser here. Without them the tests skip, or fail
when ``CI=true``.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
# The first annotate call loads every model on a small CPU runner.
SLOW_MS = 180_000
# What chromium logs for a fetch() answered with an HTTP error (a 401 before the key is entered,
# or the 400 of a deliberately corrupt upload); anything else in the console is a failure.
HTTP_ERROR_LOG = re.compile(r"^Failed to load resource: the server responded with a status of (\d{3})\b")


@pytest.fixture(scope="session", autouse=True)
def _needs_chromium(needs_chromium) -> None:
    """Skip (or fail in CI) before the live server starts when there is no browser to drive."""


@pytest.fixture(scope="module")
def browser(chromium) -> object:
    return chromium


class Page:
    """A fresh browser context and page, with the console errors and page errors it logged."""

    def __init__(self, browser: object) -> None:
        from playwright.sync_api import expect

        self.expect = expect
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.context.set_default_timeout(30_000)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def take_http_errors(self, *statuses: int) -> list[str]:
        """Remove the logged fetch failures with these HTTP statuses; return what else was logged."""
        wanted = {str(s) for s in statuses}
        other = [e for e in self.errors if not ((m := HTTP_ERROR_LOG.match(e)) and m.group(1) in wanted)]
        self.errors.clear()
        return other

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def ui(browser) -> Iterator[Page]:
    page = Page(browser)
    try:
        yield page
    finally:
        page.close()


def _headers(server) -> dict[str, str]:
    return {"X-API-Key": server.key}


def _open_with_key(ui: Page, server) -> None:
    """Open the UI without a key, see the prompt, enter the key."""
    page, expect = ui.page, ui.expect
    page.goto(server.url.rstrip("/") + "/")
    expect(page).to_have_url(re.compile(r"/ui/"))
    expect(page.locator("#auth-message")).to_be_visible()
    expect(page.locator("#auth-message")).to_contain_text("API key required")
    page.fill("#api-key", server.key)
    page.click("#api-key-save")
    expect(page.locator("#auth-message")).to_be_hidden()
    # Give the requests the saved key started time to finish before judging the console.
    page.wait_for_load_state("networkidle")
    assert ui.take_http_errors(401) == [], "unexpected console errors before the key was entered"
    assert page.evaluate("localStorage.getItem('visor.apiKey')") == server.key


def _jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _queue_for_review(server, name: str, data: bytes) -> dict:
    """Classify one image; the test server queues every classification for review."""
    r = httpx.post(f"{server.url}/v1/classify", headers=_headers(server),
                   files=[("images", (name, data, "image/jpeg"))], timeout=120)
    assert r.status_code == 200, r.text
    result = r.json()["results"][0]
    assert result.get("review_id") is not None, f"the server did not queue {name} for review: {result}"
    return result


def _goto_item(ui: Page, item_id: int, pending: int) -> None:
    """Move with ``j`` until the review panel shows ``item_id``, one item at a time: each press waits
    for the panel to show the next item (a press while the list is still loading would be lost)."""
    item = ui.page.locator("#review-item")
    ui.expect(item).to_have_attribute("data-item-id", re.compile(r"\d+"))  # the pending list is shown
    for _ in range(pending):
        shown = item.get_attribute("data-item-id")
        if shown == str(item_id):
            break
        ui.page.keyboard.press("j")
        ui.expect(item).not_to_have_attribute("data-item-id", shown)
    ui.expect(item).to_have_attribute("data-item-id", str(item_id))
    ui.page.wait_for_function(
        "() => { const i = document.querySelector('#review-image');"
        " return i.complete && i.naturalWidth > 0 && i.src.startsWith('blob:'); }"
    )


def test_upload_see_labels_review_and_export(live_server, ui, tmp_path, capsys):
    from visor.cli.main import main as visor_main

    server, page, expect = live_server, ui.page, ui.expect
    # The server is shared with other tests: note what its queue already holds.
    before = httpx.get(f"{server.url}/v1/review/items", params={"status": "all", "limit": 1000},
                       headers=_headers(server), timeout=30).json()
    counts, earlier = before["counts"], {item["id"] for item in before["items"]}

    # Two review items: bus.jpg, and a mirrored crop of it (different bytes, a different file).
    bus_bytes = BUS.read_bytes()
    with Image.open(BUS) as im:
        oriented = ImageOps.exif_transpose(im)
        bus_size = oriented.size
        crop = ImageOps.mirror(oriented.crop((0, 0, oriented.width * 3 // 4, oriented.height * 3 // 4)))
    crop_bytes = _jpeg(crop)
    first = _queue_for_review(server, "bus.jpg", bus_bytes)
    second = _queue_for_review(server, "bus_crop.jpg", crop_bytes)
    first_id, second_id = first["review_id"], second["review_id"]
    assert first["classifications"]["predictions"][0]["label"] == "school bus"
    correction = "trolleybus" if second["classifications"]["predictions"][0]["label"] != "trolleybus" else "minibus"

    _open_with_key(ui, server)

    # Analyze: upload bus.jpg, see its labels and the drawing.
    page.set_input_files("#file-input", str(BUS))
    top = page.locator("#labels li").first
    expect(top).to_contain_text("school bus", timeout=SLOW_MS)
    expect(top).to_have_attribute("data-label", "school bus")
    assert float(top.get_attribute("data-confidence")) > 0.3
    expect(page.locator("#analyze-error")).to_be_hidden()
    expect(page.locator("#analyze-status")).to_contain_text("Done")
    assert page.eval_on_selector("#analyze-canvas", "c => [c.width, c.height]") == list(bus_size)
    analyzed = json.loads(page.text_content("#analyze-json"))
    assert analyzed["results"][0]["labels"]["predictions"][0]["label"] == "school bus"

    # Review: the two items, with the keyboard.
    page.click("#tab-review")
    expect(page.locator("#panel-review")).to_be_visible()
    pending = counts.get("pending", 0) + 2
    expect(page.locator("#review-count-pending")).to_have_text(str(pending))
    _goto_item(ui, first_id, pending)
    expect(page.locator("#review-predicted")).to_have_text("school bus")
    options = page.eval_on_selector_all("#review-labels option", "os => os.map(o => o.value)")
    assert "school bus" in options and correction in options

    page.keyboard.press("j")  # next, and back
    expect(page.locator("#review-item")).to_have_attribute("data-item-id", str(second_id))
    page.keyboard.press("k")
    expect(page.locator("#review-item")).to_have_attribute("data-item-id", str(first_id))

    page.keyboard.press("a")  # accept: the queue moves on to the next pending item
    expect(page.locator("#review-count-accepted")).to_have_text(str(counts.get("accepted", 0) + 1))
    expect(page.locator("#review-count-pending")).to_have_text(str(pending - 1))
    _goto_item(ui, second_id, pending - 1)

    page.keyboard.press("c")  # correct: focus the box, type, Enter
    expect(page.locator("#review-correct-input")).to_be_focused()
    expect(page.locator("#review-correct-input")).to_have_value("")
    page.keyboard.type(correction)
    page.keyboard.press("Enter")
    expect(page.locator("#review-count-corrected")).to_have_text(str(counts.get("corrected", 0) + 1))
    expect(page.locator("#review-count-pending")).to_have_text(str(pending - 2))
    if pending == 2:
        expect(page.locator("#review-empty")).to_be_visible()
        expect(page.locator("#review-item")).to_be_hidden()

    for item_id, status, label in ((first_id, "accepted", "school bus"), (second_id, "corrected", correction)):
        item = httpx.get(f"{server.url}/v1/review/items/{item_id}", headers=_headers(server), timeout=30).json()
        assert (item["status"], item["label"]) == (status, label), item

    # The two decisions are what `visor review export` writes.
    out = tmp_path / "reviewed"
    capsys.readouterr()
    assert visor_main(["review", "export", "--db", server.db_url, "--format", "imagefolder", str(out)]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text(encoding="utf-8").splitlines()]
    assert f"exported {len(rows)} item(s)" in capsys.readouterr().out
    assert {int(r["review_id"]) for r in rows} <= earlier | {first_id, second_id}, "export has unknown items"
    ours = sorted((int(r["review_id"]), r["label"], r["path"]) for r in rows if int(r["review_id"]) not in earlier)
    assert [(i, label) for i, label, _ in ours] == [(first_id, "school bus"), (second_id, correction)]
    (_, _, first_path), (_, _, second_path) = ours
    assert first_path.split("/")[0] == "school bus" and second_path.split("/")[0] == correction
    assert (out / first_path).read_bytes() == bus_bytes
    assert (out / second_path).read_bytes() == crop_bytes
    images = [p for p in out.rglob("*") if p.is_file() and p.name != "manifest.jsonl"]
    assert len(images) == len(rows), sorted(map(str, images))

    assert ui.errors == [], f"console errors: {ui.errors}"


def test_api_errors_are_shown(live_server, ui):
    server, page, expect = live_server, ui.page, ui.expect
    _open_with_key(ui, server)
    bad = b"this is not an image"
    api = httpx.post(f"{server.url}/v1/annotate", headers=_headers(server),
                     files=[("images", ("broken.jpg", bad, "image/jpeg"))], timeout=120)
    assert api.status_code >= 400
    body = api.json()
    error = body["results"][0]["error"] if "results" in body else body["error"]

    page.set_input_files("#file-input", files=[{"name": "broken.jpg", "mimeType": "image/jpeg", "buffer": bad}])
    expect(page.locator("#analyze-error")).to_be_visible(timeout=SLOW_MS)
    expect(page.locator("#analyze-error")).to_contain_text(error["message"])
    expect(page.locator("#labels li")).to_have_count(0)
    assert ui.take_http_errors(api.status_code) == [], "unexpected console errors"


def test_collections_are_listed(live_server, ui):
    server, page, expect = live_server, ui.page, ui.expect
    name = "ui-test-team"
    r = httpx.post(f"{server.url}/v1/collections", headers=_headers(server), json={"name": name}, timeout=30)
    assert r.status_code in (201, 409), r.text
    _open_with_key(ui, server)
    page.click("#tab-collections")
    entry = page.locator(f'#collections-list button[data-collection="{name}"]')
    expect(entry).to_be_visible()
    entry.click()
    expect(page.locator("#collection-name")).to_have_text(name)
    expect(page.locator("#people-empty")).to_be_visible()
    assert ui.errors == [], f"console errors: {ui.errors}"
