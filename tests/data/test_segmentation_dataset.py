"""Mask datasets: layouts, classes, loading (ignore index, downscaling), bad items per item, COCO rasterised."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from visor.data.segmentation import (
    CAMVID_CLASSES,
    IGNORE_CATEGORY,
    MaskSample,
    Problem,
    SegmentationDataset,
    is_mask_data,
    read_mask,
)
from visor.errors import ConfigError, InvalidInput


def _image(path, w, h, value=(90, 120, 150)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (w, h), value).save(path)
    return path


def _mask(path, array, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(np.asarray(array, dtype=np.uint8), mode)
    if mode == "P":
        img.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [7] * (3 * 253))
    img.save(path)
    return path


# --------------------------------------------------------------------------- real data


def test_camvid(shared_data):
    root = shared_data("camvid")
    ds = SegmentationDataset.from_folder(root, classes=CAMVID_CLASSES, ignore_index=11)
    assert len(ds) == 468 and ds.splits == ("train", "val") and ds.problems == ()
    assert (len(ds.subset("train")), len(ds.subset("val"))) == (367, 101)
    assert ds.classes == CAMVID_CLASSES and len(CAMVID_CLASSES) == 11 and ds.ignore_index == 11
    assert ds.samples[0] == MaskSample(root / "train" / "0001TP_006690.jpg", root / "trainannot" / "0001TP_006690.png",
                                       "train", "0001TP_006690")
    image, mask = ds.load(0)
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8 and mask.shape == (360, 480)
    raw = np.asarray(Image.open(ds.samples[0].mask))
    # void (11 on disk) comes back as 255; every other value unchanged
    assert int((mask == 255).sum()) == int((raw == 11).sum()) == 7980
    assert np.array_equal(mask[raw != 11], raw[raw != 11])
    assert np.bincount(mask[mask != 255], minlength=11).tolist() == [
        23726, 64726, 1904, 16139, 11897, 2303, 2543, 0, 40851, 731, 0]
    # max_side: both halved together; the mask by nearest neighbour (exactly every other pixel at 2x)
    small_image, small = ds.load(0, max_side=240)
    assert small_image.shape == (180, 240, 3) and small.shape == (180, 240)
    assert np.array_equal(small, mask[1::2, 1::2])
    assert ds.subset("val").samples[0].image.name == "0016E5_07959.jpg"


def test_camvid_without_classes_finds_twelve_values(shared_data):
    ds = SegmentationDataset.from_folder(shared_data("camvid"))
    assert ds.classes == tuple(f"class_{i}" for i in range(12)) and ds.ignore_index == 255 and not ds.binary


def test_membrane_binary(shared_data):
    ds = SegmentationDataset.from_folder(shared_data("membrane"))
    assert len(ds) == 30 and ds.splits == ("train",) and ds.binary and ds.problems == ()
    assert ds.classes == ("background", "foreground")
    items, problems = ds.load_all()
    assert problems == [] and [i for i, _, _ in items] == list(range(30))
    assert items[0][1].shape == (512, 512, 3)
    assert sum(int((m == 1).sum()) for _, _, m in items) == 6137070  # 78.0% of 30 x 512 x 512: 255 on disk
    assert all(set(np.unique(m).tolist()) == {0, 1} for _, _, m in items)
    named = SegmentationDataset.from_folder(shared_data("membrane"), classes=("membrane", "cell"))
    assert named.binary and named.classes == ("membrane", "cell")
    assert np.array_equal(named.load(0)[1], items[0][2])


# --------------------------------------------------------------------------- bad items


@pytest.fixture
def messy(tmp_path):
    """images/ + masks/ with one good pair and one of each kind of bad item."""
    root = tmp_path / "messy"
    good = np.array([[0, 1, 2, 2], [0, 255, 1, 0], [2, 2, 2, 2]])
    _image(root / "images" / "a_good.png", 4, 3)
    _mask(root / "masks" / "a_good.png", good)
    _image(root / "images" / "b_size.png", 4, 3)
    _mask(root / "masks" / "b_size.png", np.zeros((3, 5)))
    _image(root / "images" / "c_values.png", 4, 3)
    _mask(root / "masks" / "c_values.png", [[0, 5, 9, 9], [0, 0, 0, 0], [1, 1, 1, 7]])
    _image(root / "images" / "d_missing.jpg", 4, 3)
    (root / "images" / "e_broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    _mask(root / "masks" / "e_broken.png", np.zeros((3, 4)))
    _mask(root / "masks" / "f_orphan.png", np.zeros((3, 4)))
    (root / "classes.txt").write_text("sky\nroad\ncar\n")
    return root


def test_bad_items_reported_each_with_its_reason(messy):
    ds = SegmentationDataset.from_folder(messy)
    assert ds.classes == ("sky", "road", "car") and ds.ignore_index == 255
    assert [s.stem for s in ds.samples] == ["a_good", "b_size", "c_values", "d_missing", "e_broken"]
    assert ds.samples[3].mask is None
    assert ds.problems == (
        Problem(str(messy / "images" / "d_missing.jpg"), "no mask: no file named d_missing.* in the mask folder"),
        Problem(str(messy / "masks" / "f_orphan.png"),
                f"a mask without an image: no image named f_orphan.* in {messy / 'images'}"),
    )
    items, problems = ds.load_all()
    assert [i for i, _, _ in items] == [0]
    assert items[0][2].tolist() == [[0, 1, 2, 2], [0, 255, 1, 0], [2, 2, 2, 2]]
    assert [p.item for p in problems] == [str(messy / "masks" / "b_size.png"), str(messy / "masks" / "c_values.png"),
                                          str(messy / "images" / "d_missing.jpg"),
                                          str(messy / "images" / "e_broken.jpg")]
    reasons = [p.reason for p in problems]
    assert reasons[0] == "the mask is 5x3 but its image b_size.png is 4x3"
    assert reasons[1] == "mask values 5, 7, 9 are outside the 3 classes (0..2) and not the ignore index 255"
    assert reasons[2] == "no mask: no file named d_missing.* in the mask folder"
    assert reasons[3].startswith("unreadable image: ")
    assert problems[2] in ds.problems  # the same Problem twice: dict.fromkeys(...) lists it once
    assert problems[0].path == messy / "masks" / "b_size.png"
    with pytest.raises(InvalidInput, match="outside the 3 classes"):
        ds.load(2)


def test_mask_modes(tmp_path):
    root = tmp_path / "d"
    values = np.array([[0, 1], [2, 1]])
    _image(root / "images" / "p.jpg", 2, 2)
    _mask(root / "masks" / "p.png", values, mode="P")  # a palette PNG: its indices, never its colours
    _image(root / "images" / "g.jpg", 2, 2)
    Image.fromarray(np.repeat(values[..., None], 3, axis=2).astype(np.uint8), "RGB").save(root / "masks" / "g.png")
    _image(root / "images" / "c.jpg", 2, 2)
    Image.new("RGB", (2, 2), (128, 64, 0)).save(root / "masks" / "c.png")
    _image(root / "images" / "w.jpg", 2, 2)
    Image.fromarray(values.astype(np.uint16) * 1000).save(root / "masks" / "w.png")  # 16-bit
    assert read_mask(root / "masks" / "p.png").tolist() == [[0, 1], [2, 1]]
    assert read_mask(root / "masks" / "w.png").dtype == np.uint16
    ds = SegmentationDataset.from_folder(root, classes=("a", "b", "c"))
    items, problems = ds.load_all()
    by_stem = {ds.samples[i].stem: m.tolist() for i, _, m in items}
    assert by_stem == {"g": [[0, 1], [2, 1]], "p": [[0, 1], [2, 1]]}
    assert {p.item.rsplit("/", 1)[1]: p.reason for p in problems} == {
        "c.png": "a colour (RGB) mask; masks must be index images (mode L or P) whose values are class ids",
        "w.png": "mask values 1000, 2000 are outside the 3 classes (0..2) and not the ignore index 255",
    }


def test_layouts_and_classes_files(tmp_path):
    split = tmp_path / "split"
    for s in ("train", "val"):
        _image(split / "images" / s / f"{s}1.png", 3, 2)
        _mask(split / "labels" / s / f"{s}1.png", [[0, 1, 3], [3, 3, 3]])
    (split / "classes.json").write_text(json.dumps({"0": "bg", "1": "cat", "2": "dog", "3": "eel"}))
    ds = SegmentationDataset.from_folder(split)
    assert ds.splits == ("train", "val") and ds.classes == ("bg", "cat", "dog", "eel")
    assert [(s.split, s.stem) for s in ds.samples] == [("train", "train1"), ("val", "val1")]
    assert ds.samples[1].mask == split / "labels" / "val" / "val1.png"

    isbi = tmp_path / "isbi"
    _image(isbi / "test" / "image" / "0.png", 2, 2)
    _mask(isbi / "test" / "label" / "0.png", [[0, 1], [1, 1]])
    _image(isbi / "train" / "image" / "0.png", 2, 2)
    _mask(isbi / "train" / "label" / "0.png", [[0, 4], [4, 0]])
    ds = SegmentationDataset.from_folder(isbi)
    assert ds.splits == ("train", "test") and ds.classes == ("class_0", "class_1", "class_2", "class_3", "class_4")
    assert SegmentationDataset.from_folder(isbi, classes=["a", "b", "c", "d", "e"]).classes[4] == "e"
    with pytest.raises(ConfigError, match="ignore_index 1 is the id of class 'b'"):
        SegmentationDataset.from_folder(isbi, classes=["a", "b"], ignore_index=1)

    assert is_mask_data(split) and is_mask_data(isbi)
    coco_like = tmp_path / "coco_like"  # images/ + annotations/*.json is COCO, not masks
    _image(coco_like / "images" / "a.jpg", 2, 2)
    (coco_like / "annotations").mkdir()
    (coco_like / "annotations" / "instances.json").write_text("{}")
    assert not is_mask_data(coco_like)
    with pytest.raises(InvalidInput, match="is not a mask dataset"):
        SegmentationDataset.from_folder(coco_like)


def test_subset_keeps_its_split_problems(tmp_path):
    root = tmp_path / "r"
    _image(root / "train" / "a.png", 2, 2)
    _image(root / "val" / "b.png", 2, 2)
    _mask(root / "trainannot" / "a.png", [[0, 1], [1, 0]])
    _mask(root / "valannot" / "c.png", [[0, 1], [1, 0]])
    ds = SegmentationDataset.from_folder(root, classes=("x", "y"))
    assert len(ds.problems) == 2
    assert ds.subset("train").problems == ()
    val = ds.subset("val").problems
    assert [p.item for p in val] == [str(root / "val" / "b.png"), str(root / "valannot" / "c.png")]


# --------------------------------------------------------------------------- COCO


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_coco_rasterised_like_pycocotools(shared_data):
    """Every pixel of the 128 masks equals pycocotools' annToMask painted in the same order."""
    import contextlib
    import io

    coco_mod = pytest.importorskip("pycocotools.coco")
    path = shared_data("coco128") / "instances.json"
    ds = SegmentationDataset.from_coco(path)
    assert len(ds) == 128 and len(ds.classes) == 81 and ds.classes[:2] == ("background", "person")
    with contextlib.redirect_stdout(io.StringIO()):
        coco = coco_mod.COCO(str(path))
    value = {cid: k + 1 for k, cid in enumerate(sorted(c["id"] for c in coco.dataset["categories"]))}
    index = {s.image.name: i for i, s in enumerate(ds.samples)}
    crowd_pixels = 0
    for img in coco.dataset["images"]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"], iscrowd=None))
        ref = np.zeros((img["height"], img["width"]), np.uint8)
        for a in anns:
            if a["iscrowd"]:
                ref[coco.annToMask(a) > 0] = 255
        objects = [(coco.annToMask(a) > 0, a) for a in anns if not a["iscrowd"]]
        for m, a in sorted(objects, key=lambda t: -int(t[0].sum())):  # stable: ties keep the file's order
            ref[m] = value[a["category_id"]]
        mask = ds.read_mask(index[img["file_name"]])
        assert np.array_equal(mask, ref), img["file_name"]
        crowd_pixels += int((mask == 255).sum())
    assert crowd_pixels > 0


