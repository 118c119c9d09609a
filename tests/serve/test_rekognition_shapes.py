"""The Rekognition translation layer without a server: errors, request checks, geometry, labels, text, moderation."""

from __future__ import annotations

import base64
import json
import math

import pytest

pytest.importorskip("botocore", reason="the Rekognition API needs botocore (the 'serve' extra)")

from visor.errors import CorruptImage, ImageTooLarge, InvalidInput, UnsupportedFormat
from visor.serve import rekognition as rk
from visor.serve import rekognition_translate as tr


def test_visor_errors_become_aws_error_codes():
    from visor.faces.collections import CollectionExists, CollectionNotFound
    from visor.serve.auth import RateLimited
    from visor.serve.batcher import DeadlineExceeded, Overloaded
    from visor.serve.manager import ModelsLoading

    cases = [
        (CorruptImage("bad"), ("InvalidImageFormatException", 400)),
        (UnsupportedFormat("bad"), ("InvalidImageFormatException", 400)),
        (ImageTooLarge("big"), ("ImageTooLargeException", 400)),
        (CollectionNotFound("no"), ("ResourceNotFoundException", 400)),
        (CollectionExists("yes"), ("ResourceAlreadyExistsException", 400)),
        (RateLimited("slow down"), ("ThrottlingException", 400)),
        (DeadlineExceeded("late"), ("ThrottlingException", 400)),
        (ModelsLoading("loading"), ("ThrottlingException", 400)),
        (Overloaded("full", 1), ("ProvisionedThroughputExceededException", 400)),
        (InvalidInput("what"), ("InvalidParameterException", 400)),
        (rk.RekognitionError("InvalidS3ObjectException", "s3"), ("InvalidS3ObjectException", 400)),
    ]
    for error, (aws_type, status) in cases:
        got = rk.aws_error(error)
        assert (got[0], got[2]) == (aws_type, status), (error, got)
        assert got[1] == str(error)
    assert rk.aws_error(RuntimeError("boom"))[0] == "InternalServerError"


def test_error_response_is_awss_shape():
    response = rk.error_response(rk.RekognitionError("ResourceNotFoundException", "no collection"), "rid-1")
    assert response.status_code == 400
    assert json.loads(response.body) == {"__type": "ResourceNotFoundException", "message": "no collection"}
    assert response.headers["x-amzn-RequestId"] == "rid-1"
    assert response.headers["x-amzn-ErrorType"].startswith("ResourceNotFoundException")
    assert response.headers["content-type"] == "application/x-amz-json-1.1"


def test_botocore_parses_the_error_into_its_modelled_exception():
    import botocore.session
    from botocore.parsers import create_parser

    response = rk.error_response(rk.RekognitionError("ImageTooLargeException", "too big"), "rid")
    parsed = create_parser("json").parse({"status_code": 400, "headers": dict(response.headers),
                                          "body": response.body}, rk.service_model().operation_model(
                                              "DetectLabels").output_shape)
    assert parsed["Error"]["Code"] == "ImageTooLargeException" and parsed["Error"]["Message"] == "too big"
    client = botocore.session.get_session().create_client("rekognition", region_name="us-east-1",
                                                          aws_access_key_id="a", aws_secret_access_key="b")
    assert client.exceptions.from_code("ImageTooLargeException") is client.exceptions.ImageTooLargeException


def test_targets():
    assert rk.operation_from("RekognitionService.DetectLabels") == "DetectLabels"
    for bad in (None, "", "RekognitionService.StartFaceSearch", "Other.DetectLabels"):
        with pytest.raises(rk.RekognitionError) as e:
            rk.operation_from(bad)
        assert e.value.aws_type == "UnknownOperationException" and e.value.http_status == 400


