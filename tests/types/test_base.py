"""The result-type base: every type's field spec, JSON round trip with ``model``, indexing, validation."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from visor.errors import InvalidInput
from visor.types import (
    RESULT_TYPES,
    Classifications,
    Columns,
    CropHints,
    Detections,
    DominantColor,
    Exposure,
    Faces,
    ImageProperties,
    Moderation,
    Record,
    SegmentationMask,
    TextLines,
    result_from_dict,
)

BUS = Path(__file__).resolve().parents[2] / "assets" / "bus.jpg"


# Values that survive JSON rounding exactly (multiples of 1/8), so from_dict(to_dict(x)) == x.
def _classifications(model: str = "m") -> Classifications:
    return Classifications([3, 0, 7], [0.5, 0.25, 0.125], ["fish", "cat", "owl"], model,
                           {"synset": np.array(["n3", "n0", "n7"])})


def _detections(model: str = "m") -> Detections:
    return Detections([[0, 0, 10, 10], [5.5, 5, 25, 15.125], [1, 2, 3, 4]], [0.875, 0.5, 0.125], [2, 0, 2],
                      {"class_name": np.array(["car", "person", "car"]), "track": np.array([7, 8, 9])}, model=model)


def _faces(model: str = "m") -> Faces:
    marks = np.arange(3 * 5 * 2, dtype=np.float32).reshape(3, 5, 2) / 4
    emb = (np.arange(3 * 128, dtype=np.float32).reshape(3, 128) - 100) / 8
    return Faces([[0, 0, 10, 10], [20, 20, 40, 44], [1, 2, 3, 4]], [0.5, np.nan, 0.25], marks, emb,
                 {"name": np.array(["ann", "unknown", "bob"]), "distance": np.array([0.25, np.nan, 0.5])},
                 model=model)


def _text(model: str = "m") -> TextLines:
    boxes = [[[1, 2], [30, 2], [30, 12], [1, 12]], [[1, 20], [40, 20], [40, 30.5], [1, 30.5]],
             [[50, 2], [90, 2], [90, 12], [50, 12]]]
    return TextLines(boxes, ["Hello", "wörld", "again"], [0.5, 0.25, 0.75], model=model)


def _crop_hints(model: str = "m") -> CropHints:
    return CropHints([1.0, 1.5, 0.5], [[0, 0, 480, 480], [10, 0, 730, 480], [100, 0, 340, 480]], model=model)


def _moderation(model: str = "m") -> Moderation:
    dets = Detections([[10, 20, 30, 40]], [0.75], [3], model=model)
    return Moderation("LIKELY", "POSSIBLE", {"FEMALE_BREAST_EXPOSED": 0.75, "BELLY_EXPOSED": 0.5}, dets, model=model)


def _properties(model: str = "m") -> ImageProperties:
    return ImageProperties(640, 427, (DominantColor((200, 30, 40), 0.5), DominantColor((20, 90, 210), 0.25)),
                           0.375, 0.0625, Exposure(0.125, 0.0), model=model)


def _segmentation(model: str = "m") -> SegmentationMask:
    mask = np.array([[0, 1, 1], [2, 255, 0]])
    return SegmentationMask(mask, ("background", "cat", "dog"), ignore_index=255, model=model)


MAKERS = {"classifications": _classifications, "detections": _detections, "faces": _faces, "text": _text,
          "crop_hints": _crop_hints, "moderation": _moderation, "properties": _properties,
          "segmentation": _segmentation}
COLUMNS = [_classifications, _detections, _faces, _text, _crop_hints]


def test_every_result_type_is_exported_tagged_and_carries_model():
    assert sorted(RESULT_TYPES) == sorted(MAKERS)
    for tag, cls in RESULT_TYPES.items():
        assert tag == cls.TYPE and dataclasses.is_dataclass(cls)
        names = [f.name for f in dataclasses.fields(cls)]
        assert "model" in names, cls
        # the declared spec names the constructor's fields (computed ones are properties)
        stored = [f.name for f in cls.FIELDS if not f.computed]
        assert set(stored) <= set(names), cls
        assert set(names) - set(stored) <= {"model", "data"}, cls


@pytest.mark.parametrize("tag", sorted(MAKERS))
def test_json_round_trip_is_equal_and_carries_model(tag):
    x = MAKERS[tag]("yolox_nano")
    d = json.loads(x.to_json())
    assert list(d)[:2] == ["type", "model"] and d["type"] == tag and d["model"] == "yolox_nano"
    back = type(x).from_dict(d)
    assert back == x and back.model == "yolox_nano"
    assert type(x).from_json(x.to_json()) == x
    assert result_from_dict(d) == x
    assert back.to_dict() == x.to_dict()
    assert back != MAKERS[tag]("other")  # model takes part in equality


def test_round_trip_keeps_the_data_order_and_nan():
    f = _faces()
    d = json.loads(f.to_json())
    assert d["faces"][1]["confidence"] is None and d["faces"][1]["distance"] is None
    assert list(d["faces"][0]) == ["xyxy", "confidence", "landmarks", "embedding", "name", "distance"]
    back = Faces.from_dict(d)
    assert np.isnan(back.confidence[1]) and list(back.data) == ["name", "distance"]
    dets = Detections([[0, 0, 1, 1]], [0.5], [0], {"z": np.array([1]), "a": np.array(["x"])})
    assert list(Detections.from_dict(dets.to_dict()).data) == ["z", "a"]


@pytest.mark.parametrize("make", COLUMNS)
@pytest.mark.parametrize(("index", "rows"), [
    (np.array([True, False, True]), [0, 2]), ([False, True, True], [1, 2]), (np.array([2, 0]), [2, 0]),
    ([1], [1]), (1, [1]), (-1, [2]), (slice(1, None), [1, 2]), (np.zeros(3, bool), []), ([], []),
])
def test_indexing_returns_the_same_type_with_its_rows(make, index, rows):
    x = make()
    sub = x[index]
    assert type(sub) is type(x) and len(sub) == len(rows) and sub.model == "m"
    for f in type(x).FIELDS:
        if not f.computed:
            np.testing.assert_array_equal(getattr(sub, f.name), getattr(x, f.name)[rows])
    for k, v in x.data.items():
        np.testing.assert_array_equal(sub.data[k], v[rows])
    back = type(x).from_dict(json.loads(sub.to_json()))
    assert back.to_dict() == sub.to_dict() and back.model == "m"
    if len(rows) > 1:  # (JSON cannot say what the data keys of no items are, nor the type of an all-null column)
        assert back == sub


def test_indexing_by_a_mask_on_a_field():
    d = _detections()
    kept = d[d.confidence > 0.3]
    assert kept.class_id.tolist() == [2, 0] and kept.data["class_name"].tolist() == ["car", "person"]
    f = _faces()
    named = f[f.data["name"] != "unknown"]
    assert named.data["name"].tolist() == ["ann", "bob"] and named.embeddings.shape == (2, 128)
    assert named.landmarks[1].tolist() == (np.arange(20, 30).reshape(5, 2) / 4).tolist()


@pytest.mark.parametrize(("make", "message"), [
    (lambda: Classifications([1, 2], [0.5], ["a", "b"]), "class_id has 2 items but label has 2, confidence has 1"),
    (lambda: Detections(np.zeros((2, 4)), [0.1], [0, 1]), "xyxy has 2 items but confidence has 1, class_id has 2"),
    (lambda: Faces(np.zeros((2, 4)), [0.1, 0.2, 0.3], np.zeros((2, 5, 2)), np.zeros((2, 128))),
     "xyxy has 2 items but confidence has 3"),
    (lambda: Faces(np.zeros((2, 4)), [0.1, 0.2], np.zeros((3, 5, 2)), np.zeros((2, 128))),
     r"landmarks has shape \(3, 5, 2\), expected 2 items"),
    (lambda: TextLines(np.zeros((2, 4, 2)), ["a"], [1.0, 1.0]), "polygons has 2 items but text has 1"),
    (lambda: CropHints([1.0], np.zeros((2, 4))), "aspect_ratio has 1 items but box has 2"),
    (lambda: Detections(np.zeros(6), [0.1], [0]), r"xyxy has shape \(6,\), expected N items of shape \(4,\)"),
    (lambda: Detections(np.zeros((1, 4)), [0.1], [0], {"x": np.zeros(2)}), r"data\['x'\] has length 2, expected 1"),
    (lambda: Moderation("MAYBE", "LIKELY", {}), "adult must be one of UNKNOWN, VERY_UNLIKELY"),
    (lambda: DominantColor((1, 2), 0.5), "rgb must have 3 values, got 2"),
    (lambda: ImageProperties(1, 1, (), 0.5, 0.5, {"dark_fraction": 0}), "exposure must be a Exposure"),
])
def test_inconsistent_fields_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize(("cls", "doc", "message"), [
    (Detections, {"type": "faces"}, "not a detections object"),
    (Detections, [], "must be a JSON object"),
    (Detections, {"type": "detections", "detections": {"xyxy": 1}}, "must be a list of objects"),
    (Detections, {"detections": [{"xyxy": [1, 2, 3], "confidence": 1, "class_id": 0}]}, "malformed detections"),
    (Detections, {"detections": [{"xyxy": [1, 2, 3, 4], "class_id": 0}]}, "every item needs 'confidence'"),
    (Classifications, {"type": "classifications", "model": 3}, "model must be a string"),
    (Faces, {"faces": [{"xyxy": [0, 0, 1, 1], "confidence": 1, "landmarks": [], "embedding": [1.0]},
                       {"xyxy": [0, 0, 1, 1], "confidence": 1, "landmarks": []}]}, "every item needs 'embedding'"),
    (Moderation, {"type": "moderation", "adult": "LIKELY", "racy": "LIKELY"}, "'scores' is missing"),
    (Moderation, {"adult": "LIKELY", "racy": "NO", "scores": {}}, "racy must be one of"),
    (ImageProperties, {"type": "properties", "width": 640}, "'height' is missing"),
    (ImageProperties, {**_properties().to_dict(), "width": "wide"}, "malformed properties object: .*width must be"),
])
def test_malformed_documents_are_invalid_input(cls, doc, message):
    with pytest.raises(InvalidInput, match=message):
        cls.from_dict(doc)
    with pytest.raises(InvalidInput):
        result_from_dict({**doc, "type": "nope"} if isinstance(doc, dict) else doc)


@pytest.mark.parametrize("make", COLUMNS)
def test_empty_keeps_model_and_shapes(make):
    x = make()
    e = type(x).empty("m")
    assert len(e) == 0 and e.model == "m" and e.data == {}
    for f in type(x).FIELDS:
        if not f.computed:
            assert getattr(e, f.name).shape[1:] == tuple(0 if s is None else s for s in f.shape)
    assert type(x).from_dict(e.to_dict()) == e and e.to_dict()[type(x).ITEMS] == []
    assert x[np.zeros(len(x), bool)].to_dict()[type(x).ITEMS] == []


def test_arrays_are_typed():
    d, f, t, c = _detections(), _faces(), _text(), _classifications()
    assert d.xyxy.dtype == np.float32 and d.xyxy.shape == (3, 4) and d.class_id.dtype == np.int64
    assert f.landmarks.shape == (3, 5, 2) and f.embeddings.dtype == np.float32
    assert t.text.dtype == object and all(type(s) is str for s in t.text) and t.polygons.shape == (3, 4, 2)
    assert c.label.dtype == object and c.class_id.dtype == np.int64 and c.confidence.dtype == np.float32
    assert TextLines([[0, 0, 1, 0, 1, 1, 0, 1]], "one", [1]).text.tolist() == ["one"]
    # faces without landmarks / embeddings: (N, 0, 2) and (N, 0), and JSON leaves the embedding out
    bare = Faces(np.zeros((2, 4)), [1, 1], [], [])
    assert bare.landmarks.shape == (2, 0, 2) and bare.embeddings.shape == (2, 0)
    assert bare.to_dict()["faces"][0] == {"xyxy": [0.0] * 4, "confidence": 1.0, "landmarks": []}
    assert "embedding" not in _faces().to_dict(embeddings=False)["faces"][0]
    assert Faces.from_dict(bare.to_dict()) == bare


def test_with_data_merge_and_replace_keep_model():
    d = _detections("yolox_nano")
    assert d.with_data(score=np.ones(3)).model == "yolox_nano"
    merged = Detections.merge([d, Detections([[0, 0, 1, 1]], [0.3], [1], {"class_name": np.array(["dog"]),
                                                                         "track": np.array([1])}, model="x")])
    assert merged.model == "yolox_nano" and len(merged) == 4 and merged.data["class_name"][-1] == "dog"
    assert dataclasses.replace(d, model="other").model == "other"
    assert Detections.merge([]).model == ""


def test_pinned_json_forms():
    assert _moderation("nudenet-320n").to_dict() == {
        "type": "moderation", "model": "nudenet-320n", "adult": "LIKELY", "racy": "POSSIBLE",
        "scores": {"BELLY_EXPOSED": 0.5, "FEMALE_BREAST_EXPOSED": 0.75},
        "detections": [{"xyxy": [10.0, 20.0, 30.0, 40.0], "confidence": 0.75, "class_id": 3}],
    }
    # a moderation model without a part detector: no detections key at all
    plain = Moderation("VERY_UNLIKELY", "UNKNOWN", {"nsfw": 0.0123456789}, model="open_nsfw")
    assert plain.to_dict() == {"type": "moderation", "model": "open_nsfw", "adult": "VERY_UNLIKELY",
                               "racy": "UNKNOWN", "scores": {"nsfw": 0.012346}}
    assert Moderation.from_dict(plain.to_dict()).detections is None
    assert _properties("").to_dict() == {
        "type": "properties", "model": "", "width": 640, "height": 427,
        "dominant_colors": [{"rgb": [200, 30, 40], "hex": "#c81e28", "fraction": 0.5},
                            {"rgb": [20, 90, 210], "hex": "#145ad2", "fraction": 0.25}],
        "brightness": 0.375, "sharpness": 0.0625,
        "exposure": {"dark_fraction": 0.125, "bright_fraction": 0.0, "score": 0.75},
    }
    assert _text().to_dict()["full_text"] == "Hello again\nwörld"
    assert list(_text().to_dict()) == ["type", "model", "full_text", "lines"]
    assert _crop_hints().to_dict()["hints"][1] == {"aspect_ratio": 1.5, "box": [10.0, 0.0, 730.0, 480.0]}


def test_bases():
    assert all(issubclass(RESULT_TYPES[t], Columns) for t in ("classifications", "detections", "faces", "text",
                                                              "crop_hints"))
    assert all(issubclass(RESULT_TYPES[t], Record) for t in ("moderation", "properties"))
    assert DominantColor.from_dict({"rgb": [1, 2, 3], "hex": "ignored", "fraction": 0.5}) == DominantColor((1, 2, 3),
                                                                                                           0.5)
    assert Exposure(0.3, 0.0).score == pytest.approx(0.4) and "model" not in Exposure(0.3, 0.0).to_dict()


# --------------------------------------------------------------------------- on a real photo


def test_properties_of_a_photo_round_trip():
    from visor.features.properties import image_properties

    props = image_properties(BUS)
    d = json.loads(props.to_json())
    assert (d["type"], d["model"], d["width"], d["height"]) == ("properties", "", 640, 427)
    back = ImageProperties.from_dict(d).to_dict()
    # the exposure score is computed from the rounded fractions: it may move in the 6th decimal
    assert back["exposure"].pop("score") == pytest.approx(d["exposure"].pop("score"), abs=1.5e-6)
    assert back == d


def test_crop_hints_type_writes_the_annotate_form():
    from visor.annotator import CROP_ASPECT_RATIOS, Annotator
    from visor.features.properties import crop_hints

    doc = Annotator().annotate(BUS, ["crop_hints"])["crop_hints"]
    hints = CropHints(list(CROP_ASPECT_RATIOS), [crop_hints(BUS, r)[0] for r in CROP_ASPECT_RATIOS], model="m")
    assert {**hints.to_dict(), "model": ""} == doc
    assert hints.to_dict()["hints"][0] == {"aspect_ratio": 1.0, "box": [98.0, 0.0, 525.0, 427.0]}
    assert CropHints.from_dict(doc).to_dict() == doc
