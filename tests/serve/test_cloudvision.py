"""Cloud Vision v1 JSON <-> visor's annotate document (visor.serve.cloudvision), with a real Annotator."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import requests
from google.api_core import exceptions as core_exceptions
from google.cloud import vision_v1
from google.protobuf import json_format
from google.rpc import code_pb2
from PIL import Image, ImageDraw, ImageFont

from visor.annotator import CROP_ASPECT_RATIOS, Annotator
from visor.errors import CorruptImage, VisorError
from visor.serve import cloudvision as cv

REPO = Path(__file__).resolve().parents[2]
BUS = REPO / "assets" / "bus.jpg"
TEXT_LINES = ("HELLO WORLD", "visor reads text")


# --------------------------------------------------------------------------- helpers and fixtures


class QueueFull(VisorError):
    http_status = 503
    code = "queue_full"


@pytest.fixture(scope="module")
def annotator() -> Annotator:
    return Annotator()


def make_run(annotator: Annotator, calls: list | None = None):
    """The server's ``run``: one Annotator (models shared), top_k and crop ratios per request."""

    def run(data: bytes, features: tuple[str, ...], options: dict) -> dict:
        if calls is not None:
            calls.append((features, dict(options)))
        a = dataclasses.replace(annotator, top_k=options.get("top_k", 10),
                                crop_aspect_ratios=options.get("crop_aspect_ratios", CROP_ASPECT_RATIOS),
                                text_languages=options.get("language_hints"))
        return a.annotate(data, features)

    return run


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def request(data: bytes, *types, max_results: int | None = None, **extra) -> dict:
    features = [{"type": t} if max_results is None else {"type": t, "maxResults": max_results} for t in types]
    return {"image": {"content": b64(data)}, "features": features, **extra}


def parse(body: dict) -> vision_v1.BatchAnnotateImagesResponse:
    """Strict protobuf JSON parsing (unknown fields are errors), as proto-plus."""
    pb = vision_v1.BatchAnnotateImagesResponse.pb()()
    json_format.Parse(json.dumps(body), pb)
    return vision_v1.BatchAnnotateImagesResponse.wrap(pb)


def annotate(annotator, body, *, int_enums=False, has_detector=False) -> dict:
    out = cv.annotate_images(body, make_run(annotator), int_enums=int_enums, has_detector=has_detector)
    parse(out)  # every response is valid Cloud Vision JSON
    return out


def font(size: int):
    for path in (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),):
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


@pytest.fixture(scope="module")
def text_png() -> bytes:
    """Large black text on white, two lines."""
    image = Image.new("RGB", (640, 220), "white")
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(TEXT_LINES):
        draw.text((30, 30 + 90 * i), line, fill="black", font=font(56))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def faces_jpg(shared_data) -> bytes:
    return (shared_data("faces") / "unknown" / "obama_and_biden.jpg").read_bytes()


# --------------------------------------------------------------------------- tables and helpers


def test_enum_tables_match_google_cloud_vision():
    def members(enum) -> dict[str, int]:
        return {m.name: m.value for m in enum}

    assert members(vision_v1.Feature.Type) == cv.FEATURE_TYPES
    assert members(vision_v1.Likelihood) == cv.LIKELIHOODS
    assert members(vision_v1.FaceAnnotation.Landmark.Type) == cv.LANDMARK_TYPES
    assert members(vision_v1.Block.BlockType) == cv.BLOCK_TYPES
    assert members(vision_v1.TextAnnotation.DetectedBreak.BreakType) == cv.BREAK_TYPES
    assert dict(code_pb2.Code.items()) == cv.RPC_CODES
    assert set(cv.SUPPORTED_FEATURES) <= set(cv.FEATURE_TYPES)
    assert set(cv.LANDMARK_POINTS) <= set(cv.LANDMARK_TYPES)
    assert set(cv.YUNET_LANDMARKS) <= set(cv.LANDMARK_TYPES)
    assert set(cv.HTTP_STATUS_NAMES.values()) <= set(cv.RPC_CODES)
    from visor.features.moderation import LIKELIHOODS as visor_likelihoods

    assert set(visor_likelihoods) <= set(cv.LIKELIHOODS)


