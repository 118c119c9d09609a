"""The Amazon Rekognition API (POST /, AWS JSON 1.1) against a live server on loopback, through boto3 unchanged:
``boto3.client("rekognition", endpoint_url=..., region_name="us-east-1", aws_access_key_id=...,
aws_secret_access_key=...)`` with a key from visor's AwsKeyStore. Every raw answer is checked against botocore's
output shape of its operation (no unknown field, no missing required one)."""

from __future__ import annotations

import io
import json
import os
import shutil
import uuid
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from conftest import start_server  # tests/serve/conftest.py
from faces_unknown import EXPECTED_FACES as EXPECTED  # tests/faces_unknown.py

boto3 = pytest.importorskip("boto3", reason="the Rekognition tests need boto3 (the 'serve' extra)")
from botocore.config import Config  # noqa: E402
from botocore.exceptions import ClientError  # noqa: E402

from visor.serve.rekognition import MAX_IMAGE_BYTES, validate_output  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BUS = ROOT / "assets" / "bus.jpg"
TEXT_LINES = ("HELLO WORLD", "visor reads text")


class Live:
    """The module's server and AWS key, and every raw answer boto3 received."""

    def __init__(self, server, access_key_id: str, secret: str, home: Path) -> None:
        self.server = server
        self.access_key_id = access_key_id
        self.secret = secret
        self.home = home
        self.answers: list[tuple[str, int, bytes]] = []

    def client(self, secret: str | None = None, region: str = "us-east-1"):
        client = boto3.client("rekognition", endpoint_url=self.server.url, region_name=region,
                              aws_access_key_id=self.access_key_id, aws_secret_access_key=secret or self.secret,
                              config=Config(retries={"max_attempts": 1}, read_timeout=120))
        client.meta.events.register("after-call.rekognition", self._record)
        return client

    def _record(self, http_response, model, **kwargs) -> None:
        self.answers.append((model.name, http_response.status_code, http_response.content))

    def check_answers(self) -> int:
        """Every 200 answer so far validates against its output shape; returns how many were checked."""
        checked = 0
        for name, status, raw in self.answers:
            if status == 200:
                report = validate_output(name, json.loads(raw))
                assert report == "", (name, report, raw[:500])
                checked += 1
        self.answers.clear()
        return checked


def create_aws_key(db_url: str, name: str) -> tuple[str, str]:
    from visor.serve.awsauth import AwsKeyStore
    from visor.serve.db import ServiceDB

    db = ServiceDB(db_url)
    try:
        _, access_key_id, secret = AwsKeyStore(db).create(name)
    finally:
        db.close()
    return access_key_id, secret


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    from visor.serve.awsauth import MASTER_KEY_ENV, encode_master_key

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(MASTER_KEY_ENV, encode_master_key(os.urandom(32)))  # never the user's $VISOR_HOME
        home = tmp_path_factory.mktemp("rekognition")
        server = start_server(home / "first", segmenter="none", preload=("classifier", "faces"))
        access_key_id, secret = create_aws_key(server.db_url, "boto3")
        state = Live(server, access_key_id, secret, home)
        yield state
        state.server.stop()


@pytest.fixture(scope="module")
def rek(live):
    return live.client()


def image(path: Path) -> dict:
    return {"Bytes": path.read_bytes()}


def jpeg(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=92)
    return buf.getvalue()


def crop(data: bytes, box: dict, margin: float = 0.6) -> bytes:
    """The face of a Rekognition BoundingBox with ``margin`` of its size around it."""
    img = Image.open(io.BytesIO(data))
    w, h = img.size
    x0, y0 = box["Left"] * w, box["Top"] * h
    x1, y1 = x0 + box["Width"] * w, y0 + box["Height"] * h
    mx, my = (x1 - x0) * margin, (y1 - y0) * margin
    return jpeg(img.crop((max(0, int(x0 - mx)), max(0, int(y0 - my)), min(w, int(x1 + mx)), min(h, int(y1 + my)))))


# ---------------------------------------------------------------------- images


