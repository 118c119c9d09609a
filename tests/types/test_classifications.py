import json

import numpy as np
import pytest

from visor.types import Classifications

LABELS = ["cat", "dog", "bird", "fish"]


def test_from_probabilities_sorts_best_first_and_breaks_ties_by_class_id():
    c = Classifications.from_probabilities(np.array([0.1, 0.4, 0.1, 0.4]), LABELS, top_k=3, model="m")
    assert c.class_id.tolist() == [1, 3, 0]
    assert c.label.tolist() == ["dog", "fish", "cat"]
    np.testing.assert_allclose(c.confidence, [0.4, 0.4, 0.1])
    assert c.top == ("dog", pytest.approx(0.4))
    assert len(c) == 3


@pytest.mark.parametrize(("k", "n"), [(0, 0), (1, 1), (4, 4), (10, 4)])
def test_top_k_bounds(k, n):
    assert len(Classifications.from_probabilities(np.array([0.1, 0.2, 0.3, 0.4]), LABELS, top_k=k)) == n


def test_json_round_trip_is_exact():
    c = Classifications.from_probabilities(np.array([0.05, 0.7, 0.2, 0.05]), LABELS, top_k=2, model="m")
    d = c.to_dict()
    assert d == {
        "type": "classifications",
        "model": "m",
        "predictions": [
            {"class_id": 1, "label": "dog", "confidence": pytest.approx(0.7)},
            {"class_id": 2, "label": "bird", "confidence": pytest.approx(0.2)},
        ],
    }
    back = Classifications.from_dict(json.loads(c.to_json()))
    assert back.to_dict() == d


def test_extra_data_is_serialized_per_prediction():
    c = Classifications([3], [0.5], ["fish"], data={"synset": np.array(["n0001"])})
    assert c.to_dict()["predictions"][0]["synset"] == "n0001"
    assert Classifications.from_dict(c.to_dict()).data["synset"].tolist() == ["n0001"]


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError):
        Classifications([1, 2], [0.5], ["a", "b"])
    with pytest.raises(ValueError):
        Classifications.from_probabilities(np.ones(3), LABELS)
    with pytest.raises(ValueError):
        Classifications.from_dict({"type": "detections"})


def test_empty():
    c = Classifications.empty("m")
    assert len(c) == 0 and c.top is None and c.to_dict()["predictions"] == []