@pytest.mark.parametrize(("alt", "expected"), [
    ("json;enum-encoding=int", True), ("json; enum-encoding=int", True), ("JSON;ENUM-ENCODING=INT", True),
    ("json", False), (None, False), ("", False), ("json;enum-encoding=string", False), ("proto", False),
])
def test_int_enums_requested(alt, expected):
    assert cv.int_enums_requested(alt) is expected


def test_error_body_is_what_google_api_core_understands():
    body = cv.error_body(400, "bad body")
    assert body == {"error": {"code": 400, "message": "bad body", "status": "INVALID_ARGUMENT"}}
    assert cv.error_body(503, "busy")["error"]["status"] == "UNAVAILABLE"
    assert cv.error_body(401, "no key")["error"]["status"] == "UNAUTHENTICATED"
    assert cv.error_body(418, "?")["error"]["status"] == "FAILED_PRECONDITION"
    assert cv.error_body(502, "?")["error"]["status"] == "INTERNAL"
    for status, cls in ((400, core_exceptions.BadRequest), (401, core_exceptions.Unauthorized),
                        (503, core_exceptions.ServiceUnavailable), (504, core_exceptions.GatewayTimeout)):
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(cv.error_body(status, "the message")).encode()
        response.request = requests.Request("POST", "http://127.0.0.1/v1/images:annotate").prepare()
        exc = core_exceptions.from_http_response(response)
        assert isinstance(exc, cls) and "the message" in exc.message


def test_load_body():
    assert cv.load_body(b'{"requests": []}') == {"requests": []}
    with pytest.raises(cv.CloudVisionRequestError, match="Invalid JSON") as info:
        cv.load_body(b"{nope")
    assert info.value.http_status == 400
    with pytest.raises(cv.CloudVisionRequestError):
        cv.load_body(b"\xff\xfe\x00")


def test_face_angles_from_landmarks():
    # 5-point model: (45, 42, 36, 39, 33) -> the eye line from (10, 10) to (30, 30): 45 degrees clockwise
    five = cv._landmarks([[32, 32], [28, 28], [8, 8], [12, 12], [15, 30]])
    assert cv.face_angles(five) == (45.0, 0.0, 0.0)
    # 68 points, level eyes, nose tip centred between the jaw ends: a frontal face
    marks = {i: (50.0, 50.0) for i in range(68)}
    marks.update({36: (30.0, 40.0), 39: (40.0, 40.0), 42: (60.0, 40.0), 45: (70.0, 40.0),
                  0: (10.0, 45.0), 16: (90.0, 45.0), 30: (50.0, 60.0)})
    assert cv.face_angles(marks) == (0.0, 0.0, 0.0)
    marks[30] = (70.0, 60.0)  # nose towards the viewer's right: sin(pan) = 0.5
    assert cv.face_angles(marks)[1] == pytest.approx(30.0)
    assert cv.face_angles({}) == (0.0, 0.0, 0.0)


def test_68_point_landmarks_map_to_every_listed_type(annotator, faces_jpg):
    from visor.faces import FaceAnalyzer

    faces = FaceAnalyzer().detect(faces_jpg, landmarks=68, embeddings=False)
    doc = {"image": "x", "width": 10, "height": 10, "faces": faces.to_dict(embeddings=False)}

    def run(data, features, options):
        return doc

    out = cv.annotate_images({"requests": [request(b"x", "FACE_DETECTION")]}, run, int_enums=False,
                             has_detector=False)
    parse(out)
    face = out["responses"][0]["faceAnnotations"][0]
    got = {m["type"]: (m["position"]["x"], m["position"]["y"]) for m in face["landmarks"]}
    assert set(got) == set(cv.LANDMARK_POINTS)
    points = doc["faces"]["faces"][0]["landmarks"]
    assert got["NOSE_TIP"] == pytest.approx(points[30])
    assert got["CHIN_GNATHION"] == pytest.approx(points[8])
    assert got["LEFT_EYE"][0] < got["RIGHT_EYE"][0]  # the viewer's left
    assert got["MOUTH_LEFT"][0] < got["MOUTH_CENTER"][0] < got["MOUTH_RIGHT"][0]
    assert got["UPPER_LIP"][1] < got["MOUTH_CENTER"][1] < got["LOWER_LIP"][1]
    assert abs(face["panAngle"]) < 30  # frontal faces


# --------------------------------------------------------------------------- features vs native


