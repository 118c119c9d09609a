"""Mask dataset stats: pixels and images per class and split, ignored share, sizes, problems per item."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from visor.data.segmentation import CAMVID_CLASSES, SegmentationDataset
from visor.data.segmentation_stats import IGNORED, segmentation_stats


def test_camvid_pixels_per_class(shared_data):
    ds = SegmentationDataset.from_folder(shared_data("camvid"), classes=CAMVID_CLASSES, ignore_index=11)
    s = segmentation_stats(ds.subset("val"))
    assert s.num_samples == s.num_loaded == 101 and s.problems == []
    assert s.samples_per_split == {"all": 101, "val": 101}
    assert s.pixels_per_class["val"] == s.pixels_per_class["all"] == {
        "Sky": 1601620, "Building": 4531180, "Pole": 98499, "Road": 5053176, "Pavement": 1521751, "Tree": 2851125,
        "SignSymbol": 155724, "Fence": 537197, "Car": 304716, "Pedestrian": 113531, "Bicyclist": 387010,
        IGNORED: 297271,
    }
    assert sum(s.pixels_per_class["all"].values()) == 101 * 480 * 360
    assert s.image_sizes == {"480x360": 101}
    full = segmentation_stats(ds)
    assert full.samples_per_split == {"all": 468, "train": 367, "val": 101}
    assert full.pixels_per_class["all"]["Road"] == 25130056 and full.pixels_per_class["all"][IGNORED] == 2801266
    assert full.images_per_class == {"Sky": 467, "Building": 466, "Pole": 467, "Road": 468, "Pavement": 450,
                                     "Tree": 420, "SignSymbol": 452, "Fence": 274, "Car": 461, "Pedestrian": 418,
                                     "Bicyclist": 302}
    assert round(full.pixel_share()["Road"], 6) == 0.321895
    table = full.format_table().splitlines()
    assert table[0].split() == ["id", "class", "pixels:train", "pixels:val", "pixels", "images"]
    assert table[4].split() == ["3", "Road", "32.96%", "29.46%", "32.19%", "468"]
    assert table[12].split() == ["11", "(ignored)", "3.95%", "1.70%", "3.46%"]
    assert table[-1] == "no problems found"


def test_problems_reported_not_raised(tmp_path):
    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for name, size in (("a", (4, 2)), ("b", (4, 2)), ("c", (3, 3))):
        Image.new("RGB", size).save(root / "images" / f"{name}.png")
    Image.fromarray(np.array([[0, 1, 1, 255], [1, 1, 1, 1]], np.uint8)).save(root / "masks" / "a.png")
    Image.fromarray(np.zeros((2, 5), np.uint8)).save(root / "masks" / "b.png")  # 5x2 for a 4x2 image
    ds = SegmentationDataset.from_folder(root, classes=("bg", "fg"))
    s = segmentation_stats(ds)
    assert s.num_samples == 3 and s.num_loaded == 1
    assert s.pixels_per_class["all"] == {"bg": 1, "fg": 6, IGNORED: 1}
    assert s.images_per_class == {"bg": 1, "fg": 1}
    assert [p.to_dict() for p in s.problems] == [
        {"item": str(root / "images" / "c.png"), "reason": "no mask: no file named c.* in the mask folder"},
        {"item": str(root / "masks" / "b.png"), "reason": "the mask is 5x2 but its image b.png is 4x2"},
    ]
    d = json.loads(json.dumps(s.to_dict()))
    assert d["type"] == "segmentation" and d["pixel_share"] == {"bg": round(1 / 7, 6), "fg": round(6 / 7, 6)}
    text = s.format_table()
    assert f"problems: 2\n  {root / 'images' / 'c.png'}: no mask" in text and text.endswith("2 problem(s) found")