def test_params_checked_against_the_input_shape():
    image = {"Bytes": base64.b64encode(b"x").decode()}
    rk.validate_input("DetectLabels", {"Image": image, "MaxLabels": 5, "MinConfidence": 70.5})
    bad = [
        ("DetectLabels", {}, "Missing required parameter"),
        ("DetectLabels", {"Image": image, "Colour": 1}, "Unknown parameter"),
        ("DetectLabels", {"Image": image, "MinConfidence": 101}, "at most 100"),
        ("DetectLabels", {"Image": image, "MinConfidence": -1}, "at least 0"),
        ("DetectFaces", {"Image": image, "Attributes": ["EVERYTHING"]}, "is not one of"),
        ("CreateCollection", {"CollectionId": "has space"}, "does not match"),
        ("CreateCollection", {"CollectionId": "x" * 256}, "at most 255 characters"),
        ("SearchFaces", {"CollectionId": "c", "FaceId": "0" * 8 + "-0000-0000-0000-" + "0" * 12, "MaxFaces": 5000},
         "at most 4096"),
        ("SearchFaces", {"CollectionId": "c", "FaceId": "not-a-uuid"}, "does not match"),
    ]
    for operation, params, message in bad:
        with pytest.raises(rk.RekognitionError) as e:
            rk.validate_input(operation, params)
        assert e.value.aws_type == "InvalidParameterException" and message in str(e.value), (params, str(e.value))


def test_image_bytes():
    data = b"\xff\xd8" + b"j" * 100
    assert rk.image_bytes({"Image": {"Bytes": base64.b64encode(data).decode()}}) == data
    cases = [
        ({"Image": {"S3Object": {"Bucket": "b", "Name": "n"}}}, "InvalidS3ObjectException", "does not fetch from S3"),
        ({"Image": {"Bytes": "***"}}, "InvalidParameterException", "not valid base64"),
        ({"Image": {}}, "InvalidParameterException", "Image.Bytes is required"),
        ({"Image": {"Bytes": base64.b64encode(b"\0" * (rk.MAX_IMAGE_BYTES + 1)).decode()}},
         "ImageTooLargeException", "5242880"),
    ]
    for params, aws_type, message in cases:
        with pytest.raises(rk.RekognitionError) as e:
            rk.image_bytes(params)
        assert e.value.aws_type == aws_type and message in str(e.value)
    exactly = base64.b64encode(b"\0" * rk.MAX_IMAGE_BYTES).decode()  # the limit itself is allowed
    assert len(rk.image_bytes({"Image": {"Bytes": exactly}})) == rk.MAX_IMAGE_BYTES


def test_geometry_as_ratios():
    assert tr.bounding_box((10, 20, 110, 70), 200, 100) == {"Width": 0.5, "Height": 0.5, "Left": 0.05, "Top": 0.2}
    assert tr.bounding_box((-10, -5, 250, 50), 200, 100) == {"Width": 1.0, "Height": 0.5, "Left": 0.0, "Top": 0.0}
    marks = tr.landmarks([(40, 40), (60, 40), (50, 50), (42, 60), (58, 60)], 100, 200)
    assert marks[0] == {"Type": "eyeLeft", "X": 0.4, "Y": 0.2} and marks[4]["Type"] == "mouthRight"


def test_pose_formulas():
    frontal = [(40, 40), (60, 40), (50, 50), (42, 60), (58, 60)]
    assert tr.pose(frontal) == {"Roll": 0.0, "Yaw": 0.0, "Pitch": 0.0}
    # nose half an eye distance to the right: atan(2 * 10 / 20) = 45 degrees
    assert tr.pose([(40, 40), (60, 40), (60, 50), (42, 60), (58, 60)])["Yaw"] == 45.0
    # eyes on a 45-degree line: roll 45
    assert tr.pose([(40, 40), (50, 50), (43, 52), (38, 60), (48, 68)])["Roll"] == 45.0
    # nose at 3/4 of the way to the mouth line: atan((0.75 - 0.5) / 0.5) = 26.565 degrees
    assert tr.pose([(40, 40), (60, 40), (50, 55), (42, 60), (58, 60)])["Pitch"] == round(math.degrees(
        math.atan(0.5)), 3)