def test_labels_are_generic_labels_and_classifier_names(annotator):
    """LABEL_DETECTION: the generic labels (summed ImageNet probabilities over the WordNet table) merged with the
    classifier's own names, capitalised, best first; the ImageNet sums use the full distribution."""
    from visor.features.labels import hypernym_table

    data = BUS.read_bytes()
    body = {"requests": [request(data, "LABEL_DETECTION", max_results=5), request(data, "LABEL_DETECTION")]}
    five, default = annotate(annotator, body)["responses"]
    native = dataclasses.replace(annotator, top_k=1000).annotate(data, ["labels"])["labels"]["predictions"]
    assert len(native) == 1000
    table = hypernym_table()
    probs = np.zeros(1000)
    for p in native:
        probs[p["class_id"]] = p["confidence"]
    generic = {name: min(1.0, float(row @ probs)) for name, row in zip(table.names, table.imagenet, strict=True)}
    labels = five["labelAnnotations"]
    assert [x["description"] for x in labels] == ["Vehicle", "Motor vehicle", "Bus", "School bus", "Railroad car"]
    for x in labels[:3]:
        assert x["score"] == x["topicality"] == pytest.approx(generic[x["description"]], abs=1e-5)
    assert labels[3]["score"] == native[0]["confidence"] and native[0]["label"] == "school bus"
    assert labels[4]["score"] == native[1]["confidence"] and native[1]["label"] == "railroad car"
    assert [x["mid"] for x in labels[:4]] == ["/wordnet/n04524313", "/wordnet/n03791235", "/wordnet/n02924116",
                                              "/wordnet/n04146614"]
    assert labels[4]["mid"] == "/wordnet/" + table.imagenet_wnids[native[1]["class_id"]]
    assert len(default["labelAnnotations"]) == cv.DEFAULT_MAX_RESULTS
    assert default["labelAnnotations"][:5] == labels
    scores = [x["score"] for x in default["labelAnnotations"]]
    assert scores == sorted(scores, reverse=True)


def test_generic_labels_from_the_document_are_used_and_merged_by_description():
    doc = {"image": "x", "width": 4, "height": 4,
           "labels": {"type": "classifications", "model": "efficientnet_lite0", "predictions": [
               {"class_id": 879, "label": "umbrella", "confidence": 0.4},
               {"class_id": 779, "label": "school bus", "confidence": 0.1}]},
           "generic_labels": {"labels": [{"name": "Umbrella", "score": 0.9}, {"name": "Person", "score": 0.7}]}}
    body = {"requests": [request(b"x", "LABEL_DETECTION")]}
    out = cv.annotate_images(body, lambda *a: doc, int_enums=False, has_detector=False)
    parse(out)
    labels = out["responses"][0]["labelAnnotations"]
    assert [(x["description"], x["score"], x["mid"]) for x in labels] == [
        ("Umbrella", 0.9, "/wordnet/n04507155"), ("Person", 0.7, "/wordnet/n00007846"),
        ("School bus", 0.1, "/wordnet/n04146614")]


def test_faces_equal_native(annotator, faces_jpg):
    """YuNet's faces (annotate's default): its 5 points as eye centres, nose tip and mouth corners."""
    out = annotate(annotator, {"requests": [request(faces_jpg, "FACE_DETECTION")]})
    doc = annotator.annotate(faces_jpg, ["faces"])["faces"]
    assert doc["model"] == "yunet"
    native = doc["faces"]
    faces = out["responses"][0]["faceAnnotations"]
    assert len(faces) == len(native) >= 2
    for face, nat in zip(faces, native, strict=True):
        x1, y1, x2, y2 = (round(v) for v in nat["xyxy"])
        box = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
        assert [(v["x"], v["y"]) for v in face["boundingPoly"]["vertices"]] == box
        assert [(v["x"], v["y"]) for v in face["fdBoundingPoly"]["vertices"]] == box
        marks = {m["type"]: (m["position"]["x"], m["position"]["y"]) for m in face["landmarks"]}
        p = [tuple(xy) for xy in nat["landmarks"]]  # YuNet: right eye, left eye, nose tip, right/left mouth corner
        assert list(marks) == ["LEFT_EYE", "RIGHT_EYE", "MIDPOINT_BETWEEN_EYES", "NOSE_TIP", "MOUTH_LEFT",
                               "MOUTH_RIGHT"]
        assert (marks["LEFT_EYE"], marks["RIGHT_EYE"], marks["NOSE_TIP"]) == (p[0], p[1], p[2])
        assert (marks["MOUTH_LEFT"], marks["MOUTH_RIGHT"]) == (p[3], p[4])
        assert marks["MIDPOINT_BETWEEN_EYES"] == pytest.approx(((p[0][0] + p[1][0]) / 2, (p[0][1] + p[1][1]) / 2))
        assert marks["LEFT_EYE"][0] < marks["RIGHT_EYE"][0]  # the viewer's left and right
        roll = math.degrees(math.atan2(p[1][1] - p[0][1], p[1][0] - p[0][0]))
        assert face["rollAngle"] == pytest.approx(roll, abs=1e-3)
        assert face["panAngle"] == face["tiltAngle"] == 0.0
        assert face["detectionConfidence"] == face["landmarkingConfidence"] == pytest.approx(nat["confidence"],
                                                                                           abs=1e-6)
        assert 0.7 <= face["detectionConfidence"] <= 1  # YuNet's threshold
        assert face["joyLikelihood"] == face["headwearLikelihood"] == "UNKNOWN"
    # maxResults caps the faces
    one = annotate(annotator, {"requests": [request(faces_jpg, "FACE_DETECTION", max_results=1)]})
    assert one["responses"][0]["faceAnnotations"] == faces[:1]


