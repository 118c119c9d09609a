"""visor.annotate: every feature in one document, valid against docs/annotate.schema.json; what runs for a
feature comes from the task registry (default models, a custom registry's features)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jsonschema
import pytest

import visor
from visor.annotator import FEATURES, Annotator, check_features
from visor.cli.main import main
from visor.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "docs" / "annotate.schema.json").read_text())
BUS = REPO / "assets" / "bus.jpg"
#: The everyday labels above the bus photo's ImageNet classes: the summed probabilities of the classes under
#: each ("school bus", "trolleybus", "minibus"... for Bus), from efficientnet_lite0's full distribution.
BUS_GENERIC = [("Vehicle", 0.98762), ("Motor vehicle", 0.984426), ("Bus", 0.983146)]


def check_bus_generic(labels: list[dict]) -> None:
    assert [g["name"] for g in labels] == [n for n, _ in BUS_GENERIC]
    assert [g["score"] for g in labels] == pytest.approx([s for _, s in BUS_GENERIC], abs=2e-5)


@pytest.fixture(scope="module")
def annotator(zoo_cache):
    return Annotator()


def test_features_are_the_registrys():
    from visor.annotator import OPT_IN_FEATURES, default_features
    from visor.models.tasks import builtin_tasks

    # the default features are the registry's but the opt-in segmentation, in the registry's order
    assert default_features() == FEATURES and OPT_IN_FEATURES == ("segmentation",)
    assert set(builtin_tasks().features()) == {*FEATURES, *OPT_IN_FEATURES}
    assert check_features(["labels", "objects", "labels"]) == ("labels", "objects")


def test_all_features_on_a_coco_photo_match_the_schema(annotator, shared_data):
    photo = shared_data("coco128") / "images" / "000000000471.jpg"
    doc = annotator.annotate(photo, FEATURES)
    jsonschema.validate(doc, SCHEMA)
    assert set(doc) == {"image", "width", "height", "generic_labels", *FEATURES}
    for feature in FEATURES:
        assert "error" not in doc[feature], (feature, doc[feature])
    assert doc["labels"]["predictions"][0]["label"] == "school bus"
    # every feature's default model comes from the registry: yolox_nano, yunet, open_nsfw (+ nudenet's parts)
    assert [(d["class_name"], round(d["confidence"], 3)) for d in doc["objects"]["detections"]] == [
        ("bus", 0.962), ("car", 0.253)]
    models = {f: doc[f]["model"] for f in ("labels", "objects", "faces", "moderation")}
    from visor.features.moderation import nudenet_available

    assert models == {"labels": "efficientnet_lite0", "objects": "yolox_nano", "faces": "yunet",
                      "moderation": "open_nsfw+nudenet-320n" if nudenet_available() else "open_nsfw"}
    assert doc["moderation"]["adult"] == "VERY_UNLIKELY"
    assert doc["crop_hints"] == {"type": "crop_hints", "model": "", "hints": [
        {"aspect_ratio": 1.0, "box": [128.0, 0.0, 555.0, 427.0]},
        {"aspect_ratio": 1.777778, "box": [0.0, 21.0, 640.0, 381.0]},
        {"aspect_ratio": 0.8, "box": [170.0, 0.0, 512.0, 427.0]}]}
    # generic labels from the classifier and the detector (the car, 0.25, is under the 0.5 threshold)
    generic = doc["generic_labels"]
    assert generic["model"] == "efficientnet_lite0+yolox_nano"
    check_bus_generic(generic["labels"])
    assert [g["wnid"] for g in generic["labels"]] == ["n04524313", "n03791235", "n02924116"]


def test_objects_find_the_bus_with_no_detector_passed(annotator):
    doc = visor.annotate(BUS, ["objects"])
    jsonschema.validate(doc, SCHEMA)
    assert set(doc) == {"image", "width", "height", "objects"}  # no labels asked: no generic labels
    best = doc["objects"]["detections"][0]
    assert doc["objects"]["model"] == "yolox_nano" and best["class_name"] == "bus"
    assert best["confidence"] == pytest.approx(0.962151, abs=1e-4)
    assert best["xyxy"] == pytest.approx([116.3, 113.6, 578.9, 318.6], abs=0.5)  # the bus spans 118..575 x 108..322
    assert annotator.annotate(BUS, ["objects"])["objects"] == doc["objects"]


def test_labels_give_generic_labels_from_the_classifier_alone(annotator):
    doc = annotator.annotate(BUS, ["labels"])
    jsonschema.validate(doc, SCHEMA)
    assert list(doc) == ["image", "width", "height", "labels", "generic_labels"]
    assert doc["generic_labels"]["model"] == "efficientnet_lite0"
    check_bus_generic(doc["generic_labels"]["labels"])
    # the sums use every probability, not only the top_k shown
    one = dataclasses.replace(annotator, top_k=1).annotate(BUS, ["labels"])
    assert len(one["labels"]["predictions"]) == 1 and one["generic_labels"] == doc["generic_labels"]


def test_a_model_of_the_wrong_task_fails_in_its_own_slot(annotator, yolox_nano):
    doc = dataclasses.replace(annotator, classifier="yolox_nano", _models={}).annotate(BUS, ["labels", "properties"])
    jsonschema.validate(doc, SCHEMA)
    assert doc["labels"]["error"]["type"] == "ConfigError" and "generic_labels" not in doc
    assert doc["labels"]["error"]["message"] == ("yolox_nano is a detection model; the labels feature needs a "
                                                 "classification model")
    assert doc["properties"]["type"] == "properties"
    doc = Annotator(detector=visor.load("efficientnet_lite0")).annotate(BUS, ["objects"])
    assert doc["objects"]["error"]["message"] == ("efficientnet_lite0 is a classification model; the objects "
                                                  "feature needs a detection model")


def test_faces_steer_crop_hints(annotator, shared_data):
    photo = shared_data("faces") / "unknown" / "obama1.jpg"
    doc = annotator.annotate(photo, ["faces", "crop_hints"])
    jsonschema.validate(doc, SCHEMA)
    assert doc["faces"]["model"] == "yunet" and len(doc["faces"]["faces"]) == 1
    assert len(doc["faces"]["faces"][0]["landmarks"]) == 5  # YuNet's five points
    (x1, y1, x2, y2), hint = doc["faces"]["faces"][0]["xyxy"], doc["crop_hints"]["hints"][0]["box"]
    assert hint[0] <= x1 and hint[1] <= y1 and hint[2] >= x2 and hint[3] >= y2


def test_features_agree_with_the_top_level_verbs(annotator, shared_data):
    """Each feature gives what its top-level verb gives on the same image (labels: on the decoded image,
    since ``visor.classify`` decodes JPEG files at reduced size)."""
    from visor.io import open_image

    doc = annotator.annotate(BUS, ["labels", "objects", "text", "moderation", "properties"])
    assert doc["labels"] == visor.classify(open_image(BUS)).to_dict()
    assert doc["objects"] == visor.detect(BUS).to_dict()
    assert doc["text"] == visor.read_text(BUS).to_dict() and doc["text"]["full_text"].endswith("ANGELES")
    assert doc["moderation"] == visor.moderate(BUS).to_dict()
    assert doc["properties"] == visor.properties(BUS).to_dict()
    photo = shared_data("faces") / "unknown" / "obama1.jpg"
    assert annotator.annotate(photo, ["faces"])["faces"] == visor.faces(photo).to_dict(embeddings=False)
    assert annotator.model("faces") is annotator.model("faces")  # created once


def test_moderation_parts_follow_the_moderator(annotator):
    """open_nsfw, plus nudenet's part detector when installed (None, as visor.moderate); False: never."""
    pytest.importorskip("nudenet")
    parts = annotator.annotate(BUS, ["moderation"])
    jsonschema.validate(parts, SCHEMA)
    parts = parts["moderation"]
    assert parts["model"] == "open_nsfw+nudenet-320n" and parts["detections"] == []
    plain = Annotator(moderation_parts=False).annotate(BUS, ["moderation"])
    jsonschema.validate(plain, SCHEMA)
    plain = plain["moderation"]
    assert plain["model"] == "open_nsfw" and set(plain["scores"]) == {"open_nsfw"} and "detections" not in plain
    assert parts["scores"]["open_nsfw"] == plain["scores"]["open_nsfw"]
    assert (plain["adult"], plain["racy"]) == (parts["adult"], parts["racy"]) == ("VERY_UNLIKELY", "VERY_UNLIKELY")


