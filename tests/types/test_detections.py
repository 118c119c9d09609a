import json
from pathlib import Path

import numpy as np
import pytest

from visor.errors import InvalidInput
from visor.types import Detections


@pytest.fixture
def dets() -> Detections:
    return Detections(
        xyxy=np.array([[0, 0, 10, 10], [5, 5, 25, 15], [1, 2, 3, 4]]),
        confidence=np.array([0.9, 0.5, 0.1]),
        class_id=np.array([2, 0, 2]),
        data={"class_name": np.array(["car", "person", "car"])},
    )


def test_arrays_are_typed(dets):
    assert dets.xyxy.dtype == np.float32 and dets.xyxy.shape == (3, 4)
    assert dets.confidence.dtype == np.float32 and dets.class_id.dtype == np.int64
    assert len(dets) == 3


def test_area(dets):
    np.testing.assert_array_equal(dets.area, [100, 200, 4])


@pytest.mark.parametrize(
    ("index", "expected_ids"),
    [(np.array([True, False, True]), [2, 2]), (1, [0]), (slice(0, 2), [2, 0]), ([2, 0], [2, 2])],
)
def test_indexing_returns_detections(dets, index, expected_ids):
    sub = dets[index]
    assert isinstance(sub, Detections)
    assert sub.class_id.tolist() == expected_ids
    assert len(sub.data["class_name"]) == len(sub)


def test_confidence_filter_is_a_mask(dets):
    kept = dets[dets.confidence > 0.3]
    assert kept.data["class_name"].tolist() == ["car", "person"]


def test_merge(dets):
    dog = Detections(np.array([[0, 0, 1, 1]]), [0.3], [1], {"class_name": np.array(["dog"])})
    merged = Detections.merge([dets, dog])
    assert len(merged) == 4 and merged.data["class_name"][-1] == "dog"
    assert len(Detections.merge([])) == 0
    with pytest.raises(ValueError):
        Detections.merge([dets, Detections(np.zeros((1, 4)), [0.1], [0])])


def test_json_round_trip(dets):
    d = json.loads(dets.to_json())
    assert d["type"] == "detections"
    assert d["detections"][1] == {
        "xyxy": [5.0, 5.0, 25.0, 15.0], "confidence": 0.5, "class_id": 0, "class_name": "person"}
    back = Detections.from_dict(d)
    np.testing.assert_array_equal(back.xyxy, dets.xyxy)
    assert back.to_dict() == dets.to_dict()
    assert len(Detections.from_dict({"type": "detections", "detections": []})) == 0


def test_validation():
    with pytest.raises(ValueError):
        Detections(np.zeros((2, 4)), [0.1], [0, 1])
    with pytest.raises(ValueError):
        Detections(np.zeros((1, 4)), [0.1], [0], {"x": np.zeros(2)})


# --------------------------------------------------------------------------- instance masks (COCO RLE)


@pytest.fixture(scope="module")
def coco_instances(shared_data):
    """coco128 image 257: its annotations (one a crowd region) as Detections with masks, and pycocotools' masks."""
    pytest.importorskip("pycocotools")
    from pycocotools import mask as coco_mask

    doc = json.loads((Path(shared_data("coco128")) / "instances.json").read_text())
    info = next(im for im in doc["images"] if im["id"] == 257)
    h, w = info["height"], info["width"]
    anns = [a for a in doc["annotations"] if a["image_id"] == 257]
    expected, segmentations = [], []
    for a in anns:
        seg = a["segmentation"]
        r = coco_mask.merge(coco_mask.frPyObjects(seg, h, w)) if isinstance(seg, list) else \
            coco_mask.frPyObjects(seg, h, w)
        expected.append(coco_mask.decode(r).astype(bool))
        segmentations.append(seg if isinstance(seg, dict) else r)  # crowd: uncompressed counts as COCO has them
    xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
    xyxy = np.round(np.array(xyxy) * 8) / 8  # values that JSON's rounding keeps exactly
    return xyxy, [a["category_id"] for a in anns], segmentations, expected


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_masks_from_coco_rles_decode_round_trip_and_index(coco_instances):
    xyxy, classes, rles, expected = coco_instances
    n = len(xyxy)
    assert n == 34 and any(isinstance(r["counts"], list) for r in rles)
    dets = Detections(xyxy, np.arange(n, 0, -1) / 64, classes, model="coco", masks=rles)
    assert dets.has_masks and dets.masks.shape == (n,)
    assert all(isinstance(m["counts"], str) for m in dets.masks)  # kept compressed
    for i in range(n):
        np.testing.assert_array_equal(dets.mask(i), expected[i])
    d = json.loads(dets.to_json())
    assert list(d["detections"][0]) == ["xyxy", "confidence", "class_id", "mask"]
    assert d["detections"][3]["mask"]["size"] == list(expected[3].shape)
    back = Detections.from_dict(d)
    assert back == dets and back.to_dict() == d
    sub = dets[dets.class_id == 1]
    assert len(sub) == sum(c == 1 for c in classes)
    for j, i in enumerate(np.flatnonzero(np.array(classes) == 1)):
        np.testing.assert_array_equal(sub.mask(j), expected[i])
    # the same masks given as arrays, one per box or as one (N, H, W) array
    assert Detections(xyxy, dets.confidence, classes, model="coco", masks=expected) == dets
    assert Detections(xyxy, dets.confidence, classes, model="coco", masks=np.stack(expected)) == dets