def test_dlib_hog_faces_keep_dlibs_5_point_mapping(faces_jpg):
    from visor.faces import FaceAnalyzer

    faces = FaceAnalyzer(detector="hog").detect(faces_jpg, embeddings=False)
    doc = {"image": "x", "width": 10, "height": 10, "faces": faces.to_dict(embeddings=False)}
    assert doc["faces"]["model"] == "hog" and len(faces) >= 2
    out = cv.annotate_images({"requests": [request(b"x", "FACE_DETECTION")]}, lambda *a: doc, int_enums=False,
                             has_detector=False)
    parse(out)
    for face, nat in zip(out["responses"][0]["faceAnnotations"], doc["faces"]["faces"], strict=True):
        marks = {m["type"]: (m["position"]["x"], m["position"]["y"]) for m in face["landmarks"]}
        p = nat["landmarks"]  # dlib's 5 points: 68-point indices 45, 42, 36, 39, 33
        assert marks["RIGHT_EYE_RIGHT_CORNER"] == tuple(p[0]) and marks["LEFT_EYE_LEFT_CORNER"] == tuple(p[2])
        assert marks["NOSE_BOTTOM_CENTER"] == tuple(p[4])
        assert marks["LEFT_EYE"] == pytest.approx(((p[2][0] + p[3][0]) / 2, (p[2][1] + p[3][1]) / 2))
        assert "NOSE_TIP" not in marks and "MOUTH_LEFT" not in marks
        assert face["detectionConfidence"] == pytest.approx(1 / (1 + math.exp(-nat["confidence"])), abs=1e-6)
        assert 0.5 < face["detectionConfidence"] < 1


def test_text_and_document_text_equal_native(annotator, text_png):
    body = {"requests": [request(text_png, "TEXT_DETECTION"), request(text_png, "DOCUMENT_TEXT_DETECTION")]}
    plain, document = annotate(annotator, body)["responses"]
    native = annotator.annotate(text_png, ["text"])["text"]
    assert native["full_text"] == "\n".join(TEXT_LINES)  # the OCR itself works on this image
    for response in (plain, document):
        first, *lines = response["textAnnotations"]
        assert first["description"] == native["full_text"] and first["locale"] == ""
        assert " ".join(x["description"] for x in lines) == native["full_text"].replace("\n", " ")
        assert sorted(x["description"] for x in lines) == sorted(x["text"] for x in native["lines"])
        xs = [v["x"] for x in lines for v in x["boundingPoly"]["vertices"]]
        ys = [v["y"] for x in lines for v in x["boundingPoly"]["vertices"]]
        box = first["boundingPoly"]["vertices"]
        assert (box[0]["x"], box[0]["y"], box[2]["x"], box[2]["y"]) == (min(xs), min(ys), max(xs), max(ys))
    assert "fullTextAnnotation" not in plain
    full = document["fullTextAnnotation"]
    assert full["text"] == native["full_text"]
    page = full["pages"][0]
    assert (page["width"], page["height"]) == (640, 220)
    assert len(page["blocks"]) == len(native["lines"])
    # the symbols and their breaks spell the text out again
    spelled = ""
    for block in page["blocks"]:
        assert block["blockType"] == "TEXT"
        for word in block["paragraphs"][0]["words"]:
            for symbol in word["symbols"]:
                spelled += symbol["text"]
                brk = symbol.get("property", {}).get("detectedBreak", {}).get("type")
                spelled += {"SPACE": " ", "LINE_BREAK": "\n", None: ""}[brk]
    assert spelled == native["full_text"] + "\n"
    # words split the line box left to right, inside it
    block = page["blocks"][0]
    words = block["paragraphs"][0]["words"]
    assert ["".join(s["text"] for s in w["symbols"]) for w in words] == TEXT_LINES[0].split()
    left, right = block["boundingBox"]["vertices"][0]["x"], block["boundingBox"]["vertices"][1]["x"]
    assert left == words[0]["boundingBox"]["vertices"][0]["x"] < words[1]["boundingBox"]["vertices"][0]["x"]
    assert words[-1]["boundingBox"]["vertices"][1]["x"] == right


