"""The official google-cloud-vision client, unchanged, against a live visor server on loopback.

The server runs the default models plus the ``yolox_nano`` detector (named explicitly). Each value
the client returns is checked against visor's native ``/v1/annotate`` route on the same image.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import pytest
from google.api_core import exceptions as core_exceptions
from google.api_core.client_options import ClientOptions
from google.cloud import vision
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
TEXT_LINES = ("HELLO WORLD", "visor reads text")


def make_client(server, key: str | None = None) -> vision.ImageAnnotatorClient:
    options = ClientOptions(api_endpoint=server.url, api_key=key or server.key)
    return vision.ImageAnnotatorClient(transport="rest", client_options=options)


@pytest.fixture(scope="module")
def detector_server(tmp_path_factory: pytest.TempPathFactory, zoo_cache):
    """A server with the COCO detector (the weights imported into the test cache from ../shared/models)."""
    from conftest import start_server  # tests/serve/conftest.py

    server = start_server(tmp_path_factory.mktemp("serve-detector"), detector="yolox_nano",
                          preload=("classifier", "detector"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def live_server(detector_server):
    """This module's server: the one with a detector."""
    return detector_server


@pytest.fixture(scope="module")
def client(live_server) -> vision.ImageAnnotatorClient:
    return make_client(live_server)


def native(server, data: bytes, features: list[str], top_k: int = 10) -> dict:
    """visor's own annotate document for one image, from the native route."""
    body = {"images": [{"content": base64.b64encode(data).decode(), "name": "image"}], "features": features,
            "top_k": top_k}
    r = httpx.post(f"{server.url}/v1/annotate", json=body, headers=server.headers, timeout=300)
    assert r.status_code == 200, r.text
    return r.json()["results"][0]


@pytest.fixture(scope="module")
def faces_jpg(shared_data) -> bytes:
    return (shared_data("faces") / "unknown" / "obama_and_biden.jpg").read_bytes()


