"""``visor anonymize --people``: whole people hidden (deeplabv3_voc's person class), alone or with the faces
(``--faces``); the written files equal the library's, and nothing outside the masks and boxes changes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import visor
from visor.cli.main import main
from visor.faces import FaceAnalyzer, anonymize
from visor.faces.anonymize import anonymize_people, expanded_boxes, people_mask


@pytest.fixture(scope="module")
def segmenter(zoo_cache):
    return visor.load("deeplabv3_voc")


def png_copy(source: Path, folder: Path) -> Path:
    """The photo as PNG, so that the written copy is lossless and comparable pixel for pixel."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / (source.stem + ".png")
    Image.open(source).convert("RGB").save(target)
    return target


def test_people_alone(capsys, shared_data, segmenter, tmp_path):
    photo = png_copy(shared_data("coco128") / "images" / "000000000436.jpg", tmp_path / "in")
    out_dir = tmp_path / "out"
    assert main(["anonymize", str(photo), "--people", "--out", str(out_dir)]) == 0
    out, err = capsys.readouterr()
    target = out_dir / photo.name
    mask = people_mask(segmenter.predict(photo))
    assert out.strip() == f"{photo} -> {target}  people {mask.mean():.1%} of the pixels" and err == ""
    written = np.asarray(Image.open(target))
    assert np.array_equal(written, np.asarray(anonymize_people(photo, segmenter=segmenter)))
    original = np.asarray(Image.open(photo))
    assert np.array_equal(written[~mask], original[~mask]) and not np.array_equal(written[mask], original[mask])


def test_people_and_faces_together(capsys, shared_data, segmenter, tmp_path, zoo_cache):
    """two_people.jpg: black boxes over the grown person masks and the expanded face boxes, nothing else."""
    photo = png_copy(shared_data("faces") / "unknown" / "two_people.jpg", tmp_path / "in")
    out_dir = tmp_path / "out"
    assert main(["anonymize", str(photo), "--people", "--faces", "--method", "box", "--out", str(out_dir),
                 "--dilate", "3"]) == 0
    out, _ = capsys.readouterr()
    original = np.asarray(Image.open(photo))
    faces = FaceAnalyzer().detect(original, embeddings=False)
    assert len(faces) == 2 and out.strip().endswith("  2 face(s), people " +
                                                    f"{people_mask(segmenter.predict(photo), dilate=3).mean():.1%} "
                                                    "of the pixels")
    hidden = people_mask(segmenter.predict(photo), dilate=3)
    for x1, y1, x2, y2 in expanded_boxes(faces, (original.shape[1], original.shape[0]), 0.2).tolist():
        hidden[y1:y2, x1:x2] = True
    written = np.asarray(Image.open(out_dir / photo.name))
    assert np.array_equal(written[~hidden], original[~hidden])
    assert not written[hidden].any()
    # faces only (the default) leaves the bodies
    only_faces = tmp_path / "faces"
    assert main(["anonymize", str(photo), "--method", "box", "--out", str(only_faces)]) == 0
    assert np.array_equal(np.asarray(Image.open(only_faces / photo.name)),
                          np.asarray(anonymize(original, faces, "box")))


def test_bad_segmenters_are_usage_errors(capsys, tmp_path, zoo_cache):
    photo = png_copy(Path(__file__).resolve().parents[2] / "assets" / "bus.jpg", tmp_path / "in")
    assert main(["anonymize", str(photo), "--people", "--segmenter", "yolox_nano", "--out", str(tmp_path / "o")]) == 2
    assert "yolox_nano is a detection model; --segmenter needs a segmentation model" in capsys.readouterr().err
    from segmentation_helpers import make_run_folder

    make_run_folder(tmp_path / "run")
    assert main(["anonymize", str(photo), "--people", "--segmenter", str(tmp_path / "run"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "tiny_segfpn has no 'person' class for --people" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["anonymize", str(photo), "--people", "--dilate", "-1", "--out", str(tmp_path / "o")])
