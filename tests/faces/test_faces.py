"""Faces result type, dlib detection/landmarks/embeddings, compare(), typed errors."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from visor.errors import ConfigError, CorruptImage, ImageNotFound
from visor.faces import FaceAnalyzer, MultipleFaces, NoFaceFound, compare
from visor.types.faces import Faces


@pytest.fixture(scope="module")
def analyzer(zoo_cache) -> FaceAnalyzer:
    return FaceAnalyzer()  # YuNet (weights imported from ../shared/models by zoo_cache) + dlib embeddings


@pytest.fixture(scope="module")
def faces_dir(shared_data):
    return shared_data("faces")


def _faces(n: int, k: int = 5) -> Faces:
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (n, 2))
    return Faces(np.concatenate([xy, xy + 10], axis=1), np.arange(n), rng.uniform(0, 60, (n, k, 2)),
                 rng.normal(size=(n, 128)), {"name": np.array([f"p{i}" for i in range(n)])})


# --------------------------------------------------------------------------- type


def test_faces_type_shapes_indexing_and_json():
    f = _faces(3)
    assert len(f) == 3 and f.landmarks.shape == (3, 5, 2) and f.embeddings.dtype == np.float32
    assert len(f[1]) == 1 and f[1].data["name"].tolist() == ["p1"]
    assert f[np.array([True, False, True])].data["name"].tolist() == ["p0", "p2"]
    d = json.loads(f.to_json())
    assert d["type"] == "faces" and len(d["faces"]) == 3
    assert set(d["faces"][0]) == {"xyxy", "confidence", "landmarks", "embedding", "name"}
    assert len(d["faces"][0]["embedding"]) == 128 and len(d["faces"][0]["landmarks"]) == 5
    assert "embedding" not in f.to_dict(embeddings=False)["faces"][0]
    back = Faces.from_dict(d)
    np.testing.assert_allclose(back.xyxy, f.xyxy, atol=1e-3)
    np.testing.assert_allclose(back.embeddings, f.embeddings, atol=1e-5)
    assert back.data["name"].tolist() == ["p0", "p1", "p2"]


def test_faces_type_empty_and_mismatch():
    e = Faces.empty()
    assert len(e) == 0 and e.to_dict() == {"type": "faces", "model": "", "faces": []}
    assert len(Faces.from_dict(e.to_dict())) == 0
    with pytest.raises(ValueError, match="confidence"):
        Faces(np.zeros((2, 4)), np.zeros(3), np.zeros((2, 5, 2)), np.zeros((2, 128)))
    with pytest.raises(ValueError, match="name"):
        Faces(np.zeros((2, 4)), np.zeros(2), np.zeros((2, 5, 2)), np.zeros((2, 128)), {"name": np.array(["a"])})
    f = Faces(np.zeros((1, 4)), [np.nan], np.zeros((1, 0, 2)), np.zeros((1, 0)))
    assert f.to_dict()["faces"][0]["confidence"] is None


def test_import_is_lazy():
    code = "import sys, visor.faces, visor.cli.faces; assert not {'dlib', 'sqlalchemy'} & set(sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True)


# --------------------------------------------------------------------------- detection


@pytest.mark.parametrize("model", ["yunet", "hog"])
def test_detect_one_face_per_photo(analyzer, faces_dir, model):
    # (every known photo is checked for exactly one face when test_collections enrolls it)
    for path in [faces_dir / "known" / "rose_leslie" / "img2.jpg", faces_dir / "unknown" / "obama-240p.jpg"]:
        f = analyzer.detect(path, model=model)
        assert len(f) == 1 and f.model == model, path
        w, h = Image.open(path).size
        x1, y1, x2, y2 = f.xyxy[0]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        assert f.landmarks.shape == (1, 5, 2) and f.embeddings.shape == (1, 128)
        assert f.confidence[0] > (0.7 if model == "yunet" else 0)
        # the 5 landmarks (YuNet: eyes, nose tip, mouth corners; dlib: eye corners, nose) lie inside the
        # (slightly grown) box
        assert np.all(f.landmarks[0] >= [x1 - 0.2 * (x2 - x1), y1 - 0.2 * (y2 - y1)])
        assert np.all(f.landmarks[0] <= [x2 + 0.2 * (x2 - x1), y2 + 0.2 * (y2 - y1)])


def test_yunet_and_hog_embed_the_same_face_alike(analyzer, faces_dir):
    """Embeddings aligned from YuNet's box and from HOG's are the same person's, within 0.1 of each other:
    collections enrolled with either detector keep working with the other."""
    for path in [faces_dir / "unknown" / "obama-240p.jpg", faces_dir / "known" / "biden" / "biden.jpg"]:
        yunet, hog = analyzer.detect(path), analyzer.detect(path, model="hog")
        assert float(np.linalg.norm(yunet.embeddings[0] - hog.embeddings[0])) < 0.1, path


def test_detect_options(analyzer, faces_dir):
    path = faces_dir / "unknown" / "two_people.jpg"
    f = analyzer.detect(path, landmarks=68, embeddings=False)
    assert len(f) == 2 and f.landmarks.shape == (2, 68, 2) and f.embeddings.shape == (2, 0)
    with pytest.raises(ConfigError, match="unknown face detector 'yolo'"):
        analyzer.detect(path, model="yolo")
    with pytest.raises(ConfigError, match="between 0 and 1"):
        analyzer.detect(path, threshold=1.5)
    with pytest.raises(ConfigError):
        FaceAnalyzer(detector="yolo")
    with pytest.raises(ConfigError):
        analyzer.detect(path, landmarks=17)


def test_cnn_detector_on_a_small_image(analyzer, faces_dir):
    crop = Image.open(faces_dir / "known" / "kit_harington" / "john2.jpeg").crop((230, 50, 520, 330))
    f = analyzer.detect(crop, model="cnn", upsample=0)
    hog = analyzer.detect(crop)
    assert len(f) == 1 and f.confidence[0] > 0
    assert compare(f.embeddings[0], hog.embeddings[0])[1]


def test_images_go_through_open_image(analyzer, tmp_path):
    with pytest.raises(ImageNotFound):
        analyzer.detect(tmp_path / "missing.jpg")
    with pytest.raises(CorruptImage):
        analyzer.detect(b"\xff\xd8\xff\xe0 truncated")
    buf = io.BytesIO()
    Image.new("RGB", (120, 90), (128, 128, 128)).save(buf, "PNG")
    assert len(analyzer.detect(buf.getvalue())) == 0


# --------------------------------------------------------------------------- compare


def test_compare_same_and_different_people(analyzer, faces_dir):
    known = faces_dir / "known"
    d_same, same = compare(known / "obama" / "obama.jpg", known / "obama" / "obama2.jpg", analyzer=analyzer)
    assert same and d_same < 0.6
    d_diff, same = compare(known / "obama" / "obama.jpg", known / "biden" / "biden.jpg", analyzer=analyzer)
    assert not same and d_diff > 0.6
    e1 = analyzer.embed_one(known / "kit_harington" / "john1.jpeg")
    e2 = analyzer.embed_one(known / "kit_harington" / "john2.jpeg")
    d, same = compare(e1, list(e2))
    assert same and d == pytest.approx(float(np.linalg.norm(e1 - e2)), abs=1e-5)
    assert not compare(e1, e2, threshold=d / 2)[1]


def test_embed_one_errors_name_the_photo(analyzer, faces_dir, tmp_path):
    two = faces_dir / "unknown" / "two_people.jpg"
    with pytest.raises(MultipleFaces, match=r"two_people\.jpg"):
        analyzer.embed_one(two)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (100, 100), (200, 200, 200)).save(blank)
    with pytest.raises(NoFaceFound, match=r"blank\.png") as e:
        analyzer.embed_one(blank)
    assert e.value.code == "no_face" and e.value.http_status == 400
    with pytest.raises(NoFaceFound):
        compare(blank, two, analyzer=analyzer)
