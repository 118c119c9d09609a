"""Pascal VOC: BCCD, the 1-based inclusive pixel convention, malformed XML reported per file."""

from __future__ import annotations

from pathlib import Path

import pytest

from visor.data import BoxAnnotation, DetectionDataset, DetectionImage, formats
from visor.data.formats import from_voc, to_voc
from visor.data.formats.voc import voc_xml
from visor.errors import InvalidInput


def test_bccd_reads_every_box_split_and_attribute(shared_data):
    root = shared_data("bccd")
    ds = formats.load(root)
    assert ds.problems == ()
    assert ds.classes == ("Platelets", "RBC", "WBC") and ds.category_ids is None  # sorted unique names
    assert len(ds) == 292 and ds.num_boxes == 3943
    assert ds.class_counts() == {"Platelets": 292, "RBC": 3350, "WBC": 301}
    assert [len(ds.subset(s)) for s in ds.splits] == [205, 87] and ds.splits == ("train", "val")
    im = ds.images[0]
    assert (im.name, im.width, im.height, im.split, im.id) == ("BloodImage_00000.jpg", 640, 480, "val", None)
    assert im.path == root / "JPEGImages" / "BloodImage_00000.jpg"
    # <xmin>260 <ymin>177 <xmax>491 <ymax>376 (1-based, inclusive) -> continuous 0-based xyxy
    wbc = im.annotations[0]
    assert wbc == BoxAnnotation((259.0, 176.0, 491.0, 376.0), 2,
                                attributes={"pose": "Unspecified", "truncated": "0", "difficult": "0"})
    # xmin 1 .. xmax 640 on a 640-wide image: touches both borders, inside the image
    assert any(a.xyxy[0] == 0.0 for a in im.annotations) and any(a.xyxy[2] == 640.0 for a in im.annotations)


def _xml(filename: str, objects: str, size: str = "<size><width>50</width><height>40</height></size>") -> str:
    return f"<annotation><filename>{filename}</filename>{size}{objects}</annotation>"


def _obj(name: str, box: tuple, extra: str = "") -> str:
    xmin, ymin, xmax, ymax = box
    return (f"<object><name>{name}</name>{extra}<bndbox><xmin>{xmin}</xmin><ymin>{ymin}</ymin>"
            f"<xmax>{xmax}</xmax><ymax>{ymax}</ymax></bndbox></object>")


def _voc(root: Path, make_image, files: dict[str, str], images: tuple[str, ...]) -> Path:
    (root / "Annotations").mkdir(parents=True)
    for name, text in files.items():
        (root / "Annotations" / f"{name}.xml").write_text(text)
    for name in images:
        make_image(root / "JPEGImages" / name, 50, 40)
    return root


def test_malformed_files_and_objects_are_reported(tmp_path, make_image):
    root = _voc(tmp_path, make_image, {
        "a": _xml("a.jpg", "".join([
            _obj("cat", (1, 1, 10, 10), "<difficult>1</difficult>"),  # fine
            _obj("cat", (40, 30, 60, 40)),                             # outside the 50 x 40 image: kept
            _obj("cat", (10, 10, 8, 20)),                              # xmax < xmin: no width
            _obj("cat", (1, "x", 5, 5)),                               # not a number
            _obj("bird", (1, 1, 5, 5)),                                # not in labels.txt
            "<object><bndbox/></object>",                              # no name
        ])),
        "b": "<annotation><filename>b.jpg</filename><object>",        # broken XML
        "c": _xml("c.jpg", _obj("dog", (2, 2, 4, 4))),               # image missing, size known: kept
        "d": _xml("d.jpg", _obj("dog", (2, 2, 4, 4)), size=""),      # image missing, no size: left out
    }, images=("a.jpg", "b.jpg"))
    (root / "labels.txt").write_text("cat\ndog\n")
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\nc\nzz\n")
    ds = from_voc(root)
    ann = root / "Annotations"
    problems = [(Path(p.item).name if p.item.startswith(str(root)) else p.item, p.reason) for p in ds.problems]
    reasons = "\n".join(f"{i}: {r}" for i, r in problems)
    assert "train.txt:3: no Annotations/zz.xml for this image id" in reasons
    assert "a.xml: object 2 (cat): box [39, 29, 60, 40] (xyxy) extends outside the 50x40 image; kept as it is" \
        in reasons
    assert "a.xml: object 3 (cat): box [9, 9, 8, 20] (xyxy) has non-positive size" in reasons
    assert "a.xml: object 4 (cat): <ymin> must be a number, got 'x'; left out" in reasons
    assert "a.xml: object 6: no <name>; left out" in reasons
    assert "a.xml: unknown class 'bird'" in reasons
    assert "b.xml: not valid XML: " in reasons and "; image left out" in reasons
    assert f"c.xml: image file not found: {root / 'JPEGImages' / 'c.jpg'}; its annotations are kept" in reasons
    assert "d.xml: no valid <size> and image file not found" in reasons
    assert len(ds.problems) == 9, reasons
    assert ds.classes == ("cat", "dog")
    assert [(im.name, im.split) for im in ds] == [("a.jpg", "train"), ("c.jpg", "train")]
    a = ds.images[0].annotations
    assert [x.xyxy for x in a] == [(0.0, 0.0, 10.0, 10.0), (39.0, 29.0, 60.0, 40.0)]
    assert a[0].attributes == {"difficult": "1"}
    assert ds.images[1].annotations[0].class_id == 1
    assert ann.is_dir()


