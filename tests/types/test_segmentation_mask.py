"""SegmentationMask: construction checks, areas, JSON through COCO RLE (exact), the overlay and the palette PNG.

Real masks: coco128 images with their polygons rasterised by pycocotools (the test-only reference) into one
class index per pixel (COCO category order, 0 = background, crowd regions = the ignore index 255).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visor.errors import InvalidInput
from visor.ops import rle
from visor.types import RESULT_TYPES, SegmentationMask, result_from_dict
from visor.types.segmentation import palette

pytest.importorskip("pycocotools")
from pycocotools import mask as coco_mask

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pycocotools under numpy 2


@pytest.fixture(scope="module")
def coco128(shared_data) -> tuple[Path, dict]:
    root = Path(shared_data("coco128"))
    return root, json.loads((root / "instances.json").read_text())


def coco_labels(coco128, image_id: int) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(RGB image, label map, class names) of one coco128 image: larger objects painted first."""
    root, doc = coco128
    info = next(im for im in doc["images"] if im["id"] == image_id)
    h, w = info["height"], info["width"]
    cats = sorted(doc["categories"], key=lambda c: c["id"])
    index = {c["id"]: i + 1 for i, c in enumerate(cats)}
    labels = np.zeros((h, w), np.uint8)
    anns = sorted((a for a in doc["annotations"] if a["image_id"] == image_id), key=lambda a: -a["area"])
    for a in anns:
        seg = a["segmentation"]
        r = coco_mask.merge(coco_mask.frPyObjects(seg, h, w)) if isinstance(seg, list) else \
            coco_mask.frPyObjects(seg, h, w)
        labels[coco_mask.decode(r).astype(bool)] = 255 if a["iscrowd"] else index[a["category_id"]]
    image = np.asarray(Image.open(root / "images" / info["file_name"]).convert("RGB"))
    return image, labels, ("background", *(c["name"] for c in cats))


@pytest.fixture(scope="module")
def street(coco128):
    """coco128 image 127: 11 categories, no crowd."""
    return coco_labels(coco128, 127)


@pytest.fixture(scope="module")
def crowd(coco128):
    """coco128 image 257: with a crowd region (ignore index 255)."""
    return coco_labels(coco128, 257)


# --------------------------------------------------------------------------- the palette


