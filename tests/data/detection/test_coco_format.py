"""COCO JSON: reading coco128, malformed entries reported per item, writing with the same ids."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visor.data import BoxAnnotation, DetectionDataset, DetectionImage, formats
from visor.data.formats import coco_dict, from_coco, to_coco
from visor.errors import InvalidInput


def test_coco128_reads_every_image_box_and_category(shared_data):
    root = shared_data("coco128")
    raw = json.loads((root / "instances.json").read_text())
    ds = formats.load(root / "instances.json")
    assert ds.problems == ()
    assert len(ds) == 128 and ds.num_boxes == 939
    cats = sorted(raw["categories"], key=lambda c: c["id"])
    assert ds.classes == tuple(c["name"] for c in cats) and len(ds.classes) == 80
    assert ds.category_ids == tuple(c["id"] for c in cats) and ds.category_ids[-1] == 90
    assert ds.root == root
    first = ds.images[0]
    assert (first.id, first.name, first.width, first.height) == (9, "000000000009.jpg", 640, 480)
    assert first.path == root / "images" / "000000000009.jpg"
    # the annotation quoted in the brief: bbox [x, y, w, h] -> xyxy
    ann = next(a for im in ds for a in im.annotations if a.id == 1774)
    assert ann.xyxy == (61.87, 276.25, 61.87 + 296.42, 276.25 + 103.18)
    assert ds.classes[ann.class_id] == "dog" and ann.area == 18234.62355 and not ann.iscrowd
    assert len(ann.segmentation) == 1 and ann.segmentation[0][:2] == (321.02, 321.0)
    crowd = [a for im in ds for a in im.annotations if a.iscrowd]
    assert len(crowd) == 10 and all(a.rle is not None and not a.segmentation for a in crowd)
    raw_crowd = next(a for a in raw["annotations"] if a["iscrowd"])
    kept = next(a for a in crowd if a.id == raw_crowd["id"])
    assert kept.rle.to_dict() == raw_crowd["segmentation"]


def test_detections_view_of_the_ground_truth(shared_data):
    ds = formats.load(shared_data("coco128"))  # the folder: its instances.json
    i = next(k for k, im in enumerate(ds) if any(a.iscrowd for a in im.annotations))
    det = ds.detections(i)
    anns = ds.images[i].annotations
    assert len(det) == len(anns)
    np.testing.assert_allclose(det.xyxy, np.array([a.xyxy for a in anns], np.float32))
    assert det.confidence.tolist() == [1.0] * len(anns)
    assert det.class_id.tolist() == [a.class_id for a in anns]
    assert det.data["iscrowd"].tolist() == [a.iscrowd for a in anns]
    assert det.data["id"].tolist() == [a.id for a in anns]
    assert det.data["area"].tolist() == [a.area for a in anns]
    # no COCO area: the box area; no id: -1
    plain = DetectionDataset((DetectionImage("x.jpg", 10, 10, (BoxAnnotation((1, 2, 4, 6), 0),)),), ("a",))
    assert plain.detections(0).data["area"].tolist() == [12.0] and plain.detections(0).data["id"].tolist() == [-1]


def _write(path: Path, obj) -> Path:
    path.write_text(json.dumps(obj))
    return path


def test_malformed_annotations_are_reported_and_valid_ones_kept(tmp_path, make_image):
    make_image(tmp_path / "images" / "a.jpg", 100, 50)
    doc = {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 100, "height": 50},
            {"id": 2, "file_name": "missing.jpg", "width": 30, "height": 30},
            {"id": 3, "file_name": "b.jpg", "width": 0, "height": 30},
        ],
        "categories": [{"id": 5, "name": "cat"}, {"id": 7, "name": "dog"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 5, "bbox": [10, 10, 20, 20], "iscrowd": 0, "area": 400},
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [90, 40, 20, 20], "iscrowd": 0},
            {"id": 12, "image_id": 1, "category_id": 5, "bbox": [10, 10, 0, 20], "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 99, "bbox": [10, 10, 5, 5], "iscrowd": 0},
            {"id": 14, "image_id": 42, "category_id": 5, "bbox": [10, 10, 5, 5], "iscrowd": 0},
            {"id": 15, "image_id": 1, "category_id": 5, "bbox": [10, "x", 5, 5], "iscrowd": 0},
            {"id": 16, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5], "segmentation": [[1, 1, 2, 2]]},
            {"id": 17, "image_id": 2, "category_id": 7, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 10, "image_id": 2, "category_id": 7, "bbox": [2, 2, 5, 5], "iscrowd": 0},
        ],
    }
    ds = from_coco(_write(tmp_path / "instances.json", doc))
    reasons = {p.item.rsplit(" ", 3)[-1] if "annotation id" in p.item else p.item: p.reason for p in ds.problems}
    assert "extends outside the 100x50 image; kept as it is" in reasons["11"]
    assert "non-positive size" in reasons["12"]
    assert "unknown category id 99" in reasons["13"] and "known: 5, 7" in reasons["13"]
    assert "image id 42" in reasons["14"] and "not among the images" in reasons["14"]
    assert "'bbox' must be 4 finite numbers" in reasons["15"]
    assert "polygon 0 must be an even number (at least 6)" in reasons["16"] and "box kept" in reasons["16"]
    assert "used twice" in reasons["10"]
    missing = str(tmp_path / "images" / "missing.jpg")
    assert reasons[missing] == "image file not found (image id 2); its annotations are kept"
    assert any("positive integer 'width' and 'height'" in p.reason for p in ds.problems)
    assert len(ds.problems) == 9
    # the valid items are there: image 1 (ids 10, 11 outside but kept, 16 without its polygon), image 2 (17)
    assert [im.id for im in ds] == [1, 2]
    assert [a.id for a in ds.images[0].annotations] == [10, 11, 16]
    assert ds.images[0].annotations[1].xyxy == (90.0, 40.0, 110.0, 60.0)  # as it is, not clipped
    assert ds.images[0].annotations[2].segmentation == ()
    assert [a.id for a in ds.images[1].annotations] == [17]
    assert ds.classes == ("cat", "dog") and ds.category_ids == (5, 7)


@pytest.mark.parametrize(("text", "message"), [
    ("{not json", "is not valid JSON"),
    ("[1, 2]", "a COCO file is a JSON object"),
    ('{"images": []}', "needs an 'categories' list"),
])
def test_unusable_files_raise(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InvalidInput, match=message):
        from_coco(path)
    with pytest.raises(InvalidInput, match="no such COCO annotation file"):
        from_coco(tmp_path / "absent.json")


def test_written_coco_loads_in_pycocotools_with_the_same_ids(shared_data, tmp_path, capsys):
    from pycocotools.coco import COCO

    src = formats.load(shared_data("coco128") / "instances.json")
    path = to_coco(src, tmp_path / "out.json", images="none")
    assert path == tmp_path / "out.json" and not (tmp_path / "images").exists()
    api = COCO(str(path))
    raw = json.loads((shared_data("coco128") / "instances.json").read_text())
    assert sorted(api.getImgIds()) == sorted(i["id"] for i in raw["images"])
    assert sorted(api.getAnnIds()) == sorted(a["id"] for a in raw["annotations"])
    assert sorted(api.getCatIds()) == sorted(c["id"] for c in raw["categories"])
    for a in raw["annotations"][:50]:
        b = api.anns[a["id"]]
        assert (b["image_id"], b["category_id"], b["iscrowd"], b["area"]) == (
            a["image_id"], a["category_id"], a["iscrowd"], a["area"])
        np.testing.assert_allclose(b["bbox"], a["bbox"], rtol=1e-9)
        assert b["segmentation"] == a["segmentation"]
    capsys.readouterr()


def test_missing_ids_are_filled_uniquely_across_split_files(tmp_path, make_image):
    images = tuple(
        DetectionImage(make_image(tmp_path / "src" / f"{n}.png", 20, 10), 20, 10,
                       (BoxAnnotation((1, 1, 5, 5), 0), BoxAnnotation((2, 2, 8, 8), 1)), split=split)
        for n, split in (("a", "train"), ("b", "val"), ("c", "val"))
    )
    ds = DetectionDataset(images, ("x", "y"))
    out = to_coco(ds, tmp_path / "out")
    assert out == tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["images", "instances_train.json", "instances_val.json"]
    assert sorted(p.name for p in (out / "images").iterdir()) == ["a.png", "b.png", "c.png"]
    back = formats.load(out)
    assert back.problems == () and back.splits == ("train", "val")
    assert sorted(im.id for im in back) == [1, 2, 3]
    assert sorted(a.id for im in back for a in im.annotations) == [1, 2, 3, 4, 5, 6]
    assert back.category_ids == (1, 2)
    assert formats.load(out, split="val").splits == ("val",)
    doc = coco_dict(ds)
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "x"), (2, "y")]
    assert doc["annotations"][0]["bbox"] == [1.0, 1.0, 4.0, 4.0] and doc["annotations"][0]["area"] == 16.0


def test_split_from_file_name_and_argument(tmp_path, make_image):
    make_image(tmp_path / "a.jpg", 8, 8)
    doc = {"images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 8}], "categories": [{"id": 1, "name": "c"}]}
    assert from_coco(_write(tmp_path / "instances_val.json", doc)).splits == ("val",)
    assert from_coco(_write(tmp_path / "plain.json", doc), split="test").splits == ("test",)
    assert from_coco(tmp_path / "plain.json").images[0].split is None
    assert from_coco(tmp_path / "plain.json").images[0].path == tmp_path / "a.jpg"  # no images/: the JSON's folder


def test_a_deeply_nested_coco_file_is_a_typed_error(tmp_path):
    from visor.errors import InvalidInput

    path = tmp_path / "instances.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidInput, match="nests arrays or objects too deeply"):
        from_coco(path)
