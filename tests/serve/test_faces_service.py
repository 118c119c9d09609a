"""Face enrolment over HTTP: typed 4xx errors that name the uploaded file, the reserved name, explicit creation."""

from __future__ import annotations

import httpx


def upload(*items: tuple[str, bytes]) -> list:
    return [("images", (name, data, "application/octet-stream")) for name, data in items]


def test_enrolment_errors_name_the_upload(live_server, shared_data):
    faces = shared_data("faces")
    h, url = live_server.headers, live_server.url
    photo = (faces / "unknown" / "obama-240p.jpg").read_bytes()
    pair = (faces / "unknown" / "two_people.jpg").read_bytes()
    # the service keeps explicit creation: enrolling into a missing collection is a 404 saying how to create it
    r = httpx.post(f"{url}/v1/collections/board/people/obama", headers=h, timeout=60, files=upload(("me.jpg", photo)))
    assert r.status_code == 404 and "POST /v1/collections" in r.json()["error"]["message"], r.text
    assert httpx.post(f"{url}/v1/collections", headers=h, json={"name": "board"}).status_code == 201
    r = httpx.post(f"{url}/v1/collections/board/people/obama", headers=h, timeout=60,
                   files=upload(("me.jpg", photo), ("group photo.jpg", pair)))
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "MultipleFaces"
    assert error["message"] == "group photo.jpg: 2 faces found; expected exactly one"
    for name in ("unknown", "Unknown"):
        r = httpx.post(f"{url}/v1/collections/board/people/{name}", headers=h, timeout=60,
                       files=upload(("me.jpg", photo)))
        assert r.status_code == 400 and "is reserved" in r.json()["error"]["message"], r.text
    assert httpx.get(f"{url}/v1/collections/board", headers=h).json()["people"] == []
    assert httpx.delete(f"{url}/v1/collections/board", headers=h).status_code == 204