def test_detect_labels_the_bus(live, rek):
    out = rek.detect_labels(Image=image(BUS))
    labels = {label["Name"]: label for label in out["Labels"]}
    assert "Bus" in labels, list(labels)
    bus = labels["Bus"]
    assert bus["Instances"] and all(0 < i["BoundingBox"]["Width"] <= 1 for i in bus["Instances"]), bus
    assert {"Name": "Vehicle"} in bus["Parents"], bus
    assert all(55 <= label["Confidence"] <= 100 for label in out["Labels"])
    assert out["LabelModelVersion"] == "efficientnet_lite0+yolox_nano"
    assert [label["Confidence"] for label in out["Labels"]] == sorted((la["Confidence"] for la in out["Labels"]),
                                                                     reverse=True)
    few = rek.detect_labels(Image=image(BUS), MaxLabels=2, MinConfidence=10)
    assert len(few["Labels"]) == 2
    assert live.check_answers() == 2


def test_readme_snippet_runs_with_only_the_two_lines_changed(live):
    """The README's boto3 snippet, in a fresh process, with only the endpoint and the key filled in."""
    import ast
    import re
    import subprocess
    import sys

    blocks = re.findall(r"^```python\n(.*?)^```", (ROOT / "README.md").read_text(), flags=re.S | re.M)
    (code,) = [b for b in blocks if 'boto3.client(\n    "rekognition"' in b]
    for placeholder, value in (("http://localhost:8080", live.server.url), ("VKIA...", live.access_key_id),
                               ("SECRET...", live.secret)):
        assert code.count(f'"{placeholder}"') == 1, placeholder
        code = code.replace(f'"{placeholder}"', repr(value))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    names = ast.literal_eval(r.stdout)  # the snippet prints a list of label names
    assert sorted(names) == ["Bus", "Motor vehicle", "School bus", "Vehicle"], names  # 4 labels of >= 55


def test_detect_faces_with_landmarks(live, rek, shared_data):
    data = (shared_data("faces") / "unknown" / "two_people.jpg").read_bytes()
    out = rek.detect_faces(Image={"Bytes": data})
    assert len(out["FaceDetails"]) == 2
    for face in out["FaceDetails"]:
        assert [m["Type"] for m in face["Landmarks"]] == ["eyeLeft", "eyeRight", "nose", "mouthLeft", "mouthRight"]
        box = face["BoundingBox"]
        for m in face["Landmarks"]:  # the points sit inside the face's box
            assert box["Left"] <= m["X"] <= box["Left"] + box["Width"], (m, box)
            assert box["Top"] <= m["Y"] <= box["Top"] + box["Height"], (m, box)
        eye_l, eye_r = face["Landmarks"][0], face["Landmarks"][1]
        assert eye_l["X"] < eye_r["X"]  # the viewer's left eye is on the image's left
        assert abs(face["Pose"]["Roll"]) < 20 and abs(face["Pose"]["Yaw"]) < 45, face["Pose"]
        assert 0 < face["Quality"]["Brightness"] <= 100 and 0 < face["Quality"]["Sharpness"] <= 100
        assert 50 < face["Confidence"] <= 100
    everything = rek.detect_faces(Image={"Bytes": data}, Attributes=["ALL"])
    assert everything["FaceDetails"] == out["FaceDetails"]  # ALL adds nothing visor does not measure
    assert rek.detect_faces(Image=image(BUS))["FaceDetails"] == []
    assert live.check_answers() == 3


def test_compare_faces(live, rek, shared_data):
    unknown = shared_data("faces") / "unknown"
    out = rek.compare_faces(SourceImage=image(unknown / "obama1.jpg"), TargetImage=image(unknown / "two_people.jpg"))
    assert len(out["FaceMatches"]) == 1 and len(out["UnmatchedFaces"]) == 1, out
    assert out["FaceMatches"][0]["Similarity"] >= 80
    assert out["UnmatchedFaces"][0]["BoundingBox"] != out["FaceMatches"][0]["Face"]["BoundingBox"]
    assert 0 < out["SourceImageFace"]["Confidence"] <= 100
    none = rek.compare_faces(SourceImage=image(unknown / "obama1.jpg"), TargetImage=image(BUS))
    assert none["FaceMatches"] == [] and none["UnmatchedFaces"] == []
    with pytest.raises(rek.exceptions.InvalidParameterException, match="There are no faces in the image"):
        rek.compare_faces(SourceImage=image(BUS), TargetImage=image(unknown / "obama1.jpg"))
    assert live.check_answers() == 2


def font(size: int):
    for path in (Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"),):
        if path.is_file():
            return ImageFont.truetype(str(path), size)
    import matplotlib

    return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)


