"""COCO RLE in numpy agrees with pycocotools (a test-only reference) byte for byte, on coco128's real masks."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from visor.errors import InvalidInput
from visor.ops import rle

pytest.importorskip("pycocotools")
from pycocotools import mask as coco_mask

# pycocotools' decode warns under numpy 2 (its __array__ has no copy keyword); not visor's concern
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def coco128(shared_data) -> dict:
    return json.loads((Path(shared_data("coco128")) / "instances.json").read_text())


@pytest.fixture(scope="module")
def annotations(coco128) -> list[tuple[dict, int, int]]:
    """(annotation, height, width) for every coco128 annotation."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in coco128["images"]}
    return [(a, *sizes[a["image_id"]]) for a in coco128["annotations"]]


def reference_encode(mask: np.ndarray) -> dict:
    return coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))


# --------------------------------------------------------------------------- hand-checked


def test_a_hand_checked_mask():
    # column-major pixels 0,1 | 1,1 -> runs of 0s and 1s: 1, 3 -> "1", "3"
    mask = np.array([[0, 1], [1, 1]], bool)
    assert rle.encode(mask) == {"size": [2, 2], "counts": "13"}
    # first pixel set: a leading run of no 0s (0, 2, 2)
    assert rle.encode(np.array([[1, 0], [1, 0]]))["counts"] == "022"
    # counts after the third are written as the difference to the one two before: 1,1,1,1,1 -> "1", "1", "1", "0", "0"
    assert rle.encode(np.array([[0, 1, 0, 1, 0]]))["counts"] == "11100"
    np.testing.assert_array_equal(rle.decode({"size": [1, 5], "counts": "11100"}), [[0, 1, 0, 1, 0]])
    np.testing.assert_array_equal(rle.decode({"size": [1, 5], "counts": [1, 1, 1, 1, 1]}), [[0, 1, 0, 1, 0]])
    assert rle.area({"size": [2, 2], "counts": "13"}) == 3


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (3, 5), (0, 4), (4, 0), (37, 23)])
@pytest.mark.parametrize("fill", ["zeros", "ones", "first", "last", "random", "sparse"])
def test_encode_is_byte_identical_to_pycocotools(shape, fill):
    rng = np.random.default_rng(sum(shape) * 7 + len(fill))
    mask = np.zeros(shape, np.uint8)
    if mask.size:
        if fill == "ones":
            mask[:] = 1
        elif fill == "first":
            mask[0, 0] = 1
        elif fill == "last":
            mask[-1, -1] = 1
        elif fill == "random":
            mask = (rng.random(shape) < 0.5).astype(np.uint8)
        elif fill == "sparse":
            mask = (rng.random(shape) < 0.05).astype(np.uint8)
    ref = reference_encode(mask)
    ours = rle.encode(mask)
    assert ours == {"size": list(ref["size"]), "counts": ref["counts"].decode("ascii")}
    assert rle.area(ours) == int(coco_mask.area(ref)) == int(mask.sum())
    if mask.size:
        np.testing.assert_array_equal(rle.decode(ours), mask.astype(bool))


def test_long_runs_and_large_differences():
    """Counts that need several characters, and differences to the count two before that are negative."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 2500, 2))
        cuts = np.sort(rng.integers(0, h * w + 1, int(rng.integers(1, 12))))
        flat = np.zeros(h * w, np.uint8)
        for a, b in zip(cuts[0::2], cuts[1::2], strict=False):
            flat[a:b] = 1
        mask = flat.reshape(w, h).T
        ours = rle.encode(mask)
        assert ours["counts"] == reference_encode(mask)["counts"].decode("ascii")
        np.testing.assert_array_equal(rle.decode(ours), mask.astype(bool))
        assert rle.area(ours) == int(flat.sum())


def test_encode_labels_is_encode_of_each_value():
    rng = np.random.default_rng(5)
    labels = np.kron(rng.integers(0, 6, (6, 8)), np.ones((7, 5), np.int64)).astype(np.uint8)
    labels[0, 0] = 9
    by_value = rle.encode_labels(labels)
    assert list(by_value) == sorted(np.unique(labels).tolist())
    for value, r in by_value.items():
        assert r == rle.encode(labels == value)
        assert r["counts"] == reference_encode(labels == value)["counts"].decode("ascii")


# --------------------------------------------------------------------------- coco128


def test_coco128_masks_encode_decode_and_area_like_pycocotools(annotations):
    checked = crowd = 0
    for ann, h, w in annotations:
        seg = ann["segmentation"]
        if isinstance(seg, list):
            polygons = [p for p in seg if len(p) > 4]
            ref_rle = coco_mask.merge(coco_mask.frPyObjects(polygons, h, w))
        else:  # crowd regions: uncompressed RLE, decoded by both
            ref_rle = coco_mask.frPyObjects(seg, h, w)
            np.testing.assert_array_equal(rle.decode(seg), coco_mask.decode(ref_rle).astype(bool))
            assert rle.area(seg) == int(coco_mask.area(ref_rle))
            crowd += 1
        mask = coco_mask.decode(ref_rle)
        ours = rle.encode(mask)
        assert ours["counts"] == reference_encode(mask)["counts"].decode("ascii") == ref_rle["counts"].decode("ascii")
        assert rle.area(ours) == int(coco_mask.area(ref_rle)) == int(mask.sum())
        np.testing.assert_array_equal(rle.decode(ours), mask.astype(bool))
        np.testing.assert_array_equal(rle.decode(ref_rle), mask.astype(bool))  # bytes counts too
        checked += 1
    assert checked == 939 and crowd == 10


def test_from_polygons_matches_pycocotools_on_every_coco128_polygon(annotations):
    """Measured: all 1048 polygons of the 929 polygon annotations give pycocotools' counts exactly, and the
    united masks differ from pycocotools' frPyObjects + merge + decode in 0 of 260,973,632 pixels."""
    polygons = annotations_done = mismatched = pixels = foreground = 0
    for ann, h, w in annotations:
        seg = ann["segmentation"]
        if not isinstance(seg, list):
            continue
        refs = coco_mask.frPyObjects(seg, h, w)
        for points, ref in zip(seg, refs, strict=True):
            assert rle.encode(rle.from_polygons([points], h, w))["counts"] == ref["counts"].decode("ascii")
            polygons += 1
        expected = coco_mask.decode(coco_mask.merge(refs)).astype(bool)
        got = rle.from_polygons(seg, h, w)
        assert got.shape == (h, w) and got.dtype == bool
        mismatched += int((got != expected).sum())
        pixels += h * w
        foreground += int(expected.sum())
        annotations_done += 1
    assert (annotations_done, polygons) == (929, 1048)
    assert foreground == 11_968_588 and pixels == 260_973_632
    assert mismatched == 0


