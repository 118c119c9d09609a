"""Drawing detections: a new image, boxes in the class colour, tags with the label and confidence."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visor.errors import InvalidInput
from visor.features import annotate, class_color
from visor.types import Detections


def dets(**data) -> Detections:
    return Detections(
        np.array([[20, 40, 120, 140], [150, 30, 190, 90]], np.float32),
        np.array([0.87, 0.5], np.float32),
        np.array([0, 3]),
        data,
    )


def test_returns_a_new_image_and_leaves_the_input_alone():
    src = Image.new("RGB", (200, 160), (40, 40, 40))
    before = np.asarray(src).copy()
    out = annotate(src, dets(class_name=np.array(["cat", "dog"])))
    assert out is not src and out.size == src.size and out.mode == "RGB"
    np.testing.assert_array_equal(np.asarray(src), before)
    assert not np.array_equal(np.asarray(out), before)


def test_boxes_are_drawn_in_the_class_colour():
    out = np.asarray(annotate(Image.new("RGB", (200, 160)), dets(), line_width=2, show_confidence=False))
    assert tuple(out[100, 20]) == class_color(0)  # left edge of box 0, below its tag
    assert tuple(out[139, 70]) == class_color(0)  # bottom edge
    assert tuple(out[80, 189]) == class_color(3)  # right edge of box 1
    assert tuple(out[100, 70]) == (0, 0, 0)  # inside: untouched


def test_tag_text_is_drawn_above_the_box():
    empty = Detections(np.array([[20, 60, 120, 140]]), np.array([0.87]), np.array([1]))
    out = np.asarray(annotate(Image.new("RGB", (200, 160)), empty, labels=["a", "b"]))
    tag = out[48:60, 20:50]  # just above the box's top-left corner
    is_fill = (tag == class_color(1)).all(axis=2)
    assert 0.4 < is_fill.mean() < 0.95  # the tag's background, and its text
    assert (out[:40] == 0).all()  # nothing far above


def test_distinct_colours_for_many_classes():
    colours = [class_color(i) for i in range(20)]
    assert len(set(colours)) == 20
    for i in range(19):
        assert sum(abs(a - b) for a, b in zip(colours[i], colours[i + 1], strict=True)) > 100


def test_arrays_and_empty_detections():
    arr = np.full((50, 60, 3), 7, np.uint8)
    out = annotate(arr, Detections.empty())
    assert isinstance(out, Image.Image)
    np.testing.assert_array_equal(np.asarray(out), arr)
    with pytest.raises(InvalidInput):
        annotate(np.zeros((5, 5), np.float32), Detections.empty())
    rgba = Image.new("RGBA", (30, 30), (255, 0, 0, 255))
    assert annotate(rgba, Detections.empty()).mode == "RGB"
