"""YOLO data.yaml + label files: boxes and polygons, bad lines reported per line, the ids sidecar."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from visor.data import BoxAnnotation, DetectionDataset, DetectionImage, formats
from visor.data.formats import SIDECAR, from_yolo, to_yolo
from visor.errors import ConfigError, InvalidInput


def _yolo(root: Path, make_image, labels: dict[str, str], yaml_text: str | None = None) -> Path:
    """root/images/<split>/<name>.png (100 x 80) and root/labels/<split>/<name>.txt from ``labels``."""
    for rel, text in labels.items():
        make_image(root / "images" / f"{rel}.png", 100, 80)
        if text is not None:
            (root / "labels" / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / "labels" / f"{rel}.txt").write_text(text)
    (root / "data.yaml").write_text(yaml_text or "train: images/train\nval: images/val\nnames:\n  0: cat\n  1: dog\n")
    return root


def test_boxes_and_polygons_in_pixels(tmp_path, make_image):
    root = _yolo(tmp_path, make_image, {
        "train/a": "0 0.5 0.5 0.5 0.5\n\n1 0 0 1 0 1 1\n",
        "train/b": "",
        "val/c": None,  # no label file: an image without boxes
    })
    ds = formats.load(root)  # the folder: its data.yaml
    assert ds.problems == ()
    assert ds.classes == ("cat", "dog") and ds.category_ids is None
    assert [(im.name, im.split, im.width, im.height) for im in ds] == [
        ("a.png", "train", 100, 80), ("b.png", "train", 100, 80), ("c.png", "val", 100, 80)]
    box, poly = ds.images[0].annotations
    assert box == BoxAnnotation((25.0, 20.0, 75.0, 60.0), 0)
    assert poly.class_id == 1 and poly.segmentation == ((0.0, 0.0, 100.0, 0.0, 100.0, 80.0),)
    assert poly.xyxy == (0.0, 0.0, 100.0, 80.0)  # the polygon's extent
    assert ds.images[1].annotations == () and ds.images[2].annotations == ()
    assert [im.split for im in from_yolo(root / "data.yaml", split="val")] == ["val"]


def test_bad_lines_and_files_are_reported_per_item(tmp_path, make_image):
    root = _yolo(tmp_path, make_image, {
        "train/a": "\n".join([
            "0 0.5 0.5 0.2 0.2",        # 1 fine
            "0 0.5 0.5",                # 2 wrong count
            "1 0.5 abc 0.2 0.2",        # 3 not a number
            "5 0.5 0.5 0.2 0.2",        # 4 unknown class
            "0 0.5 0.5 0 0.2",          # 5 zero width
            "1 0.95 0.5 0.2 0.2",       # 6 outside the image: kept
            "1 0.1 0.1 0.2 0.2 0.3",    # 7 even number of values
        ]) + "\n",
    })
    (root / "labels" / "train" / "orphan.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    (root / "images" / "val").mkdir(parents=True)
    (root / "images" / "val" / "broken.png").write_bytes(b"not an image")
    ds = from_yolo(root)
    label = root / "labels" / "train" / "a.txt"
    reasons = {p.item: p.reason for p in ds.problems}
    assert "expected 5 values (class cx cy w h) or a class and at least 3 x y pairs, got 3" in reasons[f"{label}:2"]
    assert "not all values are finite numbers" in reasons[f"{label}:3"]
    assert "unknown class id 5 (data.yaml names 2 classes, ids 0-1)" in reasons[f"{label}:4"]
    assert "non-positive size" in reasons[f"{label}:5"]
    assert "extends outside the 100x80 image; kept as it is" in reasons[f"{label}:6"]
    assert "got 6 value(s)" in reasons[f"{label}:7"]
    assert "label file has no image" in reasons[str(root / "labels" / "train" / "orphan.txt")]
    assert "cannot read the size" in reasons[str(root / "images" / "val" / "broken.png")]
    assert len(ds.problems) == 8
    assert [im.name for im in ds] == ["a.png"]
    assert [a.xyxy for a in ds.images[0].annotations] == [(40.0, 32.0, 60.0, 48.0), (85.0, 32.0, 105.0, 48.0)]


def test_image_list_files_and_missing_images(tmp_path, make_image):
    root = _yolo(tmp_path, make_image, {"all/a": "0 0.5 0.5 0.5 0.5\n", "all/b": ""},
                 "path: .\ntrain: train.txt\nnames: [cat, dog]\n")
    (root / "train.txt").write_text("./images/all/a.png\nimages/all/b.png\nimages/all/gone.png\n")
    ds = from_yolo(root / "data.yaml")
    assert [(im.name, im.split) for im in ds] == [("all/a.png", "train"), ("all/b.png", "train")]
    assert [(p.item, p.reason) for p in ds.problems] == [
        (f"{root / 'train.txt'}:3", f"image file not found: {root / 'images' / 'all' / 'gone.png'}; left out")]


def test_same_images_in_train_and_val_means_no_split(tmp_path, make_image):
    root = _yolo(tmp_path, make_image, {"a": "0 0.5 0.5 0.5 0.5\n"}, "train: images\nval: images\nnames: [x]\n")
    ds = from_yolo(root)
    assert [im.split for im in ds] == [None] and ds.problems == ()


@pytest.mark.parametrize(("yaml_text", "error", "message"), [
    ("train: [unclosed\n", ConfigError, "is not valid YAML"),
    ("train: images/train\n", ConfigError, "'names' must be a non-empty list"),
    ("names: [a, b]\n", ConfigError, "no 'train', 'val' or 'test' entry"),
    ("train: images/train\nnames: {0: a, 2: b}\n", ConfigError, "keys must be the class ids 0..1"),
    ("train: images/train\nnames: [a, b]\nnc: 3\n", ConfigError, "'nc' is 3"),
])
def test_unusable_data_yaml_raises(tmp_path, yaml_text, error, message):
    (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(error, match=message):
        from_yolo(tmp_path)


def test_missing_data_yaml_raises(tmp_path):
    with pytest.raises(InvalidInput, match=r"no data\.yaml"):
        from_yolo(tmp_path)


def _dataset(tmp_path, make_image, split=None) -> DetectionDataset:
    images = (
        DetectionImage(make_image(tmp_path / "src" / "a.png", 40, 20), 40, 20, (
            BoxAnnotation((0.0, 0.5, 13.25, 20.0), 1, id=7, area=99.5, attributes={"k": "v"}),
            BoxAnnotation((1.0, 1.0, 9.0, 9.0), 0, id=8,
                          segmentation=((1.0, 1.0, 9.0, 1.0, 5.0, 8.5), (2.0, 9.0, 3.0, 9.0, 2.5, 8.0))),
            BoxAnnotation((3.0, 3.0, 30.0, 15.0), 0, id=9, iscrowd=True,
                          rle={"size": [20, 40], "counts": [5, 10, 785]}),
        ), id=70, split=split),
        DetectionImage(make_image(tmp_path / "src" / "b.png", 10, 10), 10, 10, (), id=71, split=split),
    )
    return DetectionDataset(images, ("p", "q"), (3, 1))


def test_written_labels_are_standard_yolo_seg_and_the_sidecar_restores_the_rest(
    tmp_path, make_image, assert_same_dataset
):
    ds = _dataset(tmp_path, make_image)
    yaml_path = to_yolo(ds, tmp_path / "out")
    out = tmp_path / "out"
    assert yaml_path == out / "data.yaml"
    assert (out / "data.yaml").read_text().splitlines()[1:] == [
        "train: images", "val: images", "nc: 2", "names:", "  0: p", "  1: q"]
    lines = (out / "labels" / "a.txt").read_text().splitlines()
    assert len(lines) == 2  # the crowd region is only in the sidecar
    assert all(len(line.split()) % 2 == 1 and len(line.split()) >= 7 for line in lines)  # all polygons (YOLO-seg)
    assert lines[0] == "1 0.0 0.025 0.33125 0.025 0.33125 1.0 0.0 1.0"  # the box as a 4-corner polygon
    assert (out / "labels" / "b.txt").read_text() == ""
    back = from_yolo(out)
    assert back.problems == ()
    assert_same_dataset(ds, back)
    # without the sidecar: still every box and polygon, but no ids, crowd regions or extras
    (out / SIDECAR).unlink()
    plain = from_yolo(out)
    assert plain.category_ids is None and [im.id for im in plain] == [None, None]
    first, second = plain.images[0].annotations
    assert first.id is None and len(first.segmentation) == 1  # the box, as the rectangle polygon it was written as
    parts = ds.images[0].annotations[1].segmentation
    assert second.segmentation == (parts[0] + parts[1],)  # the parts, concatenated as written


def test_box_only_datasets_get_box_lines(tmp_path, make_image):
    path = make_image(tmp_path / "a.png", 40, 20)
    im = DetectionImage(path, 40, 20, (BoxAnnotation((0, 0, 40, 20), 0),), split="val")
    to_yolo(DetectionDataset((im,), ("c",)), tmp_path / "out")
    assert (tmp_path / "out" / "labels" / "val" / "a.txt").read_text() == "0 0.5 0.5 1.0 1.0\n"
    assert "val: images/val" in (tmp_path / "out" / "data.yaml").read_text()


def test_edited_labels_no_longer_match_the_sidecar(tmp_path, make_image):
    ds = _dataset(tmp_path, make_image)
    to_yolo(ds, tmp_path / "out")
    label = tmp_path / "out" / "labels" / "a.txt"
    label.write_text(label.read_text().splitlines()[1] + "\n")  # one line deleted
    back = from_yolo(tmp_path / "out")
    assert len(back.problems) == 1 and "does not match the label file" in back.problems[0].reason
    assert back.problems[0].item == str(tmp_path / "out" / "images" / "a.png")
    assert [a.id for a in back.images[0].annotations] == [None]
    assert [im.id for im in back] == [None, 71]  # the other image keeps its id


def test_only_some_images_with_a_split_cannot_be_written(tmp_path, make_image):
    ds = _dataset(tmp_path, make_image)
    mixed = DetectionDataset((ds.images[0], DetectionImage(ds.images[1].path, 10, 10, split="val")), ds.classes)
    with pytest.raises(InvalidInput, match=r"1 image\(s\).*have no split while others have one"):
        to_yolo(mixed, tmp_path / "out")


def test_sidecar_is_plain_json_keyed_by_image_path(tmp_path, make_image):
    to_yolo(_dataset(tmp_path, make_image, split="train"), tmp_path / "out", images="none")
    side = json.loads((tmp_path / "out" / SIDECAR).read_text())
    assert side["category_ids"] == [3, 1] and side["classes"] == ["p", "q"]
    entry = side["images"]["images/train/a.png"]
    assert entry["id"] == 70
    assert [s.get("line") for s in entry["annotations"]] == [1, 2, None]
    assert entry["annotations"][1]["parts"] == [6, 6]
    assert not (tmp_path / "out" / "images").exists()  # images="none"
