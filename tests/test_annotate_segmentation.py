"""annotate's segmentation feature (opt-in): class areas and one COCO RLE per class of a copy at most 512 px on
its long side, valid against docs/annotate.schema.json; ``visor annotate --features segmentation``."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from visor.annotator import FEATURES, SEGMENTATION_SIDE, Annotator, default_features

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "docs" / "annotate.schema.json").read_text())
BUS = "000000000471.jpg"  # coco128: a school bus, 640x427


@pytest.fixture(scope="module")
def segmenter(zoo_cache):
    from visor.models import load

    return load("deeplabv3_voc")


@pytest.fixture(scope="module")
def photo(shared_data) -> Path:
    return shared_data("coco128") / "images" / BUS


def expected_slot(segmenter, path) -> dict:
    from visor.io import bounded_copy, open_image

    return segmenter.predict(bounded_copy(open_image(path), max_side=SEGMENTATION_SIDE)).to_dict()


def test_segmentation_is_opt_in():
    assert "segmentation" not in FEATURES and "segmentation" not in default_features()


def test_segmentation_slot_on_a_coco_photo(segmenter, photo):
    from visor.types.segmentation import SegmentationMask

    annotator = Annotator(segmenter=segmenter)
    doc = annotator.annotate(photo, ["segmentation", "properties"])
    jsonschema.validate(doc, SCHEMA)
    slot = doc["segmentation"]
    assert (doc["width"], doc["height"]) == (640, 427)  # the original's size
    assert (slot["width"], slot["height"]) == (512, 342)  # the mask's: the copy's, long side 512
    assert slot == expected_slot(segmenter, photo)
    assert [(s["class_id"], s["label"]) for s in slot["segments"]] == [(0, "background"), (6, "bus")]
    assert sum(s["area"] for s in slot["segments"]) == 512 * 342
    # about a quarter of the photo is bus, as in the full-size mask
    full = segmenter.predict(photo)
    bus = next(s["area"] for s in slot["segments"] if s["label"] == "bus")
    assert bus / (512 * 342) == pytest.approx(full.areas["bus"] / (640 * 427), abs=0.01)
    # the slot reads back into the result type
    assert SegmentationMask.from_dict(slot).areas == {s["label"]: s["area"] for s in slot["segments"]}
    # small: a couple of kilobytes for this photo
    assert len(json.dumps(slot)) < 4000
    # the default segmenter comes from the task registry
    assert Annotator().annotate(photo, ["segmentation"])["segmentation"] == slot


def test_a_small_image_is_segmented_at_its_own_size(segmenter, tmp_path, photo):
    from PIL import Image

    small = tmp_path / "small.png"
    Image.open(photo).resize((320, 214)).save(small)
    slot = Annotator(segmenter=segmenter).annotate(small, ["segmentation"])["segmentation"]
    assert (slot["width"], slot["height"]) == (320, 214) and slot == segmenter.predict(small).to_dict()


def test_a_segmentation_slot_error_leaves_the_rest(classifier, photo):
    doc = Annotator(segmenter=classifier).annotate(photo, ["segmentation", "properties"])
    jsonschema.validate(doc, SCHEMA)
    assert doc["segmentation"]["error"]["message"] == (
        "efficientnet_lite0 is a classification model; the segmentation feature needs a segmentation model")
    assert doc["properties"]["type"] == "properties"


def test_visor_annotate_features_segmentation(capsys, segmenter, photo):
    from visor.cli.main import main

    assert main(["annotate", "--features", "segmentation", str(photo)]) == 0
    doc = json.loads(capsys.readouterr().out)
    jsonschema.validate(doc, SCHEMA)
    assert set(doc) == {"image", "width", "height", "segmentation"}
    assert doc["segmentation"] == expected_slot(segmenter, photo)
