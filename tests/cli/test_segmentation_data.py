"""``visor data stats`` on mask folders, ``visor data convert --to masks`` and ``--to coco``, via ``visor.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from visor.cli.main import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def coco(tmp_path):
    """A COCO file with one image: a cat square with a small dog inside, and an annotation with a box only."""
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    Image.new("RGB", (8, 6), (10, 20, 30)).save(root / "images" / "a.jpg")
    doc = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 8, "height": 6}],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 9, "bbox": [1, 1, 2, 2], "iscrowd": 0,
             "segmentation": [[1, 1, 3, 1, 3, 3, 1, 3]]},
            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, 4, 4], "iscrowd": 0,
             "segmentation": [[0, 0, 4, 0, 4, 4, 0, 4]]},
            {"id": 3, "image_id": 1, "category_id": 5, "bbox": [6, 0, 1, 1], "iscrowd": 0},
        ],
    }
    (root / "instances.json").write_text(json.dumps(doc))
    return root / "instances.json"


EXPECTED = [[1, 1, 1, 1, 0, 0, 0, 0],
            [1, 2, 2, 1, 0, 0, 0, 0],
            [1, 2, 2, 1, 0, 0, 0, 0],
            [1, 1, 1, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0]]


def test_convert_to_masks_and_back(capsys, coco, tmp_path):
    code, out, err = run(capsys, "data", "convert", str(coco), str(tmp_path / "masks"), "--to", "masks")
    assert code == 0, err
    assert out.splitlines()[0] == f"wrote 1 masks in 3 classes (0 = background, 255 = ignored) to {tmp_path / 'masks'}"
    assert "annotation id 3 has a box only (no polygon or RLE); left out of the mask" in err
    assert np.asarray(Image.open(tmp_path / "masks" / "masks" / "a.png")).tolist() == EXPECTED
    assert (tmp_path / "masks" / "classes.txt").read_text() == "background\ncat\ndog\n"
    assert (tmp_path / "masks" / "images" / "a.jpg").is_symlink()

    code, out, err = run(capsys, "data", "convert", str(tmp_path / "masks"), str(tmp_path / "back"), "--to", "coco",
                         "--images", "copy")
    assert code == 0, err
    assert out.splitlines() == [f"read 1 images in 3 classes from {tmp_path / 'masks'}",
                                f"wrote 2 annotations (rle) on 1 images to {tmp_path / 'back' / 'instances.json'}"]
    doc = json.loads((tmp_path / "back" / "instances.json").read_text())
    assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "cat"), (2, "dog")]
    assert [(a["category_id"], a["bbox"], a["area"]) for a in doc["annotations"]] == [
        (1, [0.0, 0.0, 4.0, 4.0], 12.0), (2, [1.0, 1.0, 2.0, 2.0], 4.0)]
    assert not (tmp_path / "back" / "images" / "a.jpg").is_symlink()

    code, _, err = run(capsys, "data", "convert", str(tmp_path / "back" / "instances.json"), str(tmp_path / "again"),
                       "--to", "masks")
    assert code == 0, err
    assert np.asarray(Image.open(tmp_path / "again" / "masks" / "a.png")).tolist() == EXPECTED


def test_convert_refusals(capsys, coco, tmp_path):
    assert run(capsys, "data", "convert", str(coco), str(coco.parent / "out"), "--to", "masks")[0] == 2
    assert not (coco.parent / "out").exists()
    code, _, err = run(capsys, "data", "convert", str(coco), str(tmp_path / "m"), "--to", "masks", "--strict")
    assert code == 1 and "nothing written because of --strict" in err and not (tmp_path / "m").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    code, _, err = run(capsys, "data", "convert", str(coco), str(tmp_path / "full"), "--to", "masks")
    assert code == 1 and "not empty; use --force" in err


def test_stats_on_mask_folders(capsys, shared_data, tmp_path):
    code, out, err = run(capsys, "data", "stats", str(shared_data("membrane")))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["id", "class", "pixels:train", "pixels", "images"]
    assert lines[1].split() == ["0", "background", "21.96%", "21.96%", "30"]
    assert lines[-1] == "no problems found"

    root = tmp_path / "d"
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    Image.new("RGB", (3, 2)).save(root / "images" / "a.png")
    Image.new("RGB", (3, 2)).save(root / "images" / "b.png")
    Image.fromarray(np.array([[0, 1, 4], [1, 1, 1]], np.uint8)).save(root / "labels" / "a.png")
    Image.fromarray(np.array([[0, 1, 1], [1, 1, 1]], np.uint8)).save(root / "labels" / "b.png")
    code, out, err = run(capsys, "data", "stats", str(root), "--classes", "bg,fg", "--json")
    assert code == 0, err  # a report: problems do not fail it, as for the other datasets
    doc = json.loads(out)
    assert doc["type"] == "segmentation" and doc["classes"] == ["bg", "fg"] and doc["num_loaded"] == 1
    reason = "mask values 4 are outside the 2 classes (0..1) and not the ignore index 255"
    assert doc["problems"] == [{"item": str(root / "labels" / "a.png"), "reason": reason}]
    code, out, _ = run(capsys, "data", "stats", str(root), "--classes", "bg,fg", "--ignore-index", "4")
    assert code == 0 and out.splitlines()[-1] == "no problems found"
    assert run(capsys, "data", "stats", str(root), "--classes", "a,b,c,d,e", "--ignore-index", "4")[0] == 1


def test_help_names_masks(capsys):
    with pytest.raises(SystemExit):
        main(["data", "convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--to {coco,yolo,voc,masks}" in text and "--encoding {rle,polygons}" in text
    assert "COCO -> masks -> COCO -> masks gives the same masks" in text