def test_moderation_taxonomy():
    scores = {"open_nsfw": 0.1, "FEMALE_BREAST_COVERED": 0.9, "BELLY_EXPOSED": 0.6, "FACE_FEMALE": 0.99}
    assert tr.moderation_labels(scores) == [
        {"Confidence": 90.0, "Name": "Suggestive", "ParentName": "", "TaxonomyLevel": 1},
        {"Confidence": 90.0, "Name": "Female Swimwear Or Underwear", "ParentName": "Suggestive", "TaxonomyLevel": 2},
        {"Confidence": 60.0, "Name": "Revealing Clothes", "ParentName": "Suggestive", "TaxonomyLevel": 2},
    ]
    assert tr.moderation_labels({"open_nsfw": 0.3}) == []
    assert tr.moderation_labels({"open_nsfw": 0.3}, 0) == [
        {"Confidence": 30.0, "Name": "Explicit Nudity", "ParentName": "", "TaxonomyLevel": 1}]


def test_text_lines_then_words():
    text = {"lines": [
        {"polygon": [[10, 60], [110, 60], [110, 80], [10, 80]], "text": "second line", "confidence": 0.8},
        {"polygon": [[10, 10], [90, 10], [90, 30], [10, 30]], "text": "AB CD", "confidence": 0.9},
    ]}
    out = tr.text_detections(text, 200, 100)
    assert [(d["Type"], d["DetectedText"], d["Id"], d.get("ParentId")) for d in out] == [
        ("LINE", "AB CD", 0, None), ("LINE", "second line", 1, None), ("WORD", "AB", 2, 0), ("WORD", "CD", 3, 0),
        ("WORD", "second", 4, 1), ("WORD", "line", 5, 1)]
    assert out[0]["Geometry"]["BoundingBox"] == {"Width": 0.4, "Height": 0.2, "Left": 0.05, "Top": 0.1}
    assert out[2]["Geometry"]["BoundingBox"] == {"Width": 0.16, "Height": 0.2, "Left": 0.05, "Top": 0.1}  # 2 of 5
    assert out[0]["Geometry"]["Polygon"][1] == {"X": 0.45, "Y": 0.1} and out[0]["Confidence"] == 90.0
    kept = tr.text_detections(text, 200, 100, {"MinConfidence": 85})
    assert [d["DetectedText"] for d in kept] == ["AB CD", "AB", "CD"]


def test_label_parents():
    assert "Vehicle" in tr.label_parents("Bus")
    assert tr.label_parents("Vehicle") == [] or "Vehicle" not in tr.label_parents("Vehicle")
    assert "Animal" in tr.label_parents("Dog")
    assert tr.label_parents("no such label") == []


def test_output_validation_catches_unknown_and_missing_fields():
    assert rk.validate_output("ListCollections", {"CollectionIds": ["a"], "FaceModelVersions": ["v"]}) == ""
    assert "Unknown parameter" in rk.validate_output("ListCollections", {"Collections": []})
    assert "Missing required parameter" in rk.validate_output("DetectLabels", {"Labels": [{"Instances": [{}],
                                                                                           "Parents": [{}]}]}) \
        or rk.validate_output("DetectLabels", {"Labels": [{"Confidence": 101.0}]})


def test_a_body_over_the_cap_answers_in_awss_shape(tmp_path):
    from starlette.testclient import TestClient

    from visor.serve.app import create_app
    from visor.serve.settings import ServeSettings

    app = create_app(ServeSettings(db=f"sqlite:///{tmp_path / 's.db'}", faces_db=str(tmp_path / "f.db"),
                                   max_body_bytes=1000))
    client = TestClient(app)  # no lifespan: no models needed to refuse a body
    r = client.post("/", content=b"x" * 2000, headers={"X-Amz-Target": "RekognitionService.DetectLabels"})
    assert r.status_code == 400 and r.json()["__type"] == "ImageTooLargeException", r.text
    assert r.headers["x-amzn-RequestId"]
    r = client.put("/", content=b"{}")
    assert r.status_code == 400 and r.json()["__type"] == "UnknownOperationException", r.text
    r = client.post("/", content=b"{}", headers={"X-Amz-Target": "RekognitionService.ListCollections"})
    assert r.status_code == 403 and r.json()["__type"] == "MissingAuthenticationTokenException", r.text