def test_missing_size_is_read_from_the_image(tmp_path, make_image):
    root = _voc(tmp_path, make_image, {"a": _xml("a.jpg", _obj("c", (1, 1, 5, 5)), size="")}, images=("a.jpg",))
    assert [(im.width, im.height) for im in from_voc(root)] == [(50, 40)]


def test_not_a_voc_folder(tmp_path):
    with pytest.raises(InvalidInput, match="has no Annotations/ folder"):
        from_voc(tmp_path)


def test_writing_inverts_the_pixel_convention_exactly():
    im = DetectionImage("x/p.jpg", 64, 48, (
        BoxAnnotation((0.0, 0.0, 64.0, 48.0), 0, attributes={"pose": "Left", "difficult": "0"}),
        BoxAnnotation((2.5, 3.0, 10.125, 7.0), 1, iscrowd=True),
    ))
    text = voc_xml(im, ("a", "b"))
    assert "<xmin>1</xmin>" in text and "<ymin>1</ymin>" in text and "<xmax>64</xmax>" in text
    assert "<xmin>3.5</xmin>" in text and "<xmax>10.125</xmax>" in text and "<iscrowd>1</iscrowd>" in text
    assert text.index("<pose>Left</pose>") < text.index("<difficult>0</difficult>") < text.index("<bndbox>")


def test_written_folder_reads_back(tmp_path, make_image, assert_same_dataset):
    images = tuple(
        DetectionImage(make_image(tmp_path / "src" / f"{n}.png", 50, 40), 50, 40,
                       (BoxAnnotation((0.0, 1.5, 50.0, 40.0), 1, iscrowd=True, attributes={"truncated": "1"}),),
                       split=split)
        for n, split in (("a", "train"), ("b", "test"))
    )
    ds = DetectionDataset(images, ("zeta", "alpha", "unused"))  # not sorted, one class without boxes
    assert to_voc(ds, tmp_path / "out") == tmp_path / "out"
    out = tmp_path / "out"
    assert (out / "ImageSets" / "Main" / "train.txt").read_text() == "a\n"
    assert (out / "ImageSets" / "Main" / "test.txt").read_text() == "b\n"
    assert (out / "labels.txt").read_text() == "zeta\nalpha\nunused\n"
    back = from_voc(out)
    assert back.problems == ()
    assert_same_dataset(ds, back)
    with pytest.raises(InvalidInput, match="share the name 'a'"):
        to_voc(DetectionDataset((images[0], DetectionImage(tmp_path / "x" / "a.jpg", 5, 5)), ds.classes), out)


def test_one_split_keeps_the_classes_of_all_splits(tmp_path, make_image):
    root = _voc(tmp_path, make_image, {"a": _xml("a.jpg", _obj("zebra", (1, 1, 5, 5))),
                                       "b": _xml("b.jpg", _obj("ant", (1, 1, 5, 5)))}, images=("a.jpg", "b.jpg"))
    (root / "ImageSets" / "Main").mkdir(parents=True)
    (root / "ImageSets" / "Main" / "train.txt").write_text("a\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("b\n")
    train = from_voc(root, split="train")
    assert train.classes == ("ant", "zebra") and [im.name for im in train] == ["a.jpg"]
    assert train.images[0].annotations[0].class_id == 1
