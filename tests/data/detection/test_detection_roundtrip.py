"""Round trips on real data: coco128 COCO -> YOLO -> COCO and BCCD VOC -> COCO -> VOC lose nothing."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET

from visor.data import formats
from visor.data.formats import SIDECAR


def test_coco128_to_yolo_and_back(shared_data, tmp_path, assert_same_dataset):
    root = shared_data("coco128")
    coco = formats.load(root / "instances.json")
    yaml_path = formats.save(coco, tmp_path / "yolo", "yolo", images="symlink")
    assert yaml_path == tmp_path / "yolo" / "data.yaml"
    yolo = formats.load(yaml_path)
    assert yolo.problems == ()
    assert_same_dataset(coco, yolo)
    # the label files themselves are YOLO-seg polygons, one line per non-crowd annotation
    label = tmp_path / "yolo" / "labels" / "000000000009.txt"
    nine = next(im for im in coco if im.id == 9)
    assert len(label.read_text().splitlines()) == sum(not a.iscrowd for a in nine.annotations)

    back_path = formats.save(yolo, tmp_path / "coco", "coco", images="symlink")
    back = formats.load(back_path)
    assert back.problems == ()
    assert_same_dataset(coco, back)

    # and the JSON written matches the original JSON entry by entry
    raw = json.loads((root / "instances.json").read_text())
    new = json.loads(back_path.read_text())
    assert {i["id"]: (i["file_name"], i["width"], i["height"]) for i in raw["images"]} == {
        i["id"]: (i["file_name"], i["width"], i["height"]) for i in new["images"]}
    assert [(c["id"], c["name"]) for c in raw["categories"]] == [(c["id"], c["name"]) for c in new["categories"]]
    written = {a["id"]: a for a in new["annotations"]}
    assert sorted(written) == sorted(a["id"] for a in raw["annotations"])
    for a in raw["annotations"]:
        b = written[a["id"]]
        assert (b["image_id"], b["category_id"], b["iscrowd"], b["area"]) == (
            a["image_id"], a["category_id"], a["iscrowd"], a["area"])
        assert all(math.isclose(u, v, rel_tol=1e-6) for u, v in zip(a["bbox"], b["bbox"], strict=True)), a["id"]
        if a["iscrowd"]:
            assert b["segmentation"] == a["segmentation"]  # RLE verbatim
        else:
            assert [len(p) for p in b["segmentation"]] == [len(p) for p in a["segmentation"]]
            for p, q in zip(a["segmentation"], b["segmentation"], strict=True):
                assert all(math.isclose(u, v, rel_tol=1e-6) for u, v in zip(p, q, strict=True)), a["id"]


def test_coco128_polygons_survive_plain_yolo_seg(shared_data, tmp_path):
    """Without the sidecar, a standard YOLO-seg reader still gets every single-part polygon."""
    coco = formats.load(shared_data("coco128") / "instances.json")
    formats.save(coco, tmp_path / "yolo", "yolo", images="symlink")
    (tmp_path / "yolo" / SIDECAR).unlink()
    plain = formats.load(tmp_path / "yolo")
    assert plain.problems == ()
    by_name = {im.name: im for im in plain}
    checked = 0
    for im in coco:
        kept = [a for a in im.annotations if not a.iscrowd]
        got = by_name[im.name].annotations
        assert [a.class_id for a in kept] == [a.class_id for a in got]
        for a, b in zip(kept, got, strict=True):
            flat = [v for p in a.segmentation for v in p]
            assert len(b.segmentation) == 1 and len(b.segmentation[0]) == len(flat)
            assert all(math.isclose(u, v, rel_tol=1e-6) for u, v in zip(flat, b.segmentation[0], strict=True))
            checked += 1
    assert checked == 929


def test_bccd_voc_to_coco_and_back(shared_data, tmp_path, assert_same_dataset):
    root = shared_data("bccd")
    voc = formats.load(root)
    coco_path = formats.save(voc, tmp_path / "coco", "coco", images="symlink")
    coco = formats.load(coco_path)
    assert coco.problems == () and coco.splits == ("train", "val")
    assert coco.category_ids == (1, 2, 3)
    assert_same_dataset(voc, coco, ids=False)
    back_path = formats.save(coco, tmp_path / "voc", "voc", images="symlink")
    back = formats.load(back_path)
    assert back.problems == ()
    assert_same_dataset(voc, back)  # ids too: VOC has none, and none come back
    for split in ("train", "val"):
        assert (back_path / "ImageSets" / "Main" / f"{split}.txt").read_text().split() == sorted(
            (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split())
    # the XML values themselves are unchanged
    for xml in sorted((root / "Annotations").glob("*.xml"))[:40]:
        old, new = ET.parse(xml).getroot(), ET.parse(back_path / "Annotations" / xml.name).getroot()
        assert old.findtext("filename") == new.findtext("filename")
        assert [old.findtext(f"size/{k}") for k in ("width", "height")] == [
            new.findtext(f"size/{k}") for k in ("width", "height")]
        assert [[o.findtext(k) for k in ("name", "pose", "truncated", "difficult", "bndbox/xmin", "bndbox/ymin",
                                         "bndbox/xmax", "bndbox/ymax")] for o in old.iter("object")] == [
            [o.findtext(k) for k in ("name", "pose", "truncated", "difficult", "bndbox/xmin", "bndbox/ymin",
                                     "bndbox/xmax", "bndbox/ymax")] for o in new.iter("object")]


def test_bccd_voc_to_yolo_boxes_come_back_exactly(shared_data, tmp_path, assert_same_dataset):
    """Box lines: normalised values are rounded back to 1e-9 px, so integer VOC corners (0 and W too) are exact."""
    voc = formats.load(shared_data("bccd"))
    yolo = formats.load(formats.save(voc, tmp_path / "yolo", "yolo", images="symlink"))
    assert yolo.problems == () and yolo.splits == ("train", "val")
    assert_same_dataset(voc, yolo)
    boxes = {im.name: [a.xyxy for a in im.annotations] for im in yolo}
    assert {im.name: [a.xyxy for a in im.annotations] for im in voc} == boxes
    label = tmp_path / "yolo" / "labels" / "val" / "BloodImage_00000.txt"
    assert label.read_text().splitlines()[0] == "2 0.5859375 0.575 0.3625 0.4166666666666667"