def test_coco_overlap_crowd_and_box_only(tmp_path):
    _image(tmp_path / "images" / "a.png", 10, 7)
    square = [0, 0, 6, 0, 6, 6, 0, 6]
    doc = {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 7}],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 9, "name": IGNORE_CATEGORY}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 2, 2], "iscrowd": 0,
             "segmentation": [[2, 2, 4, 2, 4, 4, 2, 4]]},  # small dog, listed first, painted last
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [0, 0, 6, 6], "iscrowd": 0, "segmentation": [square]},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [6, 0, 4, 6], "iscrowd": 1,
             "segmentation": {"size": [7, 10], "counts": [42, 28]}},  # columns 6..9: crowd
            {"id": 4, "image_id": 1, "category_id": 3, "bbox": [8, 0, 1, 1], "iscrowd": 0},  # box only
            {"id": 5, "image_id": 1, "category_id": 9, "bbox": [0, 6, 1, 1], "iscrowd": 0,
             "segmentation": [[0, 6, 1, 6, 1, 7, 0, 7]]},  # the 'ignore' category: ignored
        ],
    }
    (tmp_path / "instances.json").write_text(json.dumps(doc))
    ds = SegmentationDataset.from_coco(tmp_path / "instances.json")
    assert ds.classes == ("background", "dog", "cat")  # category id order: 3, 7
    assert ds.problems == (Problem(str(tmp_path / "images" / "a.png"),
                                   "annotation id 4 has a box only (no polygon or RLE); left out of the mask"),)
    image, mask = ds.load(0)
    assert image.shape == (7, 10, 3)
    assert mask.tolist() == [
        [2, 2, 2, 2, 2, 2, 255, 255, 255, 255],
        [2, 2, 2, 2, 2, 2, 255, 255, 255, 255],
        [2, 2, 1, 1, 2, 2, 255, 255, 255, 255],
        [2, 2, 1, 1, 2, 2, 255, 255, 255, 255],
        [2, 2, 2, 2, 2, 2, 255, 255, 255, 255],
        [2, 2, 2, 2, 2, 2, 255, 255, 255, 255],
        [255, 0, 0, 0, 0, 0, 255, 255, 255, 255],
    ]