def test_a_custom_registry_feature_runs_from_its_entry(annotator):
    """A feature added to a custom task registry: annotate looks it up and calls the entry's function."""
    from visor.features.properties import image_properties
    from visor.models.tasks import TaskSpec, builtin_tasks

    custom = builtin_tasks().with_tasks(TaskSpec(
        name="palette", verb=None, predictor=None, function="visor.features.properties:image_properties",
        result="visor.types.properties:ImageProperties", annotate_feature="palette"))
    with pytest.raises(ConfigError, match="unknown feature 'palette'"):
        annotator.annotate(BUS, ["palette"])
    doc = Annotator(tasks=custom).annotate(BUS, ["palette", "properties"])
    assert doc["palette"] == doc["properties"] == image_properties(BUS).to_dict()
    assert check_features(["palette"], custom) == ("palette",)


def test_objects_with_a_detector(tmp_path):
    """A configured detector fills the objects slot (an imported YOLOv8-layout model)."""
    import nudenet

    model = Path(nudenet.__file__).parent / "320n.onnx"
    with pytest.warns(visor.models.LicenseWarning):
        doc = visor.annotate(BUS, ["objects"], detector=visor.load(model))
    jsonschema.validate(doc, SCHEMA)
    assert doc["objects"]["type"] == "detections" and doc["objects"]["model"] == "320n"


def test_unknown_feature_and_cli(capsys, zoo_cache):
    with pytest.raises(ConfigError, match="Did you mean 'labels'"):
        visor.annotate(BUS, ["lables"])
    code = main(["annotate", str(BUS), "--features", "labels,properties"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and set(doc) == {"image", "width", "height", "labels", "generic_labels", "properties"}
    jsonschema.validate(doc, SCHEMA)
    assert [g["name"] for g in doc["generic_labels"]["labels"]] == [n for n, _ in BUS_GENERIC]
    code = main(["annotate", str(REPO / "nope.jpg")])
    assert code == 1 and "ImageNotFound" in capsys.readouterr().err