def test_voc_palette():
    p = palette(256)
    assert len(p) == 768 and palette(21) == p[:63]
    assert p[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    colours = np.array(p).reshape(256, 3)
    assert colours[15].tolist() == [192, 128, 128]  # VOC person
    assert colours[255].tolist() == [224, 224, 192]  # VOC void (the ignore index)
    assert len({tuple(c) for c in colours}) == 256


# --------------------------------------------------------------------------- construction and access


def test_areas_classes_and_binary(street):
    _, labels, names = street
    seg = SegmentationMask(labels, names, model="m")
    assert seg.mask.dtype == np.uint8 and (seg.height, seg.width) == labels.shape == (481, 640)
    counts = np.bincount(labels.ravel(), minlength=len(names))
    present = tuple(int(i) for i in np.flatnonzero(counts))
    assert seg.class_ids_present == present and len(present) == 12  # background + 11 categories
    assert seg.areas == {names[i]: int(counts[i]) for i in present}
    assert sum(seg.areas.values()) == 481 * 640
    person = names.index("person")
    np.testing.assert_array_equal(seg.binary("person"), labels == person)
    np.testing.assert_array_equal(seg.binary(person), labels == person)
    with pytest.raises(ValueError, match="unknown class 'unicorn'"):
        seg.binary("unicorn")
    with pytest.raises(ValueError, match="outside the 81 classes"):
        seg.binary(81)


def test_ignore_pixels_are_no_class(crowd):
    _, labels, names = crowd
    assert (labels == 255).any()
    seg = SegmentationMask(labels, names, ignore_index=255)
    assert 255 not in seg.class_ids_present and sum(seg.areas.values()) == int((labels != 255).sum())
    np.testing.assert_array_equal(seg.binary(255), labels == 255)
    with pytest.raises(ValueError, match="mask values 255 are outside the 81 classes"):
        SegmentationMask(labels, names)


@pytest.mark.parametrize(("make", "message"), [
    (lambda: SegmentationMask(np.zeros((2, 2), np.uint8), []), "non-empty sequence"),
    (lambda: SegmentationMask(np.zeros((2, 2), np.uint8), ["a", "a"]), "distinct; repeated: a"),
    (lambda: SegmentationMask(np.zeros((2, 2, 1), np.uint8), ["a"]), "2-D"),
    (lambda: SegmentationMask(np.zeros((0, 2), np.uint8), ["a"]), "non-empty 2-D"),
    (lambda: SegmentationMask(np.zeros((2, 2), np.float32), ["a"]), "integer class indices"),
    (lambda: SegmentationMask(np.array([[0, 3], [7, -1]]), ["a", "b"]), "mask values -1, 3, 7 are outside"),
    (lambda: SegmentationMask(np.array([[0, 3]]), ["a", "b"], ignore_index=3, confidence=np.ones((2, 2))),
     r"confidence has shape \(2, 2\)"),
    (lambda: SegmentationMask(np.zeros((1, 1), np.uint8), ["a", "b"], ignore_index=1), "ignore_index 1 must be"),
    (lambda: SegmentationMask(np.zeros((1, 1), np.uint8), ["a"], ignore_index=True), "must be an integer"),
])
def test_inconsistent_values_are_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_storage_type_and_confidence():
    many = [f"c{i}" for i in range(300)]
    wide = SegmentationMask(np.array([[299, 0]]), many)
    assert wide.mask.dtype == np.uint16
    assert SegmentationMask(np.array([[1, 0]]), ["a", "b"], ignore_index=300).mask.dtype == np.uint16
    small = SegmentationMask(np.array([[True, False]]), ["bg", "fg"], confidence=[[0.5, 0.25]])
    assert small.mask.dtype == np.uint8 and small.mask.tolist() == [[1, 0]]
    assert small.confidence.dtype == np.float32 and small.confidence.tolist() == [[0.5, 0.25]]
    assert small != SegmentationMask(np.array([[1, 0]]), ["bg", "fg"])  # confidence takes part in equality


# --------------------------------------------------------------------------- JSON


def test_json_is_one_coco_rle_per_value_and_round_trips_exactly(crowd):
    _, labels, names = crowd
    seg = SegmentationMask(labels, names, ignore_index=255, model="deeplabv3_voc")
    d = json.loads(seg.to_json())
    assert list(d) == ["type", "model", "width", "height", "class_names", "ignore_index", "segments"]
    assert (d["type"], d["model"], d["width"], d["height"], d["ignore_index"]) == (
        "segmentation", "deeplabv3_voc", labels.shape[1], labels.shape[0], 255)
    values = np.unique(labels).tolist()
    assert [s["class_id"] for s in d["segments"]] == values and values[-1] == 255
    for s in d["segments"]:
        binary = labels == s["class_id"]
        ref = coco_mask.encode(np.asfortranarray(binary.astype(np.uint8)))
        assert s["rle"] == {"size": list(labels.shape), "counts": ref["counts"].decode("ascii")}
        assert s["area"] == int(binary.sum())
        assert s["label"] == ("ignore" if s["class_id"] == 255 else names[s["class_id"]])
    back = SegmentationMask.from_dict(d)
    assert back == seg and back.mask.dtype == np.uint8
    assert result_from_dict(d) == seg and RESULT_TYPES["segmentation"] is SegmentationMask
    assert SegmentationMask.from_json(seg.to_json()).to_dict() == d
    assert back != SegmentationMask(labels, names, ignore_index=255, model="other")


def test_confidence_is_not_in_json():
    seg = SegmentationMask(np.array([[1, 0], [2, 2]]), ["a", "b", "c"], confidence=np.full((2, 2), 0.5))
    d = seg.to_dict()
    assert "confidence" not in d and d["ignore_index"] is None
    back = SegmentationMask.from_dict(d)
    assert back.confidence is None and np.array_equal(back.mask, seg.mask)
    # column-major pixels 1, 2, 0, 2: class 0 runs 2, 1, 1; class 1 runs 0, 1, 3; class 2 runs 1, 1, 1, 1 (the
    # fourth written as 1 - 1 = 0)
    assert d["segments"] == [
        {"class_id": 0, "label": "a", "area": 1, "rle": {"size": [2, 2], "counts": "211"}},
        {"class_id": 1, "label": "b", "area": 1, "rle": {"size": [2, 2], "counts": "013"}},
        {"class_id": 2, "label": "c", "area": 2, "rle": {"size": [2, 2], "counts": "1110"}},
    ]


def _doc(**changes):
    base = SegmentationMask(np.array([[1, 0], [2, 2]]), ["a", "b", "c"]).to_dict()
    return {**base, **changes}


@pytest.mark.parametrize(("doc", "message"), [
    (_doc(width=0), "must be positive"),
    (_doc(height=-2), "must be positive"),
    (_doc(width=True), "must be integers"),
    (_doc(width=20_000, height=10_000), "more than the limit of 100000000"),
    (_doc(class_names=[]), "non-empty list of strings"),
    (_doc(class_names=["a", 1]), "non-empty list of strings"),
    (_doc(ignore_index="255"), "ignore_index must be an integer"),
    (_doc(ignore_index=1), "ignore_index 1 must be a value no class uses"),
    (_doc(ignore_index=70_000), "ignore_index 70000 must be"),
    (_doc(class_names=["a", "a", "c"]), "distinct"),
    (_doc(segments={"a": 1}), "segments must be a list"),
    (_doc(segments=[{"class_id": 0, "rle": {"size": [2, 2], "counts": "14"}}]), "add up to 5 pixels"),
    (_doc(segments=[{"class_id": 0, "rle": {"size": [2, 2], "counts": [0, 4]}}] * 2),
     "more than one segment"),
    (_doc(segments=[{"class_id": 3, "rle": {"size": [2, 2], "counts": [0, 4]}}]), "class_id 3, not one of"),
    (_doc(segments=[{"class_id": 0, "rle": {"size": [4, 1], "counts": [0, 4]}}]), "RLE of size"),
    (_doc(segments=[{"class_id": 0, "rle": {"size": [2, 2], "counts": [1, 3]}}]), "cover every pixel"),
    (_doc(segments=[{"class_id": 0, "rle": {"size": [2, 2], "counts": [0, 4]}},
                    {"class_id": 1, "rle": {"size": [2, 2], "counts": [3, 1]}}]), "cover every pixel"),
    (_doc(segments=[{"class_id": i % 3, "rle": {"size": [2, 2], "counts": [4]}} for i in range(5)]),
     "5 segments for 3 classes"),
    (_doc(segments=[{"class_id": 0}]), "'size' and 'counts'"),
    (_doc(type="detections"), "not a segmentation object"),
])
def test_malformed_documents_are_invalid_input(doc, message):
    with pytest.raises(InvalidInput, match=message):
        SegmentationMask.from_dict(doc)


def test_uncompressed_counts_are_read_and_size_cap_is_configurable():
    doc = _doc(segments=[{"class_id": 0, "rle": {"size": [2, 2], "counts": [0, 1, 2, 1]}},
                         {"class_id": 2, "rle": {"size": [2, 2], "counts": [1, 2, 1]}}])
    assert SegmentationMask.from_dict(doc).mask.tolist() == [[0, 2], [2, 0]]
    with pytest.raises(InvalidInput, match="limit of 3"):
        SegmentationMask.from_dict(doc, max_pixels=3)


# --------------------------------------------------------------------------- drawing


def test_overlay_of_background_only_is_the_image(street):
    image, labels, names = street
    seg = SegmentationMask(np.zeros_like(labels), names)
    out = seg.overlay(Image.fromarray(image))
    assert out.mode == "RGB" and out.size == (640, 481)
    np.testing.assert_array_equal(np.asarray(out), image)


def test_overlay_blends_the_voc_colours(crowd):
    image, labels, names = crowd
    seg = SegmentationMask(labels, names, ignore_index=255)
    out = np.asarray(seg.overlay(image, alpha=0.4)).astype(np.int64)
    untouched = (labels == 0) | (labels == 255)
    np.testing.assert_array_equal(out[untouched], image[untouched])
    colours = np.array(palette(256)).reshape(256, 3)
    drawn = ~untouched
    expected = np.rint(image[drawn] * 0.6 + colours[labels[drawn]] * 0.4)
    np.testing.assert_array_equal(out[drawn], expected)
    assert drawn.sum() > 10_000
    full = np.asarray(seg.overlay(image, alpha=1.0))
    np.testing.assert_array_equal(full[drawn], colours[labels[drawn]])
    with pytest.raises(ValueError, match="image is 3x2"):
        seg.overlay(np.zeros((2, 3, 3), np.uint8))
    with pytest.raises(ValueError, match="alpha"):
        seg.overlay(image, alpha=1.5)


def test_palette_png_reads_back_as_the_same_indices(crowd, tmp_path):
    _, labels, names = crowd
    seg = SegmentationMask(labels, names, ignore_index=255)
    path = seg.save_png(tmp_path / "masks" / "257.png")
    assert path.read_bytes() == seg.to_png_bytes()
    with Image.open(path) as img:
        assert img.mode == "P" and img.size == (labels.shape[1], labels.shape[0])
        np.testing.assert_array_equal(np.asarray(img), labels)
        assert img.getpalette()[:768] == palette(256)
    assert [p.name for p in path.parent.iterdir()] == ["257.png"]  # written atomically, nothing left behind


def test_sixteen_bit_png_for_many_classes(tmp_path):
    names = [f"c{i}" for i in range(1000)]
    mask = np.arange(12, dtype=np.int64).reshape(3, 4) * 83
    seg = SegmentationMask(mask, names)
    with Image.open(seg.save_png(tmp_path / "wide.png")) as img:
        np.testing.assert_array_equal(np.asarray(img).astype(np.int64), mask)


def test_a_large_mask_stays_fast():
    """4000x3000: no per-pixel Python anywhere (a Python loop over 12 million pixels alone takes seconds)."""
    rng = np.random.default_rng(0)
    labels = np.kron(rng.integers(0, 21, (30, 40)), np.ones((100, 100), np.int64)).astype(np.uint8)
    yy, xx = np.ogrid[:3000, :4000]
    labels[(yy - 1500) ** 2 + (xx - 2000) ** 2 < 800 ** 2] = 15
    image = rng.integers(0, 256, (3000, 4000, 3), dtype=np.uint8)
    start = time.perf_counter()
    seg = SegmentationMask(labels, [f"c{i}" for i in range(21)], ignore_index=255)
    back = SegmentationMask.from_dict(json.loads(seg.to_json()))
    areas = seg.areas
    overlay = seg.overlay(image)
    png = seg.to_png_bytes()
    elapsed = time.perf_counter() - start
    assert back == seg and sum(areas.values()) == 12_000_000 and overlay.size == (4000, 3000) and png
    assert elapsed < 8.0, f"{elapsed:.1f} s"
    assert rle.area(seg.to_dict()["segments"][15]["rle"]) == areas["c15"]