@pytest.fixture(scope="module")
def text_png() -> bytes:
    path = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
    if not path.is_file():
        import matplotlib

        path = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    image = Image.new("RGB", (640, 220), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(TEXT_LINES):
        draw.text((30, 30 + 90 * i), line, fill="black", font=ImageFont.truetype(str(path), 56))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def box(poly) -> list[int]:
    v = poly.vertices
    return [v[0].x, v[0].y, v[2].x, v[2].y]


def test_labels(client, live_server):
    """Generic labels (ImageNet sums and the detector's classes) merged with the classifier's names."""
    data = BUS.read_bytes()
    response = client.label_detection(image=vision.Image(content=data), max_results=5)
    assert not response.error.message
    native_doc = native(live_server, data, ["labels", "objects"], top_k=1000)
    predictions = native_doc["labels"]["predictions"]
    labels = response.label_annotations
    assert [x.description for x in labels] == ["Vehicle", "Motor vehicle", "Bus", "School bus", "Railroad car"]
    assert [x.mid for x in labels[:3]] == ["/wordnet/n04524313", "/wordnet/n03791235", "/wordnet/n02924116"]
    assert labels[3].score == pytest.approx(predictions[0]["confidence"], abs=1e-6)
    assert predictions[0]["label"] == "school bus"
    assert labels[2].score >= max(predictions[0]["confidence"],
                                  max(d["confidence"] for d in native_doc["objects"]["detections"]
                                      if d["class_name"] == "bus")) - 1e-6
    assert [round(x.score, 3) for x in labels[:3]] == [0.988, 0.984, 0.983]
    assert all(x.topicality == x.score for x in labels)


def test_object_localization(client, live_server):
    """Acceptance: the official client's object_localization finds the bus."""
    data = BUS.read_bytes()
    response = client.object_localization(image=vision.Image(content=data))
    assert not response.error.message
    doc = native(live_server, data, ["objects"])
    expected = sorted(doc["objects"]["detections"], key=lambda d: -d["confidence"])
    objects = response.localized_object_annotations
    assert [o.name for o in objects] == [d["class_name"].capitalize() for d in expected] == ["Bus", "Car"]
    bus = objects[0]
    assert bus.score == pytest.approx(expected[0]["confidence"], abs=1e-6) and bus.score > 0.9
    assert bus.mid == "/wordnet/n02924116"
    v = bus.bounding_poly.normalized_vertices
    x1, y1, x2, y2 = expected[0]["xyxy"]
    w, h = doc["width"], doc["height"]
    left, top, right, bottom = max(0, x1) / w, max(0, y1) / h, min(w, x2) / w, min(h, y2) / h
    assert [c for p in v for c in (p.x, p.y)] == pytest.approx([left, top, right, top, right, bottom, left, bottom],
                                                               abs=1e-6)
    assert (v[2].x - v[0].x) * (v[2].y - v[0].y) > 0.3  # the bus fills much of the photo


def test_faces(client, live_server, faces_jpg):
    response = client.face_detection(image=vision.Image(content=faces_jpg))
    assert not response.error.message
    expected = native(live_server, faces_jpg, ["faces"])["faces"]["faces"]
    assert len(response.face_annotations) == len(expected) >= 2
    for face, nat in zip(response.face_annotations, expected, strict=True):
        assert box(face.bounding_poly) == box(face.fd_bounding_poly) == [round(c) for c in nat["xyxy"]]
        marks = {m.type_: m.position for m in face.landmarks}
        kinds = vision.FaceAnnotation.Landmark.Type
        # YuNet's 5 points (right eye, left eye, nose tip, right and left mouth corner: the person's); Cloud
        # Vision positions are float32, so they match to float32 precision
        for kind, i in ((kinds.LEFT_EYE, 0), (kinds.RIGHT_EYE, 1), (kinds.NOSE_TIP, 2), (kinds.MOUTH_LEFT, 3),
                        (kinds.MOUTH_RIGHT, 4)):
            assert (marks[kind].x, marks[kind].y) == pytest.approx(tuple(nat["landmarks"][i]), rel=1e-6)
        assert face.detection_confidence == pytest.approx(nat["confidence"], abs=1e-6)
        assert 0.7 <= face.detection_confidence <= 1
        assert face.joy_likelihood == vision.Likelihood.UNKNOWN


def test_text_and_document_text(client, live_server, text_png):
    expected = native(live_server, text_png, ["text"])["text"]
    assert expected["full_text"] == "\n".join(TEXT_LINES)
    response = client.text_detection(image=vision.Image(content=text_png))
    assert not response.error.message
    assert response.text_annotations[0].description == expected["full_text"]
    assert sorted(x.description for x in response.text_annotations[1:]) == sorted(x["text"]
                                                                                  for x in expected["lines"])
    document = client.document_text_detection(image=vision.Image(content=text_png))
    assert document.full_text_annotation.text == expected["full_text"]
    words = [w for b in document.full_text_annotation.pages[0].blocks for p in b.paragraphs for w in p.words]
    assert ["".join(s.text for s in w.symbols) for w in words] == " ".join(TEXT_LINES).split()
    assert words[0].symbols[-1].property.detected_break.type_ == \
        vision.TextAnnotation.DetectedBreak.BreakType.SPACE


def test_safe_search(client, live_server, faces_jpg):
    response = client.safe_search_detection(image=vision.Image(content=faces_jpg))
    assert not response.error.message
    expected = native(live_server, faces_jpg, ["moderation"])["moderation"]
    safe = response.safe_search_annotation
    assert safe.adult == vision.Likelihood[expected["adult"]]
    assert safe.racy == vision.Likelihood[expected["racy"]]
    assert safe.violence == safe.medical == safe.spoof == vision.Likelihood.UNKNOWN


def test_image_properties(client, live_server):
    data = BUS.read_bytes()
    response = client.image_properties(image=vision.Image(content=data))
    assert not response.error.message
    expected = native(live_server, data, ["properties"])["properties"]["dominant_colors"]
    colors = response.image_properties_annotation.dominant_colors.colors
    assert [(c.color.red, c.color.green, c.color.blue) for c in colors] == [tuple(c["rgb"]) for c in expected]
    assert [c.pixel_fraction for c in colors] == pytest.approx([c["fraction"] for c in expected], abs=1e-6)


def test_batch_with_per_image_errors(client, live_server):
    data = BUS.read_bytes()
    labels = vision.Feature(type_=vision.Feature.Type.LABEL_DETECTION, max_results=3)
    response = client.batch_annotate_images(requests=[
        vision.AnnotateImageRequest(image=vision.Image(content=data), features=[labels]),
        vision.AnnotateImageRequest(image=vision.Image(content=b"not an image"), features=[labels]),
        vision.AnnotateImageRequest(image=vision.Image(source=vision.ImageSource(image_uri="https://a.invalid/x.jpg")),
                                    features=[labels]),
        vision.AnnotateImageRequest(image=vision.Image(content=data),
                                    features=[vision.Feature(type_=vision.Feature.Type.LOGO_DETECTION)]),
    ])
    ok, corrupt, url, logo = response.responses
    assert [x.description for x in ok.label_annotations] == ["Vehicle", "Motor vehicle", "Bus"]
    assert corrupt.error.code == url.error.code == 3  # INVALID_ARGUMENT
    assert "never fetches" in url.error.message
    assert logo.error.code == 12 and "LOGO_DETECTION" in logo.error.message  # UNIMPLEMENTED


def test_a_wrong_key_is_refused(live_server):
    with pytest.raises(core_exceptions.Unauthorized):
        make_client(live_server, key="visor_not-a-key").label_detection(image=vision.Image(content=b"x"))


def test_raw_http_enum_encodings_key_parameter_and_errors(live_server, faces_jpg):
    url = f"{live_server.url}/v1/images:annotate"
    body = {"requests": [{"image": {"content": base64.b64encode(faces_jpg).decode()},
                          "features": [{"type": "SAFE_SEARCH_DETECTION"}]}]}
    named = httpx.post(url, params={"key": live_server.key}, json=body, timeout=300)
    assert named.status_code == 200, named.text
    assert named.json()["responses"][0]["safeSearchAnnotation"]["spoof"] == "UNKNOWN"
    numbered = httpx.post(url, params={"$alt": "json;enum-encoding=int"}, json=body, timeout=300,
                          headers={"x-goog-api-key": live_server.key})
    assert numbered.status_code == 200, numbered.text
    assert numbered.json()["responses"][0]["safeSearchAnnotation"]["spoof"] == 0
    for bad in (b"{not json", b'{"requests": []}', b"[1, 2]"):
        r = httpx.post(url, content=bad, headers={"x-goog-api-key": live_server.key,
                                                  "content-type": "application/json"}, timeout=30)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == 400 and r.json()["error"]["status"] == "INVALID_ARGUMENT"
    r = httpx.post(url, json=body, timeout=30)
    assert r.status_code == 401 and r.json()["error"]["status"] == "UNAUTHENTICATED"
