import json

import numpy as np
import pytest

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