def test_detect_text_lines_and_words(live, rek):
    img = Image.new("RGB", (640, 220), "white")
    draw = ImageDraw.Draw(img)
    for i, line in enumerate(TEXT_LINES):
        draw.text((30, 30 + 90 * i), line, fill="black", font=font(56))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    out = rek.detect_text(Image={"Bytes": buf.getvalue()})
    lines = [t for t in out["TextDetections"] if t["Type"] == "LINE"]
    words = [t for t in out["TextDetections"] if t["Type"] == "WORD"]
    assert [t["DetectedText"] for t in lines] == list(TEXT_LINES)
    assert [t["Id"] for t in lines] == [0, 1]
    assert [(t["DetectedText"], t["ParentId"]) for t in words] == [("HELLO", 0), ("WORLD", 0), ("visor", 1),
                                                                    ("reads", 1), ("text", 1)]
    assert [t["Id"] for t in words] == [2, 3, 4, 5, 6]
    first = lines[0]["Geometry"]
    assert len(first["Polygon"]) == 4 and 0 < first["BoundingBox"]["Left"] < 0.2 and first["BoundingBox"]["Top"] < 0.3
    assert words[0]["Geometry"]["BoundingBox"]["Left"] < words[1]["Geometry"]["BoundingBox"]["Left"]
    assert all(0 < t["Confidence"] <= 100 for t in out["TextDetections"])
    assert live.check_answers() == 1


def test_moderation_labels_empty_on_ordinary_photos(live, rek, shared_data):
    for path in (BUS, shared_data("faces") / "unknown" / "two_people.jpg"):
        out = rek.detect_moderation_labels(Image=image(path))
        assert out["ModerationLabels"] == [], (path.name, out)
        assert out["ModerationModelVersion"].startswith("open_nsfw")
    low = rek.detect_moderation_labels(Image=image(BUS), MinConfidence=0)  # every score, on the taxonomy
    assert {(m["Name"], m["ParentName"], m["TaxonomyLevel"]) for m in low["ModerationLabels"]} >= {
        ("Explicit Nudity", "", 1)}
    assert live.check_answers() == 3


# ---------------------------------------------------------------------- collections


@pytest.fixture(scope="module")
def indexed(live, rek, shared_data) -> dict[str, list[str]]:
    """The collection "staff" with every photo of faces/known indexed, ExternalImageId = the person."""
    rek.create_collection(CollectionId="staff")
    faces: dict[str, list[str]] = {}
    for folder in sorted((shared_data("faces") / "known").iterdir()):
        for photo in sorted(folder.iterdir()):
            out = rek.index_faces(CollectionId="staff", Image=image(photo), ExternalImageId=folder.name)
            assert len(out["FaceRecords"]) == 1 and out["UnindexedFaces"] == [], (photo, out)
            record = out["FaceRecords"][0]
            assert record["Face"]["ExternalImageId"] == folder.name
            assert record["FaceDetail"]["Landmarks"]
            faces.setdefault(folder.name, []).append(record["Face"]["FaceId"])
    assert live.check_answers() == 1 + sum(len(v) for v in faces.values())
    return faces


def test_collections_create_list_describe(live, rek, indexed):
    arn = "aws:rekognition:us-east-1:000000000000:collection/"
    with pytest.raises(rek.exceptions.ResourceAlreadyExistsException):
        rek.create_collection(CollectionId="staff")
    created = rek.create_collection(CollectionId="temp")
    assert created["StatusCode"] == 200 and created["CollectionArn"] == arn + "temp"
    listed = rek.list_collections()
    assert listed["CollectionIds"] == ["staff", "temp"] and len(listed["FaceModelVersions"]) == 2
    page = rek.list_collections(MaxResults=1)
    assert page["CollectionIds"] == ["staff"] and "NextToken" in page
    assert rek.list_collections(MaxResults=1, NextToken=page["NextToken"])["CollectionIds"] == ["temp"]
    described = rek.describe_collection(CollectionId="staff")
    assert described["FaceCount"] == sum(len(v) for v in indexed.values()) == 9
    assert described["CollectionARN"] == arn + "staff"
    assert rek.delete_collection(CollectionId="temp")["StatusCode"] == 200
    for call in (lambda: rek.describe_collection(CollectionId="temp"),
                 lambda: rek.delete_collection(CollectionId="temp"),
                 lambda: rek.list_faces(CollectionId="temp"),
                 lambda: rek.search_faces_by_image(CollectionId="nope", Image=image(BUS))):
        with pytest.raises(rek.exceptions.ResourceNotFoundException):
            call()
    assert live.check_answers() == 6


