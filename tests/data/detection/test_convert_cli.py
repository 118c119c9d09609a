"""``visor data convert`` end to end and ``visor data stats`` on detection data, through ``visor.cli.main``."""

from __future__ import annotations

import json
import shutil

import pytest

from visor.cli.main import main
from visor.data import formats


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def small_coco(tmp_path, make_image):
    """A COCO file with two images, one fine annotation, one outside the image and one of an unknown category."""
    root = tmp_path / "src"
    make_image(root / "images" / "a.jpg", 60, 40)
    make_image(root / "images" / "b.jpg", 30, 30)
    doc = {
        "images": [{"id": 4, "file_name": "a.jpg", "width": 60, "height": 40},
                   {"id": 8, "file_name": "b.jpg", "width": 30, "height": 30}],
        "categories": [{"id": 3, "name": "cat"}, {"id": 1, "name": "dog"}],
        "annotations": [
            {"id": 20, "image_id": 4, "category_id": 3, "bbox": [1.5, 2.25, 10, 20], "iscrowd": 0, "area": 200,
             "segmentation": [[1.5, 2.25, 11.5, 2.25, 11.5, 22.25]]},
            {"id": 21, "image_id": 4, "category_id": 1, "bbox": [50, 30, 20, 20], "iscrowd": 0},
            {"id": 22, "image_id": 8, "category_id": 9, "bbox": [1, 1, 2, 2], "iscrowd": 0},
        ],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root / "instances.json"


def test_convert_coco_to_yolo_to_voc_and_back(capsys, tmp_path, small_coco):
    code, out, err = run(capsys, "data", "convert", str(small_coco), "--from", "coco", "--to", "yolo",
                         str(tmp_path / "yolo"))
    assert code == 0
    assert out.splitlines() == [
        f"read 2 images, 2 boxes, 2 classes from {small_coco} (coco)",
        f"wrote yolo to {tmp_path / 'yolo' / 'data.yaml'}",
        "2 problem(s) in the source, listed on stderr",
    ]
    warnings = [line for line in err.splitlines() if line.startswith("visor: warning: ")]
    assert len(warnings) == 2
    assert "annotation id 21: box [50, 30, 70, 50] (xyxy) extends outside the 60x40 image" in warnings[0]
    assert "annotation id 22: unknown category id 9" in warnings[1]
    assert (tmp_path / "yolo" / "images" / "a.jpg").is_file()  # copied
    yolo = formats.load(tmp_path / "yolo")
    assert [im.id for im in yolo] == [4, 8] and yolo.category_ids == (1, 3) and yolo.classes == ("dog", "cat")

    # --from detected; YOLO -> COCO keeps the ids and the polygon
    code, out, _ = run(capsys, "data", "convert", str(tmp_path / "yolo"), str(tmp_path / "coco"), "--to", "coco")
    assert code == 0 and out.splitlines()[0].endswith("(yolo)")
    coco = json.loads((tmp_path / "coco" / "instances.json").read_text())
    assert [a["id"] for a in coco["annotations"]] == [20, 21]
    assert coco["annotations"][0]["segmentation"] == [[1.5, 2.25, 11.5, 2.25, 11.5, 22.25]]
    assert coco["annotations"][0]["bbox"] == [1.5, 2.25, 10.0, 20.0]

    # COCO -> VOC notes what VOC cannot hold
    code, out, err = run(capsys, "data", "convert", str(tmp_path / "coco"), str(tmp_path / "voc"), "--to", "voc",
                         "--images", "symlink")
    assert code == 0 and "visor: note: VOC has no polygons: 1 annotation(s) keep their box only" in err
    assert (tmp_path / "voc" / "JPEGImages" / "a.jpg").is_symlink()
    assert formats.load(tmp_path / "voc").num_boxes == 2


def test_strict_force_and_bad_sources(capsys, tmp_path, small_coco):
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "data", "convert", str(small_coco), str(out_dir), "--to", "voc", "--strict")
    assert code == 1 and out == "" and not out_dir.exists()
    assert "2 problem(s) in" in err and "nothing written because of --strict" in err

    out_dir.mkdir()
    (out_dir / "keep.txt").write_text("x")
    code, _, err = run(capsys, "data", "convert", str(small_coco), str(out_dir), "--to", "voc")
    assert code == 1 and "exists and is not empty; use --force" in err
    code, _, _ = run(capsys, "data", "convert", str(small_coco), str(out_dir), "--to", "voc", "--force")
    assert code == 0 and (out_dir / "Annotations" / "a.xml").is_file()

    code, _, err = run(capsys, "data", "convert", str(tmp_path / "nothing"), str(tmp_path / "o2"), "--to", "coco")
    assert code == 1 and "cannot load" in err and "no such file or folder" in err
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, _, err = run(capsys, "data", "convert", str(bad), str(tmp_path / "o3"), "--to", "yolo")
    assert code == 1 and "is not valid JSON" in err
    with pytest.raises(SystemExit) as exc:
        main(["data", "convert", str(small_coco), str(tmp_path / "o4"), "--to", "kitti"])
    assert exc.value.code == 2
    capsys.readouterr()


def test_images_dir_for_coco(capsys, tmp_path, small_coco):
    moved = tmp_path / "elsewhere"
    shutil.move(small_coco.parent / "images", moved)
    code, _, err = run(capsys, "data", "convert", str(small_coco), str(tmp_path / "o"), "--to", "coco",
                       "--images-dir", str(moved), "--split", "val")
    assert code == 0 and "image file not found" not in err
    assert (tmp_path / "o" / "instances_val.json").is_file() and (tmp_path / "o" / "images" / "b.jpg").is_file()


def test_stats_on_bccd_prints_boxes_per_class(capsys, shared_data):
    code, out, err = run(capsys, "data", "stats", str(shared_data("bccd")))
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert lines[0].split() == ["class", "boxes:train", "boxes:val", "boxes", "images"]
    counts = {line.split()[0]: int(line.split()[3]) for line in lines[1:4]}
    assert counts == {"Platelets": 292, "RBC": 3350, "WBC": 301}
    assert "images: 292 (train 205, val 87); boxes: 3943" in out

    code, out, _ = run(capsys, "data", "stats", str(shared_data("coco128") / "instances.json"), "--json")
    d = json.loads(out)
    assert code == 0 and d["type"] == "detection" and d["num_boxes"] == 939 and d["crowd_boxes"] == 10
    assert d["boxes_per_class"]["all"]["person"] == 259