def test_some_boxes_without_masks_and_none_at_all(dets):
    shape = (6, 8)
    mask = np.zeros(shape, bool)
    mask[1:4, 2:5] = True
    with_masks = Detections(dets.xyxy, dets.confidence, dets.class_id, dets.data, masks=[None, mask, None])
    rows = with_masks.to_dict()["detections"]
    # runs 13, 3, 3, 3, 3, 3, 20 written 13, 3, 3, 0, 0, 0, 17: "=" is 13, "a0" is 17 in two characters
    assert [r["mask"] for r in rows] == [None, {"size": [6, 8], "counts": "=33000a0"}, None]
    assert list(rows[1]) == ["xyxy", "confidence", "class_id", "mask", "class_name"]
    assert with_masks.mask(0) is None and with_masks.mask(1).sum() == 9
    back = Detections.from_dict(with_masks.to_dict())
    assert back == with_masks and back.mask(2) is None
    # a document where boxes without a mask leave the key out reads the same
    sparse = {**with_masks.to_dict(), "detections": [{k: v for k, v in r.items() if v is not None} for r in rows]}
    assert Detections.from_dict(sparse) == with_masks
    # no masks: JSON as before, and masks all None
    assert not dets.has_masks and dets.masks.tolist() == [None, None, None] and dets.mask(0) is None
    assert "mask" not in dets.to_dict()["detections"][0]
    assert Detections.from_dict(dets.to_dict()) == dets
    merged = Detections.merge([with_masks, dets])
    assert len(merged) == 6 and merged.has_masks and merged.masks[1] == with_masks.masks[1]
    assert [m is None for m in merged.masks] == [True, False, True, True, True, True]


def test_bad_masks_are_refused(dets):
    good = {"size": [2, 2], "counts": "13"}
    with pytest.raises(ValueError, match="one size"):
        Detections(dets.xyxy, dets.confidence, dets.class_id, masks=[good, {"size": [2, 3], "counts": [6]}, None])
    with pytest.raises(ValueError, match="masks has 2"):
        Detections(dets.xyxy, dets.confidence, dets.class_id, masks=[good, good])
    with pytest.raises(ValueError, match="mask 1 must be"):
        Detections(dets.xyxy, dets.confidence, dets.class_id, masks=[good, "13", None])
    doc = {"detections": [{"xyxy": [0, 0, 1, 1], "confidence": 0.5, "class_id": 0,
                           "mask": {"size": [2, 2], "counts": "14"}}]}
    with pytest.raises(InvalidInput, match="mask 0: RLE counts add up to 5 pixels"):
        Detections.from_dict(doc)
    doc["detections"][0]["mask"] = {"size": [50_000, 50_000], "counts": [2_500_000_000]}
    with pytest.raises(InvalidInput, match="more than the limit"):
        Detections.from_dict(doc)
    doc["detections"][0]["mask"] = [1, 2]
    with pytest.raises(InvalidInput, match="mask 0 must be"):
        Detections.from_dict(doc)