def test_search_faces_by_image_finds_every_person(live, rek, indexed, shared_data):
    unknown = shared_data("faces") / "unknown"
    for name, people in EXPECTED.items():
        data = (unknown / name).read_bytes()
        faces = rek.detect_faces(Image={"Bytes": data})["FaceDetails"]
        faces.sort(key=lambda f: f["BoundingBox"]["Left"])
        assert len(faces) == len(people), name
        found = []
        for face in faces:
            part = crop(data, face["BoundingBox"]) if len(faces) > 1 else data
            out = rek.search_faces_by_image(CollectionId="staff", Image={"Bytes": part})
            ids = {m["Face"]["ExternalImageId"] for m in out["FaceMatches"]}
            assert len(ids) <= 1, (name, ids)
            found.append(ids.pop() if ids else None)
            assert all(m["Similarity"] >= 80 for m in out["FaceMatches"])
        assert found == people, name
    with pytest.raises(rek.exceptions.InvalidParameterException, match="There are no faces in the image"):
        rek.search_faces_by_image(CollectionId="staff", Image=image(BUS))
    assert live.check_answers() > len(EXPECTED)


def test_search_faces_list_faces_and_delete(live, rek, indexed, shared_data):
    obama, other = indexed["obama"]
    out = rek.search_faces(CollectionId="staff", FaceId=obama, FaceMatchThreshold=80)
    assert out["SearchedFaceId"] == obama
    assert [m["Face"]["FaceId"] for m in out["FaceMatches"]] == [other]
    pages, token = [], None
    while True:
        kwargs = {"NextToken": token} if token else {}
        page = rek.list_faces(CollectionId="staff", MaxResults=4, **kwargs)
        pages.append([f["FaceId"] for f in page["Faces"]])
        token = page.get("NextToken")
        if not token:
            break
    assert [len(p) for p in pages] == [4, 4, 1]
    assert sorted(f for page in pages for f in page) == sorted(f for ids in indexed.values() for f in ids)
    with pytest.raises(rek.exceptions.ResourceNotFoundException):
        rek.search_faces(CollectionId="staff", FaceId=str(uuid.uuid4()))
    # DeleteFaces, on a collection of its own
    rek.create_collection(CollectionId="scratch")
    assert rek.index_faces(CollectionId="scratch", Image=image(BUS))["FaceRecords"] == []  # no face in the bus
    two = rek.index_faces(CollectionId="scratch", Image=image(shared_data("faces") / "unknown" / "two_people.jpg"),
                          MaxFaces=1)
    assert len(two["FaceRecords"]) == 1 and two["UnindexedFaces"][0]["Reasons"] == ["EXCEEDS_MAX_FACES"]
    face_id, missing = two["FaceRecords"][0]["Face"]["FaceId"], str(uuid.uuid4())
    deleted = rek.delete_faces(CollectionId="scratch", FaceIds=[face_id, missing])
    assert deleted["DeletedFaces"] == [face_id]
    assert deleted["UnsuccessfulFaceDeletions"] == [{"FaceId": missing, "Reasons": ["FACE_NOT_FOUND"]}]
    assert rek.describe_collection(CollectionId="scratch")["FaceCount"] == 0
    rek.delete_collection(CollectionId="scratch")
    assert live.check_answers() == 10


