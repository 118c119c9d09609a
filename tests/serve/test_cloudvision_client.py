"""The official google-cloud-vision client, unchanged, against a live visor server on loopback.

Each value the client returns is checked against visor's native ``/v1/annotate`` route on the
same image.
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
    data = BUS.read_bytes()
    response = client.label_detection(image=vision.Image(content=data), max_results=5)
    assert not response.error.message
    expected = native(live_server, data, ["labels"], top_k=5)["labels"]["predictions"]
    assert [x.description for x in response.label_annotations] == [p["label"] for p in expected]
    assert [x.score for x in response.label_annotations] == pytest.approx([p["confidence"] for p in expected],
                                                                          abs=1e-6)
    assert response.label_annotations[0].description == "school bus"


def test_faces(client, live_server, faces_jpg):
    response = client.face_detection(image=vision.Image(content=faces_jpg))
    assert not response.error.message
    expected = native(live_server, faces_jpg, ["faces"])["faces"]["faces"]
    assert len(response.face_annotations) == len(expected) >= 2
    for face, nat in zip(response.face_annotations, expected, strict=True):
        assert box(face.bounding_poly) == box(face.fd_bounding_poly) == [round(c) for c in nat["xyxy"]]
        marks = {m.type_: m.position for m in face.landmarks}
        left_eye = marks[vision.FaceAnnotation.Landmark.Type.LEFT_EYE_LEFT_CORNER]
        # dlib's 5-point: 36; Cloud Vision positions are float32, and landmarks found on a downscaled copy are
        # fractional in original pixels, so they match to float32 precision
        assert (left_eye.x, left_eye.y) == pytest.approx(tuple(nat["landmarks"][2]), rel=1e-6)
        assert vision.FaceAnnotation.Landmark.Type.LEFT_EYE in marks
        assert vision.FaceAnnotation.Landmark.Type.NOSE_BOTTOM_CENTER in marks
        assert 0.5 < face.detection_confidence < 1
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
    assert [x.description for x in ok.label_annotations] == \
        [p["label"] for p in native(live_server, data, ["labels"], top_k=3)["labels"]["predictions"]]
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
