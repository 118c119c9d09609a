"""Detection stats: boxes per class and split, COCO size buckets, percentiles, images without boxes."""

from __future__ import annotations

import json

import pytest

from visor.data import BoxAnnotation, DetectionDataset, DetectionImage, Problem, detection_stats, formats


def _box(w: float, h: float, cls: int = 0, crowd: bool = False) -> BoxAnnotation:
    return BoxAnnotation((0.0, 0.0, w, h), cls, iscrowd=crowd)


@pytest.fixture
def ds() -> DetectionDataset:
    images = (
        DetectionImage("a.jpg", 200, 200, (_box(31, 33), _box(32, 32, 1), _box(96, 95)), split="train"),
        DetectionImage("b.jpg", 200, 200, (_box(96, 96, 1), _box(100, 100, 1, crowd=True)), split="val"),
        DetectionImage("c.jpg", 200, 200, (), split="val"),
        DetectionImage("d.jpg", 200, 200, ()),
    )
    return DetectionDataset(images, ("cat", "dog", "eel"), problems=(Problem("x.txt:3", "bad line"),))


def test_counts_sizes_and_percentiles(ds):
    s = detection_stats(ds)
    assert s.num_images == 4 and s.num_boxes == 5 and s.crowd_boxes == 1
    assert s.images_per_split == {"all": 4, "train": 1, "val": 2, "unsplit": 1}
    assert s.boxes_per_class == {
        "all": {"cat": 2, "dog": 3, "eel": 0},
        "train": {"cat": 2, "dog": 1, "eel": 0},
        "val": {"cat": 0, "dog": 2, "eel": 0},
        "unsplit": {"cat": 0, "dog": 0, "eel": 0},
    }
    assert s.images_per_class == {"cat": 1, "dog": 2, "eel": 0}
    # areas 1023 (small), 1024 = 32² (medium), 9120 (medium), 9216 = 96² (large), 10000 (large)
    assert s.size_counts == {"small": 1, "medium": 2, "large": 2}
    assert s.width_percentiles["p0"] == 31 and s.width_percentiles["p50"] == 96 and s.width_percentiles["p100"] == 100
    assert s.height_percentiles["p25"] == 33 and list(s.height_percentiles) == ["p0", "p5", "p25", "p50", "p75",
                                                                                "p95", "p100"]
    assert s.images_without_boxes == ["c.jpg", "d.jpg"]
    assert s.problems == [Problem("x.txt:3", "bad line")]


def test_dict_and_table(ds):
    s = detection_stats(ds)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["box_sizes"] == {"small": 1, "medium": 2, "large": 2}
    assert d["problems"] == [{"item": "x.txt:3", "reason": "bad line"}]
    table = s.format_table().splitlines()
    assert table[0].split() == ["class", "boxes:train", "boxes:val", "boxes:unsplit", "boxes", "images"]
    assert table[2].split() == ["dog", "1", "2", "0", "3", "2"]
    assert table[4].split() == ["total", "3", "2", "0", "5", "4"]
    text = "\n".join(table)
    assert "small 1 (20.0%), medium 2 (40.0%), large 2 (40.0%)" in text
    assert "images without boxes: 2\n  c.jpg\n  d.jpg" in text
    assert "problems found while loading: 1\n  x.txt:3: bad line\n1 problem(s) found" in text


def test_empty_dataset():
    s = detection_stats(DetectionDataset((), ("a",)))
    assert s.num_boxes == 0 and s.width_percentiles == {} and s.size_counts == {"small": 0, "medium": 0, "large": 0}
    assert "no problems found" in s.format_table()


def test_bccd(shared_data):
    s = detection_stats(formats.load(shared_data("bccd")))
    assert s.boxes_per_class["all"] == {"Platelets": 292, "RBC": 3350, "WBC": 301}
    assert s.boxes_per_class["train"]["RBC"] + s.boxes_per_class["val"]["RBC"] == 3350
    assert sum(s.size_counts.values()) == 3943 and s.images_without_boxes == [] and s.problems == []