def test_errors_as_boto3_raises_them(live, rek, tmp_path):
    good = image(BUS)
    with pytest.raises(rek.exceptions.InvalidS3ObjectException, match="does not fetch from S3"):
        rek.detect_labels(Image={"S3Object": {"Bucket": "photos", "Name": "n.jpg"}})
    with pytest.raises(rek.exceptions.InvalidImageFormatException):
        rek.detect_labels(Image={"Bytes": b"not an image at all" * 10})
    big = os.urandom(MAX_IMAGE_BYTES + 1024 * 1024)  # 6 MB
    with pytest.raises(rek.exceptions.ImageTooLargeException):
        rek.detect_labels(Image={"Bytes": big})
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.detect_labels(Image=good, MinConfidence=101)
    with pytest.raises(rek.exceptions.InvalidParameterException):
        rek.index_faces(CollectionId="bad name!", Image=good)
    # signatures
    with pytest.raises(ClientError) as wrong:
        live.client(secret="x" * 40).detect_labels(Image=good)
    assert wrong.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert wrong.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    with pytest.raises(ClientError) as region:
        live.client(region="eu-west-1").detect_labels(Image=good)
    assert region.value.response["Error"]["Code"] == "InvalidSignatureException"
    tampered = live.client()

    def tamper(request, **kwargs):
        request.body = request.body.replace(b'"MinConfidence": 55', b'"MinConfidence": 56')

    tampered.meta.events.register("before-send.rekognition", tamper)
    with pytest.raises(ClientError) as changed:
        tampered.detect_labels(Image=good, MinConfidence=55)
    assert changed.value.response["Error"]["Code"] == "InvalidSignatureException"
    stranger = boto3.client("rekognition", endpoint_url=live.server.url, region_name="us-east-1",
                            aws_access_key_id="VKIAAAAAAAAAAAAAAAAA", aws_secret_access_key="y" * 40,
                            config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as unknown:
        stranger.list_collections()
    assert unknown.value.response["Error"]["Code"] == "UnrecognizedClientException"


def test_expired_signature(live):
    """boto3 signing with a clock 10 minutes slow: AWS's "Signature expired" (the window is 5 minutes)."""
    import datetime as dt
    from unittest import mock

    import botocore.auth

    late = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    client = live.client()
    with mock.patch.object(botocore.auth, "get_current_datetime", return_value=late), \
            pytest.raises(ClientError) as expired:
        client.list_collections()
    assert expired.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert expired.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert "Signature expired" in expired.value.response["Error"]["Message"]
    assert client.list_collections()["ResponseMetadata"]["HTTPStatusCode"] == 200  # the right clock again


def test_raw_protocol_answers(live):
    """What the SDKs never send: no target, an unknown one, no signature, a body that is not JSON."""
    import httpx

    url = live.server.url + "/"
    r = httpx.post(url, content=b"{}", headers={"Content-Type": "application/x-amz-json-1.1"})
    assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException"
    assert r.headers["x-amzn-RequestId"] and r.headers["x-amzn-ErrorType"].startswith(
        "MissingAuthenticationTokenException")
    signed = sign(live, b"{}", target=None)
    r = httpx.post(url, content=b"{}", headers=signed)
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException", r.text
    signed = sign(live, b"{}", target="RekognitionService.StartFaceSearch")
    r = httpx.post(url, content=b"{}", headers=signed)
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException", r.text
    signed = sign(live, b"{nope", target="RekognitionService.ListCollections")
    r = httpx.post(url, content=b"{nope", headers=signed)
    assert r.status_code == 400 and r.json()["__type"] == "SerializationException", r.text
    signed = sign(live, b"{}", target="RekognitionService.ListCollections")
    r = httpx.post(url, content=b"{}", headers=signed)
    assert r.status_code == 200 and r.headers["x-amzn-RequestId"] and "CollectionIds" in r.json()


def sign(live, body: bytes, target: str | None) -> dict[str, str]:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    headers = {"Content-Type": "application/x-amz-json-1.1"}
    if target:
        headers["X-Amz-Target"] = target
    request = AWSRequest("POST", live.server.url + "/", data=body, headers=headers)
    SigV4Auth(Credentials(live.access_key_id, live.secret), "rekognition", "us-east-1").add_auth(request)
    return dict(request.headers.items())


# ---------------------------------------------------------------------- restart (last: it replaces the server)


def test_collections_survive_a_restart(live, rek, indexed, shared_data):
    before = rek.list_faces(CollectionId="staff")["Faces"]
    live.server.stop()
    again = live.home / "second"
    again.mkdir()
    shutil.copy(live.server.home / "faces.db", again / "faces.db")  # start_server puts faces.db in its folder
    live.server = start_server(again, db=live.server.db_url, segmenter="none", preload=("classifier",))
    client = live.client()
    assert client.list_collections()["CollectionIds"] == ["staff"]
    assert client.list_faces(CollectionId="staff")["Faces"] == before
    out = client.search_faces_by_image(CollectionId="staff",
                                       Image=image(shared_data("faces") / "unknown" / "obama1.jpg"))
    assert {m["Face"]["ExternalImageId"] for m in out["FaceMatches"]} == {"obama"}
    assert live.check_answers() >= 3
