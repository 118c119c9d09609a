"""visor.annotate: every feature in one document, valid against docs/annotate.schema.json."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

import visor
from visor.annotate import FEATURES, Annotator
from visor.cli.main import main
from visor.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "docs" / "annotate.schema.json").read_text())


@pytest.fixture(scope="module")
def annotator():
    return Annotator()


def test_all_features_on_a_coco_photo_match_the_schema(annotator, shared_data):
    photo = shared_data("coco128") / "images" / "000000000471.jpg"
    doc = annotator.annotate(photo, FEATURES)
    jsonschema.validate(doc, SCHEMA)
    assert set(doc) == {"image", "width", "height", *FEATURES}
    assert doc["labels"]["predictions"][0]["label"] == "school bus"
    assert doc["objects"]["error"]["type"] == "ConfigError"  # no detector configured: its own error
    for feature in ("labels", "faces", "text", "moderation", "properties", "crop_hints"):
        assert "error" not in doc[feature], (feature, doc[feature])
    assert doc["moderation"]["adult"] == "VERY_UNLIKELY"
    assert [h["aspect_ratio"] for h in doc["crop_hints"]["hints"]] == [1.0, 1.777778, 0.8]


def test_faces_steer_crop_hints(annotator, shared_data):
    photo = shared_data("faces") / "unknown" / "obama1.jpg"
    doc = annotator.annotate(photo, ["faces", "crop_hints"])
    jsonschema.validate(doc, SCHEMA)
    (x1, y1, x2, y2), hint = doc["faces"]["faces"][0]["xyxy"], doc["crop_hints"]["hints"][0]["box"]
    assert hint[0] <= x1 and hint[1] <= y1 and hint[2] >= x2 and hint[3] >= y2


def test_objects_with_a_detector(tmp_path):
    """A configured detector fills the objects slot (an imported YOLOv8-layout model)."""
    import nudenet

    model = Path(nudenet.__file__).parent / "320n.onnx"
    with pytest.warns(visor.models.LicenseWarning):
        doc = visor.annotate(REPO / "assets" / "bus.jpg", ["objects"], detector=visor.load(model))
    jsonschema.validate(doc, SCHEMA)
    assert doc["objects"]["type"] == "detections"


def test_unknown_feature_and_cli(capsys):
    with pytest.raises(ConfigError, match="Did you mean 'labels'"):
        visor.annotate(REPO / "assets" / "bus.jpg", ["lables"])
    code = main(["annotate", str(REPO / "assets" / "bus.jpg"), "--features", "labels,properties"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and set(doc) == {"image", "width", "height", "labels", "properties"}
    jsonschema.validate(doc, SCHEMA)
    code = main(["annotate", str(REPO / "nope.jpg")])
    assert code == 1 and "ImageNotFound" in capsys.readouterr().err
