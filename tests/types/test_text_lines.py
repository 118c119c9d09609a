"""TextLines: validation, reading order (incl. skewed lines), JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from visor.types.text import TextLines, reading_order, skew_angle


def _box(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2]]


def test_reading_order_groups_by_vertical_overlap() -> None:
    polys = [_box(300, 105, 400, 135), _box(10, 10, 200, 40), _box(10, 100, 120, 130), _box(210, 12, 290, 42)]
    lines = TextLines(polys, ["right", "first", "left", "line"], [0.9, 0.8, 0.7, 0.6])
    assert reading_order(lines.polygons) == [[1, 3], [2, 0]]
    assert lines.full_text == "first line\nleft right"
    assert lines.lines() == ["first line", "left right"]


def test_reading_order_follows_skewed_lines() -> None:
    a = np.deg2rad(8)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    boxes = [_box(0, 0, 250, 30), _box(260, 0, 500, 30), _box(0, 45, 120, 75), _box(130, 45, 400, 75)]
    polys = np.array(boxes) @ rot.T
    assert skew_angle(polys) == pytest.approx(a, abs=1e-5)
    lines = TextLines(polys[[3, 1, 2, 0]], ["d", "b", "c", "a"], np.ones(4))
    assert lines.full_text == "a b\nc d"


def test_validation_and_empty() -> None:
    with pytest.raises(ValueError, match="text"):
        TextLines(np.zeros((2, 4, 2)), ["a"], [1.0, 1.0])
    empty = TextLines.empty()
    assert len(empty) == 0 and empty.full_text == "" and empty.xyxy.shape == (0, 4)
    assert empty.to_dict() == {"type": "text", "model": "", "full_text": "", "lines": []}


def test_json_round_trip_and_indexing() -> None:
    t = TextLines([_box(1, 2, 30, 12), _box(1, 20, 40, 30)], ["Hello", "wörld"], [0.5, 0.25])
    d = json.loads(t.to_json())
    assert d["type"] == "text" and d["full_text"] == "Hello\nwörld"
    assert d["lines"][0] == {"polygon": [[1.0, 2.0], [30.0, 2.0], [30.0, 12.0], [1.0, 12.0]], "text": "Hello",
                             "confidence": 0.5}
    back = TextLines.from_dict(d)
    np.testing.assert_array_equal(back.polygons, t.polygons)
    assert list(back.text) == ["Hello", "wörld"] and back.text.dtype == object
    assert list(t[1].text) == ["wörld"]
    np.testing.assert_array_equal(t.xyxy[1], [1, 20, 40, 30])
    with pytest.raises(ValueError):
        TextLines.from_dict({"type": "detections"})


def test_a_line_does_not_widen_as_it_grows_and_swallow_the_next():
    """Two boxes of one line (0-20 and 8-28 px) and one of the next line (17-37 px): the line's band is the
    mean of its boxes (4-24), which overlaps the third box by 7 px, under half its height; the union of the
    line's boxes (0-28) would have taken it in."""
    def box(x, top):
        return [[x, top], [x + 50, top], [x + 50, top + 20], [x, top + 20]]

    polygons = np.array([box(0, 0), box(100, 8), box(200, 17)], np.float32)
    assert reading_order(polygons) == [[0, 1], [2]]