def test_no_text_gives_no_text_annotations(annotator):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="PNG")
    out = annotate(annotator, {"requests": [request(buf.getvalue(), "DOCUMENT_TEXT_DETECTION")]})
    assert out["responses"] == [{}]


def test_safe_search_properties_and_crop_hints_equal_native(annotator, faces_jpg):
    features = ("SAFE_SEARCH_DETECTION", "IMAGE_PROPERTIES", "CROP_HINTS")
    out = annotate(annotator, {"requests": [request(faces_jpg, *features)]})["responses"][0]
    native = annotator.annotate(faces_jpg, ["moderation", "properties", "crop_hints"])
    safe = out["safeSearchAnnotation"]
    assert (safe["adult"], safe["racy"]) == (native["moderation"]["adult"], native["moderation"]["racy"])
    assert safe["spoof"] == safe["medical"] == safe["violence"] == "UNKNOWN"
    colors = out["imagePropertiesAnnotation"]["dominantColors"]["colors"]
    assert [((c["color"]["red"], c["color"]["green"], c["color"]["blue"]), c["pixelFraction"], c["score"])
            for c in colors] == [(tuple(c["rgb"]), c["fraction"], c["fraction"])
                                 for c in native["properties"]["dominant_colors"]]
    hints = out["cropHintsAnnotation"]["cropHints"]
    area = native["width"] * native["height"]
    assert len(hints) == len(CROP_ASPECT_RATIOS)
    for hint, nat in zip(hints, native["crop_hints"]["hints"], strict=True):
        v = hint["boundingPoly"]["vertices"]
        assert [v[0]["x"], v[0]["y"], v[2]["x"], v[2]["y"]] == [round(c) for c in nat["box"]]
        x1, y1, x2, y2 = nat["box"]
        assert hint["importanceFraction"] == pytest.approx((x2 - x1) * (y2 - y1) / area, abs=1e-6)
        assert hint["confidence"] == 1.0


def test_crop_hint_aspect_ratios_are_honoured(annotator):
    data = BUS.read_bytes()
    body = {"requests": [request(data, "CROP_HINTS", imageContext={"cropHintsParams": {"aspectRatios": [1.5]}})]}
    hints = annotate(annotator, body)["responses"][0]["cropHintsAnnotation"]["cropHints"]
    native = dataclasses.replace(annotator, crop_aspect_ratios=(1.5,)).annotate(data, ["crop_hints"])
    assert len(hints) == 1
    v = hints[0]["boundingPoly"]["vertices"]
    assert [v[0]["x"], v[0]["y"], v[2]["x"], v[2]["y"]] == [round(c) for c in native["crop_hints"]["hints"][0]["box"]]
    assert (v[2]["x"] - v[0]["x"]) / (v[2]["y"] - v[0]["y"]) == pytest.approx(1.5, abs=0.01)


def test_object_localization_needs_a_detector(annotator):
    data = BUS.read_bytes()
    out = annotate(annotator, {"requests": [request(data, "OBJECT_LOCALIZATION"),
                                            request(data, "OBJECT_LOCALIZATION", "LABEL_DETECTION")]})
    alone, mixed = out["responses"]
    assert alone == {"error": {"code": code_pb2.UNIMPLEMENTED, "message": alone["error"]["message"]}}
    assert "detector" in alone["error"]["message"]
    # the supported feature still runs; the error sits beside it, as Cloud Vision does
    assert mixed["labelAnnotations"] and mixed["error"]["code"] == code_pb2.UNIMPLEMENTED