def test_from_polygons_edge_cases():
    # a square of 4x4 pixels, a polygon outside the image, a repeated point, one reaching past the border
    square = [1, 1, 5, 1, 5, 5, 1, 5]
    for polys in ([square], [[-20, -20, -10, -20, -10, -10]], [[2, 2, 2, 2, 6, 2, 6, 6, 2, 6]],
                  [[3, 3, 30, 3, 30, 30, 3, 30]], [square, [4, 4, 9, 4, 9, 9]]):
        expected = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polys, 8, 10))).astype(bool)
        np.testing.assert_array_equal(rle.from_polygons(polys, 8, 10), expected)
    assert rle.from_polygons([square], 8, 10).sum() == 16
    assert not rle.from_polygons([], 8, 10).any()


# --------------------------------------------------------------------------- what arrives from outside


@pytest.mark.parametrize(("value", "message"), [
    ({"size": [2, 2]}, "'size' and 'counts'"),
    ([1, 2], "'size' and 'counts'"),
    ({"size": [2], "counts": "13"}, "size must be"),
    ({"size": [True, 2], "counts": "13"}, "size must be"),
    ({"size": [2.0, 2], "counts": "13"}, "size must be"),
    ({"size": [-2, -2], "counts": [4]}, "negative"),
    ({"size": [20_000, 20_000], "counts": [400_000_000]}, "more than the limit"),
    ({"size": [2, 2], "counts": "14"}, "add up to 5 pixels"),
    ({"size": [2, 2], "counts": [1, 2]}, "add up to 3 pixels"),
    ({"size": [2, 2], "counts": [3, -1, 2]}, "negative"),
    ({"size": [2, 2], "counts": [2**70, 4]}, "more than its 4 pixels"),
    ({"size": [2, 2], "counts": [1.5, 2.5]}, "list of integers"),
    ({"size": [2, 2], "counts": 4}, "string or a list"),
    ({"size": [2, 2], "counts": "1 3"}, "characters outside"),
    ({"size": [2, 2], "counts": "1é"}, "characters outside"),
    ({"size": [2, 2], "counts": "1P"}, "middle of a count"),
    ({"size": [2, 2], "counts": "_________0"}, "more than 7 characters"),
])
def test_malformed_rles_are_invalid_input(value, message):
    with pytest.raises(InvalidInput, match=message):
        rle.decode(value)
    with pytest.raises(InvalidInput):
        rle.area(value)


def test_caps_are_configurable_and_polygons_are_checked():
    big = {"size": [100, 100], "counts": [10_000]}
    assert rle.area(big) == 0
    with pytest.raises(InvalidInput, match="limit of 9999"):
        rle.decode(big, max_pixels=9999)
    with pytest.raises(InvalidInput, match="x, y pairs"):
        rle.from_polygons([[1, 2, 3]], 4, 4)
    with pytest.raises(InvalidInput, match="finite"):
        rle.from_polygons([[1, 2, 3, float("nan"), 4, 4]], 4, 4)
    with pytest.raises(InvalidInput, match="flat list"):
        rle.from_polygons([["a", "b"]], 4, 4)
    with pytest.raises(InvalidInput, match="outline has"):
        rle.from_polygons([[0, 0, 1e9, 0, 1e9, 1]], 4, 4)
    with pytest.raises(ValueError, match="2-D"):
        rle.encode(np.zeros((2, 2, 2)))
    assert rle.canonical({"size": [1, 5], "counts": [1, 1, 1, 1, 1]}) == {"size": [1, 5], "counts": "11100"}
