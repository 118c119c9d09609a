"""COCO instances <-> mask folders: exact round trip on coco128, components, categories, ignored pixels, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.data.segmentation import IGNORE_CATEGORY, SegmentationDataset
from visor.data.segmentation_convert import coco_to_masks, masks_to_coco
from visor.errors import InvalidInput, OutputConflict
from visor.types.segmentation import palette


def _masks(folder) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted((folder / "masks").glob("*.png"))}


def test_coco128_round_trip_is_exact(shared_data, tmp_path):
    src = shared_data("coco128") / "instances.json"
    first = coco_to_masks(src, tmp_path / "m1")
    assert (first.images, len(first.classes), first.problems) == (128, 81, [])
    assert (tmp_path / "m1" / "classes.txt").read_text().splitlines()[:3] == ["background", "person", "bicycle"]
    link = tmp_path / "m1" / "images" / "000000000009.jpg"
    assert link.is_symlink() and link.resolve() == (src.parent / "images" / "000000000009.jpg").resolve()
    png = Image.open(tmp_path / "m1" / "masks" / "000000000009.png")
    assert png.mode == "P" and png.getpalette()[:9] == palette(3)
    m1 = _masks(tmp_path / "m1")
    direct = SegmentationDataset.from_coco(src)
    assert np.array_equal(m1["000000000009.png"], direct.read_mask(0))

    ds = SegmentationDataset.from_folder(tmp_path / "m1")
    assert ds.classes == direct.classes and ds.problems == ()
    back = masks_to_coco(ds, tmp_path / "c")
    assert back.path == tmp_path / "c" / "instances.json" and back.images == 128
    doc = json.loads(back.path.read_text())
    assert len(doc["annotations"]) == back.annotations == 967
    assert doc["categories"][0] == {"id": 1, "name": "person", "supercategory": ""}
    assert doc["categories"][-1] == {"id": 81, "name": IGNORE_CATEGORY, "supercategory": ""}
    assert sum(a["iscrowd"] for a in doc["annotations"]) == 9  # one per image with crowd regions (10 in 9 images)
    coco_to_masks(back.path, tmp_path / "m2")
    m2 = _masks(tmp_path / "m2")
    assert list(m2) == list(m1) and all(np.array_equal(m1[k], m2[k]) for k in m1)
    assert (tmp_path / "m2" / "classes.txt").read_text() == (tmp_path / "m1" / "classes.txt").read_text()

    # polygons (outer contours through pixel centres) only approximate the masks: holes are filled
    poly = masks_to_coco(ds, tmp_path / "p" / "polygons.json", encoding="polygons")
    coco_to_masks(poly.path, tmp_path / "m3", images="none")
    m3 = _masks(tmp_path / "m3")
    agree = sum(int((m1[k] == m3[k]).sum()) for k in m1) / sum(m.size for m in m1.values())
    assert round(agree, 4) == 0.9943


def _write(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, np.uint8)).save(path)


def test_components_categories_and_ignored(tmp_path):
    root = tmp_path / "d"
    Image.new("RGB", (5, 3)).save((root / "images").mkdir(parents=True) or root / "images" / "a.png")
    mask = [[1, 1, 0, 2, 2],
            [0, 0, 0, 0, 255],
            [1, 0, 1, 1, 0]]  # class 1: three 8-connected regions, class 0: one
    _write(root / "masks" / "a.png", mask)
    ds = SegmentationDataset.from_folder(root, classes=("background", "cat", "dog"))
    result = masks_to_coco(ds, tmp_path / "out.json", images="none")
    doc = json.loads(result.path.read_text())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "cat"), (2, "dog"), (3, IGNORE_CATEGORY)]
    anns = [(a["category_id"], a["bbox"], a["area"], a["iscrowd"]) for a in doc["annotations"]]
    assert anns == [(1, [0.0, 0.0, 2.0, 1.0], 2.0, 0), (1, [0.0, 2.0, 1.0, 1.0], 1.0, 0),
                    (1, [2.0, 2.0, 2.0, 1.0], 2.0, 0), (2, [3.0, 0.0, 2.0, 1.0], 2.0, 0),
                    (3, [4.0, 1.0, 1.0, 1.0], 1.0, 1)]
    back = SegmentationDataset.from_coco(result.path, tmp_path / "d" / "images")
    assert back.classes == ("background", "cat", "dog")
    assert back.read_mask(0).tolist() == mask

    # class 0 is a class (not 'background'): every class written, ids = index + 1
    plain = SegmentationDataset.from_folder(root, classes=("sky", "road", "car"))
    doc = json.loads(masks_to_coco(plain, tmp_path / "plain.json", images="none").path.read_text())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "sky"), (2, "road"), (3, "car"),
                                                                 (4, IGNORE_CATEGORY)]
    assert [a["category_id"] for a in doc["annotations"]] == [1, 2, 2, 2, 3, 4]  # sky: one 8-connected region


def test_outputs_never_touch_inputs(tmp_path):
    src = tmp_path / "coco" / "instances.json"
    Image.new("RGB", (4, 4)).save((src.parent / "images").mkdir(parents=True) or src.parent / "images" / "a.png")
    src.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}],
        "categories": [{"id": 1, "name": "cat"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2], "iscrowd": 0,
                         "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}],
    }))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    with pytest.raises(OutputConflict, match="contains the input"):
        coco_to_masks(src, tmp_path)
    with pytest.raises(OutputConflict, match="is inside the input"):
        coco_to_masks(src, src.parent / "masks_out")
    with pytest.raises(OutputConflict, match="is inside the input"):
        coco_to_masks(src, src.parent / "images" / "masks_out")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("keep")
    with pytest.raises(InvalidInput, match="not empty; use --force"):
        coco_to_masks(src, tmp_path / "full")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == sorted(
        [*before, Path("full"), Path("full/x.txt")])  # nothing written by the refused conversions
    assert not (tmp_path / "full" / "masks").exists() and not (src.parent / "masks_out").exists()
    out = coco_to_masks(src, tmp_path / "masks")
    ds = SegmentationDataset.from_folder(out.path)
    with pytest.raises(OutputConflict, match="inside the input"):
        masks_to_coco(ds, out.path / "coco.json")
    with pytest.raises(OutputConflict, match="inside the input"):
        masks_to_coco(ds, out.path / "images")
    assert sorted(p.name for p in out.path.iterdir()) == ["classes.txt", "images", "masks"]