def test_object_localization_with_yolox_nano(annotator, yolox_nano):
    with_detector = dataclasses.replace(annotator, detector=yolox_nano)
    data = BUS.read_bytes()
    out = annotate(with_detector, {"requests": [request(data, "OBJECT_LOCALIZATION", max_results=1),
                                                request(data, "OBJECT_LOCALIZATION", "LABEL_DETECTION")]},
                   has_detector=True)
    doc = with_detector.annotate(data, ["objects"])
    native = sorted(doc["objects"]["detections"], key=lambda d: -d["confidence"])
    assert [d["class_name"] for d in native] == ["bus", "car"]
    one, both = out["responses"]
    assert len(one["localizedObjectAnnotations"]) == 1
    for objects in (one["localizedObjectAnnotations"], both["localizedObjectAnnotations"]):
        for obj, nat in zip(objects, native, strict=False):
            assert obj["name"] == nat["class_name"].capitalize() and obj["score"] == nat["confidence"]
            assert obj["languageCode"] == "en"
            v = obj["boundingPoly"]["normalizedVertices"]
            assert v[0]["x"] == pytest.approx(max(0, nat["xyxy"][0]) / doc["width"])
            assert v[0]["y"] == pytest.approx(max(0, nat["xyxy"][1]) / doc["height"])
            assert v[2]["x"] == pytest.approx(min(doc["width"], nat["xyxy"][2]) / doc["width"])
            assert v[2]["y"] == pytest.approx(min(doc["height"], nat["xyxy"][3]) / doc["height"])
    bus = one["localizedObjectAnnotations"][0]
    assert (bus["name"], bus["mid"], round(bus["score"], 3)) == ("Bus", "/wordnet/n02924116", 0.962)
    assert [o["name"] for o in both["localizedObjectAnnotations"]] == ["Bus", "Car"]
    # with a detector, LABEL_DETECTION counts the detector's classes too (max of the two per label)
    labels = {x["description"]: x["score"] for x in both["labelAnnotations"]}
    assert labels["Bus"] >= native[0]["confidence"] and "Car" not in labels  # the car's 0.25 is under 0.5


# --------------------------------------------------------------------------- enum encodings


def test_int_and_named_enums_in_requests_and_responses(annotator, faces_jpg):
    names = ("FACE_DETECTION", "SAFE_SEARCH_DETECTION", "LABEL_DETECTION")
    by_name = {"requests": [request(faces_jpg, *names, max_results=3)]}
    by_number = {"requests": [request(faces_jpg, *(cv.FEATURE_TYPES[n] for n in names), max_results=3)]}
    by_string_number = {"requests": [request(faces_jpg, *(str(cv.FEATURE_TYPES[n]) for n in names),
                                             max_results="3")]}
    named = annotate(annotator, by_name)
    assert annotate(annotator, by_number) == named == annotate(annotator, by_string_number)
    numbered = annotate(annotator, by_name, int_enums=True)
    assert numbered != named
    response = numbered["responses"][0]
    assert response["safeSearchAnnotation"]["adult"] == cv.LIKELIHOODS[named["responses"][0]
                                                                      ["safeSearchAnnotation"]["adult"]]
    assert response["faceAnnotations"][0]["joyLikelihood"] == 0
    assert {m["type"] for m in response["faceAnnotations"][0]["landmarks"]} <= set(cv.LANDMARK_TYPES.values())
    assert parse(named) == parse(numbered)  # the same message either way


def test_document_text_enums_as_numbers(annotator, text_png):
    body = {"requests": [request(text_png, "DOCUMENT_TEXT_DETECTION")]}
    named, numbered = annotate(annotator, body), annotate(annotator, body, int_enums=True)
    block = numbered["responses"][0]["fullTextAnnotation"]["pages"][0]["blocks"][0]
    assert block["blockType"] == cv.BLOCK_TYPES["TEXT"]
    last = block["paragraphs"][0]["words"][-1]["symbols"][-1]
    assert last["property"]["detectedBreak"]["type"] == cv.BREAK_TYPES["LINE_BREAK"]
    assert parse(named) == parse(numbered)


# --------------------------------------------------------------------------- options passed to run


def test_run_gets_each_visor_feature_once_with_its_options():
    calls: list = []

    def run(data, features, options):
        calls.append((data, features, options))
        return {"image": "x", "width": 4, "height": 4}

    body = {"requests": [
        {"image": {"content": b64(b"img")}, "features": [
            {"type": "DOCUMENT_TEXT_DETECTION"}, {"type": "TEXT_DETECTION"}, {"type": "CROP_HINTS"},
            {"type": "LABEL_DETECTION", "maxResults": 7}],
         "imageContext": {"cropHintsParams": {"aspectRatios": [0.5, 2]}, "languageHints": ["en"]}},
        {"image": {"content": base64.urlsafe_b64encode(b"\xfb\xff").decode().rstrip("=")},
         "features": [{"type": "FACE_DETECTION"}]},
    ], "parent": "projects/x"}
    out = cv.annotate_images(body, run, int_enums=False, has_detector=False)
    # LABEL_DETECTION asks for every class (the generic labels sum them) and returns maxResults of them
    assert calls == [(b"img", ("labels", "text", "crop_hints"), {"top_k": 1000, "crop_aspect_ratios": (0.5, 2.0),
                                                                 "language_hints": ("en",)}),
                     (b"\xfb\xff", ("faces",), {"top_k": 10})]
    # with a detector, LABEL_DETECTION also asks for objects (the detector's classes are labels too)
    calls.clear()
    cv.annotate_images(body, run, int_enums=False, has_detector=True)
    assert [c[1] for c in calls] == [("labels", "objects", "text", "crop_hints"), ("faces",)]
    # a slot the document lacks is reported, not a crash
    assert out["responses"][0]["error"]["code"] == code_pb2.INTERNAL


def test_language_hints_reach_the_text_reader(annotator, text_png):
    """languageHints keep only text in those languages' scripts: Latin text is read with ["en"] and dropped with
    ["ru"] (Cyrillic); an unknown code is the image's INVALID_ARGUMENT, as Cloud Vision answers it."""
    def text_of(hints):
        body = {"requests": [request(text_png, "TEXT_DETECTION", imageContext={"languageHints": hints})]}
        return annotate(annotator, body)["responses"][0]

    assert text_of(["en"])["textAnnotations"][0]["description"] == "\n".join(TEXT_LINES)
    assert "textAnnotations" not in text_of(["ru"])
    bad = text_of(["en", "xx"])
    assert bad["error"]["code"] == code_pb2.INVALID_ARGUMENT
    assert "unknown language code 'xx'" in bad["error"]["message"]
    assert text_of("en")["error"]["code"] == code_pb2.INVALID_ARGUMENT  # a string, not a list


# --------------------------------------------------------------------------- errors


def test_per_image_errors(annotator):
    good = BUS.read_bytes()
    truncated = good[: len(good) // 3]
    body = {"requests": [
        request(b"definitely not an image", "LABEL_DETECTION"),
        request(truncated, "LABEL_DETECTION"),
        {"image": {"source": {"imageUri": "https://example.com/a.jpg"}}, "features": [{"type": "LABEL_DETECTION"}]},
        {"image": {"source": {"gcsImageUri": "gs://bucket/a.jpg"}}, "features": [{"type": 4}]},
        {"image": {"content": "!!!not base64!!!"}, "features": [{"type": "LABEL_DETECTION"}]},
        {"image": {"content": b64(good)}, "features": []},
        {"image": {"content": b64(good)}, "features": [{"type": "FOO_DETECTION"}]},
        {"image": {"content": b64(good)}, "features": [{"type": 999}]},
        {"image": {"content": b64(good)}, "features": [{"type": "LOGO_DETECTION"}, {"type": "WEB_DETECTION"}]},
        {"features": [{"type": "LABEL_DETECTION"}]},
        {"image": {"content": b64(good)}, "features": [{"type": "CROP_HINTS"}],
         "imageContext": {"cropHintsParams": {"aspectRatios": [0]}}},
        request(good, "LABEL_DETECTION", max_results=1),
    ]}
    responses = annotate(annotator, body)["responses"]
    assert len(responses) == len(body["requests"])
    *bad, ok = responses
    for response in bad:
        assert set(response) == {"error"}, response
        assert set(response["error"]) == {"code", "message"} and response["error"]["message"]
    codes = [r["error"]["code"] for r in bad]
    assert codes == [3, 3, 3, 3, 3, 3, 3, 3, 12, 3, 3]
    assert "never fetches" in bad[2]["error"]["message"] and "never fetches" in bad[3]["error"]["message"]
    assert "base64" in bad[4]["error"]["message"]
    assert "LOGO_DETECTION" in bad[8]["error"]["message"] and "WEB_DETECTION" in bad[8]["error"]["message"]
    assert ok["labelAnnotations"][0]["description"] == "Vehicle" and len(ok["labelAnnotations"]) == 1


def test_feature_failures_are_reported_beside_the_other_results():
    def run(data, features, options):
        return {"image": "x", "width": 4, "height": 4,
                "labels": {"type": "classifications", "model": "m",
                           "predictions": [{"class_id": 1, "label": "cat", "confidence": 0.9}]},
                "moderation": {"error": {"type": "ConfigError", "code": "invalid_config",
                                         "message": "content moderation needs the optional nudenet package"}}}

    body = {"requests": [request(b"x", "LABEL_DETECTION", "SAFE_SEARCH_DETECTION")]}
    response = cv.annotate_images(body, run, int_enums=False, has_detector=False)["responses"][0]
    assert response["labelAnnotations"] == [{"mid": "", "description": "Cat", "score": 0.9, "topicality": 0.9}]
    assert response["error"]["code"] == code_pb2.FAILED_PRECONDITION
    assert response["error"]["message"].startswith("SAFE_SEARCH_DETECTION: content moderation")


def test_run_errors_image_ones_per_image_server_ones_propagate():
    def bad_image(data, features, options):
        raise CorruptImage("truncated JPEG")

    body = {"requests": [request(b"x", "LABEL_DETECTION"), request(b"x", "LABEL_DETECTION")]}
    out = cv.annotate_images(body, bad_image, int_enums=False, has_detector=False)
    assert out == {"responses": [{"error": {"code": 3, "message": "truncated JPEG"}}] * 2}

    def busy(data, features, options):
        raise QueueFull("the queue is full")

    with pytest.raises(QueueFull):
        cv.annotate_images(body, busy, int_enums=False, has_detector=False)


@pytest.mark.parametrize("body", [
    None, [], "requests", {}, {"requests": []}, {"requests": {}}, {"requests": [1]}, {"requests": [None]},
    {"requests": [{"image": "abc", "features": [{"type": 4}]}]},
    {"requests": [{"image": {"content": 12}, "features": [{"type": 4}]}]},
    {"requests": [{"image": {"content": "aGk="}, "features": {"type": 4}}]},
    {"requests": [{"image": {"content": "aGk="}, "features": ["LABEL_DETECTION"]}]},
    {"requests": [{"image": {"content": "aGk="}, "features": [{"type": 4, "maxResults": "many"}]}]},
    {"requests": [{"image": {"content": "aGk="}, "features": [{"type": 4}], "imageContext": []}]},
    {"requests": [{"image": {"content": "aGk="}, "features": [{"type": 9}],
                   "imageContext": {"cropHintsParams": {"aspectRatios": "wide"}}}]},
    {"requests": [{"image": {"content": "aGk=", "source": "x"}, "features": [{"type": 4}]}]},
])
def test_malformed_bodies_are_whole_request_errors(body):
    def run(data, features, options):  # pragma: no cover - never reached
        raise AssertionError("run must not be called for a malformed body")

    with pytest.raises(cv.CloudVisionRequestError) as info:
        cv.annotate_images(body, run, int_enums=False, has_detector=False)
    assert info.value.http_status == 400 and isinstance(info.value, VisorError)
    assert cv.error_body(400, str(info.value))["error"]["status"] == "INVALID_ARGUMENT"


def test_too_many_images_is_a_whole_request_error():
    calls: list = []
    one = {"image": {"content": "aGk="}, "features": [{"type": "LABEL_DETECTION"}]}
    with pytest.raises(cv.CloudVisionRequestError, match="17"):
        cv.annotate_images({"requests": [one] * 17}, lambda *a: calls.append(a), int_enums=False,
                           has_detector=False)
    with pytest.raises(cv.CloudVisionRequestError, match="3"):
        cv.annotate_images({"requests": [one] * 3}, lambda *a: calls.append(a), int_enums=False,
                           has_detector=False, max_images=2)
    assert calls == []
